"""The server's /experts and shadow experts (issue 19 point 4): a scored expert on few rows
is added as a shadow over HTTP as with ``irde experts add``, listed, removable, and
``"gate": false`` makes it route at once."""

from __future__ import annotations

import httpx
import pytest

from irde_onnx.runtime import Router
from irde_onnx.serve import ServeSettings, create_app

from .runtime.pooled_toy import build_pooled_router
from .runtime.test_shadow_experts import FEW, FEW_Y
from .serve_helpers import running

TOKEN = "shadow-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("IRDE_TOKEN", TOKEN)
    root = build_pooled_router(tmp_path / "router")
    app = create_app(ServeSettings(router=str(root), reload_interval=0))
    with running(app) as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            yield c, root


def _rows():
    return [{"text": t, "score": float(y)} for t, y in zip(FEW, FEW_Y, strict=True)]


def test_a_few_scored_rows_add_a_shadow_that_is_listed_and_removed(client):
    c, root = client
    r = c.post("/experts", json={"name": "new", "rows": _rows()}, headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["experts"] == ["a", "b"] and body["shadow_experts"] == ["new"]
    assert body["gate"]["passed"] is False and body["gate"]["n"] == len(FEW)
    assert Router.load(root).stats.shadows["new"].scores.tolist() == FEW_Y.tolist()
    listed = c.get("/experts").json()["experts"]
    assert listed[-1] == {"column": None, "name": "new", "mode": "own", "shadow": True, "rows": 20}
    again = c.post("/experts", json={"name": "new", "rows": _rows()}, headers=AUTH)
    assert again.status_code == 409
    gone = c.delete("/experts/new", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["experts"] == ["a", "b"]
    assert "new" not in Router.load(root).stats.shadows
    assert c.delete("/experts/new", headers=AUTH).status_code == 404


def test_gate_false_routes_at_once_and_a_bad_gate_is_422(client):
    c, root = client
    bad = c.post("/experts", json={"name": "new", "rows": _rows(), "gate": "no"}, headers=AUTH)
    assert bad.status_code == 422 and '"gate"' in bad.json()["error"]["message"]
    r = c.post("/experts", json={"name": "new", "rows": _rows(), "gate": False}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["experts"] == ["a", "b", "new"] and r.json()["gate"] is None
    assert r.json()["shadow_experts"] == []
    assert Router.load(root).experts == ["a", "b", "new"]

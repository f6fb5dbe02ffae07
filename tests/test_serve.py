"""irde serve: endpoints and their error paths through a real HTTP client, token guard,
metrics, and reloading a folder another process changed."""

from __future__ import annotations

import json
import shutil
import time

# starlette and httpx are in the dev extra: a missing one is a broken install, not a skip
import httpx
import pytest

from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.serve import ServeSettings, create_app

from .serve_helpers import CHEMISTRY, running

TOKEN = "s3cret-token"


@pytest.fixture
def router_dir(static_router_dir, tmp_path):
    return shutil.copytree(static_router_dir, tmp_path / "router")


@pytest.fixture
def serve(router_dir, monkeypatch):
    """Start a server on a copy of the static router: serve(token=..., **settings)."""
    stack = []

    def start(token: str | None = None, **kw):
        if token is None:
            monkeypatch.delenv("IRDE_TOKEN", raising=False)
        else:
            monkeypatch.setenv("IRDE_TOKEN", token)
        settings = ServeSettings(router=str(router_dir), **{"reload_interval": 0.1, **kw})
        ctx = running(create_app(settings))
        url = ctx.__enter__()
        stack.append(ctx)
        return httpx.Client(base_url=url, timeout=30)

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def error_of(resp, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["status"] == status
    assert body["error"]["message"]
    return body["error"]["message"]


def test_route_returns_what_the_cli_prints(serve, router_dir, demo_samples, capsys):
    from irde_onnx.cli import main

    client = serve()
    texts = demo_samples[0][:5]
    assert main(["route", str(router_dir), *texts, "--top-k", "2"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    one = client.post("/route", json={"text": texts[0], "top_k": 2})
    assert one.status_code == 200
    assert one.json() == printed[0]
    many = client.post("/route", json={"texts": texts, "top_k": 2})
    assert many.json() == printed
    default = client.post("/route", json={"text": texts[0]}).json()
    assert default["top"] == [printed[0]["expert"]]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 422, "exactly one of"),
        (b'{"text": "a", "texts": ["b"]}', 422, "exactly one of"),
        (b'{"text": 5}', 422, '"text" must be a string'),
        (b'{"texts": "abc"}', 422, "list of strings"),
        (b'{"texts": ["a", 3]}', 422, '"texts"[1]'),
        (b'{"texts": []}', 422, "empty"),
        (b'{"text": "a", "top_k": 0}', 422, "top_k"),
        (b'{"text": "a", "top_k": 99}', 422, "top_k"),
        (b'{"text": "a", "top_k": true}', 422, "top_k"),
        (b'{"text": "a", "topk": 2}', 422, "unknown field"),
    ],
)
def test_route_rejects_bad_requests_with_a_json_error(serve, body, status, words):
    client = serve()
    resp = client.post("/route", content=body, headers={"content-type": "application/json"})
    assert words in error_of(resp, status)


def test_request_size_limits(serve):
    client = serve(max_body_bytes=2000, max_texts=3)
    big = json.dumps({"text": "x" * 5000})
    assert "limit of 2000 bytes" in error_of(client.post("/route", content=big), 413)

    def chunks():  # no content-length: the limit holds while the body streams in
        for _ in range(10):
            yield b" " * 500

    assert "limit" in error_of(client.post("/route", content=chunks()), 413)
    assert "--max-texts" in error_of(client.post("/route", json={"texts": ["a"] * 4}), 413)
    assert client.post("/route", json={"texts": ["a"] * 3}).status_code == 200


def test_unknown_paths_and_methods_get_json_errors(serve):
    client = serve()
    error_of(client.get("/nope"), 404)
    error_of(client.get("/route"), 405)


def test_expert_changes_are_disabled_without_a_token(serve, router_dir):
    client = serve(token=None)
    before = Router.load(router_dir).experts
    add = client.post("/experts", json={"name": "chemistry", "rows": [{"text": "a"}]})
    assert "IRDE_TOKEN" in error_of(add, 403)
    error_of(client.delete("/experts/law"), 403)
    assert Router.load(router_dir).experts == before
    assert [e["name"] for e in client.get("/experts").json()["experts"]] == before


def test_token_guard_and_expert_changes(serve, router_dir):
    client = serve(token=TOKEN)
    rows = [{"text": t} for t in CHEMISTRY]
    body = {"name": "chemistry", "rows": rows}
    error_of(client.post("/experts", json=body), 401)
    error_of(client.post("/experts", json=body, headers={"authorization": "Bearer wrong"}), 401)
    error_of(client.post("/experts", json=body, headers={"authorization": TOKEN}), 401)
    auth = {"authorization": f"Bearer {TOKEN}"}
    for bad, words in [
        ({"name": "", "rows": rows}, "name"),
        ({"name": "x", "rows": []}, "no rows"),
        ({"name": "x", "rows": [{"txt": "a"}]}, "rows[0]: the row needs"),
        ({"name": "x", "rows": [{"text": "a", "score": 1}, {"text": "b"}]}, "every row"),
        ({"name": "x", "rows": [{"text": "a", "score": "high"}]}, "number"),
        ({"name": "x"}, "rows"),
    ]:
        assert words in error_of(client.post("/experts", json=bad, headers=auth), 422)

    added = client.post("/experts", json=body, headers=auth)
    assert added.status_code == 201, added.text
    assert "chemistry" in added.json()["experts"]
    # the change is saved, and served: the same head as the saved folder
    local = Router.load(router_dir)
    assert local.experts == added.json()["experts"]
    routed = client.post("/route", json={"text": CHEMISTRY[0]}).json()
    assert routed == local.route([CHEMISTRY[0]])[0].to_dict()
    listed = client.get("/experts").json()["experts"]
    assert listed[-1] == {"column": len(listed) - 1, "name": "chemistry", "mode": "pooled"}
    assert "exists" in error_of(client.post("/experts", json=body, headers=auth), 409)

    assert "unknown expert" in error_of(client.delete("/experts/physics", headers=auth), 404)
    error_of(client.delete("/experts/chemistry"), 401)
    removed = client.delete("/experts/chemistry", headers=auth)
    assert removed.status_code == 200
    assert "chemistry" not in removed.json()["experts"]
    assert Router.load(router_dir).experts == removed.json()["experts"]


def test_healthz_and_metrics(serve, demo_samples):
    client = serve(token=TOKEN)
    assert client.get("/healthz").json()["status"] == "ok"
    texts = demo_samples[0][:4]
    routes = client.post("/route", json={"texts": texts}).json()
    client.post("/route", json={"text": 3})
    client.post(
        "/experts",
        json={"name": "chemistry", "rows": [{"text": t} for t in CHEMISTRY]},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    text = client.get("/metrics").text
    assert 'irde_requests_total{endpoint="route",status="200"} 1.0' in text
    assert 'irde_requests_total{endpoint="route",status="422"} 1.0' in text
    assert 'irde_errors_total{endpoint="route",type="invalid_request"} 1.0' in text
    assert 'irde_request_seconds_bucket{endpoint="route",le="+Inf"} 2.0' in text
    assert 'irde_head_swaps_total{cause="api"} 1.0' in text
    for expert in {r["expert"] for r in routes}:
        count = sum(r["expert"] == expert for r in routes)
        assert f'irde_decisions_total{{expert="{expert}"}} {count:.1f}' in text
    assert "irde_experts 6.0" in text


def test_a_change_saved_by_another_process_is_served(serve, router_dir):
    client = serve(reload_interval=0.1)
    other = RouterEditor.open(router_dir)
    other.add_expert("chemistry", CHEMISTRY)
    other.save()
    expected = other.route([CHEMISTRY[1]])[0].to_dict()
    deadline = time.monotonic() + 10
    while "chemistry" not in client.get("/healthz").json()["experts"]:
        assert time.monotonic() < deadline, "the change was not picked up within 10 s"
        time.sleep(0.05)
    assert client.post("/route", json={"text": CHEMISTRY[1]}).json() == expected


def test_serve_cli_errors_exit_2(tmp_path, capsys):
    from irde_onnx.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("irde serve: error:") and "Traceback" not in err


def test_route_takes_a_per_request_wtp(serve, router_dir):
    client = serve()
    text = "Solve 3x + 5 = 20 and explain the steps"
    assert "costs" in error_of(client.post("/route", json={"text": text, "wtp": 1.0}), 422)
    served = client.get("/healthz").json()["generation"]
    router = RouterEditor.open(router_dir)
    with router.lock():
        router.set_costs({e: 0.01 * (i + 1) for i, e in enumerate(router.experts)})
        router.save()
    # the server reloads the folder (reload_interval 0.1 s): wait for the new generation
    deadline = time.monotonic() + 10
    while client.get("/healthz").json()["generation"] == served:
        assert time.monotonic() < deadline, "the change was not picked up within 10 s"
        time.sleep(0.05)
    for wtp in (0.001, 0.1, None):
        got = client.post("/route", json={"text": text, "wtp": wtp}).json()
        want = Router.load(router_dir).route([text], wtp=wtp)[0].to_dict()
        assert got == json.loads(json.dumps(want))
    assert "wtp" in error_of(client.post("/route", json={"text": text, "wtp": "x"}), 422)

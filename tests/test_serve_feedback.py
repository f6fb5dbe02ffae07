"""``POST /feedback`` (issue 19): token, rows by text or request id, 404/410, metrics,
replicas, and a kill -9 after the 200 (the journal holds the rows)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.serve import ServeSettings, create_app
from irde_onnx.serve.feedback import RecentPrompts
from irde_onnx.store.journal import JOURNAL_FILE

from .serve_helpers import free_port, running

TOKEN = "feedback-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROWS = [
    {"text": "solve the integral of a matrix", "expert": "math"},
    {"text": "the judge of the appeal court", "expert": "law"},
]


@pytest.fixture
def serve(toy_router, monkeypatch):
    monkeypatch.setenv("IRDE_TOKEN", TOKEN)
    stack = []

    def start(**kw):
        app = create_app(ServeSettings(router=str(toy_router), **{"reload_interval": 0.05, **kw}))
        ctx = running(app)
        url = ctx.__enter__()
        stack.append(ctx)
        return httpx.Client(base_url=url, timeout=30), app.state.server

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def _reference(root, rows):
    import shutil
    import tempfile

    copy = shutil.copytree(root, tempfile.mkdtemp() + "/r")
    editor = RouterEditor.open(copy)
    editor.add_feedback(rows)
    return editor


def test_feedback_is_journaled_folded_and_served(serve, toy_router):
    reference = _reference(toy_router, ROWS)
    client, _ = serve()
    assert client.post("/feedback", json={"rows": ROWS}).status_code == 401
    resp = client.post("/feedback", json={"rows": ROWS}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 2 and resp.json()["seq"] == 2
    assert (toy_router / JOURNAL_FILE).exists()
    text = "the law of the court"
    served = client.post("/route", json={"text": text}).json()
    assert served == reference.route([text])[0].to_dict()
    np.testing.assert_allclose(Router.load(toy_router).head[0], reference.head[0], atol=1e-12)


def test_feedback_by_request_id_and_expired_ids(serve, toy_router):
    client, server = serve()
    server.recent = RecentPrompts(size=1)
    first = client.post("/route", json={"text": ROWS[0]["text"]})
    rid = first.headers["x-request-id"]
    resp = client.post(
        "/feedback", json={"rows": [{"request_id": rid, "expert": "math"}]}, headers=AUTH
    )
    assert resp.status_code == 200, resp.text
    entry = Router.load(toy_router).stats.feedback_rows.tolist()
    assert entry == [0, 0, 1]
    client.post("/route", json={"text": "another prompt"})  # evicts the first id
    gone = client.post(
        "/feedback", json={"rows": [{"request_id": rid, "expert": "math"}]}, headers=AUTH
    )
    assert gone.status_code == 410, gone.text
    error = gone.json()["error"]  # OpenAI's shape
    assert error["code"] == "request_expired" and error["param"] == "request_id"
    assert "send the prompt as" in error["message"]
    unknown = client.post(
        "/feedback", json={"rows": [{"request_id": "f" * 32, "expert": "math"}]}, headers=AUTH
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "request_not_found"


def test_bad_feedback_is_refused_and_nothing_is_journaled(serve, toy_router):
    client, _ = serve()
    for body, words in [
        ({"rows": [ROWS[0], {"text": "x", "expert": "chemistry"}]}, "row 2: unknown expert"),
        ({"rows": []}, '"rows" must be a non-empty list'),
        ({"rows": ROWS, "why": 1}, "why"),
        ({"rows": ROWS, "traffic_weight": -1}, "traffic_weight"),
    ]:
        resp = client.post("/feedback", json=body, headers=AUTH)
        assert resp.status_code == 400, resp.text
        assert words in resp.json()["error"]["message"]
    assert not (toy_router / JOURNAL_FILE).exists()


def test_feedback_metrics(serve, toy_router):
    client, server = serve()
    server.holder  # noqa: B018
    scores = [
        {"text": "solve x", "expert": "math"},
        {"text": "the law", "expert": "law"},
        {"text": "a court", "expert": "law"},
    ]
    assert client.post("/feedback", json={"rows": scores}, headers=AUTH).status_code == 200
    text = client.get("/metrics").text
    assert 'irde_feedback_rows_total{expert="law"} 2.0' in text
    assert 'irde_feedback_rows_total{expert="math"} 1.0' in text
    server.metrics.observe_feedback(
        [{"text": "x", "expert": "law", "outcome": 1.0}, {"text": "y", "scores": {"law": 0.0}}]
    )
    text = client.get("/metrics").text
    assert 'irde_feedback_outcome_avg{expert="law"} 0.95' in text  # 1, then 1 + 0.05 (0 - 1)


def test_a_replica_serves_feedback_taken_by_another(serve, toy_router):
    a, _ = serve()
    b, _ = serve()
    text = "the law of the court"
    before = b.post("/route", json={"text": text}).json()
    assert a.post("/feedback", json={"rows": ROWS * 5}, headers=AUTH).status_code == 200
    expected = a.post("/route", json={"text": text}).json()
    assert expected != before
    deadline = time.monotonic() + 10
    while b.post("/route", json={"text": text}).json() != expected:
        assert time.monotonic() < deadline, "the replica did not reload the journal"
        time.sleep(0.05)


def test_feedback_survives_kill_9_after_the_answer(toy_router):
    """A server process answers 200 for feedback, is killed with SIGKILL at once, and a fresh
    load of the folder has the rows folded (from the journal)."""
    reference = _reference(toy_router, ROWS)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "irde_onnx", "serve", str(toy_router), "--port", str(port),
         "--threads", "1"],
        env={**os.environ, "IRDE_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "irde serve exited"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        resp = httpx.post(f"{url}/feedback", json={"rows": ROWS}, headers=AUTH, timeout=30)
        assert resp.status_code == 200, resp.text
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    loaded = Router.load(toy_router)
    assert loaded.stats.feedback_rows.tolist() == [0, 1, 1]
    np.testing.assert_allclose(loaded.head[0], reference.head[0], atol=1e-12)

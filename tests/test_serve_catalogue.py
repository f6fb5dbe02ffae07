"""The cosmetic cases of issue 16, one test each: long names are not echoed back, expert
names cannot add fields to the access log, unknown keys in ``rows`` are refused, and a token
with surrounding white space is refused at start."""

from __future__ import annotations

import json
import logging
import shlex
import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from irde_onnx.runtime import RouterEditor
from irde_onnx.serve import ServeSettings, create_app
from irde_onnx.serve.app import log_value

from .bad_inputs import folder_hashes
from .serve_helpers import running

TOKEN = "catalogue-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(toy_router, monkeypatch):
    monkeypatch.setenv("IRDE_TOKEN", TOKEN)
    app = create_app(ServeSettings(router=str(toy_router), reload_interval=0))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_errors_do_not_echo_a_long_name_back(client, toy_router):
    name = "n" * 10_000
    resp = client.delete(f"/experts/{name}", headers=AUTH)
    assert resp.status_code == 404 and len(resp.content) < 1000
    assert "10000 characters" in resp.json()["error"]["message"]
    resp = client.get(f"/{name}")
    assert resp.status_code == 404 and len(resp.content) < 1000
    port = int(str(client.base_url).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # past httpx's limit
        sock.sendall(
            b"DELETE /experts/" + b"n" * 100_000 + b" HTTP/1.1\r\nhost: x\r\n"
            b"connection: close\r\nauthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404") and len(answer) < 1000
    assert b"100000 characters" in answer
    long = "x" * 100_000  # in a body, where no parser limit stops it
    resp = client.post("/experts", json={"name": long, "rows": [{"text": "a"}]}, headers=AUTH)
    assert resp.status_code == 422 and len(resp.content) < 1000
    assert "longer than" in resp.json()["error"]["message"]
    resp = client.post("/route", json={"text": "a", "top_k": long})
    assert resp.status_code == 422 and len(resp.content) < 1000


def test_unknown_keys_in_rows_are_refused(client, toy_router):
    before = folder_hashes(toy_router)
    for row in ({"text": "a", "label": "math"}, {"text": "a", "score": 1, "weight": 2}):
        resp = client.post("/experts", json={"name": "new", "rows": [row]}, headers=AUTH)
        assert resp.status_code == 422, resp.text
        message = resp.json()["error"]["message"]
        assert "rows[0]: unknown key(s)" in message and "allowed: ['score', 'text']" in message
    assert folder_hashes(toy_router) == before


def test_a_token_with_white_space_is_refused_at_start(toy_router, monkeypatch, capsys):
    from irde_onnx.cli import main

    for token in (" secret", "secret\n", "\tsecret "):
        monkeypatch.setenv("IRDE_TOKEN", token)
        assert main(["serve", str(toy_router), "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "IRDE_TOKEN" in err and "white space" in err


def test_expert_names_cannot_fake_access_log_fields(toy_router, tmp_path, caplog):
    router = RouterEditor.open(toy_router)
    fake = 'math model=evil stream=True "x'
    math = ["solve the equation for x", "what is the integral of x", "is x a prime number"]
    with router.lock():  # the only expert, so every prompt goes to it
        router.add_expert(fake, math)
        for other in ("code", "law", "math"):
            router.remove_expert(other)
        router.save()
    assert router.route(["solve the integral of x"])[0].expert == fake

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"id": "c", "object": "chat.completion", "choices": []})

    backend = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with running(backend) as backend_url:
        path = tmp_path / "backends.json"
        path.write_text(json.dumps({"default": {"base_url": f"{backend_url}/v1", "model": "m-1"}}))
        app = create_app(ServeSettings(router=str(toy_router), backends=str(path)))
        with running(app) as url, caplog.at_level(logging.INFO, logger="irde.access"):
            messages = [{"role": "user", "content": "solve the integral of x"}]
            resp = httpx.post(f"{url}/v1/chat/completions", json={"messages": messages})
    assert resp.status_code == 200
    [line] = [r.getMessage() for r in caplog.records if r.name == "irde.access"]
    # read as a log parser would: shell-like words, key=value fields
    fields = [word.split("=", 1) for word in shlex.split(line) if "=" in word]
    assert [key for key, _ in fields] == ["expert", "decision", "model", "stream", "request_id"]
    assert dict(fields) == {
        "expert": fake,
        "decision": "routed",
        "model": "m-1",
        "stream": "False",
        "request_id": resp.headers["x-request-id"],
    }
    assert log_value("math") == "math" and log_value("a b") == '"a b"'

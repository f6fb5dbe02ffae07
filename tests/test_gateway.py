"""The OpenAI-compatible gateway against stub backends on 127.0.0.1, with the official
``openai`` client (streaming and non-streaming), and its 502/504 errors."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time

# starlette, httpx and openai are in the dev extra: a missing one is a broken install
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from irde_onnx.runtime import Router
from irde_onnx.serve import ServeSettings, create_app

from .serve_helpers import chat_completion, free_port, running  # noqa: E402

MATH = "Solve for x: 3x - 7 = 2x + 5."


def _sse(model: str, words: list[str]) -> list[bytes]:
    events = []
    for i, word in enumerate(words):
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": word},
                    "finish_reason": "stop" if i == len(words) - 1 else None,
                }
            ],
        }
        events.append(f"data: {json.dumps(chunk)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return events


def stub_backend(seen: list[dict]) -> Starlette:
    """An OpenAI-compatible stub: answers 'answer from <model>', streams it word by word."""

    async def chat(request: Request) -> Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        model = body["model"]
        last = body["messages"][-1]["content"]
        if "please fail" in last:
            return JSONResponse(
                {"error": {"message": "the stub refuses", "type": "stub", "code": "refused"}},
                status_code=400,
            )
        if "please stall" in last:
            await asyncio.sleep(3)
        words = ["answer ", "from ", model]
        if body.get("stream"):

            async def events():
                for event in _sse(model, words):
                    yield event
                    await asyncio.sleep(0.01)

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(chat_completion(model, "".join(words)))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def backend():
    seen: list[dict] = []
    with running(stub_backend(seen)) as url:
        yield url, seen


@pytest.fixture
def gateway(static_router_dir, tmp_path, backend, monkeypatch):
    """Start the gateway: gateway(timeout=..., base_url=...) -> its URL."""
    url, _ = backend
    router_dir = shutil.copytree(static_router_dir, tmp_path / "router")
    experts = Router.load(router_dir).experts
    monkeypatch.setenv("STUB_KEY", "backend-key")
    stack = []

    def start(timeout: float = 2.0, base_url: str | None = None):
        config = {
            "experts": {
                e: {
                    "base_url": base_url or f"{url}/v1",
                    "model": f"model-{e}",
                    "api_key_env": "STUB_KEY",
                }
                for e in experts
            },
            "timeout": timeout,
            "connect_timeout": 1,
        }
        path = tmp_path / f"backends{len(stack)}.json"
        path.write_text(json.dumps(config))
        ctx = running(create_app(ServeSettings(router=str(router_dir), backends=str(path))))
        stack.append(ctx)
        return ctx.__enter__()

    yield start, Router.load(router_dir)
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def test_openai_client_non_streaming(gateway, backend, caplog):
    start, router = gateway
    client = openai.OpenAI(base_url=f"{start()}/v1", api_key="unused", max_retries=0)
    expert = router.route([MATH])[0].expert
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Tell me about contracts."},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": MATH},
    ]
    with caplog.at_level(logging.INFO, logger="irde.access"):
        raw = client.chat.completions.with_raw_response.create(model="irde", messages=messages)
    assert raw.headers["x-irde-expert"] == expert  # routed on the last user message
    completion = raw.parse()
    assert completion.choices[0].message.content == f"answer from model-{expert}"
    sent = backend[1][-1]
    assert sent["body"]["messages"] == messages and sent["body"]["model"] == f"model-{expert}"
    assert sent["auth"] == "Bearer backend-key"
    assert any(f"expert={expert}" in r.getMessage() for r in caplog.records)


def test_openai_client_streaming_passes_events_through(gateway):
    start, router = gateway
    url = start()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    expert = router.route([MATH])[0].expert
    messages = [{"role": "user", "content": [{"type": "text", "text": MATH}]}]
    stream = client.chat.completions.create(model="irde", messages=messages, stream=True)
    words = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
    assert "".join(words) == f"answer from model-{expert}"
    # byte for byte what the backend sent, with the decision in a header
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        timeout=10,
        json={"model": "irde", "messages": messages, "stream": True},
    ) as resp:
        assert resp.headers["x-irde-expert"] == expert
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = b"".join(resp.iter_raw())
    assert body == b"".join(_sse(f"model-{expert}", ["answer ", "from ", f"model-{expert}"]))


def test_backend_errors_come_back_as_sent(gateway):
    start, _ = gateway
    client = openai.OpenAI(base_url=f"{start()}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="irde", messages=[{"role": "user", "content": "please fail"}]
        )
    assert info.value.status_code == 400
    assert info.value.body["message"] == "the stub refuses"
    assert info.value.response.headers["x-irde-expert"]


def test_refused_connection_gives_502(gateway):
    start, _ = gateway
    url = start(base_url=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="irde", messages=[{"role": "user", "content": MATH}])
    assert info.value.status_code == 502
    assert "cannot be reached" in info.value.body["message"]
    assert time.monotonic() - t0 < 5


def test_backend_timeout_gives_504_not_a_hang(gateway):
    start, _ = gateway
    url = start(timeout=0.5)
    t0 = time.monotonic()
    resp = httpx.post(
        f"{url}/v1/chat/completions",
        timeout=10,
        json={"model": "irde", "messages": [{"role": "user", "content": "please stall"}]},
    )
    assert resp.status_code == 504
    message = resp.json()["error"]["message"]
    assert "did not answer within 0.5 s" in message
    assert resp.headers["x-request-id"] in message and "127.0.0.1" not in message
    assert resp.headers["x-irde-expert"]
    assert time.monotonic() - t0 < 2.5


def test_gateway_rejects_requests_without_messages_as_openai_does(gateway):
    start, _ = gateway
    url = start()
    for body in ({"model": "m"}, {"messages": []}, {"messages": [{"content": "no role"}]}):
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert resp.status_code == 400, resp.text  # OpenAI's status, not 422
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "messages"
        assert "messages" in error["message"]


def test_backends_file_errors_name_the_key(tmp_path, static_router_dir):
    from irde_onnx.errors import InvalidInputError
    from irde_onnx.serve.gateway import load_backends

    cases = [
        ({}, "at least one backend"),
        ({"experts": {"math": {"base_url": "ftp://x", "model": "m"}}}, "base_url"),
        ({"experts": {"math": {"base_url": "http://x"}}}, '"model"'),
        ({"experts": {"math": {"base_url": "http://x", "model": "m"}}, "timeout": -1}, "timeout"),
        (
            {"experts": {}, "default": {"base_url": "http://x", "model": "m"}, "route_on": "first"},
            "route_on",
        ),
        ({"expert": {}}, "unknown key"),
    ]
    for i, (config, words) in enumerate(cases):
        path = tmp_path / f"b{i}.json"
        path.write_text(json.dumps(config))
        with pytest.raises(InvalidInputError, match=words):
            load_backends(path)


def test_an_expert_without_backend_gives_502_and_names_the_fix(
    static_router_dir, tmp_path, backend
):
    from irde_onnx.serve.app import expert_header

    path = tmp_path / "backends.json"
    path.write_text(
        json.dumps({"experts": {"elsewhere": {"base_url": f"{backend[0]}/v1", "model": "m"}}})
    )
    app = create_app(
        ServeSettings(router=str(static_router_dir), backends=str(path), reload_interval=0)
    )
    with running(app) as url:
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=10,
            json={"messages": [{"role": "user", "content": MATH}]},
        )
    assert resp.status_code == 502
    assert "no backend for expert" in resp.json()["error"]["message"]
    assert resp.headers["x-irde-expert"] in Router.load(static_router_dir).experts
    assert expert_header("中文") == "%E4%B8%AD%E6%96%87"

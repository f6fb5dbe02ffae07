"""The OpenWebUI and LiteLLM-proxy recipes of ``examples/`` (issue 18, point 12) against a
real ``irde serve --backends`` process with a client key and stub backends.

These are **faked calls**, not the real tools: each test sends the requests the tool sends
(OpenWebUI: ``GET /v1/models`` with its Bearer key, then a streamed chat with its usual body
fields; LiteLLM: ``GET /v1/models`` for wildcard discovery, then chats through the
``openai`` client it uses, with extra headers) and checks what the tool reads back."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import httpx
import openai
import pytest

from irde_onnx.runtime import Router

from .process_helpers import server_process
from .serve_helpers import free_port, openai_stub, running

ROOT = Path(__file__).resolve().parents[1]
KEY = "recipe-client-key"
MATH = "Solve for x: 3x - 7 = 2x + 5."


@pytest.fixture(scope="module")
def gateway(static_router_dir, tmp_path_factory):
    """A real ``irde serve --backends`` process: (url, requests the backends saw, its log)."""
    tmp = tmp_path_factory.mktemp("recipes")
    router_dir = Path(shutil.copytree(static_router_dir, tmp / "router"))
    experts = Router.load(router_dir).experts
    seen: list[dict] = []
    with running(openai_stub(seen)) as backend:
        config = {
            "experts": {e: {"base_url": f"{backend}/v1", "model": f"llm-{e}"} for e in experts},
            "default": {"base_url": f"{backend}/v1", "model": "general"},
        }
        backends = tmp / "backends.json"
        backends.write_text(json.dumps(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "irde_onnx", "serve", str(router_dir), "--port", str(port)]
        argv += ["--backends", str(backends), "--log-level", "info"]
        env = {**os.environ, "IRDE_CLIENT_TOKEN": KEY}
        log = tmp / "serve.log"
        with server_process(argv, url, log, env=env):
            yield url, seen, log, Router.load(router_dir)


def sse_data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def test_openwebui_connection_model_menu_and_streamed_chat(gateway):
    url, seen, log, router = gateway
    base = f"{url}/v1"  # the connection's URL, as examples/openwebui/README.md sets it
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    # the connection check: a wrong key fails it, the right one lists the models
    wrong = httpx.get(f"{base}/models", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    models = httpx.get(f"{base}/models", headers=headers, timeout=10)
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == ["irde", *router.experts]
    # a chat with the model "irde": OpenWebUI's body fields, streamed with usage
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "text", "text": MATH}]},
    ]
    body = {
        "model": "irde",
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.8,
    }
    chat_headers = {**headers, "X-OpenWebUI-Chat-Id": "chat-1"}
    with httpx.stream(
        "POST", f"{base}/chat/completions", json=body, headers=chat_headers, timeout=30
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        expert = resp.headers["x-irde-expert"]
        assert resp.headers["x-irde-decision"] == "routed"
        events = sse_data(list(resp.iter_lines()))
    assert expert == router.route([MATH])[0].expert
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == f"answer from llm-{expert}"
    assert chunks[-1]["usage"]["total_tokens"] == 4  # the usage chunk OpenWebUI asked for
    sent = seen[-1]["body"]
    assert sent == {**body, "model": f"llm-{expert}"}  # all of its fields, the model swapped
    # choosing an expert in the model menu pins it
    pinned = next(e for e in router.experts if e != expert)
    body["model"] = pinned
    with httpx.stream(
        "POST", f"{base}/chat/completions", json=body, headers=headers, timeout=30
    ) as resp:
        assert resp.headers["x-irde-expert"] == pinned
        assert resp.headers["x-irde-decision"] == "pinned"
        assert sse_data(list(resp.iter_lines()))[-1] == "[DONE]"
    assert seen[-1]["body"]["model"] == f"llm-{pinned}"


def litellm_entries() -> list[dict]:
    yaml = pytest.importorskip("yaml")  # PyYAML comes with ray, in the dev extra
    config = yaml.safe_load((ROOT / "examples" / "litellm" / "config.yaml").read_text())
    assert config["litellm_settings"]["check_provider_endpoint"] is True
    return config["model_list"]


def test_litellm_wildcard_discovery_and_chats_with_extra_headers(gateway):
    url, seen, log, router = gateway
    entries = litellm_entries()
    routed, wildcard = entries
    assert routed["litellm_params"]["model"] == "openai/irde"
    assert wildcard["model_name"] == "irde/*" and wildcard["litellm_params"]["model"] == "openai/*"
    for entry in entries:
        params = entry["litellm_params"]
        assert params["api_base"].endswith("/v1") and params["api_key"].startswith("os.environ/")
    # the recipe's api_base, on this test's port
    api_base = routed["litellm_params"]["api_base"].replace("http://127.0.0.1:8000", url)
    client = openai.OpenAI(base_url=api_base, api_key=KEY, max_retries=0, timeout=30)
    # wildcard discovery: irde/* lists the gateway's models as irde/<id>
    ids = [m.id for m in client.models.list()]
    assert ids == ["irde", *router.experts]
    # model "irde" (openai/irde): routed, with LiteLLM's extra headers
    raw = client.chat.completions.with_raw_response.create(
        model="irde",
        messages=[{"role": "user", "content": MATH}],
        extra_headers={"X-Request-Id": "litellm-call-1", "x-litellm-trace": "t1"},
    )
    expert = router.route([MATH])[0].expert
    # what LiteLLM keeps as llm_provider-x-irde-expert and friends
    assert raw.headers["x-irde-expert"] == expert
    assert raw.headers["x-irde-decision"] == "routed"
    assert raw.headers["x-request-id"] == "litellm-call-1"
    assert raw.parse().choices[0].message.content == f"answer from llm-{expert}"
    assert seen[-1]["headers"]["x-request-id"] == "litellm-call-1"
    # model "irde/law" (openai/* with the prefix stripped): pinned, streamed with usage
    pinned = next(e for e in router.experts if e != expert)
    with client.chat.completions.with_streaming_response.create(
        model=pinned,
        messages=[{"role": "user", "content": MATH}],
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        assert stream.headers["x-irde-expert"] == pinned
        assert stream.headers["x-irde-decision"] == "pinned"
        chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"answer from llm-{pinned}" and chunks[-1].usage.total_tokens == 4
    # the gateway's access log has the decision under the request id LiteLLM sent
    lines = [line for line in log.read_text().splitlines() if "request_id=litellm-call-1" in line]
    assert len(lines) == 1 and f"expert={expert}" in lines[0] and "decision=routed" in lines[0]

"""README's commands through the real console script ``irde``, as a user runs them: ``irde
demo`` with its default MiniLM encoder, ``irde serve --workers 2`` and ``irde serve
--backends FILE`` (start, route, stop)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from irde_onnx.runtime import Router

from .conftest import DEMO, read_rows
from .process_helpers import server_process
from .serve_helpers import free_port, running

# the console script of this environment (the dev install puts it beside the interpreter)
IRDE = Path(sys.executable).with_name("irde")
PROMPTS = [
    "What is the derivative of x^3 + 2x?",
    "Write a Python function that reverses a linked list.",
    "Is a verbal agreement to sell land enforceable?",
    "请介绍一下唐朝的历史和文化。",
    "A 54-year-old man presents with crushing chest pain.",
]


@pytest.fixture(scope="module")
def irde() -> str:
    assert IRDE.is_file(), f"{IRDE} is missing: install the package (pip install -e .)"
    return str(IRDE)


@pytest.fixture
def router_dir(static_router_dir, tmp_path) -> Path:
    return Path(shutil.copytree(static_router_dir, tmp_path / "router"))


def _expected(router_dir: Path, texts: list[str], top_k: int = 1) -> list[dict]:
    routes = Router.load(router_dir).route(texts, top_k=top_k)
    return json.loads(json.dumps([r.to_dict() for r in routes]))


@pytest.mark.slow
def test_irde_demo_with_the_default_minilm_routes_every_sample(irde, tmp_path):
    """README's first command. Builds one MiniLM int8 router (the demo's own)."""
    out = tmp_path / "demo"
    done = subprocess.run(
        [irde, "demo", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = read_rows(DEMO / "samples.jsonl")
    assert f"\n{len(samples)}/{len(samples)} routed to the expected expert\n" in done.stdout
    assert len(samples) == 15
    router = Router.load(out)
    assert (router.config.encoder, router.config.precision) == ("minilm", "int8")
    routes = router.route([r["text"] for r in samples])
    assert [r.expert for r in routes] == [r["expert"] for r in samples]


def test_irde_serve_with_two_workers(irde, router_dir, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [irde, "serve", str(router_dir), "--port", str(port), "--workers", "2"]
    argv += ["--threads", "1", "--log-level", "warning"]
    with server_process(argv, url, tmp_path / "serve.log") as proc:
        # uvicorn starts its workers with multiprocessing's spawn
        children = [" ".join(p.cmdline()) for p in psutil.Process(proc.pid).children()]
        assert sum("spawn_main" in c for c in children) == 2, children
        # several connections, so both workers are likely to answer; each must route alike
        for i in range(8):
            with httpx.Client(timeout=30) as client:
                text = PROMPTS[i % len(PROMPTS)]
                got = client.post(f"{url}/route", json={"text": text, "top_k": 2})
                assert got.status_code == 200, got.text
                assert got.json() == _expected(router_dir, [text], 2)[0]
        got = httpx.post(f"{url}/route", json={"texts": PROMPTS}, timeout=30)
        assert got.json() == _expected(router_dir, PROMPTS)


def stub_backend(seen: list[dict]) -> Starlette:
    """An OpenAI-compatible backend that answers with the model it was asked for."""

    async def chat(request: Request) -> Response:
        body = await request.json()
        seen.append(body)
        answer = f"answer from {body['model']}"
        return JSONResponse(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_irde_serve_backends_from_the_command_line(irde, router_dir, tmp_path):
    experts = Router.load(router_dir).experts
    text = PROMPTS[1]
    want = _expected(router_dir, [text])[0]["expert"]
    seen: list[dict] = []
    with running(stub_backend(seen)) as backend:
        config = {
            "experts": {e: {"base_url": f"{backend}/v1", "model": f"llm-{e}"} for e in experts},
            "default": {"base_url": f"{backend}/v1", "model": "general"},
        }
        backends = tmp_path / "backends.json"
        backends.write_text(json.dumps(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [irde, "serve", str(router_dir), "--port", str(port), "--backends", str(backends)]
        with server_process(argv + ["--log-level", "warning"], url, tmp_path / "serve.log"):
            request = {
                "model": "irde",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": text},
                ],
            }
            got = httpx.post(f"{url}/v1/chat/completions", json=request, timeout=30)
    assert got.status_code == 200, got.text
    assert got.headers["x-irde-expert"] == want
    assert got.json()["choices"][0]["message"]["content"] == f"answer from llm-{want}"
    # forwarded unchanged except for the model
    assert seen == [{**request, "model": f"llm-{want}"}]

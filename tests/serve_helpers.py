"""Helpers of the server tests: run an ASGI app on 127.0.0.1 in a thread, free ports."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

CHEMISTRY = [
    "Balance the equation for the combustion of methane.",
    "What is the molar mass of sulfuric acid?",
    "Explain why noble gases are unreactive.",
    "How many moles are in 18 grams of water?",
    "What is the pH of a 0.01 M hydrochloric acid solution?",
    "Describe an SN2 reaction mechanism.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, timeout: float = 30.0) -> Iterator[str]:  # noqa: ANN001
    """Serve ``app`` on 127.0.0.1 (a port chosen by the OS) in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", log_config=None, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def openai_stub(seen: list[dict]):  # noqa: ANN201
    """An OpenAI-compatible backend on Starlette: ``seen`` gets each request's body and headers.

    Answers "answer from <model>" (server-sent events when ``stream`` is true, with a usage
    chunk when ``stream_options.include_usage``). Every answer carries the headers a backend
    may send that the gateway must not pass on as they are: ``access-control-allow-origin:
    *`` and its own ``x-request-id``.
    """
    import json

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    backend_headers = {"access-control-allow-origin": "*", "x-request-id": "upstream-1"}

    async def chat(request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        seen.append({"body": body, "headers": dict(request.headers), "size": len(raw)})
        model = body["model"]
        words = ["answer ", "from ", model]
        if body.get("stream"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
                for w in words
            ]
            chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
                chunks.append({"choices": [], "usage": usage})
            base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model}
            events = [f"data: {json.dumps({**base, **c})}\n\n".encode() for c in chunks]
            events.append(b"data: [DONE]\n\n")
            return StreamingResponse(
                iter(events), media_type="text/event-stream", headers=backend_headers
            )
        return JSONResponse(
            chat_completion(model, "".join(words)),
            headers=backend_headers,
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def chat_completion(model: str, content: str) -> dict:
    """The body of a fake backend's non-streamed chat completion."""
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    }

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

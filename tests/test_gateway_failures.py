"""The gateway against backends that misbehave at the socket level (issue 16, points 2 and 3).

A backend that fails after its status line (dies mid-stream, cuts a body short of its
Content-Length, stalls past ``timeout``) must reach the client as a failure: the official
``openai`` client and raw httpx both raise. Headers pass through as HTTP wants them: the
client's Accept-Encoding goes upstream, hop-by-hop headers and those named in Connection
stay behind, Set-Cookie headers stay apart, and date/server appear once.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from irde_onnx.runtime import Router
from irde_onnx.serve import ServeSettings, create_app

from .serve_helpers import running

MATH = "Solve for x: 3x - 7 = 2x + 5."
MESSAGES = [{"role": "user", "content": MATH}]


def http_chunk(data: bytes) -> bytes:
    """One chunk of an HTTP/1.1 chunked body (also used by benchmarks/reliability.py)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse_event(word: str) -> bytes:
    """One server-sent event of a streamed chat completion carrying `word`."""
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


COMPLETION = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "a long and complete answer " * 20},
                "finish_reason": "stop",
            }
        ],
    }
).encode()


class RawBackend:
    """An HTTP/1.1 server on 127.0.0.1 written on sockets, to misbehave exactly as told.

    ``respond(conn, request)`` writes the answer; ``request`` holds the request's header
    lines (lower-cased names) and body. ``release`` ends stalled answers at teardown.
    """

    def __init__(self, respond: Callable[[socket.socket, dict], None]) -> None:
        self.respond = respond
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers: dict[str, list[str]] = {}
            for line in lines:
                key, _, value = line.partition(":")
                headers.setdefault(key.strip().lower(), []).append(value.strip())
            length = int(headers.get("content-length", ["0"])[0])
            while len(body) < length:
                body += conn.recv(65536)
            request = {"headers": headers, "body": json.loads(body or b"{}")}
            self.requests.append(request)
            with contextlib.suppress(OSError):
                self.respond(conn, request)

    def close(self) -> None:
        self.release.set()
        self.sock.close()


@pytest.fixture
def gateway(static_router_dir, tmp_path):
    """gateway(respond, timeout=...) -> (gateway URL, the RawBackend)."""
    experts = Router.load(static_router_dir).experts
    stack = contextlib.ExitStack()

    def start(respond, timeout: float = 5.0):
        backend = RawBackend(respond)
        stack.callback(backend.close)
        config = {
            "experts": {e: {"base_url": backend.url, "model": f"model-{e}"} for e in experts},
            "timeout": timeout,
            "connect_timeout": 1,
        }
        path = tmp_path / f"backends{len(backend.requests)}-{id(backend)}.json"
        path.write_text(json.dumps(config))
        settings = ServeSettings(
            router=str(static_router_dir), backends=str(path), reload_interval=0
        )
        url = stack.enter_context(running(create_app(settings)))
        return url, backend

    with stack:
        yield start


# -- the three ways an answer is cut short --------------------------------------------------------
def dies_after_two_events(conn: socket.socket, request: dict) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
        + http_chunk(sse_event("half "))
        + http_chunk(sse_event("an "))
    )
    conn.shutdown(socket.SHUT_RDWR)


def cut_at_half_length(conn: socket.socket, request: dict) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(COMPLETION) + COMPLETION[: len(COMPLETION) // 2]
    )
    conn.shutdown(socket.SHUT_RDWR)


def stalls_after_two_events(backend_release: threading.Event):
    def respond(conn: socket.socket, request: dict) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            + http_chunk(sse_event("half "))
            + http_chunk(sse_event("an "))
        )
        backend_release.wait(30)  # silent until the test ends: past the gateway's timeout

    return respond


@contextlib.contextmanager
def no_asgi_tracebacks(caplog) -> Iterator[None]:
    with caplog.at_level(logging.WARNING):
        yield
    traced = [r.getMessage() for r in caplog.records if r.exc_info]
    assert traced == [], traced


def failures_counted(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    key = 'irde_errors_total{endpoint="chat_completions",type="backend_failed"} '
    lines = [line for line in text.splitlines() if line.startswith(key)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_stream_cut_after_two_events_raises_in_the_openai_client(gateway, caplog):
    url, _ = gateway(dies_after_two_events)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with no_asgi_tracebacks(caplog):
        stream = client.chat.completions.create(model="irde", messages=MESSAGES, stream=True)
        words = []
        with pytest.raises(openai.APIError) as info:
            for chunk in stream:
                words.append(chunk.choices[0].delta.content)
        assert words == ["half ", "an "]  # what arrived, then the failure
        assert "failed mid-answer" in info.value.message
        assert "incomplete" in info.value.message
    assert failures_counted(url) == 1


def test_stream_cut_after_two_events_raises_in_httpx(gateway):
    url, _ = gateway(dies_after_two_events)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):  # no final chunk: the answer is incomplete
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={"model": "irde", "messages": MESSAGES, "stream": True},
            timeout=10,
        ) as resp:
            assert resp.status_code == 200
            for part in resp.iter_raw():
                received += part
    events = [e for e in received.split(b"\n\n") if e]
    assert len(events) == 3  # the backend's two, then the gateway's error event
    error = json.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["type"] == "api_error" and error["code"] == "backend_failed"
    assert set(error) == {"message", "type", "param", "code"}  # OpenAI's shape


def test_json_body_cut_at_half_its_length_raises(gateway, caplog):
    url, _ = gateway(cut_at_half_length)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with no_asgi_tracebacks(caplog):
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="irde", messages=MESSAGES)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            f"{url}/v1/chat/completions", json={"model": "irde", "messages": MESSAGES}, timeout=10
        )
    assert failures_counted(url) == 2


def test_stream_that_stalls_past_the_timeout_raises(gateway, caplog):
    release = threading.Event()
    url, backend = gateway(stalls_after_two_events(release), timeout=0.5)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=20)
    try:
        with no_asgi_tracebacks(caplog):
            stream = client.chat.completions.create(model="irde", messages=MESSAGES, stream=True)
            words = []
            with pytest.raises(openai.APIError) as info:
                for chunk in stream:
                    words.append(chunk.choices[0].delta.content)
            assert words == ["half ", "an "]
            assert "stalled mid-answer" in info.value.message
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json={"model": "irde", "messages": MESSAGES, "stream": True},
                timeout=20,
            ) as resp:
                for _ in resp.iter_raw():
                    pass
    finally:
        release.set()
    assert failures_counted(url) == 2


def test_a_complete_answer_still_ends_normally(gateway):
    def complete(conn: socket.socket, request: dict) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(COMPLETION) + COMPLETION
        )

    url, _ = gateway(complete)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model="irde", messages=MESSAGES)
    assert answer.choices[0].message.content.startswith("a long and complete answer")
    assert failures_counted(url) == 0


# -- headers ------------------------------------------------------------------------------------
def encodes_if_asked(conn: socket.socket, request: dict) -> None:
    asked = request["headers"].get("accept-encoding", [""])[0]
    body, extra = COMPLETION, b""
    if "gzip" in asked:
        body, extra = gzip.compress(COMPLETION), b"content-encoding: gzip\r\n"
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def test_the_clients_accept_encoding_goes_upstream(gateway):
    url, backend = gateway(encodes_if_asked)
    body = {"model": "irde", "messages": MESSAGES}
    with httpx.Client(timeout=10) as plain:
        del plain.headers["accept-encoding"]  # a client that never asked for gzip (curl)
        resp = plain.post(f"{url}/v1/chat/completions", json=body)
    assert backend.requests[-1]["headers"]["accept-encoding"] == ["identity"]
    assert "content-encoding" not in resp.headers
    assert json.loads(resp.content) == json.loads(COMPLETION)  # readable bytes, not gzip

    with httpx.Client(timeout=10, headers={"accept-encoding": "gzip"}) as asks:
        resp = asks.post(f"{url}/v1/chat/completions", json=body)
    assert backend.requests[-1]["headers"]["accept-encoding"] == ["gzip"]
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.json() == json.loads(COMPLETION)  # httpx decoded what it asked for


def test_hop_by_hop_and_connection_named_headers_stay_behind(gateway):
    def many_headers(conn: socket.socket, request: dict) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"connection: close, x-hop-secret\r\nx-hop-secret: 1\r\n"
            b"keep-alive: timeout=5\r\n"
            b"set-cookie: a=1; Path=/\r\nset-cookie: b=2; Path=/\r\n"
            b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\nserver: stub-backend\r\n"
            b"x-request-id: r1\r\n"
            b"content-length: %d\r\n\r\n" % len(COMPLETION) + COMPLETION
        )

    url, _ = gateway(many_headers)
    resp = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "irde", "messages": MESSAGES}, timeout=10
    )
    assert resp.status_code == 200
    assert "x-hop-secret" not in resp.headers and "keep-alive" not in resp.headers
    assert resp.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert len(resp.headers.get_list("date")) == 1 and "1970" not in resp.headers["date"]
    assert len(resp.headers.get_list("server")) == 1
    # the backend's request id is passed on renamed: x-request-id is the gateway's, one
    assert resp.headers["x-upstream-request-id"] == "r1" and resp.headers["x-irde-expert"]
    assert len(resp.headers.get_list("x-request-id")) == 1 and resp.headers["x-request-id"] != "r1"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_not_forwarded(gateway, constant):
    url, backend = gateway(encodes_if_asked)
    body = f'{{"model": "irde", "messages": {json.dumps(MESSAGES)}, "temperature": {constant}}}'
    resp = httpx.post(
        f"{url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    assert constant.lstrip("-") in resp.json()["error"]["message"]
    assert backend.requests == []

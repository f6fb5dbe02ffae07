"""irde serve under misuse (issue 16): stale expert checks, a broken folder, bad bodies,
clients that leave or trickle, too many connections. One process, real HTTP on 127.0.0.1;
``tests/test_serve_workers.py`` runs the ``--workers 2`` cases."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from irde_onnx.serve import ServeSettings, create_app
from irde_onnx.serve.runner import RunOptions, uvicorn_config

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hardening-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@contextlib.contextmanager
def guarded(app, **options) -> Iterator[str]:
    """Serve ``app`` as ``irde serve`` does (guarded protocol, ``options``) in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(
        app,
        RunOptions(log_level="warning", **options),
        log_config=None,  # leave the test's logging (caplog) as it is
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def router_dir(toy_router):
    return toy_router


@pytest.fixture
def server(router_dir, monkeypatch):
    """server(**options) -> httpx.Client of a guarded server on the toy router."""
    monkeypatch.setenv("IRDE_TOKEN", TOKEN)
    stack = contextlib.ExitStack()

    def start(settings: dict | None = None, **options) -> httpx.Client:
        s = ServeSettings(router=str(router_dir), **{"reload_interval": 0.05, **(settings or {})})
        app = create_app(s)
        start.apps.append(app)
        url = stack.enter_context(guarded(app, **options))
        return stack.enter_context(httpx.Client(base_url=url, timeout=30))

    start.apps = []
    with stack:
        yield start


def metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


def replace(path: Path, data: bytes) -> None:
    """Replace ``path`` in one rename, so a reload never reads it half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def until(check, timeout: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.02)


# -- point 4: existence is checked on the folder, under its lock ------------------------------
def test_parallel_deletes_of_one_name_give_one_200_and_two_404(server, router_dir):
    client = server()
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def delete() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            barrier.wait()
            statuses.append(own.delete("/experts/law", headers=AUTH).status_code)

    threads = [threading.Thread(target=delete) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [200, 404, 404]
    from irde_onnx.runtime import Router

    assert "law" not in Router.load(router_dir).experts


def test_changes_through_a_stale_server_get_409_and_404(server, router_dir):
    """The server never reloads (interval 0): its list is stale, its answers must not be."""
    from irde_onnx.runtime import Router, RouterEditor

    client = server({"reload_interval": 0})
    other = RouterEditor.open(router_dir)
    with other.lock():
        other.add_expert("medicine", ["the patient dose", "a heart symptom"])
        other.save()
    body = {"name": "medicine", "rows": [{"text": "a dose"}]}
    resp = client.post("/experts", json=body, headers=AUTH)
    assert resp.status_code == 409, resp.text
    assert "already exists" in resp.json()["error"]["message"]
    with other.lock():
        other.remove_expert("code")
        other.save()
    resp = client.delete("/experts/code", headers=AUTH)
    assert resp.status_code == 404, resp.text
    assert Router.load(router_dir).experts == ["law", "math", "medicine"]


# -- point 5: a folder that cannot be loaded -------------------------------------------------
def test_a_broken_folder_shows_in_healthz_and_metrics(server, router_dir):
    client = server()
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["stale"] is False
    assert health["reload_error"] is None
    served = health["generation"]
    manifest = (router_dir / "router.json").read_bytes()

    replace(router_dir / "router.json", b"{x\n")  # echo '{x' > R/router.json
    health = until(
        lambda: (h := client.get("/healthz")).json()["status"] == "degraded" and h,
        what="degraded health",
    )
    assert health.status_code == 200  # still routing: a load balancer keeps it (README)
    body = health.json()
    assert body["stale"] is True and body["generation"] == served
    assert "router.json" in body["reload_error"] and "not valid JSON" in body["reload_error"]
    assert body["stale_since"] > 0
    routed = client.post("/route", json={"text": "solve the equation"})
    assert routed.status_code == 200  # the old router keeps serving
    # counted once per broken router.json, although it is retried at every check
    until(lambda: metric(client, "irde_reload_failures_total") == 1.0, what="one failure")
    holder = server.apps[0].state.server.holder
    retries = []
    load = holder._reload_locked
    holder._reload_locked = lambda: retries.append(1) or load()
    until(lambda: len(retries) >= 5, what="five more checks")
    assert metric(client, "irde_reload_failures_total") == 1.0
    assert metric(client, "irde_router_stale") == 1.0

    replace(router_dir / "router.json", b"[]")  # broken another way: a new failure
    until(lambda: metric(client, "irde_reload_failures_total") == 2.0, what="a second failure")
    assert "JSON object" in client.get("/healthz").json()["reload_error"]

    replace(router_dir / "router.json", manifest)  # put back
    health = until(
        lambda: (h := client.get("/healthz").json())["status"] == "ok" and h, what="ok again"
    )
    assert health["stale"] is False and health["reload_error"] is None
    assert health["generation"] == served
    assert metric(client, "irde_router_stale") == 0.0


def test_the_container_healthcheck_fails_on_degraded(server, router_dir):
    """The Dockerfile's HEALTHCHECK command, run against a server: exit 0 ok, 1 degraded."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = re.search(r'CMD python -c "(.+)"\n', dockerfile.split("HEALTHCHECK", 1)[1])
    assert command, "the Dockerfile has no HEALTHCHECK CMD python -c ..."
    client = server()
    code = command.group(1).replace("http://127.0.0.1:8000", str(client.base_url))

    def check() -> int:
        return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode

    assert check() == 0
    replace(router_dir / "router.json", b"{x\n")
    until(lambda: client.get("/healthz").json()["status"] == "degraded")
    assert check() == 1


# -- point 7: bad bodies are 400/422, never a 500 --------------------------------------------
@pytest.mark.parametrize("path", ["/route", "/experts", "/v1/chat/completions"])
def test_deeply_nested_bodies_are_400(server, tmp_path, path):
    backends = tmp_path / "backends.json"
    backends.write_text(
        json.dumps({"default": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}})
    )
    client = server({"backends": str(backends)})
    for body in ("[" * 100_000 + "]" * 100_000, '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        resp = client.post(path, content=body, headers=AUTH)
        assert resp.status_code == 400, resp.text
        assert "nested too deeply" in resp.json()["error"]["message"]
    assert metric(client, 'irde_errors_total{endpoint="route",type="internal_error"}') == 0


def test_a_5000_digit_top_k_is_400(server):
    client = server()
    resp = client.post("/route", content='{"text": "a", "top_k": ' + "9" * 5000 + "}")
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]["message"]
    assert "not valid JSON" in message and len(message) < 400
    resp = client.post("/route", json={"text": "a", "top_k": "9" * 5000})
    assert resp.status_code == 422 and len(resp.json()["error"]["message"]) < 400


def test_a_client_that_leaves_mid_body_is_not_an_error(server):
    client = server()
    port = int(str(client.base_url).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n" + b'{"text": "only part of'
        )
        time.sleep(0.1)  # let the handler start reading the body
    until(lambda: metric(client, 'irde_requests_total{endpoint="route",status="499"}') == 1.0)
    text = client.get("/metrics").text
    assert 'irde_errors_total{endpoint="route"' not in text


# -- point 10: slow clients are cut off ------------------------------------------------------
def _port(client: httpx.Client) -> int:
    return int(str(client.base_url).rsplit(":", 1)[1])


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (reads until EOF, at most ``seconds``)."""
    start = time.monotonic()
    sock.settimeout(seconds)
    while sock.recv(65536):
        pass
    return time.monotonic() - start


def test_partial_headers_are_cut_off_after_the_header_timeout(server):
    client = server(header_timeout=0.5)
    socks = []
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", _port(client)))
        sock.sendall(b"POST /route HTTP/1.1\r\nhost: x\r\n")  # and never the rest
        socks.append(sock)
    try:
        waited = [_closed_within(s, 10) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(w < 5 for w in waited), waited
    # a client that sends its request in time is served, also on a kept-alive connection
    assert client.post("/route", json={"text": "solve x"}).status_code == 200
    assert client.post("/route", json={"text": "solve x"}).status_code == 200


def test_a_trickled_body_is_cut_off_after_the_body_timeout(server):
    client = server(body_timeout=1.0)
    sock = socket.create_connection(("127.0.0.1", _port(client)))
    sock.sendall(
        b"POST /route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 10000\r\n\r\n"
    )
    start = time.monotonic()
    cut = False
    try:
        while time.monotonic() - start < 10:
            sock.sendall(b" ")  # one byte every 50 ms keeps the connection busy, not done
            sock.settimeout(0.05)
            try:
                if sock.recv(65536) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    finally:
        sock.close()
    assert cut, "the trickling client was never cut off"
    assert 0.9 < time.monotonic() - start < 5
    until(lambda: metric(client, 'irde_requests_total{endpoint="route",status="499"}') == 1.0)
    assert client.post("/route", json={"text": "solve x"}).status_code == 200


def test_connections_past_the_limit_get_503(server):
    client = server(max_connections=3, header_timeout=30)
    idle = [socket.create_connection(("127.0.0.1", _port(client))) for _ in range(3)]
    try:
        for s in idle:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # held open, headers unfinished

        def refused() -> bool:
            with httpx.Client(base_url=str(client.base_url), timeout=10) as fresh:
                resp = fresh.get("/healthz")
            return resp.status_code == 503 and resp

        resp = until(refused, what="a 503 past the limit")
        assert "--max-connections" in resp.json()["error"]["message"]
    finally:
        for s in idle:
            s.close()

    def served() -> bool:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as fresh:
            return fresh.get("/healthz").status_code == 200

    until(served, what="service after the idle connections closed")


def test_serve_help_shows_the_bounds(capsys):
    from irde_onnx.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    for flag, default in [
        ("--header-timeout", "default 10"),
        ("--body-timeout", "default 30"),
        ("--keep-alive", "default 5"),
        ("--max-connections", "default 512"),
    ]:
        assert flag in out
        assert default in " ".join(out.split(flag, 2)[-1].split()[:40])


def test_serve_refuses_bad_timeouts(router_dir, capsys):
    from irde_onnx.cli import main

    assert main(["serve", str(router_dir), "--header-timeout", "0"]) == 2
    assert "--header-timeout must be" in capsys.readouterr().err
    assert main(["serve", str(router_dir), "--body-timeout", "nan"]) == 2
    assert "--body-timeout must be" in capsys.readouterr().err

"""``irde serve --workers 2`` as a subprocess (issue 16, points 4 and 5): expert changes
answer from the folder, not from a worker's stale list, and a worker that cannot start
again is respawned with backoff, one line each, while the other keeps serving."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from .serve_helpers import free_port

TOKEN = "workers-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class Serve:
    """A running ``irde serve`` process; its stderr lines are kept with their times."""

    def __init__(self, router: Path, *args: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "IRDE_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "irde_onnx", "serve", str(router), "--port",
             self.url.rsplit(":", 1)[1], "--threads", "1", "--keep-alive", "60", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"irde serve exited:\n{self.stderr}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"irde serve did not start:\n{self.stderr}")

    def pinned_clients(self, n: int = 2, timeout: float = 30) -> dict[int, httpx.Client]:
        """One kept-alive client per worker: {worker pid: client}."""
        clients: dict[int, httpx.Client] = {}
        deadline = time.monotonic() + timeout
        while len(clients) < n:
            assert time.monotonic() < deadline, f"saw workers {list(clients)} only"
            client = httpx.Client(base_url=self.url, timeout=30)
            pid = client.get("/healthz").json()["pid"]
            if pid in clients:
                client.close()
            else:
                clients[pid] = client
        return clients

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def serving(router: Path, *args: str) -> Iterator[Serve]:
    server = Serve(router, *args)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_changes_answer_from_the_folder_not_a_stale_worker(toy_router):
    """Workers never reload (interval 0), so each one's list is stale after the other's
    change; POST of an existing name is 409 and DELETE of a missing one 404, always."""
    with serving(toy_router, "--workers", "2", "--reload-interval", "0") as server:
        (a, b) = server.pinned_clients().values()
        body = {"name": "medicine", "rows": [{"text": "the patient dose"}]}
        for _ in range(3):
            assert a.post("/experts", json=body, headers=AUTH).status_code == 201
            again = b.post("/experts", json=body, headers=AUTH)  # b's list lacks it
            assert again.status_code == 409, again.text
            assert b.delete("/experts/medicine", headers=AUTH).status_code == 200
            gone = a.delete("/experts/medicine", headers=AUTH)  # a's list still has it
            assert gone.status_code == 404, gone.text
            assert "unknown expert" in gone.json()["error"]["message"]
    assert "Traceback" not in server.stderr


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def test_a_worker_that_cannot_start_is_respawned_with_backoff(toy_router):
    manifest = (toy_router / "router.json").read_bytes()
    with serving(toy_router, "--workers", "2", "--reload-interval", "0.2") as server:
        clients = server.pinned_clients()
        (victim, doomed), (survivor, client) = clients.items()
        doomed.close()
        _replace(toy_router / "router.json", b"{x\n")  # echo '{x' > R/router.json
        deadline = time.monotonic() + 20
        while client.get("/healthz").json()["status"] != "degraded":
            assert time.monotonic() < deadline, "the survivor never reported degraded"
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)

        def failures() -> list[tuple[float, str]]:
            return [(t, line) for t, line in server.lines if "could not start" in line]

        deadline = time.monotonic() + 40
        while len(failures()) < 2:
            assert time.monotonic() < deadline, f"no respawns seen:\n{server.stderr}"
            assert client.post("/route", json={"text": "solve x"}).status_code == 200
            time.sleep(0.1)
        (t1, first), (t2, second) = failures()[:2]
        assert "router.json is not valid JSON" in first
        announced = (re.search(r"next start in ([\d.]+) s", x) for x in (first, second))
        delays = [float(m.group(1)) for m in announced]
        assert delays[1] == 2 * delays[0] >= 2  # the wait doubles
        assert t2 - t1 >= delays[0] * 0.9  # and is kept
        assert "Traceback" not in server.stderr
        assert f"worker {victim} exited (signal 9)" in server.stderr
        health = client.get("/healthz").json()
        assert health["pid"] == survivor and health["stale"] is True

        _replace(toy_router / "router.json", manifest)  # fixed: the next attempt starts

        def respawned() -> bool:
            with httpx.Client(base_url=server.url, timeout=10) as fresh:
                h = fresh.get("/healthz").json()
            return h["pid"] not in clients and h["status"] == "ok"

        deadline = time.monotonic() + 60
        while not respawned():
            assert time.monotonic() < deadline, f"no worker came back:\n{server.stderr}"
            time.sleep(0.2)
        assert client.get("/healthz").json()["status"] == "ok"
    assert "Traceback" not in server.stderr

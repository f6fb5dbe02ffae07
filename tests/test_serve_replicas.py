"""Two `irde serve` processes on one folder: an expert added through one is routed by the
other within RELOAD_WITHIN seconds, and no request to the other fails meanwhile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

# httpx and starlette are in the dev extra: a missing one is a broken install, not a skip
import httpx
import starlette  # noqa: F401

from .serve_helpers import CHEMISTRY, free_port

RELOAD_INTERVAL = 0.2
RELOAD_WITHIN = 5.0  # stated time: a change is served by every replica within this


def start_replica(router_dir, port: int, token: str) -> subprocess.Popen:
    env = {**os.environ, "IRDE_TOKEN": token}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irde_onnx",
            "serve",
            str(router_dir),
            "--port",
            str(port),
            "--reload-interval",
            str(RELOAD_INTERVAL),
            "--threads",
            "1",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"irde serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("irde serve did not start in time")


def test_change_through_one_replica_is_routed_by_the_other(static_router_dir, tmp_path):
    router_dir = shutil.copytree(static_router_dir, tmp_path / "router")
    token = "replica-token"
    ports = [free_port(), free_port()]
    procs = [start_replica(router_dir, p, token) for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for proc, url in zip(procs, urls, strict=True):
            wait_ready(proc, url)
        a, b = (httpx.Client(base_url=u, timeout=30) for u in urls)

        failures: list[str] = []
        stop = threading.Event()
        served = [0]

        def keep_routing() -> None:  # traffic on replica b during the swap
            with httpx.Client(base_url=urls[1], timeout=30) as client:
                while not stop.is_set():
                    resp = client.post("/route", json={"text": CHEMISTRY[2]})
                    served[0] += 1
                    if resp.status_code != 200:
                        failures.append(resp.text)

        traffic = threading.Thread(target=keep_routing)
        traffic.start()
        try:
            added = a.post(
                "/experts",
                headers={"authorization": f"Bearer {token}"},
                json={"name": "chemistry", "rows": [{"text": t} for t in CHEMISTRY]},
            )
            assert added.status_code == 201, added.text
            t0 = time.monotonic()
            while "chemistry" not in b.get("/healthz").json()["experts"]:
                assert time.monotonic() - t0 < RELOAD_WITHIN, "replica b missed the change"
                time.sleep(0.02)
            time.sleep(0.3)  # more traffic on the new head
        finally:
            stop.set()
            traffic.join(30)
        assert failures == [] and served[0] > 0
        # b routes with the head a saved: the same scores, chemistry among them
        text = CHEMISTRY[0]
        from_a = a.post("/route", json={"text": text, "top_k": 2}).json()
        from_b = b.post("/route", json={"text": text, "top_k": 2}).json()
        assert "chemistry" in from_b["scores"]
        assert from_b == from_a
        metrics = b.get("/metrics").text
        assert 'irde_head_swaps_total{cause="reload"}' in metrics
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

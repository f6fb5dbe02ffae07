"""Smoke test of the Dockerfile: build, serve a router from a volume, route a prompt.

Skipped, with the reason printed, where no docker engine runs.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from .conftest import ROOT
from .serve_helpers import free_port

IMAGE = "irde-onnx-serve:test"


def _docker_engine() -> str | None:
    """None if a docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return f"no docker engine runs here ({(info.stderr or info.stdout).strip()[:200]})"
    return None


def test_container_serves_a_router(request):
    reason = _docker_engine()
    if reason is not None:
        print(f"skipping the Dockerfile smoke test: {reason}")
        pytest.skip(f"Dockerfile smoke test: {reason}")
    static_router_dir = request.getfixturevalue("static_router_dir")
    build = subprocess.run(
        ["docker", "build", "-t", IMAGE, str(ROOT)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-2000:]
    no_torch = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            IMAGE,
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('ray'))",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert no_torch.stdout.strip() == "None None", no_torch.stderr
    port = free_port()
    name = f"irde-smoke-{port}"
    run = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{port}:8000",
            "-v",
            f"{static_router_dir}:/router:ro",
            # the container listens on 0.0.0.0: irde serve refuses that without a client key
            "-e",
            "IRDE_CLIENT_TOKEN=smoke-key",
            IMAGE,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the container did not become healthy"
            time.sleep(0.5)
        key = {"authorization": "Bearer smoke-key"}
        refused = httpx.post(f"{url}/route", json={"text": "Solve 3x + 5 = 20"}, timeout=30)
        assert refused.status_code == 401
        routed = httpx.post(
            f"{url}/route", json={"text": "Solve 3x + 5 = 20"}, headers=key, timeout=30
        )
        assert routed.status_code == 200
        assert routed.json()["expert"] in httpx.get(f"{url}/healthz").json()["experts"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)

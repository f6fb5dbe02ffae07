"""Helpers of the end-to-end tests: run a command-line server as a process and stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil


def without_checkout(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus PYTHONPATH, so a child imports only what its venv installed."""
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONPATH", None)
    return env


def _session_members(sid: int) -> list[str]:
    """Live processes (zombies aside) of the session ``sid``: what a server left behind."""
    left = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(" ".join(p.info["cmdline"] or [])[:200])
    return left


@contextlib.contextmanager
def server_process(
    argv: list[str], url: str, log: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> Iterator[subprocess.Popen]:
    """Start ``argv`` (a server on ``url``), wait for ``/healthz``; stop it with SIGTERM after
    and check that it exits cleanly and leaves no process of its session (workers) behind.

    The process's output goes to ``log`` (shown when it fails to start or to stop).
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not healthy in {timeout} s:\n{log.read_text()}"
            time.sleep(0.2)
        yield proc
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"did not stop within 30 s of SIGTERM:\n{log.read_text()}"
            ) from None
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM or 0 is a clean stop
        assert code in (0, -signal.SIGTERM), f"exit status {code}:\n{log.read_text()}"
        deadline = time.monotonic() + 10
        while left := _session_members(proc.pid):
            assert time.monotonic() < deadline, f"{left} outlived {argv[0]}:\n{log.read_text()}"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the workers go with it
        proc.wait(timeout=30)

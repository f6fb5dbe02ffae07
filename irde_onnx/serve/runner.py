"""Running ``irde serve``: one process, or ``--workers N`` processes under a supervisor.

The supervisor binds the socket once and starts N worker processes (``spawn``), each of which
loads the router and serves on the shared socket. A worker that dies is replaced. A
replacement that cannot start (the folder is broken on disk, so it has no router to serve)
exits with one line saying why, and the next attempt waits 1, 2, 4 ... up to 30 s, so a
broken folder costs a few log lines a minute instead of a crash loop with tracebacks; the
other workers keep serving the router they hold, and report ``degraded`` on ``/healthz``.
A worker that served for ``STABLE_AFTER`` seconds before it died is replaced at once.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
import multiprocessing
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from socket import socket
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from irde_onnx.errors import IrdeError
from irde_onnx.serve.app import ServeSettings, create_app
from irde_onnx.serve.protocol import guarded_protocol

log = logging.getLogger("irde.serve")

STARTUP_FAILED = 3  # a worker's exit code when it cannot load the router
STABLE_AFTER = 10.0  # seconds: a worker that lived this long before dying had started fine
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


@dataclass
class RunOptions:
    """Where and how ``irde serve`` listens (the app's own settings are ServeSettings)."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    keep_alive: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512


def log_config(level: str) -> dict[str, Any]:
    """Logging of uvicorn, with the ``irde`` loggers (access log, server) beside its own."""
    config = copy.deepcopy(LOGGING_CONFIG)
    irde = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    config["loggers"]["irde"] = irde
    return config


def uvicorn_config(app: Any, options: RunOptions, **extra: Any) -> uvicorn.Config:
    """The uvicorn configuration of ``app``: the guarded protocol and the options' bounds.

    ``extra`` overrides or adds ``uvicorn.Config`` arguments (tests pass ``log_config=None``).
    """
    kwargs: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "http": guarded_protocol(
            options.header_timeout, options.body_timeout, options.max_connections
        ),
        "timeout_keep_alive": options.keep_alive,
        "log_level": options.log_level,
        "log_config": log_config(options.log_level),
    }
    kwargs.update(extra)
    return uvicorn.Config(app, **kwargs)


def serve(settings: ServeSettings, options: RunOptions) -> None:
    """Load the router (errors raise here, before listening), then serve until stopped."""
    app = create_app(settings)
    if options.workers <= 1:
        uvicorn.Server(uvicorn_config(app, options)).run()
        return
    del app  # each worker loads its own; this load only showed errors before listening
    sock = uvicorn_config(None, options).bind_socket()
    try:
        Supervisor(settings, options, sock).run()
    finally:
        sock.close()


def _worker(settings_json: str, options_json: str, sock: socket, report: Connection) -> None:
    """A worker process: load the router, then serve on the shared socket."""
    options = RunOptions(**json.loads(options_json))
    logging.config.dictConfig(log_config(options.log_level))
    try:
        app = create_app(ServeSettings.from_json(settings_json))
    except (IrdeError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.send(message)
        sys.exit(STARTUP_FAILED)
    except KeyboardInterrupt:
        sys.exit(0)
    report.send(None)  # started
    uvicorn.Server(uvicorn_config(app, options)).run(sockets=[sock])


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess | None = None
    report: Connection | None = None
    started: float = 0.0
    failures: int = 0  # consecutive replacements that could not start
    due: float = 0.0  # when the next replacement may start


class Supervisor:
    """Keeps ``options.workers`` worker processes running on one socket."""

    def __init__(self, settings: ServeSettings, options: RunOptions, sock: socket) -> None:
        self.settings = settings
        self.options_json = json.dumps(asdict(options))
        self.sock = sock
        self.slots = [_Slot() for _ in range(options.workers)]
        self.context = multiprocessing.get_context("spawn")
        self.stopping = False

    def _start(self, slot: _Slot) -> None:
        receive, send = self.context.Pipe(duplex=False)
        # each worker explores with its own stream of draws (its slot's, kept by a
        # replacement), so that workers started with one --explore-seed do not draw alike
        number = next(i for i, s in enumerate(self.slots) if s is slot)  # not ==: equal slots
        settings = replace(self.settings, explore_stream=self.settings.explore_stream + number)
        process = self.context.Process(
            target=_worker,
            args=(settings.to_json(), self.options_json, self.sock, send),
            daemon=False,
        )
        process.start()
        send.close()
        slot.process, slot.report, slot.started = process, receive, time.monotonic()

    def _reap(self, slot: _Slot) -> None:
        """A worker ended: say so in one line and set when its replacement starts."""
        process = slot.process
        assert process is not None and slot.report is not None
        lived = time.monotonic() - slot.started
        message = None
        try:
            while slot.report.poll():
                message = slot.report.recv() or message
        except (EOFError, OSError):
            pass
        slot.report.close()
        code = process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
        if code == STARTUP_FAILED or lived < STABLE_AFTER:
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**slot.failures)
            slot.failures += 1
        else:
            delay, slot.failures = 0.0, 0
        slot.due = time.monotonic() + delay
        cause = f"could not start: {message}" if message else f"exited ({how})"
        level = logging.ERROR if message else logging.WARNING
        log.log(level, "worker %s %s; next start in %g s", process.pid, cause, delay)
        slot.process = slot.report = None

    def run(self) -> None:
        """Start the workers and keep them running until SIGINT or SIGTERM."""

        def stop(signum: int, frame: Any) -> None:
            self.stopping = True

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for slot in self.slots:
                self._start(slot)
            log.info("started %d workers", len(self.slots))
            while not self.stopping:
                now = time.monotonic()
                for slot in self.slots:
                    if slot.process is not None and not slot.process.is_alive():
                        slot.process.join()
                        self._reap(slot)
                    if slot.process is None and now >= slot.due and not self.stopping:
                        self._start(slot)
                time.sleep(0.1)
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop_all(self) -> None:
        running = [s.process for s in self.slots if s.process is not None]
        for process in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + 15
        for process in running:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

"""The router a server routes with, reloaded when another process saves the folder."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from irde_onnx.errors import IrdeError
from irde_onnx.runtime import Router

log = logging.getLogger("irde.serve")


class RouterHolder:
    """Holds the current :class:`Router` and replaces it as a whole.

    A request reads :attr:`router` once and uses that object to the end, so a swap never
    changes the head under a running request. :meth:`reload_if_changed` loads the folder anew
    when ``router.json`` is not the generation being served (:meth:`Router.changed_on_disk`:
    a save by another process); :meth:`change` applies an expert change to a fresh copy
    while holding the folder's lock (:meth:`Router.lock`) from reading to saving, then swaps
    it in, or leaves everything as it was when any step fails.

    Args:
        path: the router folder.
        threads: onnxruntime intra-op threads of each loaded router.
        on_swap: called with ``"reload"`` or ``"api"`` after each swap (for metrics).

    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        on_swap: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self._on_swap = on_swap or (lambda cause: None)
        self._lock = threading.Lock()  # serialises loads and changes; routing never takes it
        self.router = Router.load(self.path, threads=threads)
        self.generation = 0

    def _swap(self, router: Router, cause: str) -> None:
        self.router = router  # one reference assignment: requests see the old or the new one
        self.generation += 1
        self._on_swap(cause)

    def _reload_locked(self) -> bool:
        if not self.router.changed_on_disk():
            return False
        try:
            router = Router.load(self.path, threads=self.threads)
        except (IrdeError, OSError) as exc:
            # a broken or vanished folder: keep routing with the router we have and try
            # again at the next check
            log.warning("router folder changed but cannot be loaded: %s", exc)
            return False
        self._swap(router, "reload")
        log.info("reloaded %s: experts %s", self.path, router.experts)
        return True

    def reload_if_changed(self) -> bool:
        """Load the folder anew if ``router.json`` changed since the last load; True if so."""
        if not self.router.changed_on_disk():
            return False
        with self._lock:
            return self._reload_locked()

    def change(self, apply: Callable[[Router], None]) -> Router:
        """Apply ``apply`` (e.g. an expert add) to a fresh load of the folder, save, swap.

        The folder's lock (``.irde.lock``) is held from reading the router to committing the
        save, so a change saved by another process (``irde experts add``, another server) is
        neither overwritten by a stale copy nor interleaved. If ``apply`` or the save raises,
        the served router stays as it was.
        """
        with self._lock:
            router = Router.load(self.path, threads=self.threads)
            with router.lock():  # re-reads the folder if it changed since the load
                apply(router)
                router.save()
            self._swap(router, "api")
            return router

"""The router a server routes with, reloaded when another process saves the folder."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from irde_onnx.config import CONFIG_FILE
from irde_onnx.errors import IrdeError
from irde_onnx.runtime import Router

log = logging.getLogger("irde.serve")

Signature = tuple[int, int, int]


def config_signature(root: Path) -> Signature | None:
    """``(mtime_ns, size, inode)`` of ``router.json``, the file a save replaces last."""
    try:
        st = os.stat(root / CONFIG_FILE)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class RouterHolder:
    """Holds the current :class:`Router` and replaces it as a whole.

    A request reads :attr:`router` once and uses that object to the end, so a swap never
    changes the head under a running request. :meth:`reload_if_changed` loads the folder anew
    when ``router.json`` changed (a save by this or another process); :meth:`change` applies
    an expert change to a fresh copy, saves it and swaps it in, or leaves everything as it
    was when any step fails.

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
        self._signature = config_signature(self.path)
        self.router = Router.load(self.path, threads=threads)
        self.generation = 0

    def _swap(self, router: Router, cause: str) -> None:
        self.router = router  # one reference assignment: requests see the old or the new one
        self.generation += 1
        self._on_swap(cause)

    def _reload_locked(self) -> bool:
        signature = config_signature(self.path)
        if signature is None or signature == self._signature:
            return False
        try:
            router = Router.load(self.path, threads=self.threads)
        except (IrdeError, OSError) as exc:
            # a save still in progress (older folder layouts) or a broken folder: keep
            # routing with the router we have and try again at the next check
            log.warning("router folder changed but cannot be loaded yet: %s", exc)
            return False
        self._signature = signature
        self._swap(router, "reload")
        log.info("reloaded %s: experts %s", self.path, router.experts)
        return True

    def reload_if_changed(self) -> bool:
        """Load the folder anew if ``router.json`` changed since the last load; True if so."""
        if config_signature(self.path) == self._signature:
            return False
        with self._lock:
            return self._reload_locked()

    def change(self, apply: Callable[[Router], None]) -> Router:
        """Apply ``apply`` (e.g. an expert add) to a fresh load of the folder, save, swap.

        Changes saved by other processes are picked up first, so none is overwritten by a
        stale copy. If ``apply`` or the save raises, the served router stays as it was.
        """
        with self._lock:
            self._reload_locked()
            router = Router.load(self.path, threads=self.threads)
            apply(router)
            router.save()
            self._swap(router, "api")
            return router

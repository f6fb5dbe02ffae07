"""LiveRouter: the current router of a folder in a long-lived process, swapped as a whole."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx.arguments import check_texts, check_wtp
from irde_onnx.decision.explore import Exploration, Explorer, utility
from irde_onnx.decision.policy import UNSET
from irde_onnx.errors import InvalidInputError, IrdeError
from irde_onnx.learning.feedback import check_half_life, check_traffic_weight
from irde_onnx.runtime.editor import RouterEditor
from irde_onnx.runtime.router import Route, Router
from irde_onnx.store.folder import manifest_of
from irde_onnx.store.journal import append_journal

log = logging.getLogger("irde.serve")

RETRY_MAX = 30.0  # seconds: longest wait between retries of a folder that fails to load
# Feedback rows journaled since the last save after which :meth:`LiveRouter.feedback` saves a
# generation (folding and truncating the journal), so a load replays at most this many rows.
FEEDBACK_SAVE_ROWS = 256


@dataclass(frozen=True)
class LiveRoute(Route):
    """A route served by :meth:`LiveRouter.route`: the served expert and the greedy one.

    Attributes:
        expert: the expert to serve the prompt: :attr:`greedy`, or another one when the
            exploration setting explored this prompt.
        greedy: the router's own decision (what :meth:`Router.route` gives).
        explored: True when ``expert`` is not ``greedy`` (exploration chose it).
        scores, top, confidence: as :class:`Route`, the router's view (of the greedy pick).

    """

    greedy: str = ""
    explored: bool = False

    def to_dict(self) -> dict[str, Any]:
        """:meth:`Route.to_dict` plus ``"explored"`` and ``"greedy"``."""
        return {**super().to_dict(), "explored": self.explored, "greedy": self.greedy}


def check_exploration(router: Router, setting: Exploration) -> None:
    """Refuse a setting the router cannot serve: the bonus needs its ``uncertainty`` output.

    Raises:
        InvalidInputError: bonus exploration asked of a router whose graph has no
            uncertainty; the message names the folder and the fixes.

    """
    if setting.needs_uncertainty and not getattr(router, "has_uncertainty", False):
        raise InvalidInputError(
            f"exploration {setting} needs the router's per-expert uncertainty, but "
            f"{router.path or 'this router'} has no uncertainty output (written by newer "
            "versions of irde train / irde experts); save it again with such a version, or "
            "explore with eps:RATE instead"
        )


def _live(route: Route, expert: str, explored: bool) -> LiveRoute:
    return LiveRoute(
        expert=expert,
        scores=route.scores,
        top=route.top,
        confidence=route.confidence,
        greedy=route.expert,
        explored=explored,
    )


class LiveRouter:
    """Holds the current :class:`Router` of a folder and replaces it as a whole.

    The one hot-swap mechanism, for the server and any long-lived Python process.
    A request reads :attr:`router` once and uses that object to the end, so a swap never
    changes the head under a running request. :meth:`reload_if_changed` loads the folder anew
    when ``router.json`` is not the generation being served (:meth:`Router.changed_on_disk`:
    a save by another process); :meth:`change` applies a change to a
    :class:`~irde_onnx.runtime.editor.RouterEditor` of a fresh copy while holding the
    folder's lock from reading to saving, then swaps the saved router in, or leaves
    everything as it was when any step fails.

    Args:
        path: the router folder.
        threads: onnxruntime intra-op threads of each loaded router.
        on_swap: called with ``"reload"`` or ``"api"`` after each swap (for metrics).
        on_reload_failure: called once for each new failure to load a changed folder (for
            metrics); the same broken ``router.json`` is retried, but counted and logged once.
        retry_first: seconds before the first retry of a folder that failed to load; the
            wait doubles while the failure stays the same, up to ``RETRY_MAX`` (a broken
            graph is not loaded anew every second); a new ``router.json`` is tried at once.

    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        on_swap: Callable[[str], None] | None = None,
        on_reload_failure: Callable[[], None] | None = None,
        retry_first: float = 1.0,
        exploration: Exploration | Explorer | str | None = None,
        explore_stream: int = 0,
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self._on_swap = on_swap or (lambda cause: None)
        self._on_reload_failure = on_reload_failure or (lambda: None)
        self._lock = threading.Lock()  # serialises loads and changes; routing never takes it
        self.router = Router.load(self.path, threads=threads)
        self.explorer = (
            exploration
            if isinstance(exploration, Explorer)
            else Explorer(exploration, stream=explore_stream)
        )
        check_exploration(self.router, self.explorer.setting)
        if self.explorer.setting.mode == "epsilon":  # the seed, so that a run can be replayed
            log.info(
                "%s: exploring with %s, seed %s (stream %d)",
                self.path,
                self.explorer.setting,
                self.explorer.seed,
                self.explorer.stream,
            )
        elif self.explorer.setting.enabled:
            log.info("%s: exploring with %s", self.path, self.explorer.setting)
        self._no_uncertainty: str | None = None  # the generation last warned about
        self.swaps = 0
        self.reload_error: str | None = None  # why the folder on disk cannot be served
        self.reload_error_at: float | None = None  # time.time() of the first such failure
        self._failed: tuple[bytes | None, str] | None = None
        self._retry_first = retry_first
        self._retry_wait = 0.0
        self._retry_at = 0.0
        self.feedback_save_rows = FEEDBACK_SAVE_ROWS
        self._unsaved = 0  # feedback rows this process journaled since its last save

    @property
    def exploration(self) -> Exploration:
        """The exploration setting of :meth:`route` (``off`` unless one was given)."""
        return self.explorer.setting

    def route(
        self,
        texts: Sequence[str],
        top_k: int = 1,
        batch_size: int | None = None,
        *,
        wtp: float | None = UNSET,
        router: Router | None = None,
    ) -> list[LiveRoute]:
        """Route each text with the served router, then explore as :attr:`exploration` says.

        Args:
            texts: prompts.
            top_k: how many experts to rank by score in ``top``.
            batch_size: prompts per onnxruntime call (default: the router's).
            wtp: this call's willingness to pay, as :meth:`Router.route` (the utility the
                exploration compares uses it too).
            router: route with this router (one the caller read from :attr:`router` and
                keeps to the end of its request); default the one served now.

        Returns:
            One :class:`LiveRoute` per text: ``expert`` to serve, ``greedy`` the router's
            decision, ``explored`` whether they differ. With exploration off, ``expert`` is
            ``greedy`` and everything else is what :meth:`Router.route` returns.

        """
        router = self.router if router is None else router
        texts = check_texts(texts)
        setting = self.explorer.setting
        # the bonus reads the widths from the same session run as the scores
        widths = setting.needs_uncertainty and getattr(router, "has_uncertainty", False)
        routes = router.route(texts, top_k, batch_size, wtp=wtp, with_uncertainty=widths)
        if not setting.enabled or not routes:
            return [_live(r, r.expert, False) for r in routes]
        uncertainty = None
        if setting.needs_uncertainty:
            if not widths:
                # checked at start-up; a generation saved since without the output is served
                # greedy (a warning per generation), never failed request by request
                if self._no_uncertainty != router.generation:
                    self._no_uncertainty = router.generation
                    log.warning(
                        "%s: generation %s has no uncertainty output: %s exploration is off "
                        "until a generation with one is served",
                        self.path,
                        router.generation,
                        setting,
                    )
                return [_live(r, r.expert, False) for r in routes]
        experts = router.experts
        if widths:
            uncertainty = np.array(
                [[r.uncertainty[e] for e in experts] for r in routes],  # type: ignore[index]
                np.float32,
            )
        policy = router.policy
        scores = np.array([[r.scores[e] for e in experts] for r in routes], np.float32)
        greedy = np.array([experts.index(r.expert) for r in routes], np.int64)
        u = utility(
            scores,
            router.config.target,
            costs=policy.cost_vector(experts) if policy.costs is not None else None,
            wtp=policy.wtp if wtp is UNSET else check_wtp(wtp),
            temperature=policy.temperature,
        )
        abstained = None
        if policy.fallback is not None and policy.min_confidence > 0:
            confidence = np.array(
                [np.nan if r.confidence is None else r.confidence for r in routes], np.float32
            )
            abstained = confidence < np.float32(policy.min_confidence)
        choice, explored = self.explorer.choose(u, uncertainty, greedy, abstained)
        return [
            _live(r, experts[int(c)], bool(x))
            for r, c, x in zip(routes, choice, explored, strict=True)
        ]

    @property
    def generation(self) -> str:
        """The served generation: the first 16 hex digits of its ``router.json``'s sha256."""
        return self.router.generation

    @property
    def stale(self) -> bool:
        """True while the folder on disk cannot be loaded, so an older router is served."""
        return self.reload_error is not None

    def _swap(self, router: Router, cause: str) -> None:
        self.router = router  # one reference assignment: requests see the old or the new one
        self.swaps += 1
        self.reload_error = self.reload_error_at = self._failed = None
        self._on_swap(cause)

    def _reload_locked(self) -> bool:
        if not self.router.changed_on_disk():
            self.reload_error = self.reload_error_at = self._failed = None  # put back as served
            return False
        try:
            router = Router.load(self.path, threads=self.threads)
        except (IrdeError, OSError) as exc:
            # a broken or vanished folder: keep routing with the router we have, say so in
            # /healthz, and try again at the next check
            self._failed_to_reload(exc)
            return False
        self._swap(router, "reload")
        log.info("reloaded %s: experts %s", self.path, router.experts)
        return True

    def _failed_to_reload(self, exc: Exception) -> None:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        try:
            on_disk = manifest_of(self.path)
        except (OSError, IrdeError):
            on_disk = None
        if self._failed != (on_disk, message):  # a new failure, not the same one retried
            self._failed = (on_disk, message)
            self._retry_wait = self._retry_first
            self._on_reload_failure()
            log.warning(
                "%s changed on disk but cannot be loaded; still serving generation %s: %s",
                self.path,
                self.generation,
                message,
            )
        else:
            self._retry_wait = min(RETRY_MAX, 2 * self._retry_wait)
        self._retry_at = time.monotonic() + self._retry_wait
        if self.reload_error is None:
            self.reload_error_at = time.time()
        self.reload_error = message

    def _wait_to_retry(self) -> bool:
        """True while the same broken ``router.json`` is waiting for its next retry."""
        if self.reload_error is None or time.monotonic() >= self._retry_at:
            return False
        try:
            on_disk = manifest_of(self.path)
        except (OSError, IrdeError):
            on_disk = None
        return self._failed is not None and on_disk == self._failed[0]

    def reload_if_changed(self) -> bool:
        """Load the folder anew if ``router.json`` changed since the last load; True if so."""
        if not self.router.changed_on_disk() and self.reload_error is None:
            return False
        if self._wait_to_retry():
            return False
        with self._lock:
            return self._reload_locked()

    def change(self, apply: Callable[[RouterEditor], None]) -> Router:
        """Apply ``apply`` (e.g. an expert add) to an editor of a fresh load, save, swap.

        The folder's lock (``.irde.lock``) is held from reading the router to committing the
        save, so a change saved by another process (``irde experts add``, another server) is
        neither overwritten by a stale copy nor interleaved. If ``apply`` or the save raises,
        the served router stays as it was.
        """
        with self._lock:
            editor = RouterEditor.open(self.path, threads=self.threads)
            with editor.lock():  # re-reads the folder if it changed since the load
                apply(editor)
                editor.save()
                router = editor.saved
                assert router is not None
            self._swap(router, "api")
            return router

    def feedback(
        self,
        rows: Sequence[Mapping[str, Any]],
        traffic_weight: float | None = None,
        half_life: float | None = None,
    ) -> tuple[int, Router]:
        """Journal feedback rows durably, then swap in the router with them folded.

        Under the folder's lock: the rows are checked and folded into a copy of the current
        statistics (a bad row raises and nothing changes), appended to the folder's journal
        and fsync'd (so they survive a kill -9 once this returns), and the re-solved router is
        swapped in. Every :attr:`feedback_save_rows` rows a generation is saved, which folds
        the journal into ``stats.npz`` and truncates it. Other processes see the rows when
        :meth:`reload_if_changed` notices the journal grew (a load replays it).

        Returns:
            The journal sequence number of the last row, and the router now served.

        """
        root = self.path
        with self._lock:
            editor = RouterEditor(self.router)
            with editor.lock():  # re-reads the folder if another process changed it
                first = editor.stats.journal_seq + 1
                weight = check_traffic_weight(traffic_weight, editor.stats)
                forget = check_half_life(half_life, editor.stats)
                n = editor.fold_feedback(
                    rows, weight, forget or None, journal_seq=first + len(rows) - 1
                )
                if n == 0:
                    return first - 1, self.router
                size = append_journal(root, [dict(r) for r in rows], first, weight, forget)
                self._unsaved += n
                if self._unsaved >= self.feedback_save_rows:
                    editor.save()
                    router = editor.saved
                    assert router is not None
                    self._unsaved = 0
                else:
                    router = editor.router.with_journal(size)  # the journal as it holds it
            self._swap(router, "feedback")
            return first + n - 1, router

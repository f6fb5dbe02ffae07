"""RouterEditor: every change to a router (experts, statistics, policy), and its save.

Setters check their arguments and update the statistics, head and configuration in memory;
the complete graph (head, policy nodes, the uncertainty output of pooled encoders, metadata)
and its one onnxruntime session are built
when the changed router is first needed (:attr:`RouterEditor.router`, :meth:`save`), so a
batch of changes opens one session.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx.arguments import check_texts
from irde_onnx.decision.policy import (
    UNSET,
    Policy,
    check_costs,
    check_min_confidence,
)
from irde_onnx.errors import InvalidInputError, RouterChangedError
from irde_onnx.learning import feedback
from irde_onnx.learning.gate import GATE_ROWS, GateResult, gate
from irde_onnx.learning.moments import Moments
from irde_onnx.learning.statistics import MAX_TARGET, RouterStats, ShadowRows, bad_target_row
from irde_onnx.learning.uncertainty import SubspaceWidth, subspace_width
from irde_onnx.runtime.router import Router, register_editor, stats_mismatch
from irde_onnx.store.config import RouterConfig, expert_name_problem
from irde_onnx.store.folder import (
    LOCK_TIMEOUT,
    Generation,
    acquire,
    folder_lock,
    manifest_of,
    write_generation,
    write_router,
)
from irde_onnx.store.journal import drop_folded


def _check_scores(scores: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    if isinstance(scores, (str, bytes, Mapping)):
        raise InvalidInputError(f"scores must be a list of numbers, not {type(scores).__name__}")
    try:
        y = np.asarray(scores)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"scores must be numbers: {exc}") from exc
    if y.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"scores must be numbers (int or float), got values of type {y.dtype}"
        )
    y = y.astype(np.float64)
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidInputError(f"got {y.size} scores for {n} texts; give one score per text")
    row = bad_target_row(y)
    if row is not None:
        raise InvalidInputError(
            f"scores[{row}] = {y[row]!r} is not a finite number of magnitude at most {MAX_TARGET:g}"
        )
    return y


def _check_head(w: np.ndarray, b: np.ndarray) -> None:
    """Refuse a head that is not finite once stored as float32, as the graph stores it."""
    with np.errstate(over="ignore", invalid="ignore"):
        ok = (
            np.isfinite(np.asarray(w, np.float32)).all()
            and np.isfinite(np.asarray(b, np.float32)).all()
        )
    if not ok:
        raise InvalidInputError(
            "the re-solved head holds NaN or infinite values (the targets or statistics "
            "overflow); the router is unchanged"
        )


def _check_expert_args(
    name: str, texts: Sequence[str], scores: Sequence[float] | np.ndarray | None
) -> tuple[list[str], np.ndarray | None]:
    """A new expert's name, texts and scores, checked on their own: ``(texts, y or None)``."""
    problem = expert_name_problem(name)
    if problem:
        raise InvalidInputError(f"the expert name {name!r} {problem}")
    texts = check_texts(texts)
    y = None if scores is None else _check_scores(scores, len(texts)).reshape(-1, 1)
    return texts, y


class RouterEditor:
    """Changes to one router, saved as a new generation of its folder (or to another).

    Build with ``RouterEditor(router)`` or ``RouterEditor.open(path)``. Reading attributes
    (``route``, ``scores``, ``experts``, ...) reads :attr:`router`, the router as changed.
    Changes are serialised between threads; between processes, every change takes the
    folder's lock (``.irde.lock``) and first re-reads the router if another process saved
    it; hold :meth:`lock` around a change and its :meth:`save` to make them one step.
    """

    def __init__(self, router: Router) -> None:
        self.saved: Router | None = None  # the router as last saved (same session)
        self._reset(router)
        self._lock = threading.RLock()  # serialises changes
        self._folder_lock = folder_lock(router.path) if router.path is not None else None
        self._lock_pid = os.getpid()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> RouterEditor:
        """An editor of the router in ``path`` (:meth:`Router.load`)."""
        return cls(Router.load(path, threads=threads, providers=providers))

    def _reset(self, router: Router) -> None:
        """Start over from ``router``: no unsaved changes."""
        self._base = router  # the generation the changes start from
        self._router: Router | None = router  # the router as changed; None until needed
        self._config = router.config
        self._stats = router.stats
        self._dense: RouterStats | None = None  # the base router's, until a change
        self._head: tuple[np.ndarray, np.ndarray] | None = router.solved_head
        self._graph: bytes | None = None  # the complete graph of the changes, once built
        # (dense statistics, lam, the uncertainty output's factors from them), once computed
        self._width: tuple[RouterStats, float, SubspaceWidth] | None = None
        self._dirty = False  # changed in memory since read or saved

    # -- what the changes make -------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The router folder a save without a path writes."""
        return self._base.path

    @property
    def config(self) -> RouterConfig:
        """The configuration as changed (``router.json`` of the next save)."""
        return self._config

    @property
    def experts(self) -> list[str]:
        """Expert names in column order, as changed."""
        return list(self._config.experts)

    @property
    def policy(self) -> Policy:
        """The decision settings, as changed."""
        return Policy.from_dict(self._config.policy)

    @property
    def stats(self) -> RouterStats:
        """The statistics, as changed."""
        return self._stats

    @property
    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The head, as changed (the float64 solution once solved)."""
        return self._head if self._head is not None else self._base.head

    @property
    def embedding_table(self) -> np.ndarray | None:
        """The static encoder's embedding table (see :attr:`Router.embedding_table`)."""
        return self._base.embedding_table

    def encode_rows(self, texts: Sequence[str], **kw: Any) -> Any:
        """:meth:`Router.encode_rows` (the encoder does not change with the head)."""
        return self._base.encode_rows(texts, **kw)

    def graph(self) -> bytes:
        """The complete ``router.onnx`` of the changes: head, policy, uncertainty, metadata."""
        if self._graph is None:
            from irde_onnx.decision.nodes import add_policy
            from irde_onnx.graph.metadata import graph_metadata, set_metadata
            from irde_onnx.store.graph_file import parse_graph, replace_head

            cfg = self._config
            model = parse_graph(self._base.graph, str(self.path))
            if self._head is not None:
                replace_head(model, *self._head)
            add_policy(model, cfg.target, Policy.from_dict(cfg.policy), list(cfg.experts))
            if cfg.pooled:
                from irde_onnx.graph.build import add_uncertainty

                add_uncertainty(model, self.uncertainty_width())
            set_metadata(model, graph_metadata(cfg))
            self._graph = model.SerializeToString()
        return self._graph

    def uncertainty_width(self) -> SubspaceWidth:
        """The ``uncertainty`` output's subspace and factors, from the statistics as changed.

        A pure function of the dense statistics and each column's lam (the relative rule),
        recomputed once per batch of changes (a change of the policy alone reuses it).
        Pooled encoders only.
        """
        dense, lam = self._dense_stats(), self._config.lam
        cached = self._width
        if cached is None or cached[0] is not dense or cached[1] != lam:
            width = subspace_width(dense, dense.column_lams(lam))  # each column's own lam
            # the graph's columns are the routing experts': a shadow's factor stays out
            width = replace(width, factors=width.factors[dense.routing])
            cached = self._width = (dense, lam, width)
        return cached[2]

    @property
    def router(self) -> Router:
        """The router as changed: read-only; its session is opened once per batch of changes."""
        router = self._router  # one reference read: routing threads never wait for a change
        if router is not None:
            return router
        with self._lock:
            if self._router is None:
                base = self._base
                gen = replace(base.source, config=self._config, graph=self.graph(), stats=None)
                self._router = Router.open(
                    gen,
                    base.threads,
                    base.providers,
                    tokenizer=base.tokenizer,
                    stats=self._stats,
                    head=self._head,
                    dense=self._dense,
                    table=base.embedding_table,
                )
            return self._router

    def __getattr__(self, name: str) -> Any:
        """Read the changed router's other public attributes (``route``, ``scores``, ...)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.router, name)

    def _dense_stats(self) -> RouterStats:
        if self._dense is None:
            base = self._base
            same = self._stats is base.stats
            self._dense = base.dense_stats() if same else self._stats.project(self.embedding_table)
        return self._dense

    def _changed(self, config: RouterConfig, graph: bool = True) -> None:
        self._config, self._dirty = config, True
        if graph:
            self._graph = self._router = None
        elif self._router is not None:
            self._router = self._router.as_generation(replace(self._router.source, config=config))

    # -- the folder's lock -----------------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = LOCK_TIMEOUT) -> Iterator[RouterEditor]:
        """Hold the router folder's inter-process lock; re-read the router if it changed.

        Use it around a change and its save so that no other process (``irde experts add``,
        another server) can save in between::

            with editor.lock():
                editor.add_expert("chemistry", texts)
                editor.save()

        Raises:
            RouterBusyError: the lock was not free within ``timeout`` seconds.
            RouterChangedError: another process saved the router while this editor holds
                unsaved changes (load it again and repeat the change).

        """
        with self._lock:
            root = self.path
            if root is None:  # in memory: no folder to lock
                yield self
                return
            if self._lock_pid != os.getpid():  # a forked child: a lock of its own
                self._folder_lock, self._lock_pid = folder_lock(root), os.getpid()
            lock = self._folder_lock
            assert lock is not None
            acquire(lock, root, timeout)
            try:
                # with unsaved changes, growth of the feedback journal alone is no conflict:
                # a save drops only the entries its statistics hold and keeps the newer ones
                journal_only = manifest_of(root) == self._base.source.manifest
                if self._base.changed_on_disk() and not (self._dirty and journal_only):
                    if self._dirty:
                        raise RouterChangedError(
                            f"{root} was saved by another process while this router has "
                            "unsaved changes; load it again and repeat the change"
                        )
                    base = self._base
                    self._reset(
                        Router.load(
                            root,
                            base.threads,
                            base.providers,
                            cleanup=False,
                            tokenizer=base.tokenizer,
                        )
                    )
                yield self
            finally:
                lock.release()

    # -- changes ---------------------------------------------------------------------------
    def _apply(
        self,
        stats: RouterStats,
        dense: RouterStats,
        lam: float | None = None,
        policy: Policy | None = None,
    ) -> None:
        """Solve the head and take the new state (checked first: unchanged on an error).

        ``policy`` (default: the current one) must fit the new experts; its calibration is
        folded into the head.
        """
        config = self._config if lam is None else replace(self._config, lam=lam)
        policy = self.policy if policy is None else policy
        routing, experts = stats.routing, stats.routing_experts  # shadows solved, not routing
        policy.check(experts)
        stats.check_finite("the changed statistics")
        w_all, b_all = dense.solve(config.lam)
        _check_head(w_all, b_all)
        w, b = policy.calibrate_head(w_all[:, routing], b_all[routing], experts)
        _check_head(w, b)
        self._stats, self._dense, self._head = stats, dense, (w, b)
        self._changed(
            replace(config.with_experts(experts, stats.routing_modes), policy=policy.to_dict())
        )

    def set_statistics(self, stats: RouterStats, lam: float | None = None) -> None:
        """Replace the statistics (and the penalty), solve the head and swap it in.

        The experts become ``stats.experts``, in their order. This is how a trainer hands
        its statistics to the router it exported; ``save()`` then writes them.

        Args:
            stats: statistics in this router's feature space (see :meth:`encode_rows`).
            lam: the ridge penalty from now on (default: keep ``config.lam``).

        Raises:
            InvalidInputError: no experts, statistics of other features (another
                dimension or fingerprint), or a bad ``lam``. The router is then unchanged.

        """
        for name in stats.experts:
            problem = expert_name_problem(name)
            if problem:
                raise InvalidInputError(f"the expert name {name!r} {problem}")
        with self.lock():
            cfg = self.config
            if stats.n_experts == 0:
                raise InvalidInputError("the statistics have no experts; a router needs one")
            problem = stats_mismatch(stats, cfg, self._base.tokenizer.vocab_size)
            if problem == "features":
                dim = cfg.feature_dim if cfg.pooled else self._base.tokenizer.vocab_size
                kind = "features" if cfg.pooled else "token counts"
                raise InvalidInputError(
                    f"the statistics do not fit this router: it needs {kind} of dimension "
                    f"{dim}; compute them with this router's encode_rows()"
                )
            if problem == "fingerprint":
                raise InvalidInputError(
                    f"the statistics were computed with other features (fingerprint "
                    f"{stats.fingerprint} vs {cfg.fingerprint}); compute them with this router"
                )
            if lam is not None and not (np.isfinite(float(lam)) and float(lam) >= 0):
                raise InvalidInputError(f"lam must be a finite number >= 0, got {lam}")
            stats = stats.copy()
            self._apply(
                stats, stats.project(self.embedding_table), None if lam is None else float(lam)
            )

    def annotate(self, **extra: Any) -> None:
        """Record JSON-ready metadata in ``router.json``'s ``extra`` (written by ``save()``)."""
        with self._lock:
            self._changed(replace(self._config, extra={**self._config.extra, **extra}), False)

    def set_selection(self, selection: dict[str, Any]) -> None:
        """Record how the trainer made its choices (``router.json`` ``selection``)."""
        with self._lock:
            self._changed(replace(self._config, selection=dict(selection)), False)

    def add_expert(
        self,
        name: str,
        texts: Sequence[str],
        scores: Sequence[float] | np.ndarray | None = None,
        *,
        cost: float | None = None,
        progress: bool = False,
        gate: bool | None = None,
    ) -> GateResult | None:
        """Add an expert without retraining; the head is re-solved and swapped in place.

        Args:
            name: the new expert's name.
            texts: without ``scores``: prompts of the expert's domain (its one-hot rows join
                the shared statistics, exactly as if it had been trained with the others).
                With ``scores``: validation prompts the expert was scored on.
            scores: the expert's quality on each text; its column is solved from these
                prompts alone and the other columns stay as they are.
            cost: the new expert's cost per prompt; required when the router has costs.
            progress: report encoding progress on stderr.
            gate: with ``scores``, whether the new column must first pass its gate
                (:mod:`irde_onnx.learning.gate`): if it fails, the expert is added as a
                *shadow* (solved, listed by :attr:`shadow_experts`, not routing) and
                re-gated at each :meth:`save`. ``None`` (default): gate a scored expert
                with fewer rows than ``GATE_ROWS`` (1000) and than the router's columns
                rest on; ``False``: it routes at once (the behaviour before the gate).
                Domain experts and static routers are never gated.

        Returns:
            The gate's figures when the expert was gated (``passed``: it routes), else None.

        Raises:
            InvalidInputError: an invalid or duplicate name, no texts, a score count that
                does not match, NaN, infinite or overflowing scores (beyond 1e12), domain
                texts for a router trained on scores, or ``gate=True`` for domain texts or
                a static router. The router is unchanged when this is raised.

        """
        texts, y = _check_expert_args(name, texts, scores)
        with self.lock():
            name, texts, y = self.check_new_expert(name, texts, scores, cost)
            gated = self.gated(gate, scores is not None, len(texts))
            encoded = self.encode_rows(texts, progress=progress)
            rows = encoded.moments(y)
            result = shadow = None
            if gated:
                ones = np.ones(len(texts))
                result = self._gate(encoded.features, y[:, 0], ones)
                if not result.passed:
                    shadow = ShadowRows(encoded.features.astype(np.float32), y[:, 0], ones, cost)
            self.add_expert_rows(name, rows, scores is None, cost, shadow=shadow)
            return result

    # -- shadow experts (issue 19 point 4) ---------------------------------------------------
    def gated(self, gate: bool | None, scored: bool, n: int) -> bool:
        """Whether a new expert of ``n`` rows goes through its gate (see :meth:`add_expert`).

        Raises InvalidInputError for ``gate=True`` where no gate applies.
        """
        if gate is not None and not isinstance(gate, bool):
            raise InvalidInputError(f"gate must be True, False or None, got {gate!r}")
        if gate is False:
            return False
        why = (
            "domain texts join the pooled rows exactly, as in training"
            if not scored
            else None
            if self.config.pooled
            else "this static router has no per-prompt features to gate on"
        )
        if why is not None:
            if gate:
                raise InvalidInputError(f"the gate applies to experts added with scores: {why}")
            return False
        if gate:
            return True
        stats = self.stats
        rows = max((stats.column_n(k) for k in stats.routing), default=0.0)
        return n < min(GATE_ROWS, rows)

    def _routing_head(self) -> tuple[np.ndarray, np.ndarray]:
        """The routing columns' float64 head (calibrated), solved if the graph's is used."""
        if self._head is not None:
            return self._head
        stats = self._dense_stats()
        w, b = stats.solve(self.config.lam)
        return self.policy.calibrate_head(w[:, stats.routing], b[stats.routing], self.experts)

    def _gate(self, features: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> GateResult:
        w, b = self._routing_head()
        x = np.asarray(features, dtype=np.float64)
        return gate(x, scores, x @ w + b, self.config.lam, weights=weights)

    @property
    def shadow_experts(self) -> list[str]:
        """Experts added as shadows: solved and listed, not routing until their gate passes."""
        return list(self.stats.shadows)

    def shadow_gates(self) -> dict[str, GateResult]:
        """Each shadow expert's gate figures against the router as changed."""
        return {
            name: self._gate(rows.features, rows.scores, rows.weights)
            for name, rows in self.stats.shadows.items()
        }

    def promote_expert(self, name: str) -> None:
        """Let shadow expert ``name`` route now, gate or not: as if added with ``gate=False``."""
        with self.lock():
            rows = self.stats.shadows.get(name)
            if rows is None:
                raise InvalidInputError(
                    f"{name!r} is not a shadow expert; shadow experts: {self.shadow_experts}"
                )
            policy = self.policy.with_expert(name, rows.cost)
            stats, dense = self.stats.copy(), self._dense_stats().copy()
            stats.promote(name)
            dense.promote(name)
            self._apply(stats, dense, policy=policy)

    def regate(self) -> dict[str, GateResult]:
        """Re-check every shadow expert's gate; those that pass route from now on.

        :meth:`save` calls it. Returns the figures of every shadow expert checked.
        """
        with self._lock:
            results = {}
            for name in self.shadow_experts:
                rows = self.stats.shadows[name]
                results[name] = self._gate(rows.features, rows.scores, rows.weights)
                if results[name].passed:
                    self.promote_expert(name)
            return results

    def check_new_expert(
        self,
        name: str,
        texts: Sequence[str],
        scores: Sequence[float] | np.ndarray | None,
        cost: float | None,
    ) -> tuple[str, list[str], np.ndarray]:
        """``add_expert``'s checks, before any encoding: ``(name, texts, targets (n, 1))``."""
        texts, y_given = _check_expert_args(name, texts, scores)
        if name in self.stats.shadows:
            raise InvalidInputError(
                f"expert {name!r} already exists as a shadow expert (not routing yet); remove "
                "it first or choose another name"
            )
        if name in self.experts:
            raise InvalidInputError(
                f"expert {name!r} already exists; remove it first or choose another name "
                f"(experts: {self.experts})"
            )
        if not texts:
            raise InvalidInputError(f"no texts given for expert {name!r}")
        self.policy.with_expert(name, cost)
        if scores is None:
            if self.config.target == "score":
                raise InvalidInputError(
                    "this router was trained on per-expert scores: add the expert with "
                    "scores for its prompts (add_expert(name, texts, scores))"
                )
            return name, texts, np.ones((len(texts), 1))
        assert y_given is not None
        return name, texts, y_given

    def add_expert_rows(
        self,
        name: str,
        rows: Moments,
        pooled: bool,
        cost: float | None,
        *,
        shadow: ShadowRows | None = None,
    ) -> None:
        """Add an expert checked by :meth:`check_new_expert` from its rows' moments.

        With ``shadow`` (its rows), it is added as a shadow expert: solved, not routing.
        """
        with self.lock():
            policy = self.policy.with_expert(name, cost)
            table = self.embedding_table
            stats, dense = self.stats.copy(), self._dense_stats().copy()
            proj = rows.project(table) if table is not None else rows
            mode = "pooled" if pooled else "own"
            stats.append(name, mode, rows, rows.sum_xy[:, 0], rows.sum_y[0], rows.sum_yy[0])
            dense.append(name, mode, proj, proj.sum_xy[:, 0], proj.sum_y[0], proj.sum_yy[0])
            if shadow is not None:
                if pooled:
                    raise InvalidInputError("a shadow expert is added with scores")
                stats.shadows[name], dense.shadows[name] = shadow, shadow.copy()
                policy = self.policy  # its cost joins the policy when it is promoted
            self._apply(stats, dense, policy=policy)

    def add_feedback(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        traffic_weight: float | None = None,
        half_life: float | None = None,
        progress: bool = False,
    ) -> int:
        """Fold feedback rows into the statistics exactly; the head is re-solved and swapped.

        Rows are ``{"text", "expert"}`` (domain routers: the right expert),
        ``{"text", "scores": {expert: score}}`` (any subset of experts) or
        ``{"text", "expert", "outcome"}`` (bandit feedback). Each row changes only the
        columns it informs; the result equals a fresh ridge fit on the training rows
        (weight 1) and the feedback rows (weight ``traffic_weight``). See
        :mod:`irde_onnx.learning.feedback`.

        Args:
            rows: the feedback rows (JSON objects).
            traffic_weight: how many training rows one feedback row weighs; default: the
                weight recorded at the router's first feedback, else 10. A weight other than
                the recorded one is refused.
            half_life: forget feedback: before each row, the earlier feedback rows' weights
                are halved every ``half_life`` rows (training rows stay). Chosen with the
                first feedback and recorded; default: the recorded one, else no forgetting.
            progress: report encoding progress on stderr.

        Returns:
            The number of rows folded.

        Raises:
            InvalidInputError: a bad row (named by its number, with the fix), an unknown
                expert, or a traffic weight other than the recorded one. Nothing changes.

        """
        with self.lock():
            return self.fold_feedback(rows, traffic_weight, half_life, progress=progress)

    def fold_feedback(
        self,
        rows: Iterable[Mapping[str, Any]],
        traffic_weight: float | None = None,
        half_life: float | None = None,
        *,
        journal_seq: int | None = None,
        progress: bool = False,
    ) -> int:
        """:meth:`add_feedback` without taking the folder's lock (its caller holds it).

        ``journal_seq`` records the last journal entry these rows come from.
        """
        with self._lock:
            cfg = self._config
            # shadow experts take feedback too (stats.experts: routing and shadow experts)
            parsed = feedback.parse_rows(
                list(rows), self.stats.experts, self.stats.modes, cfg.target
            )
            weight = feedback.check_traffic_weight(traffic_weight, self.stats)
            forget = feedback.check_half_life(half_life, self.stats)
            if not parsed:
                return 0
            encoded = self.encode_rows([r.text for r in parsed], progress=progress)
            table = self.embedding_table
            stats = self.stats.copy()
            dense = self._dense_stats().copy() if table is not None else None
            if stats.kappa is None:  # saved before kappa: no column's lam moves at this point
                stats.kappa = (dense if dense is not None else stats).set_kappa(cfg.lam)
            feedback.fold(stats, dense, parsed, encoded, weight, table, forget)
            _extend_shadows(stats, parsed, encoded.features, weight)
            if journal_seq is not None:
                stats.journal_seq = journal_seq
                if dense is not None:
                    dense.journal_seq = journal_seq
            self._apply(stats, dense if dense is not None else stats)
            return len(parsed)

    def remove_expert(self, name: str, *, fallback: str | None = None) -> None:
        """Remove an expert: its column, and its rows from the shared statistics.

        The result equals training without it. Raises for an unknown name, the last expert,
        or the router's fallback expert unless ``fallback`` names a new one (the router is
        then unchanged). Its cost and calibration go with it.
        """
        with self.lock():
            experts = self.experts
            if name in self.stats.shadows:  # not routing: no policy entry to drop
                stats, dense = self.stats.copy(), self._dense_stats().copy()
                index = stats.experts.index(name)
                stats.remove(index)
                dense.remove(index)
                self._apply(stats, dense)
                return
            if name not in experts:
                raise InvalidInputError(
                    f"unknown expert {name!r}; experts: {experts}"
                    + (f", shadow experts: {self.shadow_experts}" if self.stats.shadows else "")
                )
            if len(experts) == 1:
                raise InvalidInputError(f"{name!r} is the last expert; a router needs one")
            policy = self.policy.without_expert(name, fallback)
            index = experts.index(name)
            stats, dense = self.stats.copy(), self._dense_stats().copy()
            stats.remove(index)
            dense.remove(index)
            self._apply(stats, dense, policy=policy)

    def set_costs(self, costs: Mapping[str, float] | None) -> None:
        """Set every expert's cost per prompt (e.g. USD), or clear them with None.

        The graph's ``choice`` then weighs quality against cost with the default
        willingness to pay (:meth:`set_policy`); nothing is re-exported.
        """
        self.set_policy(costs=costs)

    def set_policy(
        self,
        *,
        costs: Mapping[str, float] | None = UNSET,
        wtp: float | None = UNSET,
        min_confidence: float = UNSET,
        fallback: str | None = UNSET,
        temperature: float = UNSET,
        calibration: Mapping[str, Sequence[float]] | None = UNSET,
    ) -> None:
        """Change the decision settings; the ones not given stay. Swapped in like a head.

        Args:
            costs: ``{expert: cost per prompt}`` for every expert, or None to clear.
            wtp: the default willingness to pay (cost units per unit of quality), or None
                (quality only).
            min_confidence: below this confidence (0..1) a prompt goes to ``fallback``.
            fallback: the expert for unsure prompts, or None.
            temperature: domain routers: the softmax temperature of the confidence.
            calibration: score routers: ``{expert: [scale, offset]}`` folded into the head.

        Raises:
            InvalidInputError: a bad value, costs that miss an expert, an unknown fallback,
                a threshold without a fallback. The router is then unchanged.

        """
        current = self.policy.to_dict()
        given = {
            "costs": costs,
            "wtp": wtp,
            "min_confidence": min_confidence,
            "fallback": fallback,
            "temperature": temperature,
            "calibration": calibration,
        }
        if costs is not UNSET and costs is not None:
            given["costs"] = check_costs(costs)
        if min_confidence is not UNSET:
            check_min_confidence(min_confidence)
        for key, value in given.items():
            if value is UNSET:
                continue
            if value is None:
                current.pop(key, None)
            else:
                current[key] = dict(value) if isinstance(value, Mapping) else value
        policy = Policy.from_dict(current)
        with self.lock():
            self._apply(self.stats, self._dense_stats(), policy=policy)

    def merge_stats(
        self, other: RouterStats | str | os.PathLike, *, costs: Mapping[str, float] | None = None
    ) -> None:
        """Add statistics computed elsewhere (another shard, same encoder) and re-solve.

        Args:
            other: statistics, a ``stats.npz`` file, or a router directory holding one.
                Their fingerprint must equal this router's (same encoder, tokenizer,
                precision and max_length).
            costs: the cost per prompt of each expert the statistics add, required when
                the router has costs (as ``add_expert``'s ``cost``).

        """
        if isinstance(other, RouterStats):
            other.check_finite("the statistics given")
        else:
            path = Path(other)
            if path.is_dir():
                other = Router.load(path).stats  # the generation its router.json names
            elif path.is_file():
                other = RouterStats.load(path)
            else:
                raise FileNotFoundError(f"statistics not found: {path}")
        with self.lock():
            stats = self.stats.merge(other)
            stats.check_finite("the merged statistics")
            policy = self.policy
            for name in stats.experts:
                if name not in self.experts:
                    policy = policy.with_expert(name, (costs or {}).get(name))
            self._apply(stats, stats.project(self.embedding_table), policy=policy)

    def save(self, path: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
        """Write the router: a new generation of graph and statistics, then ``router.json``.

        The complete graph (head, policy nodes, metadata) and the statistics are written
        under new file names, then ``router.json`` naming them with their sha256 replaces the
        old one with a single rename: a crash at any point leaves the old or the new router,
        never a mix. Files of the old generation are removed afterwards. The encoder's
        ``router.onnx.data`` and ``tokenizer.json`` are never rewritten (they are written once
        when saving to another folder). The folder's lock is held throughout.

        Args:
            path: target directory; default: the router's folder.
            overwrite: allow replacing another router in a non-empty directory (a folder of
                other files is never replaced).

        Returns:
            The directory written; :attr:`saved` is the router as saved there.

        Raises:
            RouterChangedError: saving in place, another process saved the router after
                this one was changed; load it again and repeat the change.

        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise InvalidInputError("this router is not saved yet: give save() a folder")
        buffer = io.BytesIO()
        with self._lock:
            if self.path is not None and target.resolve() == self.path.resolve():
                with self.lock():
                    gen = self._generation(buffer)
                    stats = buffer.getvalue()
                    committed = write_generation(self.path, gen.graph, stats, gen.config)
                    # the new statistics hold the journal up to journal_seq: drop those entries
                    size = drop_folded(self.path, self._stats.journal_seq)
                    self.saved = self._saved_router(gen, committed, self.path).with_journal(size)
                    self._reset(self.saved)
                return self.path
            gen = self._generation(buffer)
            committed = write_router(target, replace(gen, stats=buffer.getvalue()), overwrite)
            self.saved = self._saved_router(gen, committed, target)
            return target

    def _generation(self, stats: io.BytesIO) -> Generation:
        if self._stats.shadows:
            self.regate()  # shadow experts whose gate now passes join the graph
        self._stats.save(stats)
        return replace(self._base.source, config=self._config, graph=self.graph())

    def _saved_router(self, gen: Generation, committed: RouterConfig, root: Path) -> Router:
        """The router as saved in ``root``: the changed router, as that generation."""
        manifest = committed.to_json().encode("utf-8")
        saved = replace(
            gen, config=committed, root=root, manifest=manifest, tokenizer=None, data=None
        )
        if self._router is not None and self._router.graph != gen.graph:
            self._router = None  # the unchanged router read a graph without the policy nodes
        return self.router.as_generation(saved)

    def __repr__(self) -> str:
        return f"RouterEditor({str(self.path)!r}, experts={self.experts})"


def _extend_shadows(
    stats: RouterStats, rows: Sequence[feedback.FeedbackRow], x: np.ndarray | None, weight: float
) -> None:
    """Keep the feedback rows naming shadow experts beside their moments, for their gate."""
    if not stats.shadows or x is None:
        return
    for name in list(stats.shadows):
        idx = [i for i, r in enumerate(rows) if name in r.targets]
        if idx:
            y = np.array([rows[i].targets[name] for i in idx])
            extended = stats.shadows[name].extend(x[idx], y, np.full(len(idx), weight))
            stats.shadows[name] = extended


register_editor(RouterEditor)  # Router.load folds a feedback journal with it

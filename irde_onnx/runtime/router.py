"""The runtime router: load a router directory and route prompts (no torch needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx._progress import Progress
from irde_onnx.arguments import check_texts, check_top_k, check_wtp
from irde_onnx.decision.policy import (
    UNSET,
    Policy,
    check_costs,
    check_min_confidence,
    decide,
)
from irde_onnx.errors import InvalidInputError, RouterChangedError, RouterFormatError
from irde_onnx.graph.rules import check_graph
from irde_onnx.learning.statistics import MAX_TARGET, EncodedRows, RouterStats, bad_target_row
from irde_onnx.runtime.session import open_session, ort  # session.py imports onnxruntime
from irde_onnx.runtime.tokenize import TextTokenizer
from irde_onnx.store.config import (
    CONFIG_FILE,
    DATA_FILE,
    STATIC_TABLE,
    TOKENIZER_FILE,
    RouterConfig,
    check_router_dir,
    expert_name_problem,
    sha256_file,
)
from irde_onnx.store.folder import (
    LOCK_TIMEOUT,
    acquire,
    check_lock_path,
    check_output_folder,
    file_errors,
    folder_lock,
    inside_file,
    try_cleanup,
    verify_generation,
    write_generation,
    write_temporary,
)

DEFAULT_BATCH_SIZE = 32


DECISION_OUTPUTS = ("choice", "confidence")
# Dynamic int8 quantisation computes activation scales over the whole input of a call, so a
# prompt's features would depend on the other prompts (and padding) of its batch: int8
# routers encode one prompt per call unless the caller asks otherwise.
INT8_BATCH_SIZE = 1
ENCODE_CHUNK = 256


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


def _has_decision(session: ort.InferenceSession) -> bool:
    """True when the graph computes ``choice`` and ``confidence`` (saved since irde 0.x)."""
    return {o.name for o in session.get_outputs()} >= set(DECISION_OUTPUTS)


def _check_batch_size(batch_size: object) -> None:
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise InvalidInputError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")


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


def _read_manifest(root: Path) -> bytes | None:
    try:
        return inside_file(root, CONFIG_FILE).read_bytes()
    except FileNotFoundError:
        return None


def _probe(
    session: ort.InferenceSession, tokenizer: TextTokenizer, config: RouterConfig, graph: Path
) -> None:
    """Route one empty prompt: the graph must give one finite score per listed expert."""
    ((_, ids, mask),) = tokenizer.batches([""], 1)
    try:
        out = session.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
    except Exception as exc:  # onnxruntime raises its own exception types
        raise RouterFormatError(f"{graph} cannot route a prompt: {exc}") from exc
    if out.ndim != 2 or out.shape[1] != len(config.experts):
        raise RouterFormatError(
            f"{graph} scores {out.shape[-1]} experts but {graph.parent / CONFIG_FILE} lists "
            f"{len(config.experts)}; the folder mixes two routers: copy it again"
        )
    if not np.isfinite(out).all():
        raise RouterFormatError(
            f"{graph} gives NaN or infinite scores (its head is not finite); every prompt "
            "would go to one expert: retrain the router or restore a good copy"
        )


def stats_mismatch(stats: RouterStats, config: RouterConfig, vocab_size: int) -> str | None:
    """How statistics fail to fit a router, or None when they fit.

    ``"features"``: another dimension or kind (dense features vs token counts);
    ``"fingerprint"``: computed by another encoder. Every caller words its own error (a file
    at load, an argument of ``set_statistics``), but the rule is this one.
    """
    dim = config.feature_dim if config.pooled else vocab_size
    if stats.dim != dim or stats.diagonal == config.pooled:
        return "features"
    if stats.fingerprint and config.fingerprint and stats.fingerprint != config.fingerprint:
        return "fingerprint"
    return None


def _check_stats(
    stats: RouterStats, config: RouterConfig, tokenizer: TextTokenizer, path: Path
) -> None:
    cfg_file = path.parent / CONFIG_FILE
    if stats.experts != list(config.experts) or stats.modes != list(config.expert_modes):
        raise RouterFormatError(
            f"{path} has experts {stats.experts} but {cfg_file} lists {list(config.experts)}"
        )
    problem = stats_mismatch(stats, config, tokenizer.vocab_size)
    if problem == "features":
        dim = config.feature_dim if config.pooled else tokenizer.vocab_size
        raise RouterFormatError(
            f"{path} holds statistics of {stats.dim} features; this {config.encoder} router "
            f"needs {dim}"
        )
    if problem == "fingerprint":
        raise RouterFormatError(
            f"{path} was computed by another encoder (fingerprint {stats.fingerprint}) than "
            f"{cfg_file} names ({config.fingerprint})"
        )


# The static graph is a Gather and a few small MatMuls: splitting that over threads costs
# more than it saves (benchmarks/speed.py: the static router at 2 threads was 79x the
# PyTorch peer, at 1 thread 120x), so it runs on one intra-op thread unless told otherwise.
STATIC_THREADS = 1


def session_threads(config: RouterConfig, threads: int | None) -> int | None:
    """Intra-op threads of a router's session: as given, else 1 for the token-level encoder."""
    if threads is not None or config.pooled:
        return threads
    return STATIC_THREADS


def _open_generation(
    root: Path,
    config: RouterConfig,
    tokenizer: TextTokenizer,
    threads: int | None,
    providers: Sequence[str] | None,
    files: dict[str, bytes],
) -> tuple[ort.InferenceSession, RouterStats]:
    """Open and check the graph and statistics ``config`` names (their verified ``files``)."""
    graph, stats_path = root / config.graph_file, root / config.stats_file
    threads = session_threads(config, threads)
    stats = RouterStats.load(files["stats"], str(stats_path))
    check_graph(
        files["graph"],
        str(graph),
        config.encoder,
        config.feature_dim,
        len(config.experts),
        tokenizer.vocab_size,
    )
    try:
        session = open_session(graph, threads, providers)
    except InvalidInputError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        raise RouterFormatError(f"{graph} cannot be loaded: {exc}") from exc
    outputs = {o.name for o in session.get_outputs()}
    needed = {"scores", "features"} if config.pooled else {"scores"}
    if not needed <= outputs:
        raise RouterFormatError(f"{graph} lacks the output(s) {sorted(needed - outputs)}")
    graph_experts = session.get_modelmeta().custom_metadata_map.get("irde.experts")
    try:
        listed = json.loads(graph_experts) if graph_experts is not None else None
    except ValueError:
        listed = None
    if graph_experts is not None and listed != list(config.experts):
        raise RouterFormatError(
            f"{graph} and {root / CONFIG_FILE} list different experts "
            "(an interrupted copy or save?); save the router again from a good copy"
        )
    _probe(session, tokenizer, config, graph)
    _check_stats(stats, config, tokenizer, stats_path)
    return session, stats


@dataclass(frozen=True)
class Route:
    """The routing decision for one prompt.

    Attributes:
        expert: the decided expert: the highest score unless the router's policy (costs and
            willingness to pay, confidence threshold and fallback) decides otherwise; the
            graph's ``choice``.
        scores: every expert's score, in column order.
        top: the ``top_k`` experts with the best scores, best first.
        confidence: the router's confidence in its pick (the graph's ``confidence``; see
            :mod:`irde_onnx.decision.policy`); None for a graph without decision outputs.

    """

    expert: str
    scores: dict[str, float]
    top: tuple[str, ...]
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"expert", "scores", "top", "confidence"}``."""
        return {
            "expert": self.expert,
            "scores": self.scores,
            "top": list(self.top),
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class _State:
    """What a route call reads; replaced as a whole so readers see one consistent head.

    ``head`` is None while the head is the one stored in the graph file.
    """

    config: RouterConfig
    session: ort.InferenceSession
    head: tuple[np.ndarray, np.ndarray] | None = None


class Router:
    """A loaded router. Build with :meth:`Router.load`; safe to call from many threads.

    Changes (:meth:`add_expert`, :meth:`remove_expert`, :meth:`merge_stats`) swap the head in
    place while other threads keep routing. Between processes, every change takes the
    folder's lock (``.irde.lock``) and first re-reads the router if another process saved it;
    hold :meth:`lock` around a change and its :meth:`save` to make them one step.
    """

    # no return annotation: help(Router) then opens with the class docstring, not a signature
    def __init__(self):  # noqa: ANN204
        """Not a constructor: build a router with ``Router.load(path)``."""
        raise TypeError("a Router is not built with Router(...): use Router.load(path)")

    @classmethod
    def _create(
        cls,
        path: Path,
        state: _State,
        tokenizer: TextTokenizer,
        threads: int | None,
        providers: Sequence[str] | None,
        stats: RouterStats,
        manifest: bytes,
    ) -> Router:
        """The router of a generation :meth:`load` has read (``__init__`` refuses callers)."""
        self = object.__new__(cls)
        self.path = path
        self._state = state
        self._tokenizer = tokenizer
        self._threads = threads
        self._providers = list(providers) if providers else None
        self._stats = stats
        self._dense: RouterStats | None = None  # statistics in feature space (static: projected)
        self._table: np.ndarray | None = None
        self._manifest = manifest  # router.json bytes of the generation this router is based on
        self._dirty = False  # changed in memory since loaded or saved
        self._lock = threading.RLock()  # serialises changes; routing never takes it
        self._folder_lock = folder_lock(path)
        self._lock_pid = os.getpid()
        return self

    @staticmethod
    def _read(
        root: Path,
        tokenizer: TextTokenizer | None,
        threads: int | None,
        providers: Sequence[str] | None,
    ) -> tuple[RouterConfig, bytes, TextTokenizer, ort.InferenceSession, RouterStats]:
        """Read one complete generation; retried when a save replaces it meanwhile."""
        for _ in range(10):
            manifest = _read_manifest(root)
            if manifest is None:
                raise FileNotFoundError(
                    f"{root / CONFIG_FILE} is missing: not an irde router directory"
                )
            config = RouterConfig.from_json(manifest, str(root / CONFIG_FILE))
            try:
                files = verify_generation(root, config)
                if (
                    tokenizer is None
                    or tokenizer.max_length != config.max_length
                    or tokenizer.view != config.view
                ):
                    tokenizer = TextTokenizer(root / TOKENIZER_FILE, config.max_length, config.view)
                session, stats = _open_generation(
                    root, config, tokenizer, threads, providers, files
                )
            except (FileNotFoundError, RouterFormatError):
                if _read_manifest(root) != manifest:
                    continue  # another process committed a new generation: read that one
                raise
            return config, manifest, tokenizer, session, stats
        raise RouterChangedError(f"{root} changes faster than it can be read; try again")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> Router:
        """Load a router directory.

        Reads the generation ``router.json`` names, verifies the recorded sha256 of its graph
        and statistics, checks every array and routes one empty prompt (one finite score per
        expert) before returning. Then removes files of older generations and temporaries of
        interrupted saves, if the folder's lock is free and the folder is writable.

        Args:
            path: directory written by ``irde train`` or ``RouterTrainer.save``.
            threads: onnxruntime intra-op threads; None: the CPU limit of the process's
                cgroup (a container's ``--cpus``) if any, else onnxruntime decides.
            providers: onnxruntime execution providers; CPU by default.

        """
        root = check_router_dir(path)
        check_lock_path(root)
        with file_errors("read the router file"):
            config, manifest, tokenizer, session, stats = cls._read(root, None, threads, providers)
        try_cleanup(root, manifest)
        return cls._create(
            root, _State(config, session), tokenizer, threads, providers, stats, manifest
        )

    @property
    def generation(self) -> str:
        """The generation read or last saved: 16 hex digits of its ``router.json``'s sha256.

        Unsaved changes keep the generation they started from.
        """
        return hashlib.sha256(self._manifest or b"").hexdigest()[:16]

    def changed_on_disk(self) -> bool:
        """True when ``router.json`` on disk is not the generation this router was read from.

        Another process saved the router (or it was replaced); :meth:`reload` reads it.
        """
        return _read_manifest(self.path) != self._manifest

    def reload(self) -> bool:
        """Read the router's folder again if it changed on disk; True if it did.

        The new generation is read and checked beside the current one, then swapped in with
        one reference assignment: routing threads never wait and never see a mix. Changes not
        saved yet are dropped.
        """
        with self._lock:
            if not self.changed_on_disk():
                return False
            self._reload()
            return True

    def _reload(self) -> None:
        config, manifest, tokenizer, session, stats = self._read(
            self.path, self._tokenizer, self._threads, self._providers
        )
        self._tokenizer = tokenizer
        self._stats, self._dense = stats, None
        self._state = _State(config, session)
        self._manifest, self._dirty = manifest, False

    @contextmanager
    def lock(self, timeout: float = LOCK_TIMEOUT) -> Iterator[Router]:
        """Hold the router folder's inter-process lock; re-read the router if it changed.

        Use it around a change and its save so that no other process (``irde experts add``,
        another server) can save in between::

            with router.lock():
                router.add_expert("chemistry", texts)
                router.save()

        Raises:
            RouterBusyError: the lock was not free within ``timeout`` seconds.
            RouterChangedError: another process saved the router while this one holds
                unsaved changes (load it again and repeat the change).

        """
        with self._lock:
            if self._lock_pid != os.getpid():  # a forked child: a lock of its own
                self._folder_lock, self._lock_pid = folder_lock(self.path), os.getpid()
            lock = self._folder_lock
            acquire(lock, self.path, timeout)
            try:
                if self.changed_on_disk():
                    if self._dirty:
                        raise RouterChangedError(
                            f"{self.path} was saved by another process while this router has "
                            "unsaved changes; load it again and repeat the change"
                        )
                    self._reload()
                yield self
            finally:
                lock.release()

    # -- properties -------------------------------------------------------------------------
    @property
    def config(self) -> RouterConfig:
        """The router's configuration (``router.json``)."""
        return self._state.config

    @property
    def experts(self) -> list[str]:
        """Expert names in column order."""
        return list(self._state.config.experts)

    @property
    def policy(self) -> Policy:
        """The decision settings: costs, default wtp, threshold, fallback, calibration."""
        return Policy.from_dict(self._state.config.policy)

    @property
    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The head in use: ``W`` (d, n_experts) and ``b`` (n_experts,).

        After a change this is the float64 solution; otherwise the float32 values stored in
        graph file (reading them needs the onnx package).
        """
        state = self._state
        if state.head is not None:
            return state.head
        from irde_onnx.store.graph_file import read_head

        return read_head(self._graph_path(state))

    @property
    def graph_path(self) -> Path:
        """The ONNX graph file this router runs (any onnxruntime host can open it)."""
        return self.path / self._state.config.graph_file

    @property
    def default_batch_size(self) -> int:
        """Prompts per onnxruntime call when ``batch_size`` is not given (1 for int8)."""
        return INT8_BATCH_SIZE if self._state.config.precision == "int8" else DEFAULT_BATCH_SIZE

    @property
    def tokenizer(self) -> TextTokenizer:
        """The router's tokenizer, with truncation to ``max_length``."""
        return self._tokenizer

    # -- inference --------------------------------------------------------------------------
    def _run(
        self, state: _State, texts: list[str], outputs: list[str], batch_size: int | None
    ) -> list[np.ndarray]:
        _check_batch_size(batch_size)
        if batch_size is None:
            batch_size = INT8_BATCH_SIZE if state.config.precision == "int8" else DEFAULT_BATCH_SIZE
        if len(texts) <= batch_size:  # one call, input order kept: no scatter needed
            ((_, ids, mask),) = self._tokenizer.batches(texts, batch_size)
            return state.session.run(outputs, {"input_ids": ids, "attention_mask": mask})
        results: list[np.ndarray | None] = [None] * len(outputs)
        for idx, ids, mask in self._tokenizer.batches(texts, batch_size):
            got = state.session.run(outputs, {"input_ids": ids, "attention_mask": mask})
            for j, arr in enumerate(got):
                if results[j] is None:
                    results[j] = np.empty((len(texts), *arr.shape[1:]), dtype=arr.dtype)
                results[j][idx] = arr
        return [r if r is not None else np.zeros((0, 0), np.float32) for r in results]

    def scores(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Every expert's score for each text, shape (n_texts, n_experts)."""
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        state = self._state
        if not texts:
            return np.zeros((0, len(state.config.experts)), dtype=np.float32)
        return self._run(state, texts, ["scores"], batch_size)[0]

    def features(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Pooled sentence features of each text, shape (n_texts, d) (pooled encoders only)."""
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        state = self._state
        if not state.config.pooled:
            raise InvalidInputError(
                "the static encoder has no pooled features; use tokenizer.content_ids()"
            )
        if not texts:
            return np.zeros((0, state.config.feature_dim), dtype=np.float32)
        return self._run(state, texts, ["features"], batch_size)[0]

    def route(
        self,
        texts: Sequence[str],
        top_k: int = 1,
        batch_size: int | None = None,
        *,
        wtp: float | None = UNSET,
    ) -> list[Route]:
        """Route each text: the expert the router's policy decides (the graph's ``choice``).

        Args:
            texts: prompts.
            top_k: how many experts to rank by score in ``Route.top`` (1..n_experts).
            batch_size: prompts per onnxruntime call (default :attr:`default_batch_size`).
            wtp: override the router's default willingness to pay for this call (cost units
                per unit of quality; None: quality only). Computed from ``scores`` and the
                costs in ``router.json`` with :func:`irde_onnx.decision.policy.decide`, which gives
                the graph's decision for the same settings.

        Returns:
            One :class:`Route` per text, in input order.

        """
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        state = self._state  # one snapshot: the whole call uses one head
        experts = state.config.experts
        check_top_k(top_k, len(experts))
        if wtp is not UNSET:
            wtp = check_wtp(wtp)
            if wtp is not None and state.config.policy.get("costs") is None:
                raise InvalidInputError(
                    "wtp needs costs: this router has none (set them with set_costs())"
                )
        if not texts:
            return []
        in_graph = wtp is UNSET and _has_decision(state.session)
        outputs = ["scores", *DECISION_OUTPUTS] if in_graph else ["scores"]
        got = self._run(state, texts, outputs, batch_size)
        scores = got[0]
        if in_graph:
            choice, confidence = got[1].reshape(-1), got[2].reshape(-1)
        else:
            choice, confidence = self._decide(state.config, scores, wtp)
        # stable sort on -score: ties go to the lower column, as argmax does in the graph
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return [
            Route(
                expert=experts[int(choice[i])],
                scores={name: float(s) for name, s in zip(experts, scores[i], strict=True)},
                top=tuple(experts[j] for j in order[i]),
                confidence=float(confidence[i]),
            )
            for i in range(len(texts))
        ]

    @staticmethod
    def _decide(
        config: RouterConfig, scores: np.ndarray, wtp: float | None = UNSET
    ) -> tuple[np.ndarray, np.ndarray]:
        """The policy's decision from ``scores``, as the graph computes it."""
        policy = Policy.from_dict(config.policy)
        return decide(
            scores,
            config.target,
            costs=policy.cost_vector(config.experts) if policy.costs is not None else None,
            wtp=policy.wtp if wtp is UNSET else wtp,
            temperature=policy.temperature,
            min_confidence=policy.min_confidence,
            fallback=None if policy.fallback is None else config.experts.index(policy.fallback),
        )

    def decide(
        self, scores: np.ndarray, wtp: float | None = UNSET
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(choice, confidence)`` for ``scores`` (n, n_experts) of this router.

        ``wtp`` overrides the default willingness to pay (None: quality only). Equals the
        graph's ``choice`` and ``confidence`` for the same settings.
        """
        if wtp is not UNSET:
            wtp = check_wtp(wtp)
        scores = np.asarray(scores, np.float32)
        config = self.config
        if scores.ndim != 2 or scores.shape[1] != len(config.experts):
            raise InvalidInputError(
                f"scores must have shape (n, {len(config.experts)}), got {scores.shape}"
            )
        return self._decide(config, scores, wtp)

    # -- statistics -------------------------------------------------------------------------
    @property
    def stats(self) -> RouterStats:
        """The float64 sufficient statistics (read and checked with the router)."""
        return self._stats

    def _graph_path(self, state: _State) -> Path:
        """The graph file of this router's generation; gone if another process saved since."""
        path = self.path / state.config.graph_file
        if not path.is_file() and self.changed_on_disk():
            raise RouterChangedError(
                f"{path} was replaced by a newer save of {self.path} (another process); "
                "call reload() or load the router again"
            )
        return path

    @property
    def embedding_table(self) -> np.ndarray | None:
        """The token-level encoder's embedding table (vocab, d) as stored; None if pooled.

        Token-count statistics are projected through it when the head is solved.
        """
        if self.config.pooled:
            return None
        if self._table is None:
            from irde_onnx.store.graph_file import read_initializer

            self._table = read_initializer(self._graph_path(self._state), STATIC_TABLE)
        return self._table

    def _dense_stats(self) -> RouterStats:
        """Statistics in feature space, cached (projecting token counts is the slow part)."""
        if self._dense is None:
            self._dense = self.stats.project(self.embedding_table)
        return self._dense

    def encode_rows(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> EncodedRows:
        """Encode ``texts`` once as rows of this router's statistics.

        Pooled encoders: the graph's ``features`` of each prompt; the static encoder: the
        content token ids of each prompt. ``encode_rows(texts).moments(y)`` gives the
        statistics a trainer, ``add_expert`` or another shard adds.
        """
        texts = check_texts(texts)
        if not self.config.pooled:
            return EncodedRows(None, self._tokenizer.content_ids(texts), self._tokenizer.vocab_size)
        feats = np.empty((len(texts), self.config.feature_dim), dtype=np.float32)
        with Progress(len(texts), "encoding", progress) as bar:
            for start in range(0, len(texts), ENCODE_CHUNK):
                chunk = texts[start : start + ENCODE_CHUNK]
                feats[start : start + len(chunk)] = self.features(chunk, batch_size)
                bar.update(len(chunk))
        return EncodedRows(feats, None, self.config.feature_dim)

    def _apply(
        self,
        stats: RouterStats,
        dense: RouterStats,
        lam: float | None = None,
        policy: Policy | None = None,
    ) -> None:
        """Solve the head, open a session with it beside the current one, then swap.

        ``policy`` (default: the current one) must fit the new experts; its calibration is
        folded into the head and its settings replace the graph's policy initializers.
        """
        config = self.config if lam is None else replace(self.config, lam=lam)
        policy = self.policy if policy is None else policy
        policy.check(stats.experts)
        stats.check_finite("the changed statistics")
        w, b = policy.calibrate_head(*dense.solve(config.lam), stats.experts)
        _check_head(w, b)
        new_config = replace(
            config.with_experts(stats.experts, stats.modes), policy=policy.to_dict()
        )
        extra = (
            policy.initializers(list(stats.experts), config.target)
            if _has_decision(self._state.session)
            else None
        )
        session = open_session(
            self.path / config.graph_file,
            session_threads(config, self._threads),
            self._providers,
            head=(w, b),
            initializers=extra,
        )
        self._stats, self._dense = stats, dense
        self._state = _State(new_config, session, (w, b))  # one atomic reference swap
        self._dirty = True

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
            problem = stats_mismatch(stats, cfg, self._tokenizer.vocab_size)
            if problem == "features":
                dim = cfg.feature_dim if cfg.pooled else self._tokenizer.vocab_size
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
            state = self._state
            config = replace(state.config, extra={**state.config.extra, **extra})
            self._state = replace(state, config=config)
            self._dirty = True

    def set_selection(self, selection: dict[str, Any]) -> None:
        """Record how the trainer made its choices (``router.json`` ``selection``)."""
        with self._lock:
            state = self._state
            self._state = replace(state, config=replace(state.config, selection=dict(selection)))
            self._dirty = True

    def add_expert(
        self,
        name: str,
        texts: Sequence[str],
        scores: Sequence[float] | np.ndarray | None = None,
        *,
        cost: float | None = None,
        progress: bool = False,
    ) -> None:
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

        Raises:
            InvalidInputError: an invalid or duplicate name, no texts, a score count that
                does not match, NaN, infinite or overflowing scores (beyond 1e12), or domain
                texts for a router trained on scores. The router is unchanged when this is
                raised.

        """
        problem = expert_name_problem(name)
        if problem:
            raise InvalidInputError(f"the expert name {name!r} {problem}")
        texts = check_texts(texts)
        if scores is not None:
            y_given = _check_scores(scores, len(texts)).reshape(-1, 1)
        with self.lock():
            if name in self.experts:
                raise InvalidInputError(
                    f"expert {name!r} already exists; remove it first or choose another name "
                    f"(experts: {self.experts})"
                )
            if not texts:
                raise InvalidInputError(f"no texts given for expert {name!r}")
            policy = self.policy.with_expert(name, cost)
            if scores is None:
                if self.config.target == "score":
                    raise InvalidInputError(
                        "this router was trained on per-expert scores: add the expert with "
                        "scores for its prompts (add_expert(name, texts, scores))"
                    )
                y = np.ones((len(texts), 1))
            else:
                y = y_given
            rows = self.encode_rows(texts, progress=progress).moments(y)
            table = self.embedding_table
            stats, dense = self.stats.copy(), self._dense_stats().copy()
            proj = rows.project(table) if table is not None else rows
            mode = "pooled" if scores is None else "own"
            stats.append(name, mode, rows, rows.sum_xy[:, 0], rows.sum_y[0], rows.sum_yy[0])
            dense.append(name, mode, proj, proj.sum_xy[:, 0], proj.sum_y[0], proj.sum_yy[0])
            self._apply(stats, dense, policy=policy)

    def remove_expert(self, name: str, *, fallback: str | None = None) -> None:
        """Remove an expert: its column, and its rows from the shared statistics.

        The result equals training without it. Raises for an unknown name, the last expert,
        or the router's fallback expert unless ``fallback`` names a new one (the router is
        then unchanged). Its cost and calibration go with it.
        """
        with self.lock():
            experts = self.experts
            if name not in experts:
                raise InvalidInputError(f"unknown expert {name!r}; experts: {experts}")
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

        The graph (with the current head) and the statistics are written under new file
        names, then ``router.json`` naming them with their sha256 replaces the old one with a
        single rename: a crash at any point leaves the old or the new router, never a mix.
        Files of the old generation are removed afterwards. The encoder's
        ``router.onnx.data`` and ``tokenizer.json`` are never rewritten (they are copied once
        when saving to another folder). The folder's lock is held throughout.

        Args:
            path: target directory; default: where the router was loaded from.
            overwrite: allow replacing another router in a non-empty directory (a folder of
                other files is never replaced).

        Returns:
            The directory written.

        Raises:
            RouterChangedError: saving in place, another process saved the router after
                this one was changed; load it again and repeat the change.

        """
        target = Path(path) if path is not None else self.path
        if target.resolve() == self.path.resolve():
            with self.lock():
                committed = self._write(self.path)
                self._state = replace(self._state, config=committed)
                self._manifest, self._dirty = committed.to_json().encode("utf-8"), False
            return self.path
        with self._lock:
            check_output_folder(target, overwrite)
            with file_errors("save the router to"):
                target.mkdir(parents=True, exist_ok=True)
            lock = folder_lock(target)
            acquire(lock, target)
            try:
                with file_errors("save the router to"):
                    self._copy_fixed_files(target)
                self._write(target, fresh=not (target / CONFIG_FILE).is_file())
            finally:
                lock.release()
        return target

    def _copy_fixed_files(self, target: Path) -> None:
        """Give ``target`` this router's tokenizer and encoder data (copied once)."""
        same = all(
            (target / n).is_file() and sha256_file(target / n) == sha256_file(self.path / n)
            for n in (TOKENIZER_FILE, DATA_FILE)
        )
        if same:
            return
        # another router lives there: it stops being one until the new router.json lands
        (target / CONFIG_FILE).unlink(missing_ok=True)
        for name in (TOKENIZER_FILE, DATA_FILE):
            tmp = write_temporary(target, name, b"")
            shutil.copyfile(self.path / name, tmp)
            os.replace(tmp, target / name)

    def _write(self, target: Path, fresh: bool = False) -> RouterConfig:
        from irde_onnx.graph.metadata import graph_metadata, set_metadata
        from irde_onnx.store.graph_file import load_graph_proto, replace_head

        state = self._state
        model = load_graph_proto(self._graph_path(state))
        if state.head is not None:
            replace_head(model, *state.head)
        from irde_onnx.decision.nodes import add_policy

        add_policy(
            model,
            state.config.target,
            Policy.from_dict(state.config.policy),
            list(state.config.experts),
        )
        set_metadata(model, graph_metadata(state.config))
        buffer = io.BytesIO()
        self._stats.save(buffer)
        return write_generation(
            target, model.SerializeToString(), buffer.getvalue(), state.config, fresh
        )

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"Router({str(self.path)!r}, encoder={cfg.encoder}, precision={cfg.precision}, "
            f"experts={list(cfg.experts)})"
        )

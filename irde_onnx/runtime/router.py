"""The runtime router: a loaded router generation that routes prompts (no torch needed).

A :class:`Router` never changes: changes are made by :class:`~irde_onnx.runtime.editor.
RouterEditor`, which gives a new Router; :class:`~irde_onnx.runtime.live.LiveRouter` swaps
Routers in long-lived processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from irde_onnx._progress import Progress
from irde_onnx.arguments import check_texts, check_top_k, check_wtp
from irde_onnx.decision.policy import UNSET, Policy, decide
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.graph.rules import check_graph
from irde_onnx.learning.statistics import EncodedRows, RouterStats
from irde_onnx.learning.uncertainty import UNCERTAINTY_OUTPUT
from irde_onnx.runtime.session import open_session, ort  # session.py imports onnxruntime
from irde_onnx.runtime.tokenize import TextTokenizer
from irde_onnx.store.config import STATIC_TABLE, RouterConfig, check_router_dir
from irde_onnx.store.folder import (
    Generation,
    check_lock_path,
    file_errors,
    manifest_of,
    read_generation,
    try_cleanup,
)
from irde_onnx.store.journal import journal_path, journal_size, read_journal

DEFAULT_BATCH_SIZE = 32
DECISION_OUTPUTS = ("choice", "confidence")
# Dynamic int8 quantisation computes activation scales over the whole input of a call, so a
# prompt's features would depend on the other prompts (and padding) of its batch: int8
# routers encode one prompt per call unless the caller asks otherwise.
INT8_BATCH_SIZE = 1
ENCODE_CHUNK = 256
# The static graph is a Gather and a few small MatMuls: splitting that over threads costs
# more than it saves (benchmarks/speed.py: the static router at 2 threads was 79x the
# PyTorch peer, at 1 thread 120x), so it runs on one intra-op thread unless told otherwise.
STATIC_THREADS = 1


# Folding the feedback journal at load is a change, made by RouterEditor, which imports this
# module: the editor registers its class here when it is imported (irde_onnx.runtime's
# __init__ imports it, so it is there whenever a Router exists) instead of an import cycle.
_editor_class: Any = None


def register_editor(editor_class: Any) -> None:
    """Called by :mod:`irde_onnx.runtime.editor`: the class that folds a journal at load."""
    global _editor_class
    _editor_class = editor_class


def _check_batch_size(batch_size: object) -> None:
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise InvalidInputError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")


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


def _check_stats(stats: RouterStats, gen: Generation, tokenizer: TextTokenizer) -> None:
    config, path, cfg_file = gen.config, gen.where("stats"), gen.where("config")
    # shadow experts (not routing yet) live in the statistics only, not in router.json
    experts, modes = stats.routing_experts, stats.routing_modes
    if experts != list(config.experts) or modes != list(config.expert_modes):
        raise RouterFormatError(
            f"{path} has experts {experts} but {cfg_file} lists {list(config.experts)}"
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


def _check_session(session: ort.InferenceSession, gen: Generation, tok: TextTokenizer) -> None:
    """Check the graph's outputs and experts against ``router.json``.

    It must route one empty prompt to one finite score per listed expert.
    """
    config, graph = gen.config, gen.where()
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
            f"{graph} and {gen.where('config')} list different experts "
            "(an interrupted copy or save?); save the router again from a good copy"
        )
    ((_, ids, mask),) = tok.batches([""], 1)
    probe = ["scores", UNCERTAINTY_OUTPUT] if UNCERTAINTY_OUTPUT in outputs else ["scores"]
    try:
        got = session.run(probe, {"input_ids": ids, "attention_mask": mask})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise RouterFormatError(f"{graph} cannot route a prompt: {exc}") from exc
    for name, out in zip(probe, got, strict=True):
        if out.ndim != 2 or out.shape[1] != len(config.experts):
            raise RouterFormatError(
                f"{graph} gives {name} of {out.shape[-1]} experts but {gen.where('config')} "
                f"lists {len(config.experts)}; the folder mixes two routers: copy it again"
            )
    out = got[0]
    if not np.isfinite(out).all():
        raise RouterFormatError(
            f"{graph} gives NaN or infinite scores (its head is not finite); every prompt "
            "would go to one expert: retrain the router or restore a good copy"
        )


def session_threads(config: RouterConfig, threads: int | None) -> int | None:
    """Intra-op threads of a router's session: as given, else 1 for the token-level encoder."""
    if threads is not None or config.pooled:
        return threads
    return STATIC_THREADS


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
        uncertainty: every expert's uncertainty (:meth:`Router.uncertainty`) when asked for
            with ``route(..., with_uncertainty=True)``; else None.

    """

    expert: str
    scores: dict[str, float]
    top: tuple[str, ...]
    confidence: float | None = None
    uncertainty: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"expert", "scores", "top", "confidence"}``.

        ``"uncertainty"`` too when it was asked for (``route(..., with_uncertainty=True)``).
        """
        out: dict[str, Any] = {
            "expert": self.expert,
            "scores": self.scores,
            "top": list(self.top),
            "confidence": self.confidence,
        }
        if self.uncertainty is not None:
            out["uncertainty"] = self.uncertainty
        return out


class Router:
    """A loaded router. Read-only: safe to call from many threads.

    Build with :meth:`Router.load`. Change a router with
    :class:`~irde_onnx.runtime.editor.RouterEditor`; in a long-lived process, serve the
    latest saved generation with :class:`~irde_onnx.runtime.live.LiveRouter`.
    """

    # no return annotation: help(Router) then opens with the class docstring, not a signature
    def __init__(self):  # noqa: ANN204
        """Not a constructor: build a router with ``Router.load(path)``."""
        raise TypeError("a Router is not built with Router(...): use Router.load(path)")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        *,
        cleanup: bool = True,
        tokenizer: TextTokenizer | None = None,
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
            cleanup: remove older generations' files (False while the caller holds the
                folder's lock, as :class:`~irde_onnx.runtime.editor.RouterEditor` does).
            tokenizer: a tokenizer of this folder already read, reused when it fits.

        """
        root = check_router_dir(path)
        check_lock_path(root)
        with file_errors("read the router file"):
            router = read_generation(
                root, lambda gen: cls.open(gen, threads, providers, tokenizer=tokenizer)
            )
        if cleanup:
            assert router.source.manifest is not None
            try_cleanup(root, router.source.manifest)
        return router._replay_journal(root)

    # bytes of the folder's feedback journal this router holds (None: not read from a folder)
    _journal: int | None = None

    def _replay_journal(self, root: Path) -> Router:
        """Fold the journal's entries after the statistics' ``journal_seq`` (see store.journal)."""
        entries, size = read_journal(root, self.stats.journal_seq)
        if not entries:
            self._journal = size
            return self
        if _editor_class is None:  # pragma: no cover - irde_onnx.runtime imports the editor
            raise RuntimeError("import irde_onnx.runtime to fold a router's feedback journal")
        editor = _editor_class(self)
        start = 0
        while start < len(entries):  # runs of one weight and half-life (one per router)
            key = entries[start][1], entries[start][3]
            end = start
            while end < len(entries) and (entries[end][1], entries[end][3]) == key:
                end += 1
            try:
                editor.fold_feedback(
                    [e[2] for e in entries[start:end]],
                    key[0],
                    key[1] or None,
                    journal_seq=entries[end - 1][0],
                )
            except InvalidInputError as exc:
                raise RouterFormatError(
                    f"{journal_path(root)}: the entries from seq {entries[start][0]} cannot be "
                    f"folded: {exc}; remove those lines (or the file, dropping unsaved feedback)"
                ) from exc
            start = end
        return editor.router.with_journal(size)

    def with_journal(self, size: int | None) -> Router:
        """The same router, holding the folder's feedback journal of ``size`` bytes."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._journal = size
        return twin

    def journal_changed(self) -> bool:
        """True when the folder's feedback journal is not the one this router replayed."""
        if self._gen.root is None or self._journal is None:
            return False
        return journal_size(self._gen.root) != self._journal

    @classmethod
    def open(
        cls,
        gen: Generation,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        *,
        tokenizer: TextTokenizer | None = None,
        stats: RouterStats | None = None,
        head: tuple[np.ndarray, np.ndarray] | None = None,
        dense: RouterStats | None = None,
        table: np.ndarray | None = None,
    ) -> Router:
        """Check ``gen`` (read by the store or built in memory) and open its one session.

        ``stats`` (default: read from ``gen``) and ``head`` (the float64 solution the graph
        stores as float32; default: the graph's) are taken as given, as are ``dense`` (the
        statistics in feature space) and ``table`` (the static encoder's embedding table)
        when a caller already has them.
        """
        config = gen.config
        if tokenizer is None or (tokenizer.max_length, tokenizer.view) != (
            config.max_length,
            config.view,
        ):
            tokenizer = TextTokenizer(gen.tokenizer_source, config.max_length, config.view)
        if stats is None:
            assert gen.stats is not None
            stats = RouterStats.load(gen.stats, gen.where("stats"))
        check_graph(
            gen.graph,
            gen.where(),
            config.encoder,
            config.feature_dim,
            len(config.experts),
            tokenizer.vocab_size,
        )
        on_disk = gen.root is not None and gen.manifest is not None and gen.stats is not None
        try:
            session = open_session(
                gen.root / config.graph_file if on_disk else gen.graph,  # type: ignore[operator]
                session_threads(config, threads),
                providers,
                external=None if on_disk else gen.external,
            )
        except InvalidInputError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise RouterFormatError(f"{gen.where()} cannot be loaded: {exc}") from exc
        _check_session(session, gen, tokenizer)
        _check_stats(stats, gen, tokenizer)
        self = object.__new__(cls)
        self._gen, self._session, self._tokenizer, self._stats = gen, session, tokenizer, stats
        self._head, self._threads = head, threads
        self._providers = list(providers) if providers else None
        self._decides = {o.name for o in session.get_outputs()} >= set(DECISION_OUTPUTS)
        self._has_uncertainty = any(o.name == UNCERTAINTY_OUTPUT for o in session.get_outputs())
        self._dense = dense  # statistics in feature space (static: projected), once computed
        self._table = table
        return self

    def as_generation(self, gen: Generation) -> Router:
        """The same router as the generation ``gen`` (same graph, same session), e.g. once saved."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._gen = gen
        return twin

    @property
    def source(self) -> Generation:
        """The generation this router runs: read from its folder or built in memory."""
        return self._gen

    @property
    def threads(self) -> int | None:
        """The onnxruntime intra-op threads asked for at load (None: the default)."""
        return self._threads

    @property
    def providers(self) -> list[str] | None:
        """The onnxruntime execution providers asked for at load (None: CPU)."""
        return self._providers

    @property
    def solved_head(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The float64 head a change solved, or None when the graph's stored head is used."""
        return self._head

    # -- properties -------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The router folder; None for a router built in memory and not saved yet."""
        return self._gen.root

    @property
    def generation(self) -> str:
        """The generation read or saved: 16 hex digits of its ``router.json``'s sha256.

        A changed router not saved yet keeps the generation it started from.
        """
        return hashlib.sha256(self._gen.manifest or b"").hexdigest()[:16]

    def changed_on_disk(self) -> bool:
        """True when ``router.json`` on disk is not the generation this router was read from.

        Also true when the feedback journal grew or was folded since this router read it.

        Another process saved the router (or it was replaced): load it again
        (:class:`~irde_onnx.runtime.live.LiveRouter` does).
        """
        if self._gen.root is None:
            return False
        return manifest_of(self._gen.root) != self._gen.manifest or self.journal_changed()

    @property
    def config(self) -> RouterConfig:
        """The router's configuration (``router.json``)."""
        return self._gen.config

    @property
    def experts(self) -> list[str]:
        """Expert names in column order."""
        return list(self._gen.config.experts)

    @property
    def policy(self) -> Policy:
        """The decision settings: costs, default wtp, threshold, fallback, calibration."""
        return Policy.from_dict(self._gen.config.policy)

    @property
    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The head: ``W`` (d, n_experts) and ``b`` (n_experts,).

        For a changed router, the float64 solution; otherwise the float32 values stored in
        the graph (reading them needs the onnx package).
        """
        if self._head is not None:
            return self._head
        from irde_onnx.store.graph_file import read_head

        return read_head(self._gen.graph, self._gen.where())

    @property
    def graph(self) -> bytes:
        """The bytes of the ``router.onnx`` this router runs (as saved, or to be saved)."""
        return self._gen.graph

    @property
    def graph_path(self) -> Path:
        """The ONNX graph file this router runs (any onnxruntime host can open it)."""
        if self._gen.root is None:
            raise InvalidInputError("this router is not saved yet: it has no graph file")
        return self._gen.root / self._gen.config.graph_file

    @property
    def default_batch_size(self) -> int:
        """Prompts per onnxruntime call when ``batch_size`` is not given (1 for int8)."""
        return INT8_BATCH_SIZE if self.config.precision == "int8" else DEFAULT_BATCH_SIZE

    @property
    def tokenizer(self) -> TextTokenizer:
        """The router's tokenizer, with truncation to ``max_length``."""
        return self._tokenizer

    @property
    def stats(self) -> RouterStats:
        """The float64 sufficient statistics (read and checked with the router)."""
        return self._stats

    @property
    def embedding_table(self) -> np.ndarray | None:
        """The token-level encoder's embedding table (vocab, d) as stored; None if pooled.

        Token-count statistics are projected through it when the head is solved.
        """
        if self.config.pooled:
            return None
        if self._table is None:
            from irde_onnx.store.graph_file import read_initializer

            gen = self._gen
            self._table = read_initializer(gen.graph, STATIC_TABLE, gen.external, gen.where())
        return self._table

    def dense_stats(self) -> RouterStats:
        """Statistics in feature space, cached (projecting token counts is the slow part)."""
        if self._dense is None:
            self._dense = self.stats.project(self.embedding_table)
        return self._dense

    # -- inference --------------------------------------------------------------------------
    def _run(self, texts: list[str], outputs: list[str], batch_size: int | None) -> list[Any]:
        _check_batch_size(batch_size)
        if batch_size is None:
            batch_size = self.default_batch_size
        session = self._session
        if len(texts) <= batch_size:  # one call, input order kept: no scatter needed
            ((_, ids, mask),) = self._tokenizer.batches(texts, batch_size)
            return session.run(outputs, {"input_ids": ids, "attention_mask": mask})
        results: list[np.ndarray | None] = [None] * len(outputs)
        for idx, ids, mask in self._tokenizer.batches(texts, batch_size):
            got = session.run(outputs, {"input_ids": ids, "attention_mask": mask})
            for j, arr in enumerate(got):
                if results[j] is None:
                    results[j] = np.empty((len(texts), *arr.shape[1:]), dtype=arr.dtype)
                results[j][idx] = arr
        return [r if r is not None else np.zeros((0, 0), np.float32) for r in results]

    @overload
    def scores(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        *,
        with_uncertainty: Literal[False] = False,
    ) -> np.ndarray: ...

    @overload
    def scores(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        *,
        with_uncertainty: Literal[True],
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def scores(
        self, texts: Sequence[str], batch_size: int | None = None, *, with_uncertainty: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Every expert's score for each text, shape (n_texts, n_experts).

        With ``with_uncertainty=True``: ``(scores, uncertainty)`` from one session run, both
        (n_texts, n_experts) (see :meth:`uncertainty`).
        """
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        if with_uncertainty:
            self._check_uncertainty()
        outputs = ["scores", UNCERTAINTY_OUTPUT] if with_uncertainty else ["scores"]
        if not texts:
            empty = np.zeros((0, len(self.config.experts)), dtype=np.float32)
            return (empty, empty.copy()) if with_uncertainty else empty
        got = self._run(texts, outputs, batch_size)
        return (got[0], got[1]) if with_uncertainty else got[0]

    @property
    def has_uncertainty(self) -> bool:
        """True when the graph computes the ``uncertainty`` output (:meth:`uncertainty`)."""
        return self._has_uncertainty

    def _check_uncertainty(self) -> None:
        if self._has_uncertainty:
            return
        if not self.config.pooled:
            raise InvalidInputError(
                "a static router has no uncertainty output: its scores are votes of tokens, "
                "not one ridge prediction per prompt; train a minilm or tiny router for it"
            )
        where = str(self.path) if self.path is not None else "path"
        raise InvalidInputError(
            f"{self._gen.where()} was saved before the uncertainty output existed: save the "
            f"router again with this version to add it (RouterEditor.open({where!r}).save() "
            "in Python, or any change with irde experts, irde policy or irde feedback)"
        )

    def uncertainty(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """The uncertainty of each expert's predicted quality, shape (n_texts, n_experts).

        The width of a LinUCB confidence interval in a 32-dimensional PCA subspace of the
        features, ``sqrt(z^T A_e^-1 z)`` (:mod:`irde_onnx.learning.uncertainty`): large where
        the expert's column has seen few rows like the prompt. The graph's ``uncertainty``
        output, so every host computes the same.

        Raises:
            InvalidInputError: the router has no such output (a static router, or a router
                saved before it: save it again, as the message says).

        """
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        self._check_uncertainty()
        if not texts:
            return np.zeros((0, len(self.config.experts)), dtype=np.float32)
        return self._run(texts, [UNCERTAINTY_OUTPUT], batch_size)[0]

    def features(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Pooled sentence features of each text, shape (n_texts, d) (pooled encoders only)."""
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        if not self.config.pooled:
            raise InvalidInputError(
                "the static encoder has no pooled features; use tokenizer.content_ids()"
            )
        if not texts:
            return np.zeros((0, self.config.feature_dim), dtype=np.float32)
        return self._run(texts, ["features"], batch_size)[0]

    def route(
        self,
        texts: Sequence[str],
        top_k: int = 1,
        batch_size: int | None = None,
        *,
        wtp: float | None = UNSET,
        with_uncertainty: bool = False,
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
            with_uncertainty: also fill ``Route.uncertainty`` from the same session run
                (raises as :meth:`uncertainty` does for a router without the output).

        Returns:
            One :class:`Route` per text, in input order.

        """
        texts = check_texts(texts)
        _check_batch_size(batch_size)
        config = self.config
        experts = config.experts
        check_top_k(top_k, len(experts))
        if wtp is not UNSET:
            wtp = check_wtp(wtp)
            if wtp is not None and config.policy.get("costs") is None:
                raise InvalidInputError(
                    "wtp needs costs: this router has none (set them with set_costs())"
                )
        if with_uncertainty:
            self._check_uncertainty()
        if not texts:
            return []
        in_graph = wtp is UNSET and self._decides
        outputs = ["scores", *DECISION_OUTPUTS] if in_graph else ["scores"]
        if with_uncertainty:
            outputs.append(UNCERTAINTY_OUTPUT)
        got = self._run(texts, outputs, batch_size)
        scores = got[0]
        widths = got[-1] if with_uncertainty else None
        if in_graph:
            choice, confidence = got[1].reshape(-1), got[2].reshape(-1)
        else:
            choice, confidence = self._decide(scores, wtp)
        # stable sort on -score: ties go to the lower column, as argmax does in the graph
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return [
            Route(
                expert=experts[int(choice[i])],
                scores={name: float(s) for name, s in zip(experts, scores[i], strict=True)},
                top=tuple(experts[j] for j in order[i]),
                confidence=float(confidence[i]),
                uncertainty=None
                if widths is None
                else {name: float(u) for name, u in zip(experts, widths[i], strict=True)},
            )
            for i in range(len(texts))
        ]

    def _decide(self, scores: np.ndarray, wtp: float | None = UNSET) -> tuple[Any, Any]:
        """The policy's decision from ``scores``, as the graph computes it."""
        config, policy = self.config, self.policy
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
        n = len(self.config.experts)
        if scores.ndim != 2 or scores.shape[1] != n:
            raise InvalidInputError(f"scores must have shape (n, {n}), got {scores.shape}")
        return self._decide(scores, wtp)

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

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"Router({str(self.path)!r}, encoder={cfg.encoder}, precision={cfg.precision}, "
            f"experts={list(cfg.experts)})"
        )

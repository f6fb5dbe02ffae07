"""The runtime router: load a router directory and route prompts (no torch needed)."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from irde_onnx._progress import Progress
from irde_onnx.config import (
    CONFIG_FILE,
    DATA_FILE,
    GRAPH_FILE,
    STATIC_TABLE,
    STATS_FILE,
    TOKENIZER_FILE,
    RouterConfig,
    check_router_dir,
    read_config,
    write_files_atomically,
)
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.runtime.session import open_session
from irde_onnx.runtime.tokenize import TextTokenizer, check_texts
from irde_onnx.stats import EncodedRows, RouterStats

DEFAULT_BATCH_SIZE = 32
# Dynamic int8 quantisation computes activation scales over the whole input of a call, so a
# prompt's features would depend on the other prompts (and padding) of its batch: int8
# routers encode one prompt per call unless the caller asks otherwise.
INT8_BATCH_SIZE = 1
ENCODE_CHUNK = 256


def _check_scores(scores: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    try:
        y = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"scores must be numbers: {exc}") from exc
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidInputError(f"got {y.size} scores for {n} texts; give one score per text")
    if not np.isfinite(y).all():
        raise InvalidInputError("scores must be finite (no NaN or infinity)")
    return y


@dataclass(frozen=True)
class Route:
    """The routing decision for one prompt.

    Attributes:
        expert: the chosen expert (highest score).
        scores: every expert's score, in column order.
        top: the ``top_k`` best experts, best first.

    """

    expert: str
    scores: dict[str, float]
    top: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"expert", "scores", "top"}``."""
        return {"expert": self.expert, "scores": self.scores, "top": list(self.top)}


@dataclass(frozen=True)
class _State:
    """What a route call reads; replaced as a whole so readers see one consistent head.

    ``head`` is None while the head is the one stored in ``router.onnx``.
    """

    config: RouterConfig
    session: ort.InferenceSession
    head: tuple[np.ndarray, np.ndarray] | None = None


class Router:
    """A loaded router. Build with :meth:`Router.load`; safe to call from many threads."""

    def __init__(
        self,
        path: Path,
        state: _State,
        tokenizer: TextTokenizer,
        threads: int | None,
        providers: Sequence[str] | None,
    ) -> None:
        self.path = path
        self._state = state
        self._tokenizer = tokenizer
        self._threads = threads
        self._providers = list(providers) if providers else None
        self._stats: RouterStats | None = None
        self._dense: RouterStats | None = None  # statistics in feature space (static: projected)
        self._table: np.ndarray | None = None
        self._lock = threading.RLock()  # serialises changes; routing never takes it

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> Router:
        """Load a router directory.

        Args:
            path: directory written by ``irde train`` or ``RouterTrainer.save``.
            threads: onnxruntime intra-op threads; None lets onnxruntime decide.
            providers: onnxruntime execution providers; CPU by default.

        """
        root = check_router_dir(path)
        config = read_config(root)
        tokenizer = TextTokenizer(root / TOKENIZER_FILE, config.max_length)
        try:
            session = open_session(root / GRAPH_FILE, threads, providers)
        except InvalidInputError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise RouterFormatError(f"{root / GRAPH_FILE} cannot be loaded: {exc}") from exc
        outputs = {o.name for o in session.get_outputs()}
        needed = {"scores", "features"} if config.pooled else {"scores"}
        if not needed <= outputs:
            raise RouterFormatError(
                f"{root / GRAPH_FILE} lacks the output(s) {sorted(needed - outputs)}"
            )
        graph_experts = session.get_modelmeta().custom_metadata_map.get("irde.experts")
        if graph_experts is not None and json.loads(graph_experts) != list(config.experts):
            raise RouterFormatError(
                f"{root / GRAPH_FILE} and {root / CONFIG_FILE} list different experts "
                "(an interrupted copy or save?); save the router again from a good copy"
            )
        return cls(root, _State(config, session), tokenizer, threads, providers)

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
    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The head in use: ``W`` (d, n_experts) and ``b`` (n_experts,).

        After a change this is the float64 solution; otherwise the float32 values stored in
        ``router.onnx`` (reading them needs the onnx package).
        """
        state = self._state
        if state.head is not None:
            return state.head
        from irde_onnx.graph_file import read_head

        return read_head(self.path / GRAPH_FILE)

    @property
    def graph_path(self) -> Path:
        """The ONNX graph file this router runs (any onnxruntime host can open it)."""
        return self.path / GRAPH_FILE

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
        if batch_size is None:
            batch_size = INT8_BATCH_SIZE if state.config.precision == "int8" else \
                DEFAULT_BATCH_SIZE
        if len(texts) <= batch_size:  # one call, input order kept: no scatter needed
            (_, ids, mask), = self._tokenizer.batches(texts, batch_size)
            return state.session.run(outputs, {"input_ids": ids, "attention_mask": mask})
        results: list[np.ndarray | None] = [None] * len(outputs)
        for idx, ids, mask in self._tokenizer.batches(texts, batch_size):
            got = state.session.run(outputs, {"input_ids": ids, "attention_mask": mask})
            for j, arr in enumerate(got):
                if results[j] is None:
                    results[j] = np.empty((len(texts), arr.shape[1]), dtype=arr.dtype)
                results[j][idx] = arr
        return [r if r is not None else np.zeros((0, 0), np.float32) for r in results]

    def scores(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Every expert's score for each text, shape (n_texts, n_experts)."""
        texts = check_texts(texts)
        state = self._state
        if not texts:
            return np.zeros((0, len(state.config.experts)), dtype=np.float32)
        return self._run(state, texts, ["scores"], batch_size)[0]

    def features(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Pooled sentence features of each text, shape (n_texts, d) (pooled encoders only)."""
        texts = check_texts(texts)
        state = self._state
        if not state.config.pooled:
            raise InvalidInputError(
                "the static encoder has no pooled features; use tokenizer.content_ids()"
            )
        if not texts:
            return np.zeros((0, state.config.feature_dim), dtype=np.float32)
        return self._run(state, texts, ["features"], batch_size)[0]

    def route(
        self, texts: Sequence[str], top_k: int = 1, batch_size: int | None = None
    ) -> list[Route]:
        """Route each text to the best expert.

        Args:
            texts: prompts.
            top_k: how many experts to rank in ``Route.top`` (1..n_experts).
            batch_size: prompts per onnxruntime call (default :attr:`default_batch_size`).

        Returns:
            One :class:`Route` per text, in input order.

        """
        texts = check_texts(texts)
        state = self._state  # one snapshot: the whole call uses one head
        experts = state.config.experts
        if not isinstance(top_k, int) or not 1 <= top_k <= len(experts):
            raise InvalidInputError(f"top_k must be an integer in 1..{len(experts)}, got {top_k}")
        if not texts:
            return []
        scores = self._run(state, texts, ["scores"], batch_size)[0]
        # stable sort on -score: ties go to the lower column, as argmax does in the graph
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return [
            Route(
                expert=experts[order[i, 0]],
                scores={name: float(s) for name, s in zip(experts, scores[i], strict=True)},
                top=tuple(experts[j] for j in order[i]),
            )
            for i in range(len(texts))
        ]

    # -- statistics -------------------------------------------------------------------------
    @property
    def stats(self) -> RouterStats:
        """The float64 sufficient statistics (read from ``stats.npz`` on first use)."""
        with self._lock:
            if self._stats is None:
                stats = RouterStats.load(self.path / STATS_FILE)
                if stats.experts != list(self.experts):
                    raise RouterFormatError(
                        f"{self.path / STATS_FILE} has experts {stats.experts} but "
                        f"{self.path / CONFIG_FILE} lists {self.experts}"
                    )
                self._stats = stats
            return self._stats

    @property
    def embedding_table(self) -> np.ndarray | None:
        """The token-level encoder's embedding table (vocab, d) as stored; None if pooled.

        Token-count statistics are projected through it when the head is solved.
        """
        if self.config.pooled:
            return None
        if self._table is None:
            from irde_onnx.graph_file import read_initializer

            self._table = read_initializer(self.path / GRAPH_FILE, STATIC_TABLE)
        return self._table

    def _dense_stats(self) -> RouterStats:
        """Statistics in feature space, cached (projecting token counts is the slow part)."""
        if self._dense is None:
            self._dense = self.stats.project(self.embedding_table)
        return self._dense

    def encode_rows(self, texts: Sequence[str], *, batch_size: int | None = None,
                    progress: bool = False) -> EncodedRows:
        """Encode ``texts`` once as rows of this router's statistics.

        Pooled encoders: the graph's ``features`` of each prompt; the static encoder: the
        content token ids of each prompt. ``encode_rows(texts).moments(y)`` gives the
        statistics a trainer, ``add_expert`` or another shard adds.
        """
        texts = check_texts(texts)
        if not self.config.pooled:
            return EncodedRows(None, self._tokenizer.content_ids(texts),
                               self._tokenizer.vocab_size)
        feats = np.empty((len(texts), self.config.feature_dim), dtype=np.float32)
        with Progress(len(texts), "encoding", progress) as bar:
            for start in range(0, len(texts), ENCODE_CHUNK):
                chunk = texts[start:start + ENCODE_CHUNK]
                feats[start:start + len(chunk)] = self.features(chunk, batch_size)
                bar.update(len(chunk))
        return EncodedRows(feats, None, self.config.feature_dim)

    def _apply(self, stats: RouterStats, dense: RouterStats, lam: float | None = None) -> None:
        """Solve the head, open a session with it beside the current one, then swap."""
        config = self.config if lam is None else replace(self.config, lam=lam)
        w, b = dense.solve(config.lam)
        new_config = config.with_experts(stats.experts, stats.modes)
        session = open_session(self.path / GRAPH_FILE, self._threads, self._providers,
                               head=(w, b))
        self._stats, self._dense = stats, dense
        self._state = _State(new_config, session, (w, b))  # one atomic reference swap

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
        with self._lock:
            cfg = self.config
            if stats.n_experts == 0:
                raise InvalidInputError("the statistics have no experts; a router needs one")
            dim = cfg.feature_dim if cfg.pooled else self._tokenizer.vocab_size
            kind = "features" if cfg.pooled else "token counts"
            if stats.dim != dim or stats.diagonal == cfg.pooled:
                raise InvalidInputError(
                    f"the statistics do not fit this router: it needs {kind} of dimension "
                    f"{dim}; compute them with this router's encode_rows()")
            if stats.fingerprint and cfg.fingerprint and stats.fingerprint != cfg.fingerprint:
                raise InvalidInputError(
                    f"the statistics were computed with other features (fingerprint "
                    f"{stats.fingerprint} vs {cfg.fingerprint}); compute them with this router")
            if lam is not None and not (np.isfinite(float(lam)) and float(lam) >= 0):
                raise InvalidInputError(f"lam must be a finite number >= 0, got {lam}")
            stats = stats.copy()
            self._apply(stats, stats.project(self.embedding_table),
                        None if lam is None else float(lam))

    def annotate(self, **extra: Any) -> None:
        """Record JSON-ready metadata in ``router.json``'s ``extra`` (written by ``save()``)."""
        with self._lock:
            state = self._state
            config = replace(state.config, extra={**state.config.extra, **extra})
            self._state = replace(state, config=config)

    def add_expert(
        self,
        name: str,
        texts: Sequence[str],
        scores: Sequence[float] | np.ndarray | None = None,
        *,
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
            progress: report encoding progress on stderr.

        Raises:
            InvalidInputError: duplicate name, no texts, a score count that does not match,
                NaN or infinite scores, or domain texts for a router trained on scores. The
                router is unchanged when this is raised.

        """
        with self._lock:
            if not isinstance(name, str) or not name.strip():
                raise InvalidInputError("the expert name must be a non-empty string")
            if name in self.experts:
                raise InvalidInputError(
                    f"expert {name!r} already exists; remove it first or choose another name "
                    f"(experts: {self.experts})"
                )
            texts = check_texts(texts)
            if not texts:
                raise InvalidInputError(f"no texts given for expert {name!r}")
            if scores is None:
                if self.config.target == "score":
                    raise InvalidInputError(
                        "this router was trained on per-expert scores: add the expert with "
                        "scores for its prompts (add_expert(name, texts, scores))"
                    )
                y = np.ones((len(texts), 1))
            else:
                y = _check_scores(scores, len(texts)).reshape(-1, 1)
            rows = self.encode_rows(texts, progress=progress).moments(y)
            table = self.embedding_table
            stats, dense = self.stats.copy(), self._dense_stats().copy()
            proj = rows.project(table) if table is not None else rows
            mode = "pooled" if scores is None else "own"
            stats.append(name, mode, rows, rows.sum_xy[:, 0], rows.sum_y[0], rows.sum_yy[0])
            dense.append(name, mode, proj, proj.sum_xy[:, 0], proj.sum_y[0], proj.sum_yy[0])
            self._apply(stats, dense)

    def remove_expert(self, name: str) -> None:
        """Remove an expert: its column, and its rows from the shared statistics.

        The result equals training without it. Raises for an unknown name or the last expert
        (the router is then unchanged).
        """
        with self._lock:
            experts = self.experts
            if name not in experts:
                raise InvalidInputError(f"unknown expert {name!r}; experts: {experts}")
            if len(experts) == 1:
                raise InvalidInputError(f"{name!r} is the last expert; a router needs one")
            index = experts.index(name)
            stats, dense = self.stats.copy(), self._dense_stats().copy()
            stats.remove(index)
            dense.remove(index)
            self._apply(stats, dense)

    def merge_stats(self, other: RouterStats | str | os.PathLike) -> None:
        """Add statistics computed elsewhere (another shard, same encoder) and re-solve.

        Args:
            other: statistics, a ``stats.npz`` file, or a router directory holding one.
                Their fingerprint must equal this router's (same encoder, tokenizer,
                precision and max_length).

        """
        with self._lock:
            if not isinstance(other, RouterStats):
                path = Path(other)
                path = path / STATS_FILE if path.is_dir() else path
                if not path.is_file():
                    raise FileNotFoundError(f"statistics not found: {path}")
                other = RouterStats.load(path)
            stats = self.stats.merge(other)
            self._apply(stats, stats.project(self.embedding_table))

    def save(self, path: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
        """Write the router directory: the new head into ``router.onnx``, statistics, config.

        Every file is written to a temporary name and renamed into place; the encoder's
        ``router.onnx.data`` is never rewritten (it is copied when saving elsewhere).

        Args:
            path: target directory; default: where the router was loaded from.
            overwrite: allow replacing a different non-empty directory.

        Returns:
            The directory written.

        """
        from irde_onnx.graph_file import load_graph_proto, replace_head
        from irde_onnx.metadata import graph_metadata, set_metadata

        with self._lock:
            state = self._state
            stats = self.stats
            target = Path(path) if path is not None else self.path
            elsewhere = target.resolve() != self.path.resolve()
            if elsewhere:
                if target.exists() and not target.is_dir():
                    raise InvalidInputError(f"{target} exists and is not a directory")
                if target.is_dir() and any(target.iterdir()) and not overwrite:
                    raise InvalidInputError(
                        f"{target} is not empty; choose another path or pass overwrite=True")
                target.mkdir(parents=True, exist_ok=True)
            model = load_graph_proto(self.path / GRAPH_FILE)
            if state.head is not None:
                replace_head(model, *state.head)
            set_metadata(model, graph_metadata(state.config))
            buffer = io.BytesIO()
            stats.save(buffer)
            files = {
                STATS_FILE: buffer.getvalue(),
                GRAPH_FILE: model.SerializeToString(),
                CONFIG_FILE: state.config.to_json().encode("utf-8"),
            }
            if elsewhere:
                for name in (TOKENIZER_FILE, DATA_FILE):
                    temp = target / f".{name}.tmp"
                    shutil.copyfile(self.path / name, temp)
                    os.replace(temp, target / name)
            write_files_atomically(target, files)
            return target

    def __repr__(self) -> str:
        cfg = self.config
        return (f"Router({str(self.path)!r}, encoder={cfg.encoder}, precision={cfg.precision}, "
                f"experts={list(cfg.experts)})")

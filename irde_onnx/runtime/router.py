"""The runtime router: load a router directory and route prompts (no torch needed)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from irde_onnx.config import (
    CONFIG_FILE,
    GRAPH_FILE,
    STATS_FILE,
    TOKENIZER_FILE,
    RouterConfig,
    check_router_dir,
    read_config,
)
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.runtime.session import open_session
from irde_onnx.runtime.tokenize import TextTokenizer, check_texts
from irde_onnx.stats import RouterStats

DEFAULT_BATCH_SIZE = 32
# Dynamic int8 quantisation computes activation scales over the whole input of a call, so a
# prompt's features would depend on the other prompts (and padding) of its batch: int8
# routers encode one prompt per call unless the caller asks otherwise.
INT8_BATCH_SIZE = 1


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
    """What a route call reads; replaced as a whole so readers see one consistent head."""

    config: RouterConfig
    session: ort.InferenceSession


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
        self._lock = threading.RLock()

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
                self._stats = RouterStats.load(self.path / STATS_FILE)
                if self._stats.n_experts != len(self.experts):
                    raise RouterFormatError(
                        f"{self.path / STATS_FILE} has {self._stats.n_experts} experts but "
                        f"{self.path / CONFIG_FILE} lists {len(self.experts)}"
                    )
            return self._stats

    def __repr__(self) -> str:
        cfg = self.config
        return (f"Router({str(self.path)!r}, encoder={cfg.encoder}, precision={cfg.precision}, "
                f"experts={list(cfg.experts)})")

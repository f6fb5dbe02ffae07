"""Training statistics of any subset of the rows, and how subsets add up.

Training turns rows (text, targets, cross-validation fold) into moments: per expert (domain
labels) or one shared pool (per-expert scores), plus one set per fold for choosing ``lam``.
Moments of disjoint subsets add, so a subset can be encoded anywhere (a chunk in this
process, a partition on a Ray worker) and the sum is the statistics of all the rows. Only the
runtime is needed: every subset is encoded with the router's public
``Router.encode_rows(texts).moments(y)``, the same path ``add_expert`` takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.moments import Moments
from irde_onnx.learning.statistics import EncodedRows, RouterStats
from irde_onnx.runtime.router import Router

KINDS = ("domain", "score")


@dataclass(frozen=True)
class StatsPlan:
    """What every subset of the rows is summarised into.

    Attributes:
        kind: ``domain`` (one-hot targets: one moments set per expert) or ``score`` (one
            shared pool with every expert's targets).
        n_experts: number of target columns.
        k_folds: cross-validation folds (0: no per-fold moments, ``lam`` is given); see
            :func:`irde_onnx.learning.moments.fold_ids` for the fold of each row.
        dim: feature dimension (pooled encoders) or vocabulary size (static encoder).
        dense: True for pooled features, False for token counts (static encoder).

    """

    kind: str
    n_experts: int
    k_folds: int
    dim: int
    dense: bool

    @classmethod
    def for_router(cls, router: Router, kind: str, n_experts: int, k_folds: int) -> StatsPlan:
        """The plan for rows encoded by ``router``'s graph (or counted by its tokenizer)."""
        if kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {KINDS}, got {kind!r}")
        dense = router.config.pooled
        dim = router.config.feature_dim if dense else router.tokenizer.vocab_size
        return cls(kind, n_experts, k_folds, dim, dense)


@dataclass
class PartialStats:
    """Moments of a subset of the training rows; ``a + b`` is the union of two subsets.

    Attributes:
        per_expert: domain kind: per expert, the moments of its rows (one target, 1.0).
        pool: score kind: moments of all rows with every expert's score as targets.
        folds: per cross-validation fold, the moments of its rows with every target.

    """

    per_expert: list[Moments]
    pool: Moments | None
    folds: list[Moments]

    @classmethod
    def zeros(cls, plan: StatsPlan) -> PartialStats:
        """The statistics of no rows."""

        def zeros(m: int) -> Moments:
            return Moments.zeros(plan.dim, m, diagonal=not plan.dense)

        return cls(
            [zeros(1) for _ in range(plan.n_experts)] if plan.kind == "domain" else [],
            zeros(plan.n_experts) if plan.kind == "score" else None,
            [zeros(plan.n_experts) for _ in range(plan.k_folds)],
        )

    def __add__(self, other: PartialStats) -> PartialStats:
        if (len(self.per_expert), self.pool is None, len(self.folds)) != (
            len(other.per_expert),
            other.pool is None,
            len(other.folds),
        ):
            raise InvalidInputError("partial statistics of different plans cannot be added")
        return PartialStats(
            [a + b for a, b in zip(self.per_expert, other.per_expert, strict=True)],
            None if self.pool is None or other.pool is None else self.pool + other.pool,
            [a + b for a, b in zip(self.folds, other.folds, strict=True)],
        )

    def router_stats(
        self, names: Sequence[str], fingerprint: str = ""
    ) -> tuple[RouterStats, list[Moments]]:
        """The router's statistics and the per-fold moments, in the router's statistics space.

        Token-count moments (static encoder) are left as they are: project them through
        ``Router.embedding_table`` to choose ``lam`` (``Router.set_statistics`` projects the
        statistics itself).

        Args:
            names: expert names in column order.
            fingerprint: the router's feature fingerprint.

        """
        some = self.pool if self.pool is not None else (self.per_expert or self.folds)[0]
        dim, diagonal = some.n_features, some.diagonal
        stats = RouterStats.empty(dim, diagonal=diagonal, fingerprint=fingerprint)
        for k, rows in enumerate(self.per_expert):
            stats.append_domain(names[k], rows)
        if self.pool is not None:
            pool = self.pool
            stats.shared = Moments(
                pool.n, pool.sum_x, pool.gram, np.zeros((dim, 0)), np.zeros(0), np.zeros(0)
            )
            for k in range(len(names)):
                stats.append(
                    names[k],
                    "pooled",
                    Moments.zeros(dim, 0, diagonal=diagonal),
                    pool.sum_xy[:, k],
                    pool.sum_y[k],
                    pool.sum_yy[k],
                )
        return stats, list(self.folds)


def rows_statistics(
    router: Router,
    plan: StatsPlan,
    texts: list[str],
    y: np.ndarray,
    fold: np.ndarray,
    batch_size: int | None = None,
) -> PartialStats:
    """The statistics of one subset of the rows (each text is encoded once).

    Args:
        router: the router whose graph encodes the texts.
        plan: what to accumulate (see :class:`StatsPlan`).
        texts: the subset's prompts.
        y: their targets, shape (n, n_experts): one-hot for the domain kind.
        fold: their cross-validation fold, shape (n,) (ignored when ``plan.k_folds`` is 0),
            from :func:`irde_onnx.learning.moments.fold_ids` over all the rows.
        batch_size: prompts per onnxruntime call (default: the router's).

    """
    encoded = router.encode_rows(texts, batch_size=batch_size)
    return encoded_statistics(plan, encoded, y, fold)


def encoded_statistics(
    plan: StatsPlan, encoded: EncodedRows, y: np.ndarray, fold: np.ndarray
) -> PartialStats:
    """The statistics of rows already encoded (``Router.encode_rows``), same arguments."""
    n = len(encoded)
    y = np.asarray(y, dtype=np.float64).reshape(n, plan.n_experts)
    fold = np.asarray(fold, dtype=np.int64).reshape(n)
    out = PartialStats.zeros(plan)
    every = np.arange(n)
    if out.pool is not None:
        out.pool = out.pool + encoded.moments(y)
    for k in range(len(out.per_expert)):
        rows = every[y[:, k] > 0]
        out.per_expert[k] = out.per_expert[k] + encoded.moments(np.ones((len(rows), 1)), rows)
    for f in range(len(out.folds)):
        rows = every[fold == f]
        out.folds[f] = out.folds[f] + encoded.moments(y[rows], rows)
    return out

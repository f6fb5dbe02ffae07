"""Model selection by (grouped) cross-validation from per-fold statistics.

The trainer's choices are all made here, on training rows only: the input view and the
pooled layers (by the held-out squared error of the ridge head, computed from per-fold
moments), and the static encoder's strategy and k (by the held-out decisions: accuracy for
domain targets, the mean score of the chosen expert for score targets). Each prompt is
encoded once per distinct text, whatever the number of candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irde_onnx.learning.moments import Moments, choose_lam, solve
from irde_onnx.learning.static_scores import static_scores

# pooled-layer sets ``layers="auto"`` compares (the last layer alone first: it wins ties)
AUTO_LAYERS: tuple[tuple[int, ...], ...] = ((), (6, 5))
# (strategy, k) pairs ``strategy="auto"`` compares for the static encoder; k only matters
# for entropy_top_k
AUTO_STRATEGIES: tuple[tuple[str, int], ...] = (
    ("vote", 10),
    ("mean", 10),
    ("entropy_top_k", 5),
    ("entropy_top_k", 10),
    ("entropy_top_k", 20),
)


@dataclass
class Candidate:
    """One setting compared by cross-validation, and its score."""

    setting: dict[str, Any]
    error: float  # the criterion: lower is better
    lam: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = {**self.setting, "cv": self.error, **self.extra}
        if self.lam is not None:
            out["lam"] = self.lam
        return out


def fold_moments(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> list[Moments]:
    """Dense moments of each fold's rows: ``x`` (n, d) features, ``y`` (n, m) targets."""
    return [Moments.from_rows(x[fold == f], y[fold == f]) for f in range(int(fold.max()) + 1)]


def block_columns(union: Sequence[int], layers: Sequence[int], width: int) -> np.ndarray:
    """Columns of ``layers``' blocks in features pooled from ``union`` (blocks of ``width``)."""
    return np.concatenate([np.arange(width) + width * list(union).index(k) for k in layers])


def best(candidates: list[Candidate]) -> Candidate:
    """The candidate with the lowest criterion; ties go to the first (the default)."""
    return min(candidates, key=lambda c: c.error)


def choose_features(
    features: dict[str, np.ndarray],
    union: Sequence[int],
    layer_sets: Sequence[Sequence[int]],
    width: int,
    y: np.ndarray,
    fold: np.ndarray,
    last_layer: int,
) -> tuple[Candidate, list[Candidate]]:
    """Compare every (view, layers) by the cross-validated squared error of the ridge head.

    Args:
        features: per view, the features pooled from the layers ``union``, (n, width x |union|).
        union: the layers pooled in ``features``, in block order.
        layer_sets: candidate layer sets (empty: the last layer alone).
        width: features per layer.
        y: targets (n, m).
        fold: the fold of each row.
        last_layer: the layer an empty set means.

    Returns:
        The best candidate and all of them (lam chosen per candidate on the same folds).

    """
    out = []
    for view, x in features.items():
        for layers in layer_sets:
            cols = block_columns(union, tuple(layers) or (last_layer,), width)
            lam, errors = choose_lam(fold_moments(x[:, cols].astype(np.float64), y, fold))
            out.append(Candidate({"view": view, "layers": list(layers)}, errors[lam], lam))
    return best(out), out


def decision_loss(scores: np.ndarray, y: np.ndarray, kind: str) -> float:
    """Minus the decision quality: accuracy (one-hot ``y``) or mean score of the choice."""
    chosen = scores.argmax(axis=1)
    picked = y[np.arange(len(y)), chosen]
    if kind == "domain":
        return -float(np.mean(picked > 0))
    return -float(np.mean(picked))


def choose_strategy(
    ids: list[np.ndarray],
    y: np.ndarray,
    fold: np.ndarray,
    folds: list[Moments],
    lam: float,
    table: np.ndarray,
    kind: str,
    candidates: Sequence[tuple[str, int]] = AUTO_STRATEGIES,
    chunk: int = 256,
) -> tuple[Candidate, list[Candidate]]:
    """Compare the static router's (strategy, k) by held-out decisions.

    For each fold, the head is solved on the other folds' token statistics (projected
    through ``table``), and the held-out prompts are scored with :func:`static_scores`
    (the graph's numpy mirror) under every candidate.

    Args:
        ids: content token ids of each prompt (no special tokens).
        y: targets (n, m).
        fold: the fold of each prompt.
        folds: per-fold token-count moments.
        lam: the ridge penalty.
        table: the embedding table as shipped (vocab, d).
        kind: ``domain`` or ``score``.
        candidates: the (strategy, k) pairs to compare.
        chunk: prompts scored per numpy call.

    """
    n, m = y.shape
    preds = {c: np.zeros((n, m)) for c in candidates}
    total = folds[0].copy()
    for f in folds[1:]:
        total = total + f
    token_mask = np.ones(table.shape[0], np.float32)
    for f, held in enumerate(folds):
        rows = np.flatnonzero(fold == f)
        if held.n <= 0 or not len(rows):
            continue
        w, b = solve((total - held).project(table), lam)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            width = max(1, max(len(ids[i]) for i in part))
            batch = np.zeros((len(part), width), np.int64)
            mask = np.zeros((len(part), width), np.int64)
            for r, i in enumerate(part):
                batch[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            for strategy, k in candidates:
                preds[(strategy, k)][part] = static_scores(
                    batch, mask, table, token_mask, w, b, strategy, k
                )[0]
    quality = "accuracy" if kind == "domain" else "mean_score"
    out = []
    for s, k in candidates:
        loss = decision_loss(preds[(s, k)], y, kind)
        out.append(Candidate({"strategy": s, "top_k_tokens": k}, loss, lam, {quality: -loss}))
    return best(out), out

"""Calibration from the trainer's cross-validation folds: out-of-fold scores, then the fit.

The folds are the ones ``lam="auto"`` already builds (per-fold moments), so calibration costs
one ridge solve per fold and no second encoding. Domain routers get a softmax temperature
(:func:`irde_onnx.decision.policy.fit_temperature`), score routers a per-expert affine map of their
column (:func:`irde_onnx.decision.policy.fit_affine`), folded into the head by the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from irde_onnx.decision.policy import fit_affine, fit_temperature
from irde_onnx.learning.moments import Moments, solve


def out_of_fold_scores(
    folds: Sequence[Moments], fold: np.ndarray, features: np.ndarray, lam: float
) -> np.ndarray:
    """Each row's scores from the head solved without its fold, shape (n, n_targets)."""
    total = folds[0].copy()
    for f in folds[1:]:
        total = total + f
    pred = np.zeros((len(features), total.n_targets))
    for k, held in enumerate(folds):
        rows = np.flatnonzero(fold == k)
        if len(rows) == 0 or held.n <= 0 or total.n - held.n <= 0:
            continue
        w, b = solve(total - held, lam)
        pred[rows] = np.asarray(features[rows], np.float64) @ w + b
    return pred


def calibration_settings(
    kind: str, pred: np.ndarray, y: np.ndarray, experts: Sequence[str]
) -> dict[str, Any]:
    """``set_policy`` keywords: ``temperature`` (domain) or ``calibration`` (score)."""
    if kind == "domain":
        return {"temperature": fit_temperature(pred, np.argmax(y, axis=1))}
    return {"calibration": {e: ab for e, ab in zip(experts, fit_affine(pred, y), strict=True)}}

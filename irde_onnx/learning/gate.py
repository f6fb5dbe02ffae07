"""The gate of an expert added from few scored prompts: does its column help routing.

A column solved from a few hundred scored prompts extrapolates: on routerdc7 an LLM added
from 25-400 random labels made routing up to 5 points worse than leaving it out
(research/feedback, point 4). So such an expert is added as a *shadow* (solved and reported,
not routing) until its gate passes:

- each of its ``n`` rows gets the new column's leave-one-out prediction (ridge with an
  unpenalised intercept, the router's ``lam``; closed form from the hat matrix, no refit);
- on that row, the router would pick the new expert when that prediction beats the best
  existing expert's score; the row's gain is then the new expert's score minus what the
  router picks instead (the existing experts' true scores on the row if known, else their
  predicted scores), and 0 otherwise;
- the gate passes when the mean gain minus ``margin`` (default 2) standard errors is > 0.

Measured on routerdc7 (BENCHMARKS.md, "Adding an expert from few labels"): the gate keeps
the worst loss at 0 for every n up to 1,600 rows, but it kept out every LLM, also those
that help (dolphin-2.9 by the task mean, Meta-Llama-3-8B over prompts).
The gate compares quality only (no costs), as the research measured it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from irde_onnx.errors import InvalidInputError

# the research's `plain+gate2se`: the only rule that never lost more than 0.2 points
GATE_MARGIN = 2.0
# a scored expert with fewer rows than this (or than the router's own columns) is gated
GATE_ROWS = 1000


@dataclass(frozen=True)
class GateResult:
    """The gate's figures for one expert.

    Attributes:
        gain: mean estimated routing gain per row (score units) over its ``n`` rows.
        se: standard error of ``gain`` (inf with fewer than 2 rows).
        n: rows the estimate rests on.
        margin: standard errors subtracted from ``gain``.
        passed: ``gain - margin * se > 0``: the expert helps routing; it may route.
        picked: share of the rows where the new column (left out) beats the others.
        lam: the ridge penalty of the leave-one-out fit.

    """

    gain: float
    se: float
    n: int
    margin: float
    passed: bool
    picked: float
    lam: float

    @property
    def lower(self) -> float:
        """``gain - margin * se``: the gate passes when this is > 0."""
        return self.gain - self.margin * self.se

    def to_dict(self) -> dict[str, float | int | bool]:
        """JSON-ready figures (``lower`` included)."""
        out: dict[str, float | int | bool] = asdict(self)
        out["lower"] = self.lower
        return out


def loo_predictions(
    features: np.ndarray,
    scores: np.ndarray,
    lam: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Leave-one-out predictions of a ridge column with an unpenalised intercept, shape (n,).

    Row i's prediction comes from the fit on the other rows (weighted by ``weights``),
    computed in closed form: ``y_i - (y_i - fit_i) / (1 - h_ii)`` with the hat matrix's
    diagonal ``h_ii = w_i (1 / sum w + xc_i^T (Xc^T W Xc + lam I)^-1 xc_i)``.

    Args:
        features: (n, d) the rows' features.
        scores: (n,) the new expert's scores on them.
        lam: ridge penalty, >= 0.
        weights: (n,) row weights (default 1).

    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(y)
    if x.ndim != 2 or x.shape[0] != n:
        raise InvalidInputError(f"features must be (n, d) for {n} scores, got {x.shape}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or not (np.isfinite(w).all() and (w > 0).all()):
        raise InvalidInputError("weights must be one finite number > 0 per row")
    if not (np.isfinite(lam) and lam >= 0):
        raise InvalidInputError(f"lam must be a finite number >= 0, got {lam}")
    if n == 0:
        return np.zeros(0)
    sw = w.sum()
    xc = x - (w @ x) / sw
    yc = y - (w @ y) / sw
    a = (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1])
    rhs = np.column_stack([(xc * w[:, None]).T @ yc, xc.T])  # beta, then A^-1 Xc^T
    try:
        sol = np.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:  # lam 0 with fewer rows than features
        sol = np.linalg.pinv(a) @ rhs
    beta, a_inv_xt = sol[:, 0], sol[:, 1:]
    fit = xc @ beta
    h = w * (1.0 / sw + np.einsum("ij,ji->i", xc, a_inv_xt))
    residual = (yc - fit) / np.maximum(1.0 - h, 1e-12)
    return y - residual


def gate(
    features: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    lam: float,
    *,
    actual: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    margin: float = GATE_MARGIN,
) -> GateResult:
    """Estimate what a new expert's column gains routing on its own rows (module docstring).

    Args:
        features: (n, d) features of the new expert's rows.
        scores: (n,) the new expert's scores on them.
        predicted: (n, E) the existing experts' predicted scores (the router's head).
        lam: the ridge penalty the new column is solved with.
        actual: (n, E) the existing experts' true scores on those rows, when known; the
            alternative to the new expert is then the true score of the router's pick.
        weights: (n,) row weights of the fit (the gain is a plain mean over rows).
        margin: standard errors subtracted from the mean gain.

    Returns:
        The figures; ``passed`` says whether the expert should route.

    """
    y = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(y)
    p = np.asarray(predicted, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] == 0:
        raise InvalidInputError(
            f"predicted must be (n, E) with n = {n} rows and E >= 1 experts, got {p.shape}"
        )
    if actual is not None and np.shape(actual) != p.shape:
        raise InvalidInputError(f"actual must have predicted's shape {p.shape}")
    if not (np.isfinite(margin) and margin >= 0):
        raise InvalidInputError(f"margin must be a finite number >= 0, got {margin}")
    loo = loo_predictions(features, y, lam, weights)
    best = np.argmax(p, axis=1) if n else np.zeros(0, dtype=np.int64)
    best_pred = p[np.arange(n), best]
    alternative = (
        best_pred if actual is None else np.asarray(actual, np.float64)[np.arange(n), best]
    )
    chosen = loo > best_pred
    g = np.where(chosen, y - alternative, 0.0)
    gain = float(g.mean()) if n else 0.0
    se = float(g.std(ddof=1) / np.sqrt(n)) if n >= 2 else float("inf")
    passed = bool(n >= 2 and gain - margin * se > 0)
    picked = float(chosen.mean()) if n else 0.0
    return GateResult(gain, se, n, float(margin), passed, picked, float(lam))

"""Metrics of decisions (numpy only): calibration error, coverage, the quality-cost curve.

``expected_calibration_error`` and ``reliability`` measure how well the ``confidence`` of a
router matches how often it is right; ``accuracy_at_coverage`` what abstaining buys;
``cost_curve`` and ``aiq`` the quality-cost trade-off of a willingness-to-pay sweep, as
RouterBench defines them (AIQ: area under the non-decreasing convex hull of the (cost,
quality) points over the single models' cost range, divided by that range).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from irde_onnx.decision.policy import decide
from irde_onnx.errors import InvalidInputError

ECE_BINS = 15


# -- metrics ------------------------------------------------------------------------------------
def expected_calibration_error(
    confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: the row-weighted mean |mean outcome - mean confidence| over equal-width bins.

    ``outcome`` is 1/0 (right or wrong) or a quality in [0, 1].
    """
    c = np.clip(np.asarray(confidence, np.float64), 0.0, 1.0)
    o = np.asarray(outcome, np.float64)
    if len(c) == 0:
        return 0.0
    index = np.minimum((c * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        rows = index == k
        if rows.any():
            total += rows.sum() * abs(o[rows].mean() - c[rows].mean())
    return float(total / len(c))


def reliability(
    confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS
) -> list[tuple[float, float, int]]:
    """Per non-empty bin: (mean confidence, mean outcome, rows), for a reliability diagram."""
    c = np.clip(np.asarray(confidence, np.float64), 0.0, 1.0)
    o = np.asarray(outcome, np.float64)
    index = np.minimum((c * bins).astype(int), bins - 1)
    return [
        (float(c[index == k].mean()), float(o[index == k].mean()), int((index == k).sum()))
        for k in range(bins)
        if (index == k).any()
    ]


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy of the ``coverage`` fraction of prompts the router is most confident about."""
    n = len(confidence)
    keep = max(1, int(round(coverage * n)))
    order = np.argsort(-np.asarray(confidence), kind="stable")[:keep]
    return float(np.mean(np.asarray(correct, np.float64)[order]))


def upper_hull(cost: Sequence[float], quality_: Sequence[float]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, sorted by cost.

    Points dominated by a cheaper point of higher quality are dropped first (the hull is
    non-decreasing: paying more never lowers the quality one can reach).
    """
    pts = sorted(
        zip(map(float, cost), map(float, quality_), strict=True), key=lambda p: (p[0], -p[1])
    )
    frontier: list[tuple[float, float]] = []
    for c, q in pts:
        if not frontier or q > frontier[-1][1]:
            frontier.append((c, q))
    hull: list[tuple[float, float]] = []
    for p in frontier:
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            if (q2 - q1) * (p[0] - c1) <= (p[1] - q1) * (c2 - c1):
                hull.pop()  # hull[-1] lies on or below the chord hull[-2] -> p
            else:
                break
        hull.append(p)
    return hull


def aiq(cost: Sequence[float], quality_: Sequence[float], c_min: float, c_max: float) -> float:
    """AIQ, RouterBench's average improvement in quality.

    The area under the non-decreasing convex hull of the (cost, quality) points over
    [c_min, c_max], divided by c_max - c_min. Left of the cheapest point the hull is 0
    (nothing is answered for less); right of the dearest point it stays at the best quality
    reached.
    """
    if not c_max > c_min:
        raise InvalidInputError(f"the cost range must be non-empty, got [{c_min}, {c_max}]")
    hull = upper_hull(cost, quality_)
    xs = np.linspace(c_min, c_max, 20001)
    hc = np.array([p[0] for p in hull])
    hq = np.array([p[1] for p in hull])
    ys = np.interp(xs, hc, hq, left=0.0, right=hq[-1])
    ys[xs < hc[0]] = 0.0
    return float(np.trapezoid(ys, xs) / (c_max - c_min))


def wtp_grid(costs: np.ndarray, n: int = 41) -> np.ndarray:
    """Willingness-to-pay values that sweep from "cheapest" to "quality only".

    A difference of quality 1 against the whole cost spread ``max - min`` is the scale:
    ``wtp = spread * 10^[-3..3]`` (log-spaced), plus None (quality only) at the end.
    """
    c = np.asarray(costs, np.float64)
    spread = float(c.max() - c.min()) or float(c.max()) or 1.0
    return spread * np.logspace(-3.0, 3.0, n)


def cost_curve(
    scores: np.ndarray,
    target: str,
    quality_rows: np.ndarray,
    cost_rows: np.ndarray,
    router_costs: np.ndarray,
    *,
    temperature: float = 1.0,
    grid: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Mean quality and mean cost of the router's choices over a sweep of the knob.

    Args:
        scores: the router's scores (n, E).
        target: ``domain`` or ``score`` (how scores become predicted quality).
        quality_rows: each expert's real quality on each prompt (n, E).
        cost_rows: each expert's real cost on each prompt (n, E).
        router_costs: the costs the decision uses (E,), e.g. the router's or mean costs.
        temperature: domain routers' softmax temperature.
        grid: wtp values (default :func:`wtp_grid`); "quality only" is always added.

    Returns:
        ``{"points": [{"wtp", "quality", "cost"}], "aiq", "singles": [{"expert", "quality",
        "cost"}], "cost_range": [min, max]}`` with the single experts' AIQ as ``aiq_singles``.

    """
    q_rows = np.asarray(quality_rows, np.float64)
    c_rows = np.asarray(cost_rows, np.float64)
    n = len(q_rows)
    values: list[float | None] = list(wtp_grid(router_costs) if grid is None else grid)
    values.append(None)
    points = []
    for wtp in values:
        choice, _ = decide(scores, target, costs=router_costs, wtp=wtp, temperature=temperature)
        rows = np.arange(n)
        points.append(
            {
                "wtp": wtp,
                "quality": float(q_rows[rows, choice].mean()),
                "cost": float(c_rows[rows, choice].mean()),
            }
        )
    single_q, single_c = q_rows.mean(axis=0), c_rows.mean(axis=0)
    lo, hi = float(single_c.min()), float(single_c.max())
    return {
        "points": points,
        "aiq": aiq([p["cost"] for p in points], [p["quality"] for p in points], lo, hi),
        "aiq_singles": aiq(single_c, single_q, lo, hi),
        "cost_range": [lo, hi],
        "singles": [
            {"column": k, "quality": float(single_q[k]), "cost": float(single_c[k])}
            for k in range(len(single_q))
        ],
    }

"""Calibration fits and decision metrics against references (numpy, sklearn-free maths)."""

import numpy as np
import pytest

from irde_onnx.decision.policy import fit_affine, fit_temperature, softmax
from irde_onnx.errors import InvalidInputError
from irde_onnx.evaluation.decisions import (
    accuracy_at_coverage,
    aiq,
    cost_curve,
    expected_calibration_error,
    upper_hull,
)


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    true_t = 2.5
    p = softmax(logits / true_t)
    labels = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_fit_affine_is_least_squares():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(500, 3))
    y = pred * [2.0, 0.5, -1.0] + [0.1, 0.2, 0.3] + rng.normal(0, 0.1, (500, 3))
    got = fit_affine(pred, y)
    for k in range(3):
        want = np.polyfit(pred[:, k], y[:, k], 1)
        np.testing.assert_allclose(got[k], want, rtol=1e-9)
    assert fit_affine(np.ones((4, 1)), np.array([[1.0], [2.0], [3.0], [4.0]])) == [[1.0, 1.5]]


def test_ece_by_hand():
    conf = np.array([0.05, 0.05, 0.95, 0.95, 0.5])
    right = np.array([0, 1, 1, 1, 0])
    # bins: [0.0667): 2 rows, mean conf 0.05, acc 0.5; [0.933..1]: 2 rows, 0.95 vs 1;
    # 0.5 falls in bin 7: conf 0.5 vs 0
    want = (2 * 0.45 + 2 * 0.05 + 1 * 0.5) / 5
    assert expected_calibration_error(conf, right) == pytest.approx(want)
    assert expected_calibration_error(np.ones(3), np.ones(3)) == 0.0


def test_accuracy_at_coverage_keeps_the_most_confident():
    conf = np.array([0.9, 0.1, 0.8, 0.2])
    right = np.array([1, 0, 1, 1])
    assert accuracy_at_coverage(conf, right, 0.5) == 1.0
    assert accuracy_at_coverage(conf, right, 1.0) == 0.75


def test_hull_and_aiq():
    # (1, 0.5), (2, 0.9), (3, 0.8) dominated, (4, 1.0); (2.5, 0.6) below the chord
    cost = [1, 2, 3, 4, 2.5]
    qual = [0.5, 0.9, 0.8, 1.0, 0.6]
    assert upper_hull(cost, qual) == [(1, 0.5), (2, 0.9), (4, 1.0)]
    # area over [1, 4]: (0.5+0.9)/2 * 1 + (0.9+1.0)/2 * 2 = 0.7 + 1.9
    assert aiq(cost, qual, 1, 4) == pytest.approx((0.7 + 1.9) / 3, rel=1e-6)
    # beyond the dearest point the hull stays flat
    assert aiq([1, 2], [0.5, 1.0], 1, 3) == pytest.approx((0.75 + 1.0) / 2, rel=1e-6)
    # a chord point: points on the chord are dropped
    assert upper_hull([0, 1, 2], [0, 0.5, 1.0]) == [(0, 0.0), (2, 1.0)]
    with pytest.raises(InvalidInputError):
        aiq(cost, qual, 2, 2)


def test_cost_curve_spans_cheapest_to_best():
    rng = np.random.default_rng(2)
    y = (rng.uniform(size=(300, 3)) < [0.5, 0.7, 0.9]).astype(float)
    c = np.tile([0.1, 0.5, 2.0], (300, 1))
    scores = y + rng.normal(0, 0.3, y.shape)  # a good predictor of the results
    curve = cost_curve(scores, "score", y, c, c.mean(0))
    costs = [p["cost"] for p in curve["points"]]
    assert min(costs) == pytest.approx(0.1) and curve["points"][-1]["wtp"] is None
    assert curve["aiq"] > curve["aiq_singles"]

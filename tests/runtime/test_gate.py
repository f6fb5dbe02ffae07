"""The gate of a few-label expert: closed-form leave-one-out against a refit per row."""

from __future__ import annotations

import numpy as np
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.gate import gate, loo_predictions


def _ridge(x, y, w, lam):
    """Weighted ridge with an unpenalised intercept, solved directly (the reference)."""
    z = np.column_stack([np.ones(len(x)), x])
    pen = lam * np.eye(z.shape[1])
    pen[0, 0] = 0.0
    coef = np.linalg.solve(z.T @ (z * w[:, None]) + pen, z.T @ (w * y))
    return coef


def _brute_loo(x, y, w, lam):
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        coef = _ridge(x[keep], y[keep], w[keep], lam)
        out[i] = coef[0] + x[i] @ coef[1:]
    return out


@pytest.mark.parametrize(("n", "d", "weighted"), [(30, 5, False), (12, 20, False), (40, 6, True)])
def test_loo_predictions_equal_a_refit_without_each_row(n, d, weighted):
    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d) + rng.normal(size=n)
    w = rng.uniform(0.5, 3.0, n) if weighted else np.ones(n)
    got = loo_predictions(x, y, 0.7, w if weighted else None)
    np.testing.assert_allclose(got, _brute_loo(x, y, w, 0.7), atol=1e-9, rtol=0)


def _reference_gain(x, y, p, lam, actual=None):
    loo = _brute_loo(x, y, np.ones(len(y)), lam)
    best = p.argmax(1)
    alt = p[np.arange(len(y)), best] if actual is None else actual[np.arange(len(y)), best]
    g = (loo > p.max(1)) * (y - alt)
    return g.mean(), g.std(ddof=1) / np.sqrt(len(g)), (loo > p.max(1)).mean()


def test_gate_gain_and_standard_error_against_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4))
    y = np.clip(0.5 + x[:, 0] * 0.4 + 0.1 * rng.normal(size=60), 0, 1)
    p = 0.5 + 0.1 * rng.normal(size=(60, 3))
    actual = rng.uniform(size=(60, 3))
    for given in (None, actual):
        res = gate(x, y, p, 0.3, actual=given)
        gain, se, picked = _reference_gain(x, y, p, 0.3, given)
        assert res.n == 60 and res.margin == 2.0 and res.lam == 0.3
        assert res.gain == pytest.approx(gain, abs=1e-12)
        assert res.se == pytest.approx(se, abs=1e-12)
        assert res.picked == pytest.approx(picked)
        assert res.passed == (gain - 2 * se > 0)
        assert res.to_dict()["lower"] == pytest.approx(gain - 2 * se)


def test_gate_opens_for_a_clearly_better_expert_and_not_for_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    p = np.column_stack([0.4 + 0.0 * x[:, 0], 0.4 - 0.1 * x[:, 1]])
    better = 0.5 + 0.3 * (x[:, 0] > 0) + 0.05 * rng.normal(size=200)  # wins where x0 > 0
    assert gate(x, better, p, 1.0).passed
    noise = rng.uniform(0, 0.8, size=200)  # no signal in x
    res = gate(x, noise, p, 1.0)
    assert not res.passed and res.lower <= 0
    assert not gate(x[:1], better[:1], p[:1], 1.0).passed  # one row: no standard error


def test_gate_refuses_mismatched_inputs():
    x, y = np.zeros((5, 2)), np.zeros(5)
    with pytest.raises(InvalidInputError, match="predicted"):
        gate(x, y, np.zeros((4, 2)), 1.0)
    with pytest.raises(InvalidInputError, match="actual"):
        gate(x, y, np.zeros((5, 2)), 1.0, actual=np.zeros((5, 3)))
    with pytest.raises(InvalidInputError, match="features"):
        gate(np.zeros((4, 2)), y, np.zeros((5, 2)), 1.0)
    with pytest.raises(InvalidInputError, match="lam"):
        gate(x, y, np.zeros((5, 2)), -1.0)
    with pytest.raises(InvalidInputError, match="weights"):
        loo_predictions(x, y, 1.0, np.zeros(5))

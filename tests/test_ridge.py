"""Ridge on sufficient statistics against scikit-learn and direct computations."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.moments import Moments, choose_lam, solve, sse
from irde_onnx.learning.statistics import token_moments


def _data(rng, n=200, d=12, m=3):
    x = rng.normal(size=(n, d)) + 3.0  # off-centre, so the intercept matters
    y = x @ rng.normal(size=(d, m)) + rng.normal(size=m) + 0.1 * rng.normal(size=(n, m))
    return x, y


@pytest.mark.parametrize("lam", [1e-3, 0.5, 10.0])
def test_solve_equals_sklearn_ridge(rng, lam):
    x, y = _data(rng)
    w, b = solve(Moments.from_rows(x, y), lam)
    ref = Ridge(alpha=lam, fit_intercept=True, solver="cholesky").fit(x, y)
    np.testing.assert_allclose(w, ref.coef_.T, atol=1e-6)
    np.testing.assert_allclose(b, ref.intercept_, atol=1e-6)


def test_moments_are_additive(rng):
    x, y = _data(rng)
    whole = Moments.from_rows(x, y)
    parts = Moments.zeros(x.shape[1], y.shape[1])
    for start in range(0, len(x), 37):
        parts.update(x[start : start + 37], y[start : start + 37])
    merged = Moments.from_rows(x[:50], y[:50]) + Moments.from_rows(x[50:], y[50:])
    for other in (parts, merged):
        np.testing.assert_allclose(other.gram, whole.gram, rtol=1e-12)
        np.testing.assert_allclose(solve(other, 0.1)[0], solve(whole, 0.1)[0], atol=1e-10)
    back = merged - Moments.from_rows(x[50:], y[50:])
    np.testing.assert_allclose(
        solve(back, 0.1)[0], solve(Moments.from_rows(x[:50], y[:50]), 0.1)[0], atol=1e-8
    )


def test_token_moments_project_to_dense_rows(rng):
    vocab, d = 30, 5
    table = rng.normal(size=(vocab, d))
    ids = [rng.integers(0, vocab, size=rng.integers(1, 9)) for _ in range(40)]
    y = rng.random(size=(40, 2))
    dense_x = np.concatenate([table[i] for i in ids])
    dense_y = np.concatenate([np.repeat(y[j : j + 1], len(i), axis=0) for j, i in enumerate(ids)])
    proj = token_moments(ids, y, vocab).project(table)
    w, b = solve(proj, 0.3)
    ref = Ridge(alpha=0.3).fit(dense_x, dense_y)
    np.testing.assert_allclose(w, ref.coef_.T, atol=1e-8)
    np.testing.assert_allclose(b, ref.intercept_, atol=1e-8)


def test_sse_from_moments_equals_direct(rng):
    x, y = _data(rng)
    w, b = solve(Moments.from_rows(x[:100], y[:100]), 1.0)
    direct = float(((y[100:] - x[100:] @ w - b) ** 2).sum())
    assert sse(Moments.from_rows(x[100:], y[100:]), w, b) == pytest.approx(direct, rel=1e-9)


def test_choose_lam_matches_brute_force_cv(rng):
    x, y = _data(rng, n=120, d=30)
    folds_idx = np.array_split(np.arange(len(x)), 4)
    grid = [1e-3, 1e-1, 1.0, 10.0, 100.0]
    best, errors = choose_lam([Moments.from_rows(x[i], y[i]) for i in folds_idx], grid)
    brute = {}
    for lam in grid:
        err = 0.0
        for i in folds_idx:
            train = np.setdiff1d(np.arange(len(x)), i)
            pred = Ridge(alpha=lam).fit(x[train], y[train]).predict(x[i])
            err += ((pred - y[i]) ** 2).sum()
        brute[lam] = err / len(x)
    assert best == min(brute, key=brute.get)
    for lam in grid:
        assert errors[lam] == pytest.approx(brute[lam], rel=1e-6)


def test_errors(rng):
    x, y = _data(rng, n=5, d=10)
    with pytest.raises(InvalidInputError, match="lam"):
        solve(Moments.from_rows(x, y), -1.0)
    with pytest.raises(InvalidInputError, match="positive definite"):
        solve(Moments.from_rows(x, y), 0.0)  # 5 rows, 10 features: singular
    with pytest.raises(InvalidInputError, match="finite"):
        Moments.from_rows(np.full((2, 3), np.nan), np.zeros((2, 1)))
    with pytest.raises(InvalidInputError, match="no rows"):
        solve(Moments.zeros(3, 1), 1.0)
    with pytest.raises(InvalidInputError, match="folds"):
        choose_lam([Moments.from_rows(x, y)])


def test_weighted_rows_equal_sklearn_sample_weight(rng):
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 2))
    w = rng.uniform(0.2, 3.0, 50)
    coef, bias = solve(Moments.from_rows(x, y, w), 1.5)
    ref = Ridge(alpha=1.5).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(coef, ref.coef_.T, atol=1e-8)
    np.testing.assert_allclose(bias, ref.intercept_, atol=1e-8)
    with pytest.raises(InvalidInputError, match="weights"):
        Moments.from_rows(x, y, -w)


def test_fold_ids_are_balanced_and_seeded():
    from irde_onnx.learning.moments import fold_ids

    fold = fold_ids(23, 5, seed=4)
    assert sorted(np.bincount(fold).tolist()) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(fold, fold_ids(23, 5, seed=4))
    assert sorted(fold_ids(3, 5).tolist()) == [0, 1, 2]  # fewer rows than folds

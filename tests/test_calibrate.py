"""Out-of-fold scores of the trainer's folds against scikit-learn, and the fit they feed."""

import numpy as np
from sklearn.linear_model import Ridge

from irde_onnx.decision.policy import fit_affine, fit_temperature
from irde_onnx.learning.calibration import calibration_settings, out_of_fold_scores
from irde_onnx.learning.moments import Moments, fold_ids


def test_out_of_fold_scores_equal_sklearn_per_fold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = x @ rng.normal(size=(6, 3)) + rng.normal(0, 0.1, (200, 3))
    fold = fold_ids(200, 5, 0)
    folds = [Moments.from_rows(x[fold == k], y[fold == k]) for k in range(5)]
    got = out_of_fold_scores(folds, fold, x, lam=0.7)
    for k in range(5):
        held = fold == k
        model = Ridge(alpha=0.7).fit(x[~held], y[~held])
        np.testing.assert_allclose(got[held], model.predict(x[held]), atol=1e-9)


def test_calibration_settings_per_target():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(100, 3))
    onehot = np.eye(3)[pred.argmax(1)]
    assert calibration_settings("domain", pred, onehot, ["a", "b", "c"]) == {
        "temperature": fit_temperature(pred, pred.argmax(1))
    }
    got = calibration_settings("score", pred, pred * 2, ["a", "b", "c"])
    assert got == {"calibration": dict(zip("abc", fit_affine(pred, pred * 2), strict=True))}

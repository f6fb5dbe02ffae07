"""research/: the generalisation study's maths against references, and a smoke run of it.

research/generalisation/views_layers.py set ``irde_onnx/defaults.py``'s values; these keep
it runnable (its full run is by hand, see research/generalisation/README.md).
"""

import importlib
import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from benchmarks import decision_data, routerbench

from .conftest import SHARED_DATA, shared_data_or_fail


@pytest.fixture(scope="module")
def generalisation():
    return importlib.import_module("research.generalisation.views_layers")


@pytest.fixture(scope="module")
def splits():
    return importlib.import_module("benchmarks.splits")


def test_held_out_scores_equal_a_refit_per_group(generalisation, rng):
    """Out-of-group scores at every lam equal sklearn refit without the held-out group."""
    x, y = rng.normal(size=(90, 5)), rng.normal(size=(90, 3))
    fold = np.repeat(np.arange(4), [30, 25, 20, 15])
    grid, pred = generalisation.held_out_scores(x, y, fold)
    for i in (0, 6, 12):
        for f in range(4):
            ref = Ridge(alpha=grid[i]).fit(x[fold != f], y[fold != f])
            np.testing.assert_allclose(pred[i, fold == f], ref.predict(x[fold == f]), atol=1e-8)


def test_grouped_criteria_skip_labels_missing_from_training(generalisation, rng):
    """A held-out group's rows count only if their label occurs in the other groups."""
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    fold = np.array([0] * 10 + [1] * 5 + [2] * 5 + [2] * 10)  # label 0 only in fold 0
    y = np.eye(3)[labels]
    ok = generalisation.evaluable_rows(y, fold, "domain")
    assert ok.tolist() == [False] * 10 + [True] * 10 + [False] * 10
    assert generalisation.evaluable_rows(y, fold, "score").all()
    x = y @ rng.normal(size=(3, 4)) + 0.01 * rng.normal(size=(30, 4))
    crit = generalisation.grouped_criteria(x, y, fold, "domain")
    assert crit["evaluable"] == pytest.approx(1 / 3)
    assert crit["quality"] == 1.0 and crit["regret"] == 0.0
    none = generalisation.grouped_criteria(x, y, np.repeat([0, 1, 2], 10), "domain")
    assert none["error"] is None and none["quality"] is None


def _sklearn_calibrated(xa, ya, xb, lam):
    """Reference of the trainer's score head: sklearn ridge, then per-LLM least-squares
    scale and offset fit on out-of-fold predictions of the training rows."""
    from irde_onnx.learning.moments import fold_ids

    fold = fold_ids(len(xa), 5, 0)
    held = np.zeros(ya.shape)
    for f in range(5):
        ref = Ridge(alpha=lam).fit(xa[fold != f], ya[fold != f])
        held[fold == f] = ref.predict(xa[fold == f])
    pred = Ridge(alpha=lam).fit(xa, ya).predict(xb)
    for k in range(ya.shape[1]):
        scale, offset = np.polyfit(held[:, k], ya[:, k], 1)
        pred[:, k] = pred[:, k] * scale + offset
    return pred


def test_cost_aware_aiq_equals_a_reference(generalisation, rng):
    """RouterBench AIQ of a variant: lam by brute-force 5-fold refits, the head and its
    calibration by sklearn and np.polyfit, the curve by decision_metrics.cost_curve."""
    from irde_onnx.evaluation.decisions import cost_curve, wtp_grid
    from irde_onnx.learning.moments import Moments, fold_ids, lam_grid

    n, nt, d, e = 80, 50, 6, 3

    def rows(m, tag):
        x = rng.normal(size=(m, d))
        logits = x @ np.array(
            [
                [1.0, -0.5, 0.2],
                [0.3, 1.0, -1.0],
                [0.0, 0.4, 0.8],
                [-0.6, 0.1, 0.5],
                [0.2, 0.2, 0.2],
                [0.5, -0.3, 0.0],
            ]
        )
        y = (logits + 0.5 * rng.normal(size=(m, e)) > 0).astype(float)
        cost = np.array([0.1, 1.0, 5.0]) * rng.uniform(0.5, 1.5, size=(m, e))
        return x, decision_data.CostRows(
            [f"{tag}{i}" for i in range(m)], [""] * m, ["t"] * m, y, cost, ["a", "b", "c"]
        )

    x, train = rows(n, "tr")
    xt, test = rows(nt, "te")
    got = generalisation.cost_aware_aiq(x, train, xt, test)

    fold = fold_ids(n, 5, 0)
    errors = []
    for lam in lam_grid(Moments.from_rows(x, train.y)):
        err = sum(
            (
                (
                    Ridge(alpha=lam).fit(x[fold != f], train.y[fold != f]).predict(x[fold == f])
                    - train.y[fold == f]
                )
                ** 2
            ).sum()
            for f in range(5)
        )
        errors.append((err, lam))
    lam = min(errors)[1]
    assert got["lam"] == pytest.approx(lam, rel=1e-12)

    costs = train.cost.mean(axis=0)
    grid = wtp_grid(costs, routerbench.N_WTP)
    pred = _sklearn_calibrated(x, train.y, xt, lam)
    want = cost_curve(pred, "score", test.y, test.cost, costs, grid=grid)["aiq"]
    held = np.zeros(train.y.shape)
    for f in range(5):
        a, b = fold != f, fold == f
        held[b] = _sklearn_calibrated(x[a], train.y[a], x[b], lam)
    want_cv = cost_curve(held, "score", train.y, train.cost, costs, grid=grid)["aiq"]
    assert got["aiq"] == pytest.approx(want, abs=1e-9)
    assert got["cv_aiq"] == pytest.approx(want_cv, abs=1e-9)
    assert 0.0 < got["cv_aiq"] < 1.0 and 0.0 < got["aiq"] < 1.0


def test_limit_cost_rows_keeps_the_first_rows_of_each_task(generalisation, splits):
    """--limit keeps the first N rows of each task in id-hash order, in file order."""
    ids = [f"r{i}" for i in range(10)]
    tasks = ["a", "b"] * 5
    y = np.arange(20.0).reshape(10, 2)
    rows = decision_data.CostRows(ids, ids, tasks, y, -y, ["m", "n"])
    kept = generalisation.limit_cost_rows(rows, 2)
    by_hash = sorted(range(10), key=lambda i: splits.id_hash(ids[i]))
    want = sorted(
        [i for i in by_hash if tasks[i] == "a"][:2] + [i for i in by_hash if tasks[i] == "b"][:2]
    )
    assert kept.ids == [ids[i] for i in want] and kept.texts == kept.ids
    np.testing.assert_array_equal(kept.y, y[want])
    np.testing.assert_array_equal(kept.cost, -y[want])
    assert generalisation.limit_cost_rows(rows, None) is rows


@pytest.mark.slow
def test_views_layers_smoke(generalisation, tmp_path, minilm_trainer):
    """Every view x layers variant on every protocol, the criterion beside the test numbers.

    Uses the session's MiniLM export (``minilm_trainer``), so MiniLM is exported once.
    """
    shared_data_or_fail("domains")
    md = tmp_path / "B.md"
    code = generalisation.main(
        [
            "--data",
            str(SHARED_DATA),
            "--limit",
            "2",
            "--results",
            str(tmp_path / "generalisation.json"),
            "--markdown",
            str(md),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    text = md.read_text()
    assert "<!-- begin generalisation -->" in text and "**Default (rule" in text
    for view in ("`full`", "`strip_options`", "`tail`", "`strip_options+tail`"):
        assert view in text, view
    assert "What each selection rule picks" in text and "in_source/benchmark" in text
    assert list((tmp_path / "cache").glob("text-features-*-domains.npz"))
    assert "RouterBench AIQ (train CV)" in text and "routerbench train-CV AIQ" in text
    assert list((tmp_path / "cache").glob("text-features-*-routerbench.npz"))
    result = json.loads((tmp_path / "generalisation.json").read_text())
    assert all(
        0 < v["test"]["routerbench_aiq"] < 1 and 0 < v["routerbench_cv_aiq"] < 1
        for v in result["variants"]
    )

"""Smoke tests of benchmarks/quality.py and benchmarks/speed.py on a few dozen real rows.

The full benchmarks are run by hand (see README); these keep their code paths working.
"""

import importlib
import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from .conftest import SHARED_DATA, shared_data_or_fail


def _load(name):
    """A module of the benchmarks package (pyproject's pytest ``pythonpath`` finds it)."""
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture(scope="module")
def quality():
    return _load("quality")


@pytest.fixture(scope="module")
def heads():
    return _load("heads")


@pytest.fixture(scope="module")
def splits():
    return _load("splits")


@pytest.fixture(scope="module")
def speed():
    return _load("speed")


@pytest.fixture(scope="module")
def generalisation():
    return _load("generalisation")


def test_ridge_fit_equals_sklearn(heads, rng):
    x, y = rng.normal(size=(80, 6)), rng.normal(size=(80, 3))
    coef, bias, lam = heads.ridge_fit(x, y, 2.5)
    ref = Ridge(alpha=2.5).fit(x, y)
    np.testing.assert_allclose(coef, ref.coef_.T, atol=1e-8)
    np.testing.assert_allclose(bias, ref.intercept_, atol=1e-8)
    w = rng.uniform(0.5, 2.0, 80)
    coef, bias, _ = heads.ridge_fit(x, y, 2.5, weights=w)
    ref = Ridge(alpha=2.5).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(coef, ref.coef_.T, atol=1e-8)
    np.testing.assert_allclose(bias, ref.intercept_, atol=1e-8)


def test_cv_ridge_matches_solving_each_fold(heads, rng):
    x, y = rng.normal(size=(60, 5)), rng.random((60, 3))
    tasks = np.array(["a", "b", "c"] * 20)
    grid = [0.1, 3.0]
    got = heads.cv_ridge(x, y, tasks, heads.TARGET_MAKERS["raw scores"], grid, False)
    fold = heads.folds_of(len(x))
    for lam in grid:
        pred = np.zeros_like(y)
        for k in range(heads.FOLDS):
            a, b = fold != k, fold == k
            pred[b] = Ridge(alpha=lam).fit(x[a], y[a]).predict(x[b])
        assert got[lam] == pytest.approx(heads.routing_utility(pred, y, tasks))


def test_task_targets(heads):
    y = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    tasks = np.array(["t", "t", "u", "u"])
    np.testing.assert_allclose(
        heads.task_mean_targets(y, tasks), [[0.5, 0], [0.5, 0], [0, 1], [0, 1]]
    )
    np.testing.assert_allclose(heads.task_best_targets(y, tasks), [[1, 0], [1, 0], [0, 1], [0, 1]])
    assert heads.routing_utility(
        np.array([[1, 0], [0, 1], [0, 1], [1, 0]]), y, tasks
    ) == pytest.approx((0.5 + 0.5) / 2)


@pytest.mark.slow
def test_domain_splits_are_deterministic_and_disjoint(splits):
    data = splits.load_domains(shared_data_or_fail("domains"), limit=6)
    test = splits.in_source_split(data)
    assert 0 < test.sum() < len(test)
    np.testing.assert_array_equal(test, splits.in_source_split(data))
    cross, unseen, train_source = splits.cross_source_split(data)
    sources = np.array(data.sources)
    labels = np.array(data.labels)
    for domain, source in train_source.items():
        rows = labels == domain
        assert not cross[rows & (sources == source)].any()  # trained source never tested
        assert cross[rows & (sources != source)].all()
    assert set(train_source) == {"chinese", "code", "law", "logic", "math", "medicine"}
    assert (unseen <= cross).all()


@pytest.mark.slow
def test_quality_routerdc_smoke(quality, tmp_path):
    shared_data_or_fail("routerdc7", "train.jsonl")
    md = tmp_path / "B.md"
    code = quality.main(
        [
            "--data",
            str(SHARED_DATA),
            "--part",
            "routerdc",
            "--limit",
            "4",
            "--encoders",
            "static-fp16",
            "--baseline-features",
            "static-mean",
            "--static-strategies",
            "mean",
            "--results",
            str(tmp_path),
            "--markdown",
            str(md),
        ]
    )
    assert code == 0
    text = md.read_text()
    assert "<!-- begin quality -->" in text and "### RouterDC protocol" in text
    for row in (
        "irde static-fp16",
        "kNN (cosine",
        "logistic regression per LLM",
        "MLP regressor",
        "random router (expected)",
        "best single LLM chosen on train",
        "RouterDC, published",
        "selected by train CV",
        "irde static, strategy mean",
    ):
        assert row in text, row
    assert (tmp_path / "quality_routerdc_means.png").stat().st_size > 10_000
    assert (tmp_path / "quality.json").is_file()


@pytest.mark.slow
def test_quality_domains_smoke(quality, tmp_path):
    shared_data_or_fail("domains")
    md = tmp_path / "B.md"
    code = quality.main(
        [
            "--data",
            str(SHARED_DATA),
            "--part",
            "domains",
            "--limit",
            "4",
            "--encoders",
            "static-fp16",
            "--baseline-features",
            "static-mean",
            "--static-strategies",
            "entropy_top_k",
            "--results",
            str(tmp_path),
            "--markdown",
            str(md),
        ]
    )
    assert code == 0
    text = md.read_text()
    assert "irde static, strategy entropy_top_k" in text
    assert "### Domain routing" in text and "cross-source accuracy" in text
    assert "kNN (cosine" in text and "balanced domains" in text
    assert (tmp_path / "quality_domains.png").stat().st_size > 10_000


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

    decision_data, routerbench = _load("decision_data"), _load("routerbench")
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
    decision_data = _load("decision_data")
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
def test_quality_generalisation_smoke(quality, tmp_path, minilm_trainer):
    """Every view x layers variant on every protocol, the criterion beside the test numbers.

    Uses the session's MiniLM export (``minilm_trainer``), so MiniLM is exported once.
    """
    shared_data_or_fail("domains")
    md = tmp_path / "B.md"
    code = quality.main(
        [
            "--data",
            str(SHARED_DATA),
            "--part",
            "generalisation",
            "--limit",
            "2",
            "--results",
            str(tmp_path),
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


def test_exact_length_prompts(speed):
    from tokenizers import Tokenizer

    from irde_onnx.export.minilm import minilm_tokenizer_file

    texts = [
        "short one.",
        "A longer prompt about the integral of sin(x) from 0 to pi.",
        "合同的效力如何认定？",
    ] * 5
    tok = Tokenizer.from_file(str(minilm_tokenizer_file()))
    tok.no_truncation()
    tok.no_padding()
    for length in (16, 64):
        got = speed.exact_length_prompts(texts, minilm_tokenizer_file(), length, 3)
        assert [len(tok.encode(t).ids) for t in got] == [length] * 3


@pytest.mark.slow
def test_speed_smoke(speed, tmp_path):
    shared_data_or_fail("routerdc7", "test_id.jsonl")
    md = tmp_path / "B.md"
    code = speed.main(
        [
            "--data",
            str(SHARED_DATA),
            "--engines",
            "static",
            "--threads",
            "1",
            "--n",
            "12",
            "--n-batch",
            "64",
            "--train",
            "30",
            "--no-venv",
            "--results",
            str(tmp_path),
            "--markdown",
            str(md),
        ]
    )
    assert code == 0
    text = md.read_text()
    assert "<!-- begin speed -->" in text and "| static | 1 |" in text
    assert (tmp_path / "speed.png").stat().st_size > 10_000
    import json

    result = json.loads((tmp_path / "speed.json").read_text())["results"][0]
    assert result["heavy_modules_imported"] == []  # the router worker never imports torch
    assert set(result["latency_ms"]) == {"16", "64", "128", "256"}

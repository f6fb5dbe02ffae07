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

    result = json.loads((tmp_path / "speed.json").read_text())["results"][0]
    assert result["heavy_modules_imported"] == []  # the router worker never imports torch
    assert set(result["latency_ms"]) == {"16", "64", "128", "256"}

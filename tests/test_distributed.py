"""Statistics on Ray (a local instance with 2 CPUs) equal the single-process ones: to 1e-9
for the statistics and 1e-6 for the head, for `irde train` and `irde experts add`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

# ray[data] is in the dev extra: a missing one is a broken install, not a skip
import ray
import ray.data  # noqa: F401

from irde_onnx.cli import main
from irde_onnx.learning.moments import fold_ids
from irde_onnx.learning.partial import PartialStats, StatsPlan, rows_statistics
from irde_onnx.learning.statistics import RouterStats
from irde_onnx.runtime import Router, RouterEditor

from .conftest import DEMO
from .serve_helpers import CHEMISTRY  # noqa: E402

STATS_TOL = 1e-9
HEAD_TOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance with 2 CPUs for the whole module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def assert_moments_close(a, b):
    assert a.n == pytest.approx(b.n, abs=STATS_TOL)
    for name in ("sum_x", "gram", "sum_xy", "sum_y", "sum_yy"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=STATS_TOL)


def assert_stats_close(a: RouterStats, b: RouterStats):
    assert (a.experts, a.modes, a.fingerprint) == (b.experts, b.modes, b.fingerprint)
    assert_moments_close(a.shared, b.shared)
    for x, y in zip(a.owned, b.owned, strict=True):
        assert_moments_close(x, y)
    for name in ("sum_xy", "sum_y", "sum_yy"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=STATS_TOL)


def test_training_statistics_on_ray_equal_one_process(minilm_router_dir, demo_train):
    from irde_onnx.engines.ray import ray_statistics

    router = Router.load(minilm_router_dir)
    texts, labels = demo_train
    names = sorted(set(labels))
    y = np.zeros((len(texts), len(names)))
    y[np.arange(len(texts)), [names.index(x) for x in labels]] = 1.0
    fold = fold_ids(len(texts), 5)
    plan = StatsPlan.for_router(router, "domain", len(names), 5)
    local = PartialStats.zeros(plan)
    for start in range(0, len(texts), 64):  # chunks, as the trainer streams them
        part = slice(start, start + 64)
        local = local + rows_statistics(router, plan, texts[part], y[part], fold[part])
    remote = ray_statistics(router.path, plan, texts, y, fold, workers=2)
    stats_local, folds_local = local.router_stats(names)
    stats_ray, folds_ray = remote.router_stats(names)
    assert_stats_close(stats_ray, stats_local)
    for a, b in zip(folds_ray, folds_local, strict=True):
        assert_moments_close(a, b)
    for lam in (0.1, 1.0):
        for x, z in zip(stats_ray.solve(lam), stats_local.solve(lam), strict=True):
            np.testing.assert_allclose(x, z, rtol=0, atol=HEAD_TOL)


def test_irde_train_engine_ray_equals_local(static_trainer, static_router_dir, tmp_path):
    out = tmp_path / "router-ray"
    code = main(
        [
            "train",
            "--data",
            str(DEMO / "train.jsonl"),
            "--encoder",
            "static",
            "--lam",
            "1.0",
            "--engine",
            "ray",
            "--workers",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert_stats_close(RouterStats.load(out / "stats.npz"), static_trainer.stats_)
    for a, b in zip(Router.load(out).head, Router.load(static_router_dir).head, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=HEAD_TOL)


def test_irde_experts_add_engine_ray_equals_local(minilm_router_dir, tmp_path):
    data = tmp_path / "chemistry.jsonl"
    data.write_text("".join(f'{{"text": "{t}"}}\n' for t in CHEMISTRY))
    local_dir = shutil.copytree(minilm_router_dir, tmp_path / "local")
    ray_dir = shutil.copytree(minilm_router_dir, tmp_path / "ray")
    local = RouterEditor.open(local_dir)
    local.add_expert("chemistry", CHEMISTRY)
    assert (
        main(
            [
                "experts",
                "add",
                str(ray_dir),
                "chemistry",
                "--data",
                str(data),
                "--engine",
                "ray",
                "--workers",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    remote = Router.load(ray_dir)
    assert remote.experts == local.experts
    assert_stats_close(remote.stats, local.stats)
    for a, b in zip(remote.head, local.head, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=HEAD_TOL)


def test_ray_add_expert_checks_before_starting_ray(static_router_dir):
    from irde_onnx.engines.ray import ray_add_expert
    from irde_onnx.errors import InvalidInputError

    router = RouterEditor.open(static_router_dir)
    scores = np.linspace(0.1, 0.9, len(CHEMISTRY))
    for name, texts, kw, words in [
        ("law", CHEMISTRY, {}, "already exists"),
        ("", CHEMISTRY, {}, "non-empty"),
        ("chem", [], {}, "no texts"),
        ("chem", CHEMISTRY, {"scores": scores[:2]}, "one score per text"),
        ("chem", CHEMISTRY, {"scores": [np.nan] * len(CHEMISTRY)}, "finite"),
    ]:
        with pytest.raises(InvalidInputError, match=words):
            ray_add_expert(router, name, texts, **kw)
    assert router.experts == Router.load(static_router_dir).experts

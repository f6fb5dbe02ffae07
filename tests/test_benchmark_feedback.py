"""Smoke and reference tests of benchmarks/feedback.py on tiny synthetic features (offline).

The full run reads the feature cache of the product's default router (by hand, minutes);
here a fake cache of 16-d features and a fake data folder stand in for it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import feedback as bench
from benchmarks.streams import (
    FeatureCache,
    LamRule,
    Learner,
    dataset_rows,
    relative_lam,
    trace_scale,
)
from irde_onnx.learning.moments import Moments
from irde_onnx.learning.uncertainty import subspace_width

from .test_benchmark_figures import section, tables

D = 16
EXPERTS = ["a", "b", "c"]
FINGERPRINT = "fake-fingerprint"


def feature(row_id: str) -> np.ndarray:
    seed = int(hashlib.sha256(row_id.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=D)


def scored_rows(prefix: str, n: int, costs: bool = False) -> list[dict]:
    v = np.random.default_rng(7).normal(size=(D, len(EXPERTS)))
    rows = []
    for i in range(n):
        rid = f"{prefix}.{i}"
        s = 1.0 / (1.0 + np.exp(-feature(rid) @ v))
        row = {"id": rid, "text": f"prompt {rid}", "task": f"t{i % 3}"}
        row["scores"] = {e: float(round(s[k])) for k, e in enumerate(EXPERTS)}
        if costs:
            row["costs"] = {e: 1e-4 * (k + 1) for k, e in enumerate(EXPERTS)}
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def fake(tmp_path) -> tuple[Path, Path]:
    """A data folder (routerdc7, routerbench) and a feature cache for it."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_jsonl(data / "routerdc7" / "train.jsonl", scored_rows("tr", 160))
    write_jsonl(data / "routerdc7" / "test_ood.jsonl", scored_rows("ood", 90))
    write_jsonl(data / "routerdc7" / "test_id.jsonl", scored_rows("id", 90))
    write_jsonl(data / "routerbench" / "train.jsonl", scored_rows("rbtr", 160, costs=True))
    write_jsonl(data / "routerbench" / "test.jsonl", scored_rows("rbte", 40, costs=True))
    folder = cache / "router-default"
    folder.mkdir(parents=True)
    (folder / "fingerprint.txt").write_text(FINGERPRINT)
    (folder / "router.json").write_text(
        json.dumps(
            {"encoder": "fake", "precision": "fp32", "feature_dim": D, "fingerprint": FINGERPRINT}
        )
    )
    fc = FeatureCache(cache, data)
    for part in (
        "routerdc7-train",
        "routerdc7-test_ood",
        bench.TEST_ID,
        "routerbench-train",
        "routerbench-test",
    ):
        rows = dataset_rows(data, part)
        ids = np.array([r["id"] for r in rows], dtype=np.str_)
        np.savez(
            fc.path(part), x=np.stack([feature(r["id"]) for r in rows]).astype(np.float32), ids=ids
        )
    return data, cache


def ridge(x, y, w, lam):
    """Fresh weighted ridge with an unpenalised intercept (the reference)."""
    n = w.sum()
    mx, my = w @ x / n, w @ y / n
    xc, yc = x - mx, y - my
    coef = np.linalg.solve(
        (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1]), (xc * w[:, None]).T @ yc
    )
    return coef, my - mx @ coef


def test_learner_fold_equals_fresh_weighted_ridge_per_column():
    rng = np.random.default_rng(0)
    x0, y0 = rng.normal(size=(40, D)), rng.uniform(size=(40, 3))
    lr = Learner.scored(x0, y0, EXPERTS)
    xf = rng.normal(size=(30, D))
    pick, out = rng.integers(0, 3, 30), rng.uniform(size=30)
    rows = [
        {"text": f"p{i}", "expert": EXPERTS[k], "outcome": float(o)}
        for i, (k, o) in enumerate(zip(pick, out, strict=True))
    ]
    lr.feed(xf, rows, 10.0)
    lam0 = 2.0
    kappa = lam0 / trace_scale(Moments.from_rows(x0, y0))
    for rule in (LamRule("fixed", lam0), LamRule("relative", lam0, kappa)):
        lr.solve(rule)
        for k in range(3):
            r = pick == k
            x = np.vstack([x0, xf[r]])
            y = np.concatenate([y0[:, k], out[r]])[:, None]
            w = np.concatenate([np.ones(40), np.full(int(r.sum()), 10.0)])
            lam = lam0
            if rule.kind == "relative":
                xc = x - w @ x / w.sum()
                lam = max(lam0, kappa * np.einsum("i,ij,ij->", w, xc, xc) / D)
            coef, b = ridge(x, y, w, lam)
            np.testing.assert_allclose(lr.w[:, k], coef[:, 0], atol=1e-9)
            np.testing.assert_allclose(lr.b[k], b[0], atol=1e-9)


def test_relative_lam_grows_with_rows_and_keeps_its_floor():
    rng = np.random.default_rng(1)
    few, many = (
        Moments.from_rows(rng.normal(size=(5, D)), np.zeros((5, 0))),
        Moments.from_rows(rng.normal(size=(500, D)), np.zeros((500, 0))),
    )
    assert relative_lam(few, 0.01, 3.0) == 3.0
    assert (
        relative_lam(many, 1.0, 3.0) == pytest.approx(trace_scale(many)) and trace_scale(many) > 3.0
    )


def test_cold_learner_predicts_the_prior_until_a_column_gets_rows():
    lr = Learner.cold(D, EXPERTS, 0.5)
    lr.solve(LamRule("relative", 1.7, 3.16))
    np.testing.assert_allclose(lr.scores(np.ones((2, D))), 0.5)
    lr.feed(np.ones((1, D)), [{"text": "p", "expert": "b", "outcome": 1.0}], 10.0)
    lr.solve(LamRule("relative", 1.7, 3.16))
    s = lr.scores(np.ones((1, D)))[0]
    assert s[0] == s[2] == 0.5 and s[1] == pytest.approx(1.0)


def test_stream_is_seeded_and_bounded_by_the_oracle():
    rng = np.random.default_rng(2)
    x0, y0 = rng.normal(size=(30, D)), rng.uniform(size=(30, 3))
    xs, ys = rng.normal(size=(50, D)), rng.uniform(size=(50, 3))
    texts = [f"p{i}" for i in range(50)]
    kw = dict(rule=LamRule("fixed", 1.0), weight=10.0, batch=8, seed=3)
    a = bench.run_stream(Learner.scored(x0, y0, EXPERTS), xs, ys, texts, policy="eps:0.3", **kw)
    b = bench.run_stream(Learner.scored(x0, y0, EXPERTS), xs, ys, texts, policy="eps:0.3", **kw)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50,) and (a <= ys.max(1)).all()
    # the bonus policy adds alpha * the product's widths: alpha 0 is greedy, bit for bit
    greedy = bench.run_stream(Learner.scored(x0, y0, EXPERTS), xs, ys, texts, policy="greedy", **kw)
    zero = bench.run_stream(Learner.scored(x0, y0, EXPERTS), xs, ys, texts, policy="bonus:0", **kw)
    np.testing.assert_array_equal(greedy, zero)
    lr = Learner.scored(x0, y0, EXPERTS)
    lr.solve(kw["rule"])
    want = lr.scores(xs) + 0.5 * subspace_width(lr.stats, np.full(len(EXPERTS), 1.0)).width(xs)
    np.testing.assert_allclose(bench.bonus_hook(lr.scores(xs), xs, lr, 0.5), want, atol=1e-12)


def test_cache_refuses_rows_it_was_not_made_for(fake):
    data, cache = fake
    write_jsonl(data / "routerdc7" / "test_ood.jsonl", scored_rows("other", 90))
    with pytest.raises(SystemExit, match="delete it"):
        FeatureCache(cache, data).features("routerdc7-test_ood")


def test_benchmark_runs_on_a_fake_cache_and_reports(fake, capsys):
    data, cache = fake
    argv = ["--data", str(data), "--cache", str(cache), "--seeds", "2", "--no-write"]
    assert bench.main([*argv, "--parts", "dc-id", "dc-ood", "routerbench"]) == 0
    out = capsys.readouterr().out
    assert "### Targets (measured figure first)" in out
    for title in ("from 100 labelled rows", "test_ood", "RouterBench with costs"):
        assert title in out
    row = next(
        line for line in out.splitlines() if line.startswith("| greedy, weight 10, lam fixed |")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 6 and cells[1][0].isdigit()


def test_memory_part_reports_rss_at_each_mark():
    res = bench.part_memory(2000, batch=1000, d=D)
    assert set(res["rss_mib"]) == {"0", "1000", "2000"}  # marks between batches are skipped
    assert all(v > 0 for v in res["rss_mib"].values()) and res["fold_ms_per_row"] > 0


def test_committed_section_is_what_the_committed_results_render_to():
    """BENCHMARKS.md's feedback tables are what benchmarks/results/feedback.json renders to."""
    data = json.loads(bench.RESULTS_JSON.read_text(encoding="utf-8"))
    committed = tables(section("feedback"))
    assert committed, "the feedback section has no table"
    assert committed == tables(bench.render(data, "", ""))

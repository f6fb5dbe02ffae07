"""The graph's ``uncertainty`` output against a numpy reference computed from the rows.

The reference is written here from the issue's definition, on the prompts' features (not
from the statistics): basis = top-32 eigenvectors of the weighted covariance of every row the
columns are fit on, z = [P^T (f - mu), 1], A_e = sum w z z^T over the column's rows + lam I,
width = sqrt(z^T A_e^-1 z). The graph (float32) must equal it to 1e-5 after training, after
adding and removing experts and after feedback.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.graph.build import remove_uncertainty
from irde_onnx.graph.rules import ALLOWED_OPS, graph_problem, summarize_graph
from irde_onnx.learning.uncertainty import (
    UNCERTAINTY_OUTPUT,
    UNCERTAINTY_RANK,
    uncertainty_floats,
)
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.folder import write_generation

ATOL = 1e-5
PROBES = [
    "Solve the integral of x squared from 0 to 3.",
    "Is a verbal contract enforceable in court?",
    "Fix the off-by-one bug in my Python loop.",
    "What dose of ibuprofen is safe for a child?",
    "",
    "quantum chromodynamics of gluon plasma",
]


def column_lam(xg, wg, lam, kappa):
    """The relative rule from rows: max(lam, kappa * centred weighted scatter per feature)."""
    if kappa is None:
        return lam
    xg = xg.astype(np.float64)
    mean = wg @ xg / wg.sum()
    scatter = float(((xg - mean) ** 2 * wg[:, None]).sum()) / xg.shape[1]
    return max(lam, kappa * scatter)


def reference(groups, lam, probes_f, n_experts, k=UNCERTAINTY_RANK, kappa=None):
    """Widths (n, E) from rows: ``groups`` = [(columns, X (n, d), weights (n,))]; each
    column's lam by the relative rule (``kappa``) as the head's solve uses it."""
    x = np.vstack([g[1] for g in groups]).astype(np.float64)
    w = np.concatenate([g[2] for g in groups])
    mu = w @ x / w.sum()
    c = (x - mu).T @ ((x - mu) * w[:, None])
    vals, vecs = np.linalg.eigh(c)
    p = vecs[:, np.argsort(vals)[::-1][:k]]
    zq = np.hstack([(probes_f.astype(np.float64) - mu) @ p, np.ones((len(probes_f), 1))])
    out = np.full((len(probes_f), n_experts), np.nan)
    for cols, xg, wg in groups:
        z = np.hstack([(xg.astype(np.float64) - mu) @ p, np.ones((len(xg), 1))])
        a = (z * wg[:, None]).T @ z + column_lam(xg, wg, lam, kappa) * np.eye(k + 1)
        width = np.sqrt(np.einsum("ij,ij->i", zq, np.linalg.solve(a, zq.T).T))
        for col in cols:
            out[:, col] = width
    return out


def assert_matches(router, groups):
    got = router.uncertainty(PROBES)
    want = reference(
        groups,
        router.config.lam,
        router.features(PROBES),
        len(router.experts),
        kappa=router.stats.kappa,
    )
    assert got.dtype == np.float32 and got.shape == (len(PROBES), len(router.experts))
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    return got


@pytest.fixture(scope="module")
def tiny(demo_train):
    return RouterTrainer(encoder="tiny", progress=False).fit(*demo_train)


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    return tiny.save(tmp_path_factory.mktemp("tiny-unc") / "router")


def training_group(router, demo_train, drop=()):
    texts, labels = demo_train
    keep = [t for t, lab in zip(texts, labels, strict=True) if lab not in drop]
    experts = [e for e in router.experts if e not in drop]
    return list(range(len(experts))), router.features(keep), np.ones(len(keep))


def test_after_training_the_output_equals_the_reference(tiny, demo_train):
    router = tiny.router_
    assert router.has_uncertainty
    got = assert_matches(router, [training_group(router, demo_train)])
    # a domain router's columns share their rows: one width per prompt, in every column
    assert np.allclose(got, got[:, :1])
    assert (got > 0).all()


def test_saved_and_loaded_the_output_is_the_same(tiny, tiny_dir):
    loaded = Router.load(tiny_dir)
    assert loaded.has_uncertainty
    np.testing.assert_array_equal(loaded.uncertainty(PROBES), tiny.router_.uncertainty(PROBES))


def test_one_run_gives_scores_and_uncertainty(tiny_dir):
    router = Router.load(tiny_dir)
    scores, unc = router.scores(PROBES, with_uncertainty=True)
    np.testing.assert_array_equal(scores, router.scores(PROBES))
    np.testing.assert_array_equal(unc, router.uncertainty(PROBES))
    np.testing.assert_array_equal(
        router.uncertainty(PROBES, batch_size=2), router.uncertainty(PROBES, batch_size=8)
    )
    empty_s, empty_u = router.scores([], with_uncertainty=True)
    assert empty_s.shape == empty_u.shape == (0, len(router.experts))
    assert router.uncertainty([]).shape == (0, len(router.experts))


def test_after_add_and_remove_the_output_equals_the_reference(tiny_dir, demo_train, tmp_path):
    editor = RouterEditor.open(tiny_dir)
    base = editor.router
    texts, labels = demo_train
    # a domain expert: its rows join the pooled rows
    extra = ["gravitational lensing of a galaxy cluster", "neutron star radius", "white dwarf"]
    editor.add_expert("astro", extra)
    cols, x, w = training_group(base, demo_train)
    pooled = (list(range(len(editor.experts))), np.vstack([x, base.features(extra)]))
    assert_matches(editor.router, [(*pooled, np.ones(len(pooled[1])))])
    # an expert added with scores: its column is fit on its own rows alone
    scored = ["sum of two primes", "court of appeal ruling", "python list sort", "heart dose"]
    editor.add_expert("judge", scored, [0.2, 0.9, 0.1, 0.4], gate=False)  # routes at once
    k = editor.experts.index("judge")
    own = ([k], base.features(scored), np.ones(len(scored)))
    assert_matches(editor.router, [(pooled[0][:k], pooled[1], np.ones(len(pooled[1]))), own])
    # removing a domain expert removes its rows
    gone = labels[0]
    editor.remove_expert(gone)
    keep = [t for t, lab in zip(texts, labels, strict=True) if lab != gone] + extra
    k = editor.experts.index("judge")
    groups = [([j for j in range(len(editor.experts)) if j != k], base.features(keep))]
    groups = [(*groups[0], np.ones(len(keep))), ([k], own[1], own[2])]
    assert_matches(editor.router, groups)
    # the saved router reads the same
    saved = Router.load(editor.save(tmp_path / "changed"))
    np.testing.assert_array_equal(saved.uncertainty(PROBES), editor.router.uncertainty(PROBES))


def test_after_feedback_the_output_equals_the_reference(tiny_dir, demo_train, tmp_path):
    editor = RouterEditor.open(tiny_dir)
    base = editor.router
    before = base.uncertainty(PROBES)
    rows = [{"text": PROBES[0], "expert": base.experts[0]}, {"text": PROBES[1], "expert": "law"}]
    rows = [r for r in rows if r["expert"] in base.experts]
    editor.add_feedback(rows, traffic_weight=10)
    cols, x, w = training_group(base, demo_train)
    fb = base.features([r["text"] for r in rows])
    got = assert_matches(
        editor.router, [(cols, np.vstack([x, fb]), np.concatenate([w, np.full(len(fb), 10.0)]))]
    )
    # the prompts fed back are now known: their width shrinks
    assert (got[0] < before[0]).all()


def test_a_policy_change_keeps_the_factors_and_a_rebuild_is_a_pure_function(tiny_dir):
    editor = RouterEditor.open(tiny_dir)
    width = editor.uncertainty_width()
    editor.set_policy(min_confidence=0.0)
    assert editor.uncertainty_width() is width
    np.testing.assert_array_equal(
        editor.uncertainty(PROBES), Router.load(tiny_dir).uncertainty(PROBES)
    )


def test_graph_rules_allow_the_output_and_bound_its_bytes(tiny_dir):
    router = Router.load(tiny_dir)
    cfg = router.config
    summary = summarize_graph(router.graph)
    assert {op for _, op in summary.ops} <= ALLOWED_OPS["tiny"]
    vocab = router.tokenizer.vocab_size
    assert graph_problem(router.graph, "tiny", cfg.feature_dim, len(cfg.experts), vocab) is None
    model = onnx.ModelProto.FromString(router.graph)
    declared = sum(
        np.prod(t.dims) * 4 for t in model.graph.initializer if t.name.startswith("uncertainty.")
    )
    assert declared == 4 * uncertainty_floats(cfg.feature_dim, len(cfg.experts))


def _without_output(source, target):
    """A copy of a router as saved before the uncertainty output (the graph without it)."""
    shutil.copytree(source, target)
    router = Router.load(target)
    model = onnx.ModelProto.FromString(router.graph)
    remove_uncertainty(model)
    assert UNCERTAINTY_OUTPUT not in [o.name for o in model.graph.output]
    stats = (target / router.config.stats_file).read_bytes()
    write_generation(target, model.SerializeToString(), stats, router.config)
    return target


def test_a_router_saved_before_routes_and_names_the_fix(tiny_dir, tmp_path):
    old = _without_output(tiny_dir, tmp_path / "old")
    router = Router.load(old)
    assert not router.has_uncertainty
    assert router.route(PROBES)[0].expert in router.experts
    with pytest.raises(InvalidInputError, match=r"saved before the uncertainty output.*save\(\)"):
        router.uncertainty(PROBES)
    with pytest.raises(InvalidInputError, match="saved before"):
        router.scores(PROBES, with_uncertainty=True)
    # the fix the message names: save it again
    RouterEditor.open(old).save()
    again = Router.load(old)
    assert again.has_uncertainty
    np.testing.assert_allclose(
        again.uncertainty(PROBES), Router.load(tiny_dir).uncertainty(PROBES), atol=ATOL
    )


def test_static_routers_have_no_uncertainty(toy_router_dir):
    router = Router.load(toy_router_dir)
    assert not router.has_uncertainty
    with pytest.raises(InvalidInputError, match="static router has no uncertainty"):
        router.uncertainty(["the law"])


def test_minilm_int8_output_equals_the_statistics_reference(minilm_router_dir):
    editor = RouterEditor.open(minilm_router_dir)
    router = editor.router
    assert router.has_uncertainty
    want = editor.uncertainty_width().width(router.features(PROBES))
    np.testing.assert_allclose(router.uncertainty(PROBES), want, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_the_cost_benchmark_runs(capsys):
    from benchmarks import uncertainty_cost

    from .conftest import shared_data_or_fail

    data = shared_data_or_fail("routerdc7").parent
    args = ["--data", str(data), "--routers", "tiny", "--train-rows", "60", "--prompts", "4"]
    assert uncertainty_cost.main([*args, "--rounds", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "| tiny | 16 |" in out and "| tiny | 64 |" in out and "| tiny | 7 | 256 | 32 |" in out


def test_route_with_uncertainty_and_the_bonus_on_a_real_router(tiny_dir):
    from irde_onnx.decision.explore import utility
    from irde_onnx.runtime import LiveRouter

    router = Router.load(tiny_dir)
    routes = router.route(PROBES, with_uncertainty=True)
    widths = router.uncertainty(PROBES)
    got = np.array([[r.uncertainty[e] for e in router.experts] for r in routes], np.float32)
    np.testing.assert_array_equal(got, widths)  # one session run gives the same widths
    assert [r.expert for r in routes] == [r.expert for r in router.route(PROBES)]
    assert (
        "uncertainty" in routes[0].to_dict()
        and "uncertainty" not in router.route(PROBES)[0].to_dict()
    )
    # the server's bonus: argmax of the policy's utility + alpha * the graph's widths
    alpha = 0.05
    live = LiveRouter(tiny_dir, exploration=f"bonus:{alpha}")
    served = live.route(PROBES)
    u = utility(router.scores(PROBES), router.config.target, temperature=router.policy.temperature)
    want = np.argmax(u + alpha * widths, axis=1)
    assert [r.expert for r in served] == [router.experts[i] for i in want]
    assert [r.greedy for r in served] == [r.expert for r in routes]

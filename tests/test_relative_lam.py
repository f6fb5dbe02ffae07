"""Lam relative to the data (issue 19): each column's lam = max(lam, kappa * trace(Sxx_e)/d).

References are numpy on rows: a weighted ridge whose lam is computed from the same weighted
rows (``rule_lam``), never from the statistics under test.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.learning import feedback
from irde_onnx.learning.moments import (
    COLD_KAPPA,
    Moments,
    data_scale,
    kappa_of,
    relative_lam,
)
from irde_onnx.learning.statistics import EncodedRows, RouterStats
from irde_onnx.runtime import Router, RouterEditor

from .runtime.test_feedback import token_rows
from .toy import EXPERTS, LAM, TRAIN, build_toy_router


def rule_lam(x, w, kappa, floor):
    """The rule from rows: ``max(floor, kappa * sum_i w_i |x_i - mean|^2 / d)``."""
    mx = w @ x / w.sum()
    xc = x - mx
    return max(floor, kappa * float(np.einsum("i,ij,ij->", w, xc, xc)) / x.shape[1])


def fresh_ridge(x, y, w, lam):
    """Weighted ridge with an unpenalised intercept, solved on rows."""
    n = w.sum()
    mx, my = w @ x / n, w @ y / n
    xc, yc = x - mx, y - my
    a = (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1])
    coef = np.linalg.solve(a, (xc * w[:, None]).T @ yc)
    return coef, my - mx @ coef


# -- the formula ---------------------------------------------------------------------------
def test_relative_lam_matches_the_rows(rng):
    x, y = rng.normal(size=(30, 5)) + 2.0, rng.normal(size=(30, 2))
    w = rng.uniform(0.1, 3.0, size=30)
    mom = Moments.from_rows(x, y, w)
    for kappa, floor in [(0.5, 0.0), (0.5, 1e3), (7.0, 0.2)]:
        assert relative_lam(mom, kappa, floor) == pytest.approx(
            rule_lam(x, w, kappa, floor), rel=1e-12
        )
    assert relative_lam(mom, None, 0.7) == 0.7  # no kappa: the fixed lam
    assert data_scale(Moments.zeros(5, 1)) == 0.0
    with pytest.raises(InvalidInputError, match="lam must be a finite number"):
        relative_lam(mom, 1.0, -1.0)


def test_kappa_of_keeps_lam_to_the_last_bit(rng):
    """The rows that set kappa keep lam exactly: max(lam, kappa * scale) == lam."""
    for _ in range(2000):
        lam, scale = 10 ** rng.uniform(-4, 3), 10 ** rng.uniform(-6, 4)
        kappa = kappa_of(lam, scale)
        assert kappa * scale <= lam
        assert kappa == pytest.approx(lam / scale, rel=1e-15)
    assert kappa_of(1.0, 0.0) == COLD_KAPPA  # no rows: the cold start's kappa


def test_a_single_row_gets_a_penalty_above_rounding():
    """One row has no scatter: its column is its target, not rounding noise fit."""
    x = np.array([[0.3, -1.2, 0.7]])
    mom = Moments.from_rows(x, np.array([[0.9]]))
    stats = RouterStats.empty(3, diagonal=False)
    stats.append("a", "own", mom, mom.sum_xy[:, 0], mom.sum_y[0], mom.sum_yy[0])
    stats.kappa = COLD_KAPPA
    w, b = stats.solve(0.0)
    assert np.abs(w).max() < 1e-12 and b[0] == pytest.approx(0.9, abs=1e-12)


# -- nothing moves until rows arrive ------------------------------------------------------
def test_setting_kappa_leaves_the_head_bit_for_bit(toy_router):
    router = Router.load(toy_router)
    table = np.asarray(router.embedding_table, np.float64)
    stats = router.stats.copy()
    assert stats.kappa is None  # saved before kappa
    w0, b0 = stats.solve(LAM, table)
    kappa = stats.set_kappa(LAM, table)
    assert kappa > 0
    w1, b1 = stats.solve(LAM, table)
    assert (w1 == w0).all() and (b1 == b0).all()
    assert (stats.column_lams(LAM, table) == LAM).all()


def test_first_feedback_sets_kappa_from_the_statistics_then(toy_router):
    editor = RouterEditor.open(toy_router)
    table = np.asarray(editor.embedding_table, np.float64)
    expected = editor.stats.copy().set_kappa(LAM, table)
    editor.add_feedback([{"text": "solve the integral", "expert": "math"}] * 3)
    assert editor.stats.kappa == expected
    lams = editor.stats.column_lams(LAM, table)
    assert (lams > LAM).all()  # the pooled rows grew: lam follows them
    editor.save()
    again = Router.load(toy_router)
    assert again.stats.kappa == expected
    np.testing.assert_allclose(again.head[0], editor.head[0], atol=1e-6)


# -- exact folds under the rule -------------------------------------------------------------
def _dense_router(rng, d=6, n=40):
    x, y = rng.normal(size=(n, d)), rng.uniform(size=(n, 3))
    stats = RouterStats.empty(d, diagonal=False)
    stats.shared = Moments.from_rows(x, np.zeros((n, 0)))
    full = Moments.from_rows(x, y)
    for k, e in enumerate("abc"):
        stats.append(e, "pooled", Moments.zeros(d, 0), full.sum_xy[:, k], full.sum_y[k], 0.0)
    return stats, x, y


@pytest.mark.parametrize("half_life", [0.0, 7.0])
@pytest.mark.parametrize("kind", ["full scores", "subset scores", "bandit"])
def test_dense_fold_equals_weighted_ridge_with_the_rule(kind, half_life):
    rng = np.random.default_rng(11)
    d, lam, weight, n_fb = 6, 0.3, 2.5, 60
    stats, xt, yt = _dense_router(rng, d)
    stats.set_kappa(lam)  # as the trainer or the first feedback does
    stats.kappa *= 3.0  # and make the rule bind hard, so a fixed lam would fail
    xf, yf = rng.normal(size=(n_fb, d)) + 0.5, rng.uniform(size=(n_fb, 3))
    rows, has = [], np.zeros((n_fb, 3), bool)
    for t in range(n_fb):
        if kind == "full scores":
            has[t] = True
        elif kind == "subset scores":
            has[t] = rng.uniform(size=3) < 0.5
            has[t, t % 3] = True
        else:
            has[t, rng.integers(3)] = True
        names = ["abc"[k] for k in np.flatnonzero(has[t])]
        if kind == "bandit":
            rows.append(
                {"text": f"p{t}", "expert": names[0], "outcome": yf[t, "abc".index(names[0])]}
            )
        else:
            rows.append({"text": f"p{t}", "scores": {e: yf[t, "abc".index(e)] for e in names}})
    parsed = feedback.parse_rows(rows, list("abc"), stats.modes, "score")
    # in two batches, as two requests would fold them
    feedback.fold(stats, None, parsed[:25], EncodedRows(xf[:25], None, d), weight, None, half_life)
    feedback.fold(stats, None, parsed[25:], EncodedRows(xf[25:], None, d), weight, None, half_life)
    w1, b1 = stats.solve(lam)
    # every feedback row decays with every later feedback row, whichever expert it names
    decay = 0.5 ** ((n_fb - 1 - np.arange(n_fb)) / half_life) if half_life else np.ones(n_fb)
    for k in range(3):
        r = has[:, k]
        x = np.vstack([xt, xf[r]])
        y = np.concatenate([yt[:, k], yf[r, k]])[:, None]
        w = np.concatenate([np.ones(len(xt)), weight * decay[r]])
        lam_k = rule_lam(x, w, stats.kappa, lam)
        assert lam_k > lam * 1.5  # the rule, not the floor
        w0, b0 = fresh_ridge(x, y, w, lam_k)
        assert np.abs(w1[:, k] - w0[:, 0]).max() < 1e-9 and abs(b1[k] - b0[0]) < 1e-9


def test_domain_feedback_through_the_editor_equals_the_rule(toy_router):
    editor = RouterEditor.open(toy_router)
    fb = [("solve the integral of a matrix", "math"), ("appeal to the court", "law")] * 4
    editor.add_feedback([{"text": t, "expert": e} for t, e in fb], traffic_weight=5)
    texts = [t for e in EXPERTS for t in TRAIN[e]] + [t for t, _ in fb]
    labels = [e for e in EXPERTS for _ in TRAIN[e]] + [e for _, e in fb]
    n_train = len(texts) - len(fb)
    y = np.eye(3)[[EXPERTS.index(e) for e in labels]]
    x, yy, wr = token_rows(editor, texts, y, [1.0] * n_train + [5.0] * len(fb))
    lam = rule_lam(x, wr, editor.stats.kappa, LAM)
    assert lam > 2 * LAM
    w0, b0 = fresh_ridge(x, yy, wr, lam)
    w1, b1 = editor.stats.solve(LAM, np.asarray(editor.embedding_table, np.float64))
    assert np.abs(w1 - w0).max() < 1e-9 and np.abs(b1 - b0).max() < 1e-9


# -- add, remove, merge under the rule ------------------------------------------------------
@pytest.fixture
def ruled(toy_router):
    """The toy router with kappa recorded (as a trained router has it)."""
    editor = RouterEditor.open(toy_router)
    stats = editor.stats.copy()
    stats.set_kappa(LAM, np.asarray(editor.embedding_table, np.float64))
    editor.set_statistics(stats)
    return editor


def test_domain_add_equals_the_rule_on_all_rows_and_remove_gives_back_the_head(ruled):
    before = ruled.head
    texts = ["the dose for a patient", "a heart symptom", "the dose of a patient with a heart"]
    ruled.add_expert("medicine", texts)
    train = {**TRAIN, "medicine": texts}
    names = sorted(train)
    all_texts = [t for e in names for t in train[e]]
    y = np.eye(4)[[names.index(e) for e in names for _ in train[e]]]
    x, yy, wr = token_rows(ruled, all_texts, y, np.ones(len(all_texts)))
    lam = rule_lam(x, wr, ruled.stats.kappa, LAM)
    assert lam > LAM  # more pooled rows: a larger penalty
    w0, b0 = fresh_ridge(x, yy, wr, lam)
    w1, b1 = ruled.head
    assert np.abs(w1 - w0).max() < 1e-9 and np.abs(b1 - b0).max() < 1e-9
    # adding equals training on the same rows with the same rule (kappa, floor)
    trained = Router.load(build_toy_router(ruled.path.parent / "with-medicine", train=train))
    ref = trained.stats.copy()
    ref.kappa = ruled.stats.kappa
    wr_, br_ = ref.solve(LAM, np.asarray(trained.embedding_table, np.float64))
    assert np.abs(w1 - wr_).max() < 1e-9 and np.abs(b1 - br_).max() < 1e-9
    ruled.remove_expert("medicine")
    assert np.abs(ruled.head[0] - before[0]).max() < 1e-12
    assert np.abs(ruled.head[1] - before[1]).max() < 1e-12


def test_a_scored_add_from_few_rows_stays_at_the_floor(tmp_path):
    from .runtime.test_feedback import build_score_router

    root, _ = build_score_router(tmp_path / "score")
    editor = RouterEditor.open(root)
    table = np.asarray(editor.embedding_table, np.float64)
    stats = editor.stats.copy()
    stats.set_kappa(LAM, table)
    editor.set_statistics(stats)
    before = editor.head
    texts = ["solve x", "the law of the court", "a python bug"]
    scores = np.array([0.2, 0.9, 0.4])
    editor.add_expert("new", texts, scores)
    assert editor.stats.column_lams(LAM, table)[-1] == LAM  # few rows: the router's lam
    x, yy, wr = token_rows(editor, texts, scores[:, None], np.ones(3))
    w0, b0 = fresh_ridge(x, yy, wr, LAM)
    assert np.abs(editor.head[0][:, -1] - w0[:, 0]).max() < 1e-9
    editor.remove_expert("new")
    assert np.abs(editor.head[0] - before[0]).max() < 1e-12


def test_merge_solves_the_merged_rows_with_the_routers_kappa(tmp_path):
    half = {e: v[::2] for e, v in TRAIN.items()}
    rest = {e: v[1::2] for e, v in TRAIN.items()}
    a = RouterEditor.open(build_toy_router(tmp_path / "a", train=half))
    b = Router.load(build_toy_router(tmp_path / "b", train=rest))
    table = np.asarray(a.embedding_table, np.float64)
    stats = a.stats.copy()
    kappa = stats.set_kappa(LAM, table)
    a.set_statistics(stats)
    a.merge_stats(b.stats)
    assert a.stats.kappa == kappa
    texts = [t for e in EXPERTS for t in half[e] + rest[e]]
    y = np.eye(3)[[EXPERTS.index(e) for e in EXPERTS for _ in half[e] + rest[e]]]
    x, yy, wr = token_rows(a, texts, y, np.ones(len(texts)))
    lam = rule_lam(x, wr, kappa, LAM)
    assert lam > LAM
    w0, b0 = fresh_ridge(x, yy, wr, lam)
    assert np.abs(a.head[0] - w0).max() < 1e-9 and np.abs(a.head[1] - b0).max() < 1e-9


# -- stats.npz ----------------------------------------------------------------------------
def test_kappa_and_prior_round_trip_and_old_files_read_as_before(toy_router):
    stats = Router.load(toy_router).stats
    buf = io.BytesIO()
    stats.save(buf)
    keys = set(np.load(io.BytesIO(buf.getvalue())).files)
    assert not keys & {"kappa", "prior"}  # nothing new is written without them
    assert RouterStats.load(buf.getvalue()).kappa is None
    stats.kappa, stats.prior = 2.5, np.array([0.5, np.nan, 0.7])
    buf = io.BytesIO()
    stats.save(buf)
    again = RouterStats.load(buf.getvalue())
    assert again.kappa == 2.5
    np.testing.assert_array_equal(again.prior, stats.prior)
    again.remove(0)
    again.append("x", "own", Moments.zeros(again.dim, 0, diagonal=True), np.zeros(again.dim), 0, 0)
    assert np.isnan(again.prior).tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"kappa": np.float64(-1.0)}, "'kappa' must be one finite number"),
        ({"kappa": np.array([1.0, 2.0])}, "'kappa' must be one finite number"),
        ({"prior": np.zeros(2)}, "'prior' must hold 3 numbers"),
        ({"prior": np.array([0.5, np.inf, 0.5])}, "'prior' holds infinite values"),
    ],
)
def test_damaged_kappa_or_prior_is_refused(toy_router, arrays, message):
    stats = Router.load(toy_router).stats
    buf = io.BytesIO()
    stats.save(buf)
    with np.load(io.BytesIO(buf.getvalue())) as npz:
        data = {k: npz[k] for k in npz.files}  # the file's arrays, one of them damaged
    data.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **data)
    with pytest.raises(RouterFormatError, match=message):
        RouterStats.load(buf.getvalue(), "stats.npz")


def test_the_trainer_records_kappa_when_cv_chose_lam(demo_train, tmp_path):
    """lam "auto": kappa = lam / scale of the training rows; the head is the fixed-lam head."""
    from irde_onnx.export import RouterTrainer

    texts, labels = demo_train[0][::4], demo_train[1][::4]
    tr = RouterTrainer(encoder="static", progress=False, validate=False).fit(texts, labels)
    table = np.asarray(tr.router_.embedding_table, np.float64)
    assert tr.stats_.kappa == tr.selection_["lam"]["kappa"] > 0
    assert tr.stats_.kappa == kappa_of(tr.lam_, tr.stats_.data_scale(table))
    fixed = tr.stats_.copy()
    fixed.kappa = None
    w0, b0 = fixed.solve(tr.lam_, table)
    assert (tr.coef_ == w0).all() and (tr.intercept_ == b0).all()
    assert Router.load(tr.save(tmp_path / "r")).stats.kappa == tr.stats_.kappa
    # (a lam given as a number records no kappa: tests/test_experts.py's exact adds and
    # merges against routers trained with that lam stay as they were)

"""Feedback rows fold exactly: the head equals a fresh numpy weighted ridge fit (issue 19).

The reference (``fresh_ridge``) is copied from research/feedback/exactness.py. The toy router is
static, so a "row" is a content token with feature ``table[token]`` and the text's target.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.statistics import RouterStats, token_moments
from irde_onnx.runtime import Router, RouterEditor

from ..toy import EXPERTS, LAM, TRAIN, build_toy_router

FEEDBACK = [
    ("solve the integral of a matrix", "math"),
    ("the judge of the appeal court", "law"),
    ("compile my python loop", "code"),
    ("what is the dose for a heart patient", "math"),
    ("a statute for the contract", "law"),
]


def fresh_ridge(x, y, w, lam, kappa=None):
    """Reference: weighted ridge with an unpenalised intercept, solved directly on rows.

    With ``kappa`` (lam relative to the data), the penalty is the rule's, computed here from
    the same weighted rows: ``max(lam, kappa * trace(Sxx)/d)``.
    """
    n = w.sum()
    mx, my = w @ x / n, w @ y / n
    xc, yc = x - mx, y - my
    if kappa is not None:
        lam = max(lam, kappa * float(np.einsum("i,ij,ij->", w, xc, xc)) / x.shape[1])
    coef = np.linalg.solve(
        (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1]), (xc * w[:, None]).T @ yc
    )
    return coef, my - mx @ coef


def token_rows(router: Router, texts, targets, weights):
    """Per-token rows (x = table[token]) of texts with one target vector and weight each."""
    table = np.asarray(router.embedding_table, dtype=np.float64)
    xs, ys, ws = [], [], []
    for ids, y, w in zip(router.tokenizer.content_ids(texts), targets, weights, strict=True):
        xs.append(table[ids])
        ys.append(np.repeat(np.asarray(y, float)[None, :], len(ids), axis=0))
        ws.append(np.full(len(ids), float(w)))
    return np.vstack(xs), np.vstack(ys), np.concatenate(ws)


def _solved(editor: RouterEditor):
    return editor.stats.solve(editor.config.lam, np.asarray(editor.embedding_table, np.float64))


@pytest.mark.parametrize("weight", [1.0, 10.0, 0.37])
def test_domain_feedback_equals_weighted_ridge(toy_router, weight):
    editor = RouterEditor.open(toy_router)
    rows = [{"text": t, "expert": e} for t, e in FEEDBACK]
    assert editor.add_feedback(rows, traffic_weight=weight) == len(rows)
    texts = [t for e in EXPERTS for t in TRAIN[e]] + [t for t, _ in FEEDBACK]
    labels = [e for e in EXPERTS for _ in TRAIN[e]] + [e for _, e in FEEDBACK]
    n_train = sum(len(v) for v in TRAIN.values())
    w = [1.0] * n_train + [weight] * len(FEEDBACK)
    x, y, wr = token_rows(editor, texts, np.eye(3)[[EXPERTS.index(e) for e in labels]], w)
    w0, b0 = fresh_ridge(x, y, wr, LAM, editor.stats.kappa)
    w1, b1 = _solved(editor)
    assert np.abs(w1 - w0).max() < 1e-9 and np.abs(b1 - b0).max() < 1e-9
    # and the head routed is that solution (float32 in the graph)
    np.testing.assert_allclose(editor.head[0], w1, atol=1e-12)
    assert editor.stats.traffic_weight == weight
    assert editor.stats.feedback_rows.tolist() == [1, 2, 2]


def test_equal_weight_feedback_equals_training_on_all_rows(tmp_path):
    """Feedback at weight 1 == a router trained on the training rows plus the feedback rows."""
    base = build_toy_router(tmp_path / "base")
    both = {e: TRAIN[e] + [t for t, x in FEEDBACK if x == e] for e in EXPERTS}
    trained = Router.load(build_toy_router(tmp_path / "all", train=both))
    editor = RouterEditor.open(base)
    editor.add_feedback([{"text": t, "expert": e} for t, e in FEEDBACK], traffic_weight=1)
    # lam relative to the data: the trained router's statistics solved with the kappa the
    # base router took at its first feedback (the toy routers predate kappa)
    ref = trained.stats.copy()
    ref.kappa = editor.stats.kappa
    w0, b0 = ref.solve(LAM, np.asarray(trained.embedding_table, np.float64))
    w1, b1 = _solved(editor)
    assert np.abs(w1 - w0).max() < 1e-9 and np.abs(b1 - b0).max() < 1e-9


def build_score_router(root: Path, seed: int = 1) -> tuple[Path, np.ndarray]:
    """A toy router trained on per-expert scores (pooled columns), and its training scores."""
    src = build_toy_router(root)
    router = Router.load(src)
    texts = [t for e in EXPERTS for t in TRAIN[e]]
    y = np.random.default_rng(seed).uniform(size=(len(texts), len(EXPERTS)))
    ids = router.tokenizer.content_ids(texts)
    mom = token_moments(ids, y, router.tokenizer.vocab_size)
    stats = RouterStats.empty(router.tokenizer.vocab_size, diagonal=True)
    stats.shared = token_moments(ids, np.zeros((len(ids), 0)), router.tokenizer.vocab_size)
    for k, e in enumerate(EXPERTS):
        stats.append(
            e,
            "pooled",
            token_moments([], np.zeros((0, 0)), router.tokenizer.vocab_size),
            mom.sum_xy[:, k],
            mom.sum_y[k],
            mom.sum_yy[k],
        )
    editor = RouterEditor.open(src)
    editor._config = replace(editor.config, target="score")  # no public setter: a test helper
    editor.set_statistics(stats)
    editor.save()
    return src, y


@pytest.mark.parametrize("kind", ["scores", "bandit"])
def test_score_feedback_changes_only_the_informed_columns(tmp_path, kind):
    root, y_train = build_score_router(tmp_path / "score")
    editor = RouterEditor.open(root)
    before = _solved(editor)
    rng = np.random.default_rng(3)
    texts = [t for t, _ in FEEDBACK]
    if kind == "bandit":
        rows = [{"text": t, "expert": "law", "outcome": float(rng.uniform())} for t in texts]
        informed = {"law"}
    else:
        rows = [
            {"text": t, "scores": {"law": float(rng.uniform()), "math": float(rng.uniform())}}
            for t in texts
        ]
        informed = {"law", "math"}
    editor.add_feedback(rows, traffic_weight=4.0)
    w1, b1 = _solved(editor)
    train = [t for e in EXPERTS for t in TRAIN[e]]
    for k, e in enumerate(EXPERTS):
        if e not in informed:  # untouched columns keep their fit
            assert np.abs(w1[:, k] - before[0][:, k]).max() < 1e-9
            continue
        fb = [r["outcome"] if kind == "bandit" else r["scores"][e] for r in rows]
        ys = np.concatenate([y_train[:, k], fb])[:, None]
        x, yy, wr = token_rows(editor, train + texts, ys, [1.0] * len(train) + [4.0] * len(rows))
        w0, b0 = fresh_ridge(x, yy, wr, LAM, editor.stats.kappa)
        assert np.abs(w1[:, k] - w0[:, 0]).max() < 1e-9 and abs(b1[k] - b0[0]) < 1e-9
    assert set(editor.config.expert_modes) == {"own"}


def test_feedback_survives_save_and_the_weight_is_recorded(toy_router):
    editor = RouterEditor.open(toy_router)
    editor.add_feedback([{"text": "solve x", "expert": "math"}])  # default weight
    editor.save()
    again = RouterEditor.open(toy_router)
    assert again.stats.traffic_weight == 10.0
    assert again.stats.feedback_rows.tolist() == [0, 0, 1]
    with pytest.raises(InvalidInputError, match="traffic weight 10"):
        again.add_feedback([{"text": "solve x", "expert": "math"}], traffic_weight=2)
    np.testing.assert_allclose(again.head[0], editor.head[0], atol=1e-6)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "x", "expert": "chemistry"}, "row 2: unknown expert 'chemistry'"),
        ({"expert": "law"}, 'row 2: "text" must be a non-empty string'),
        ({"text": "x", "scores": {"law": 1}}, "row 2: this router was trained on domains"),
        ({"text": "x", "expert": "law", "outcome": 1}, "row 2: this router was trained on dom"),
        ({"text": "x"}, 'row 2: a feedback row needs "expert"'),
        ({"text": "x", "expert": "law", "why": 1}, r"row 2: unknown field\(s\) \['why'\]"),
        ("law", "row 2: a feedback row must be a JSON object"),
    ],
)
def test_bad_rows_are_refused_and_nothing_changes(toy_router, row, message):
    editor = RouterEditor.open(toy_router)
    head = editor.head[0].copy()
    with pytest.raises(InvalidInputError, match=message):
        editor.add_feedback([{"text": "solve x", "expert": "math"}, row])
    assert (editor.head[0] == head).all() and editor.stats.traffic_weight == 0


def test_bad_scores_name_the_row(tmp_path):
    root, _ = build_score_router(tmp_path / "score")
    editor = RouterEditor.open(root)
    with pytest.raises(InvalidInputError, match="row 1: the score of 'law' must be finite"):
        editor.add_feedback([{"text": "x", "scores": {"law": float("nan")}}])
    with pytest.raises(InvalidInputError, match="traffic_weight must be a finite number > 0"):
        editor.add_feedback([{"text": "x", "expert": "law", "outcome": 1}], traffic_weight=0)


def test_copy_keeps_feedback(toy_router, tmp_path):
    editor = RouterEditor.open(toy_router)
    editor.add_feedback([{"text": "solve x", "expert": "math"}], traffic_weight=3)
    out = editor.save(tmp_path / "copy")
    assert RouterEditor.open(out).stats.traffic_weight == 3
    shutil.rmtree(out)


def _dense_stats(x, y, modes, experts):
    """Dense statistics of training rows x with targets y: one shared pool (pooled columns)."""
    from irde_onnx.learning.moments import Moments

    d = x.shape[1]
    stats = RouterStats.empty(d, diagonal=False)
    stats.shared = Moments.from_rows(x, np.zeros((len(x), 0)))
    full = Moments.from_rows(x, y)
    for k, e in enumerate(experts):
        stats.append(e, modes[k], Moments.zeros(d, 0), full.sum_xy[:, k], full.sum_y[k], 0.0)
    return stats


@pytest.mark.parametrize("kind", ["full scores", "subset scores", "bandit"])
def test_dense_fold_equals_weighted_ridge(kind):
    """Pooled-encoder rows (one feature row per prompt), as MiniLM routers fold them."""
    from irde_onnx.learning import feedback
    from irde_onnx.learning.statistics import EncodedRows

    rng = np.random.default_rng(7)
    d, experts, lam, weight = 6, ["a", "b", "c"], 0.3, 2.5
    xt, yt = rng.normal(size=(40, d)), rng.uniform(size=(40, 3))
    xf = rng.normal(size=(25, d)) + 0.5
    stats = _dense_stats(xt, yt, ["pooled"] * 3, experts)
    rows, has, yf = [], np.zeros((25, 3), bool), rng.uniform(size=(25, 3))
    for t in range(25):
        if kind == "full scores":
            has[t] = True
        elif kind == "subset scores":
            has[t] = rng.uniform(size=3) < 0.5
            has[t, t % 3] = True
        else:
            has[t, rng.integers(3)] = True
        names = [experts[k] for k in np.flatnonzero(has[t])]
        if kind == "bandit":
            rows.append(
                {"text": f"p{t}", "expert": names[0], "outcome": yf[t, experts.index(names[0])]}
            )
        else:
            rows.append({"text": f"p{t}", "scores": {e: yf[t, experts.index(e)] for e in names}})
    parsed = feedback.parse_rows(rows, experts, stats.modes, "score")
    feedback.fold(stats, None, parsed, EncodedRows(xf, None, d), weight, None)
    w1, b1 = stats.solve(lam)
    for k in range(3):
        r = has[:, k]
        x = np.vstack([xt, xf[r]])
        y = np.concatenate([yt[:, k], yf[r, k]])[:, None]
        w = np.concatenate([np.ones(40), np.full(r.sum(), weight)])
        w0, b0 = fresh_ridge(x, y, w, lam)
        assert np.abs(w1[:, k] - w0[:, 0]).max() < 1e-9 and abs(b1[k] - b0[0]) < 1e-9
    assert stats.modes == (["pooled"] * 3 if kind == "full scores" else ["own"] * 3)


def test_merge_keeps_feedback_and_refuses_mixed_weights(toy_router):
    a = RouterEditor.open(toy_router)
    a.add_feedback([{"text": "solve x", "expert": "math"}], traffic_weight=2)
    b = RouterEditor.open(toy_router)
    b.add_feedback([{"text": "the law", "expert": "law"}], traffic_weight=2)
    merged = a.stats.merge(b.stats)
    assert merged.traffic_weight == 2 and merged.feedback_rows.tolist() == [0, 1, 1]
    c = RouterEditor.open(toy_router)
    c.add_feedback([{"text": "the law", "expert": "law"}], traffic_weight=3)
    with pytest.raises(InvalidInputError, match=r"different traffic weights \[2.0, 3.0\]"):
        a.stats.merge(c.stats)


def test_default_weight_is_the_research_rule(toy_router):
    """Default 10 == training rows at omega 0.1 and feedback at 1, with lam / 10 (the research's
    rule at the same scale): one head, as the README's weight section says."""
    editor = RouterEditor.open(toy_router)
    editor.add_feedback([{"text": t, "expert": e} for t, e in FEEDBACK])
    assert editor.stats.traffic_weight == 10.0
    texts = [t for e in EXPERTS for t in TRAIN[e]] + [t for t, _ in FEEDBACK]
    labels = [e for e in EXPERTS for _ in TRAIN[e]] + [e for _, e in FEEDBACK]
    n_train = sum(len(v) for v in TRAIN.values())
    w = [0.1] * n_train + [1.0] * len(FEEDBACK)
    x, y, wr = token_rows(editor, texts, np.eye(3)[[EXPERTS.index(e) for e in labels]], w)
    w0, b0 = fresh_ridge(x, y, wr, LAM / 10, editor.stats.kappa)
    w1, b1 = _solved(editor)
    assert np.abs(w1 - w0).max() < 1e-9 and np.abs(b1 - b0).max() < 1e-9


HALF_LIFE = 2.0


def _decayed(n, weight, half_life=HALF_LIFE):
    """Feedback row t of n weighs weight * gamma ** (n - 1 - t) (exactness.py's rule)."""
    gamma = 0.5 ** (1 / half_life)
    return weight * gamma ** (n - 1 - np.arange(n))


def test_forgetting_equals_decayed_weighted_ridge(toy_router):
    editor = RouterEditor.open(toy_router)
    rows = [{"text": t, "expert": e} for t, e in FEEDBACK]
    editor.add_feedback(rows[:2], traffic_weight=3, half_life=HALF_LIFE)
    editor.save()
    again = RouterEditor.open(toy_router)  # the feedback moments travel in stats.npz
    assert again.stats.half_life == HALF_LIFE and again.stats.traffic is not None
    again.add_feedback(rows[2:])  # the recorded weight and half-life
    texts = [t for e in EXPERTS for t in TRAIN[e]] + [t for t, _ in FEEDBACK]
    labels = [e for e in EXPERTS for _ in TRAIN[e]] + [e for _, e in FEEDBACK]
    n_train = sum(len(v) for v in TRAIN.values())
    w = np.concatenate([np.ones(n_train), _decayed(len(FEEDBACK), 3.0)])
    x, y, wr = token_rows(again, texts, np.eye(3)[[EXPERTS.index(e) for e in labels]], w)
    w0, b0 = fresh_ridge(x, y, wr, LAM, again.stats.kappa)
    w1, b1 = _solved(again)
    assert np.abs(w1 - w0).max() < 1e-9 and np.abs(b1 - b0).max() < 1e-9


def test_forgetting_bandit_rows_on_a_score_router(tmp_path):
    root, y_train = build_score_router(tmp_path / "score")
    editor = RouterEditor.open(root)
    rng = np.random.default_rng(5)
    texts = [t for t, _ in FEEDBACK]
    experts = ["law", "math", "law", "code", "law"]
    rows = [
        {"text": t, "expert": e, "outcome": float(rng.uniform())}
        for t, e in zip(texts, experts, strict=True)
    ]
    editor.add_feedback(rows, traffic_weight=1, half_life=HALF_LIFE)
    decay = _decayed(len(rows), 1.0)  # every feedback row decays, whichever expert it names
    w1, b1 = _solved(editor)
    train = [t for e in EXPERTS for t in TRAIN[e]]
    for k, e in enumerate(EXPERTS):
        mine = [i for i, x in enumerate(experts) if x == e]
        ys = np.concatenate([y_train[:, k], [rows[i]["outcome"] for i in mine]])[:, None]
        w = np.concatenate([np.ones(len(train)), decay[mine]])
        x, yy, wr = token_rows(editor, train + [texts[i] for i in mine], ys, w)
        w0, b0 = fresh_ridge(x, yy, wr, LAM, editor.stats.kappa)
        assert np.abs(w1[:, k] - w0[:, 0]).max() < 1e-9 and abs(b1[k] - b0[0]) < 1e-9


def test_forgetting_is_chosen_first_and_kept(toy_router):
    editor = RouterEditor.open(toy_router)
    editor.add_feedback([{"text": "solve x", "expert": "math"}])
    with pytest.raises(InvalidInputError, match="folded without forgetting"):
        editor.add_feedback([{"text": "solve x", "expert": "math"}], half_life=5)
    other = RouterEditor.open(toy_router)
    other.add_feedback([{"text": "solve x", "expert": "math"}], half_life=5)
    with pytest.raises(InvalidInputError, match="half-life 5 rows"):
        other.add_feedback([{"text": "solve x", "expert": "math"}], half_life=6)
    with pytest.raises(InvalidInputError, match="cannot be merged"):
        other.stats.merge(editor.stats)
    with pytest.raises(InvalidInputError, match="half_life must be a finite number > 0"):
        RouterEditor.open(toy_router).add_feedback([{"text": "x", "expert": "law"}], half_life=0)

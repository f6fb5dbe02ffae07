"""Adding and removing experts: exact closed-form updates and merges against training.

Bookkeeping (errors, swaps, saves, the command line) is tested on the toy router in
tests/runtime/.
"""

import hashlib
import shutil

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.runtime import Router, RouterEditor

LAM = 1.0


def _hashes(folder):
    """sha256 of every file of a router folder but the (empty) lock file."""
    return {p.name: _sha(p) for p in folder.iterdir() if p.name != ".irde.lock"}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_expert(texts, labels, name):
    return [t for t, lab in zip(texts, labels, strict=True) if lab == name]


def _without(texts, labels, name):
    keep = [i for i, lab in enumerate(labels) if lab != name]
    return [texts[i] for i in keep], [labels[i] for i in keep]


@pytest.fixture(scope="module")
def static_four(demo_train, tmp_path_factory):
    """A static router trained without 'medicine' (the last expert in sorted order)."""
    texts, labels = _without(*demo_train, "medicine")
    tr = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts, labels)
    return tr.save(tmp_path_factory.mktemp("four") / "router")


@pytest.fixture(scope="module")
def static_five(demo_train):
    return RouterTrainer(encoder="static", lam=LAM, progress=False).fit(*demo_train)


@pytest.fixture
def four(static_four, tmp_path):
    return shutil.copytree(static_four, tmp_path / "four")


def test_add_equals_training_from_scratch(four, static_five, demo_train):
    router = RouterEditor.open(four)
    router.add_expert("medicine", _by_expert(*demo_train, "medicine"))
    assert router.experts == static_five.experts_
    w, b = router.head
    np.testing.assert_allclose(w, static_five.coef_, atol=1e-6)
    np.testing.assert_allclose(b, static_five.intercept_, atol=1e-6)


def test_add_then_remove_gives_back_the_original_head(four):
    router = RouterEditor.open(four)
    original = router.head
    start = router.stats.copy()
    router.add_expert("extra", ["a new expert's prompt", "another prompt for it"])
    router.remove_expert("extra")
    w0, b0 = original
    w1, b1 = router.head
    # the file stores float32: compare float64 re-solves, and the stored head to float32
    w_ref, b_ref = start.solve(router.config.lam, router.embedding_table)
    np.testing.assert_allclose(w1, w_ref, atol=1e-9)
    np.testing.assert_allclose(b1, b_ref, atol=1e-9)
    np.testing.assert_allclose(w1, w0, atol=1e-6)
    np.testing.assert_allclose(b1, b0, atol=1e-6)


def test_remove_equals_training_without(static_five, demo_train, tmp_path):
    router = RouterEditor.open(static_five.save(tmp_path / "five"))
    router.remove_expert("law")
    texts, labels = _without(*demo_train, "law")
    ref = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts, labels)
    assert router.experts == ref.experts_
    np.testing.assert_allclose(router.head[0], ref.coef_, atol=1e-6)
    np.testing.assert_allclose(router.head[1], ref.intercept_, atol=1e-6)


@pytest.mark.slow
def test_minilm_add_and_remove_are_exact(minilm_trainer, demo_train, tmp_path):
    texts, labels = _without(*demo_train, "medicine")
    four = RouterTrainer(encoder="minilm", lam=minilm_trainer.lam_, progress=False)
    router = RouterEditor.open(four.fit(texts, labels).save(tmp_path / "four"))
    router.add_expert("medicine", _by_expert(*demo_train, "medicine"))
    np.testing.assert_allclose(router.head[0], minilm_trainer.coef_, atol=1e-6)
    np.testing.assert_allclose(router.head[1], minilm_trainer.intercept_, atol=1e-6)
    router.remove_expert("medicine")
    np.testing.assert_allclose(router.head[0], four.coef_, atol=1e-9)
    np.testing.assert_allclose(router.head[1], four.intercept_, atol=1e-9)


def test_scored_add_solves_only_the_new_column(minilm_router_dir, demo_train, tmp_path):
    router = RouterEditor.open(shutil.copytree(minilm_router_dir, tmp_path / "r"))
    before_w, before_b = router.head
    texts = demo_train[0][::5]
    scores = np.random.default_rng(3).random(len(texts))
    router.add_expert("new-llm", texts, scores, gate=False)  # routes at once: no shadow
    w, b = router.head
    np.testing.assert_allclose(w[:, :-1], before_w, atol=1e-6)  # float32 file vs float64
    np.testing.assert_allclose(b[:-1], before_b, atol=1e-6)
    feats = router.features(texts).astype(np.float64)
    ref = Ridge(alpha=router.config.lam).fit(feats, scores)
    np.testing.assert_allclose(w[:, -1], ref.coef_, atol=1e-6)
    assert b[-1] == pytest.approx(ref.intercept_, abs=1e-6)
    assert router.config.expert_modes[-1] == "own"
    scores_now = router.scores(texts)
    np.testing.assert_allclose(scores_now[:, -1], feats @ w[:, -1] + b[-1], atol=1e-4)


def test_score_routers_need_scores_to_add(tmp_path, demo_train):
    texts = demo_train[0][:30]
    y = np.random.default_rng(0).random((30, 2))
    tr = RouterTrainer(encoder="static", strategy="mean", lam=LAM, progress=False)
    router = RouterEditor.open(tr.fit(texts, scores=y, experts=["a", "b"]).save(tmp_path / "s"))
    with pytest.raises(InvalidInputError, match="with scores"):
        router.add_expert("c", texts)
    router.add_expert("c", texts, y[:, 0])
    # c is scored on the very prompts a was trained on: its own column equals a's
    np.testing.assert_allclose(router.head[0][:, 2], router.head[0][:, 0], atol=1e-9)
    before_w, before_b = router.head
    router.remove_expert("a")  # a pooled score column goes; the shared prompts stay
    np.testing.assert_allclose(router.head[0], before_w[:, 1:], atol=1e-9)
    np.testing.assert_allclose(router.head[1], before_b[1:], atol=1e-9)


# -- statistics merged across shards ---------------------------------------------------------
def test_merged_shards_equal_single_pass(demo_train, static_five, tmp_path):
    texts, labels = demo_train
    a = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts[0::2], labels[0::2])
    b = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts[1::2], labels[1::2])
    router = RouterEditor.open(a.save(tmp_path / "a"))
    router.merge_stats(b.save(tmp_path / "b"))
    np.testing.assert_allclose(router.head[0], static_five.coef_, atol=1e-6)
    np.testing.assert_allclose(router.head[1], static_five.intercept_, atol=1e-6)
    merged = Router.load(router.save(tmp_path / "ab")).stats
    single = static_five.stats_
    np.testing.assert_allclose(merged.sum_xy, single.sum_xy, atol=1e-9)
    for m, s in zip(merged.owned, single.owned, strict=True):
        np.testing.assert_allclose(m.gram, s.gram, atol=1e-9)


def test_merge_score_shards_need_the_same_experts(demo_train, tmp_path):
    texts = demo_train[0][:40]
    y = np.random.default_rng(0).random((40, 3))
    kw = {"encoder": "static", "strategy": "mean", "lam": LAM, "progress": False}
    a = RouterTrainer(**kw).fit(texts[:20], scores=y[:20], experts=["x", "y", "z"])
    b = RouterTrainer(**kw).fit(texts[20:], scores=y[20:, :2], experts=["x", "y"])
    whole = RouterTrainer(**kw).fit(texts, scores=y, experts=["x", "y", "z"])
    c = RouterTrainer(**kw).fit(texts[20:], scores=y[20:], experts=["x", "y", "z"])
    router = RouterEditor.open(a.save(tmp_path / "a"))
    with pytest.raises(InvalidInputError, match="no scores"):
        router.merge_stats(b.stats_)
    router.merge_stats(c.stats_)
    np.testing.assert_allclose(router.head[0], whole.coef_, atol=1e-6)


@pytest.mark.slow
def test_minilm_shards_exported_separately_can_be_merged(minilm_trainer, demo_train, tmp_path):
    """Two `irde train` runs export byte-identical encoders, so their statistics merge."""
    texts, labels = demo_train
    lam = minilm_trainer.lam_
    a = RouterTrainer(encoder="minilm", lam=lam, progress=False).fit(texts[0::2], labels[0::2])
    b = RouterTrainer(encoder="minilm", lam=lam, progress=False).fit(texts[1::2], labels[1::2])
    assert a.router_.config.fingerprint == b.router_.config.fingerprint
    router = RouterEditor.open(a.save(tmp_path / "a"))
    router.merge_stats(b.stats_)
    np.testing.assert_allclose(router.head[0], minilm_trainer.coef_, atol=1e-6)

"""The static router graph against its numpy reference, exactly."""

import numpy as np
import onnxruntime as ort
import pytest

from irde_onnx.graph.build import static_router
from irde_onnx.learning.static_scores import static_scores
from tests.token_batches import padded_batch

VOCAB, D, E = 60, 8, 4
SPECIAL = [0, 1, 2]  # pad, cls, sep in this toy vocabulary


def _session(table, token_mask, w, b, strategy, k=10):
    model = static_router(table, token_mask, w, b, strategy, k)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture
def toy(rng):
    table = rng.normal(size=(VOCAB, D)).astype(np.float16)
    token_mask = np.ones(VOCAB, np.float32)
    token_mask[SPECIAL] = 0.0
    w = rng.normal(size=(D, E)).astype(np.float32)
    b = rng.normal(size=E).astype(np.float32) * 0.1
    return table, token_mask, w, b


@pytest.mark.parametrize("strategy", ["vote", "mean", "entropy_top_k"])
def test_graph_equals_numpy_reference(toy, rng, strategy):
    table, token_mask, w, b = toy
    sess = _session(table, token_mask, w, b, strategy, k=3)
    ids, mask = padded_batch(rng, VOCAB, seq=12)
    got = sess.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
    ref, votes = static_scores(ids, mask, table, token_mask, w, b, strategy, 3)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(got, ref, atol=1e-6)
    if strategy != "mean":
        # vote counts are recovered exactly from the scores: share*n, plus a tie-breaker < 1
        voters = np.rint(votes.sum(1))
        np.testing.assert_array_equal(np.floor(got * np.maximum(voters, 1)[:, None] + 1e-4), votes)
        assert (votes.sum(1) <= (3 if strategy == "entropy_top_k" else 12)).all()


def test_vote_counts_by_hand_and_special_tokens_ignored(toy):
    table, token_mask, w, b = toy
    sess = _session(table, token_mask, w, b, "vote")
    ids = np.array([[1, 10, 11, 12, 2, 0, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 1, 0, 0]], np.int64)
    got = sess.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0][0]
    per_token = table[[10, 11, 12]].astype(np.float32) @ w + b
    counts = np.bincount(per_token.argmax(1), minlength=E)
    np.testing.assert_array_equal(np.floor(got * 3 + 1e-6), counts)
    # padding with real token ids but attention 0 must not vote either
    ids2 = np.array([[1, 10, 11, 12, 2, 13, 14]], np.int64)
    got2 = sess.run(["scores"], {"input_ids": ids2, "attention_mask": mask})[0][0]
    np.testing.assert_allclose(got2, got, atol=1e-7)


def test_ties_go_to_the_best_mean_score():
    # two content tokens, each votes for a different expert: a 1-1 tie
    table = np.array([[0, 0], [0, 0], [0, 0], [1, 0], [0, 1]], np.float32)
    token_mask = np.array([0, 0, 0, 1, 1], np.float32)
    w = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)  # expert 0 wins its token by more
    b = np.zeros(2, np.float32)
    sess = _session(table, token_mask, w, b, "vote")
    ids = np.array([[1, 3, 4, 2], [1, 4, 3, 2]], np.int64)
    got = sess.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert (got.argmax(1) == 0).all()  # order of tokens does not matter
    w_swapped = w[:, ::-1].copy()  # now expert 1's token wins by more
    sess = _session(table, token_mask, w_swapped, b, "vote")
    got = sess.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert (got.argmax(1) == 1).all()


def test_empty_prompt_falls_back_to_the_intercept(toy):
    table, token_mask, w, b = toy
    ids = np.array([[1, 2]], np.int64)
    for strategy in ("vote", "mean", "entropy_top_k"):
        sess = _session(table, token_mask, w, b, strategy)
        got = sess.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        assert got.argmax() == b.argmax()


def test_n_experts_is_symbolic(toy):
    table, token_mask, w, b = toy
    model = static_router(table, token_mask, w, b, "vote")
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "n_experts"]


@pytest.mark.parametrize("strategy", ["vote", "mean", "entropy_top_k"])
def test_a_swapped_head_with_more_experts_runs_like_a_new_graph(toy, rng, strategy, tmp_path):
    import onnx

    from irde_onnx.runtime.session import open_session

    table, token_mask, w, b = toy
    path = tmp_path / "g.onnx"
    onnx.save(static_router(table, token_mask, w, b, strategy, 3), str(path))
    w6 = rng.normal(size=(D, 6)).astype(np.float32)
    b6 = rng.normal(size=6).astype(np.float32)
    sess = open_session(path, head=(w6, b6))
    ids, mask = padded_batch(rng, VOCAB, seq=12)
    got = sess.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
    ref, _ = static_scores(ids, mask, table, token_mask, w6, b6, strategy, 3)
    assert got.shape == (len(ids), 6)
    np.testing.assert_allclose(got, ref, atol=1e-6)

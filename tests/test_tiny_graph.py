"""The tiny router graph against its numpy reference (no torch: a small random table)."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from irde_onnx.graph.build import tiny_router
from irde_onnx.graph.rules import STATIC_OPS, summarize_graph
from irde_onnx.learning.tiny_features import (
    build_tiny_table,
    fit_projection,
    select_vocabulary,
    tiny_features,
    tiny_scores,
)
from tests.token_batches import padded_batch

VOCAB, D, E = 80, 16, 5
SPECIAL = [0, 1, 2]  # pad, cls, sep in this toy vocabulary


def _table(rng, precision, unknown, k=None):
    full = rng.normal(size=(VOCAB, D)).astype(np.float32)
    train = [rng.integers(3, 40, size=9) for _ in range(12)]  # ids >= 40 are never seen
    kept = select_vocabulary(train, VOCAB, SPECIAL, np.arange(VOCAB)[::-1], n_frequent=10)
    projection = None
    if k is not None:
        pooled = np.stack([full[a].mean(axis=0) for a in train])
        projection = fit_projection(pooled, k)
    return build_tiny_table(full, kept, SPECIAL, unknown, projection, precision)


def _session(t, w, b, normalize):
    model = tiny_router(t.rows, t.id_map, w, b, t.weight, t.scale, normalize)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("precision", ["fp16", "int8", "fp32"])
@pytest.mark.parametrize("unknown", ["zero", "mean", "skip"])
@pytest.mark.parametrize("normalize", [True, False])
def test_graph_equals_numpy_reference(rng, precision, unknown, normalize):
    t = _table(rng, precision, unknown)
    w = rng.normal(size=(D, E)).astype(np.float32)
    b = rng.normal(size=E).astype(np.float32)
    ids, mask = padded_batch(rng, VOCAB, seq=14)
    scores, feats = _session(t, w, b, normalize).run(
        ["scores", "features"], {"input_ids": ids, "attention_mask": mask}
    )
    ref_scores, ref_feats = tiny_scores(ids, mask, t, w, b, normalize)
    np.testing.assert_allclose(feats, ref_feats, atol=1e-6)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    np.testing.assert_array_equal(scores.argmax(1), ref_scores.argmax(1))


def test_projected_table_and_head_swap(rng):
    t = _table(rng, "int8", "mean", k=6)
    assert t.rows.shape == (len(t.kept) + 2, 6)
    w = rng.normal(size=(6, E)).astype(np.float32)
    b = np.zeros(E, np.float32)
    model = tiny_router(t.rows, t.id_map, w, b, t.weight, t.scale, True)
    # head.W / head.b are initializers, so a runtime can swap them (here: more experts)
    w2 = rng.normal(size=(6, E + 2)).astype(np.float32)
    b2 = rng.normal(size=E + 2).astype(np.float32)
    for init in model.graph.initializer:
        if init.name in ("head.W", "head.b"):
            arr = w2 if init.name == "head.W" else b2
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids, mask = padded_batch(rng, VOCAB, seq=14)
    scores = sess.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(scores, tiny_scores(ids, mask, t, w2, b2, True)[0], atol=1e-6)


def test_reference_by_hand(rng):
    """Kept tokens read their rows, unseen tokens the shared row, specials nothing."""
    full = rng.normal(size=(VOCAB, D)).astype(np.float32)
    kept = np.array([5, 6, 7])
    ids = np.array([[1, 5, 6, 50, 2, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 0]])
    dropped = np.setdiff1d(np.arange(3, VOCAB), kept)
    expected = {
        "zero": (full[5] + full[6]) / 3,
        "skip": (full[5] + full[6]) / 2,
        "mean": (full[5] + full[6] + full[dropped].mean(axis=0)) / 3,
    }
    for unknown, want in expected.items():
        t = build_tiny_table(full, kept, SPECIAL, unknown, None, "fp32")
        np.testing.assert_allclose(tiny_features(ids, mask, t, False)[0], want, atol=1e-6)
    # no content token at all: zero features, not NaN
    t = build_tiny_table(full, kept, SPECIAL, "zero", None, "fp32")
    empty = tiny_features(np.array([[1, 2]]), np.array([[1, 1]]), t, True)
    np.testing.assert_array_equal(empty, np.zeros((1, D), np.float32))


def test_vocabulary_and_quantisation(rng):
    train = [np.array([3, 4, 4]), np.array([9])]
    kept = select_vocabulary(train, VOCAB, SPECIAL, np.array([0, 1, 20, 21, 22]), n_frequent=2)
    np.testing.assert_array_equal(kept, [3, 4, 9, 20, 21])  # specials skipped in the order
    full = rng.normal(size=(VOCAB, D)).astype(np.float32)
    t = build_tiny_table(full, kept, SPECIAL, "zero", None, "int8")
    assert t.rows.dtype == np.int8 and t.scale.dtype == np.float32
    err = np.abs(t.dequantised()[: len(kept)] - full[kept]).max(axis=1)
    assert (err <= t.scale[: len(kept)] / 2 + 1e-7).all()
    assert t.nbytes == t.rows.nbytes + t.scale.nbytes + t.weight.nbytes + t.id_map.nbytes
    assert t.id_map[50] == t.unknown_row and t.weight[t.unknown_row] == 1
    assert (t.weight[t.id_map[SPECIAL]] == 0).all()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_graph_uses_only_static_operators(rng, precision):
    """The tiny graph needs no operator beyond the static graph's allow-list."""
    t = _table(rng, precision, "zero")
    w, b = np.zeros((D, E), np.float32), np.zeros(E, np.float32)
    summary = summarize_graph(
        tiny_router(t.rows, t.id_map, w, b, t.weight, t.scale).SerializeToString()
    )
    assert not summary.problems
    assert {op for _, op in summary.ops} <= STATIC_OPS


def test_int16_and_int32_id_maps_route_alike(rng):
    t = _table(rng, "fp16", "zero")
    assert t.id_map.dtype == np.int16  # a table of at most 32,767 rows halves the map
    w = rng.normal(size=(D, E)).astype(np.float32)
    b = rng.normal(size=E).astype(np.float32)
    ids, mask = padded_batch(rng, VOCAB, seq=14)
    feed = {"input_ids": ids, "attention_mask": mask}
    got16 = _session(t, w, b, True).run(["scores"], feed)[0]
    t.id_map = t.id_map.astype(np.int32)
    got32 = _session(t, w, b, True).run(["scores"], feed)[0]
    np.testing.assert_array_equal(got16, got32)

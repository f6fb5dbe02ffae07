"""Pooled layers: a MiniLM graph pooling layers 6 and 5 from one forward pass.

The router's features equal numpy pooling of the exported encoder's hidden states; the
head is sized to match; expert changes, merges and the fingerprint take the layers in.
MiniLM is exported once per test run (export_minilm keeps its result per process).
"""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.graph.build import layer_outputs
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import DATA_FILE, GRAPH_FILE

pytestmark = pytest.mark.slow
LAYERS = (6, 5)


@pytest.fixture(scope="module")
def layered(minilm_trainer, demo_train):
    """The demo router on layers 6,5 (after the session's MiniLM, whose export it reuses)."""
    texts, labels = demo_train
    return RouterTrainer(encoder="minilm", view="full", layers=LAYERS, progress=False).fit(
        texts, labels
    )


@pytest.fixture(scope="module")
def layered_dir(layered, tmp_path_factory):
    return layered.save(tmp_path_factory.mktemp("layers") / "router")


def _graph_with_hidden_outputs(router_dir, tmp_path):
    """The router's own graph with the hidden states of layers 6 and 5 as extra outputs."""
    model = onnx.load(str(router_dir / GRAPH_FILE), load_external_data=False)
    names = layer_outputs(model, LAYERS)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
        for n in names
        if n not in known
    )
    shutil.copyfile(router_dir / DATA_FILE, tmp_path / DATA_FILE)
    onnx.save(model, str(tmp_path / "hidden.onnx"))
    return ort.InferenceSession(
        str(tmp_path / "hidden.onnx"), providers=["CPUExecutionProvider"]
    ), names


def test_features_equal_numpy_pooling_of_the_hidden_states(
    layered, layered_dir, demo_samples, tmp_path
):
    texts = demo_samples[0][:6]
    router = layered.router_
    session, names = _graph_with_hidden_outputs(layered_dir, tmp_path)
    for text in texts:
        ((_, ids, mask),) = router.tokenizer.batches([text], 1)
        feats, *states = session.run(
            ["features", *names], {"input_ids": ids, "attention_mask": mask}
        )
        blocks = []
        for h in states:
            mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            blocks.append(mean / np.linalg.norm(mean, axis=1, keepdims=True))
        np.testing.assert_allclose(feats, np.concatenate(blocks, axis=1), atol=1e-5)
    got = router.features(texts)
    assert got.shape == (len(texts), 768)
    # the scores are those features through the 768-row head
    w, b = router.head
    assert w.shape == (768, len(router.experts))
    np.testing.assert_allclose(router.scores(texts), got @ w + b, atol=1e-4)


def test_layers_are_recorded_and_fingerprinted(layered, layered_dir, minilm_trainer):
    cfg = Router.load(layered_dir).config
    assert cfg.layers == LAYERS and cfg.feature_dim == 768 and cfg.precision == "int8"
    assert cfg.fingerprint != minilm_trainer.router_.config.fingerprint
    meta = {
        p.key: p.value
        for p in onnx.load(str(layered_dir / GRAPH_FILE), load_external_data=False).metadata_props
    }
    assert meta["irde.layers"] == "[6, 5]" and meta["irde.view"] == cfg.view
    assert layered.validation_.metric == "min_cosine" and layered.validation_.value > 0.95


def test_expert_changes_and_merges_keep_working(
    layered_dir, tmp_path, demo_train, minilm_router_dir
):
    texts, labels = demo_train
    router = RouterEditor.open(layered_dir)
    before = router.scores(texts[:3])
    router.add_expert(
        "law-copy", [t for t, lab in zip(texts, labels, strict=True) if lab == "law"][:10]
    )
    router.remove_expert("law-copy")
    np.testing.assert_allclose(router.scores(texts[:3]), before, atol=1e-4)
    out = router.save(tmp_path / "copy")
    merged = RouterEditor.open(out)
    merged.merge_stats(layered_dir)  # the same shard twice: every moment doubles
    lam = merged.config.lam  # ridge on doubled moments with lam = on the originals with lam/2
    w, b = Router.load(layered_dir).stats.solve(lam / 2)
    np.testing.assert_allclose(merged.head[0], w, atol=1e-8)
    np.testing.assert_allclose(merged.head[1], b, atol=1e-8)
    with pytest.raises(InvalidInputError):
        merged.merge_stats(minilm_router_dir)  # the default view: other features


def test_view_and_layers_auto_choose_by_grouped_cv(minilm_trainer, demo_train):
    """Every (view, layers) candidate is scored; the shipped graph's features fit the head."""
    texts, labels = demo_train
    texts = [t + "\nA. yes\nB. no" if i % 3 == 0 else t for i, t in enumerate(texts)]
    groups = [f"g{i % 4}" for i in range(len(texts))]
    tr = RouterTrainer(
        encoder="minilm", view="auto", layers="auto", progress=False, validate=False
    ).fit(texts, labels, groups=groups, group_name="g")
    compared = tr.selection_["features"]
    assert len(compared) == 8 and tr.selection_["method"] == "leave-one-group-out"
    best = min(compared, key=lambda c: c["cv"])
    cfg = tr.router_.config
    assert (cfg.view, list(cfg.layers)) == (best["view"], best["layers"])
    assert cfg.lam == pytest.approx(best["lam"])
    # the statistics are those of the shipped graph's own features
    x = tr.router_.features(texts).astype(np.float64)
    np.testing.assert_allclose(
        tr.stats_.shared.sum_x + sum(m.sum_x for m in tr.stats_.owned), x.sum(axis=0), atol=1e-3
    )

"""The real MiniLM router (int8, built once per session) against its references."""

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import Ridge

from irde_onnx.export import RouterTrainer
from irde_onnx.export.minilm import minilm_reference_features
from irde_onnx.runtime import Router
from irde_onnx.runtime.tokenize import prepare_text
from irde_onnx.store.config import GRAPH_FILE
from irde_onnx.store.graph_file import load_graph_proto

from .conftest import read_rows, shared_data_or_fail


def test_graph_scores_equal_features_times_head(minilm_trainer, demo_samples):
    texts, _ = demo_samples
    router = minilm_trainer.router_
    feats = router.features(texts).astype(np.float64)
    scores = router.scores(texts)
    np.testing.assert_allclose(
        scores, feats @ minilm_trainer.coef_ + minilm_trainer.intercept_, atol=1e-5
    )
    # each pooled layer's block is L2-normalised on its own
    blocks = feats.reshape(len(texts), -1, 384)
    assert blocks.shape[1] == max(1, len(router.config.layers))
    np.testing.assert_allclose(np.linalg.norm(blocks, axis=2), 1.0, atol=1e-5)


def test_int8_features_close_to_transformers(minilm_trainer, demo_samples):
    texts, _ = demo_samples
    cfg = minilm_trainer.router_.config
    feats = minilm_trainer.router_.features(texts).astype(np.float64)
    viewed = [prepare_text(t, cfg.max_length, cfg.view) for t in texts]
    ref = minilm_reference_features(viewed, cfg.max_length, cfg.layers)
    cosine = (feats * ref).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref, axis=1))
    assert cosine.min() > 0.95
    assert minilm_trainer.validation_.metric == "min_cosine"
    assert minilm_trainer.validation_.value >= 0.95


def test_head_equals_sklearn_on_the_shipped_features(minilm_trainer, demo_train):
    texts, labels = demo_train
    feats = minilm_trainer.router_.features(texts).astype(np.float64)
    y = np.array([[lab == e for e in minilm_trainer.experts_] for lab in labels], float)
    ref = Ridge(alpha=minilm_trainer.lam_).fit(feats, y)
    np.testing.assert_allclose(minilm_trainer.coef_, ref.coef_.T, atol=1e-6)
    np.testing.assert_allclose(minilm_trainer.intercept_, ref.intercept_, atol=1e-6)


def test_graph_interface(minilm_router_dir):
    sess = ort.InferenceSession(str(minilm_router_dir / GRAPH_FILE))
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        ("input_ids", "tensor(int64)", ["batch", "sequence"]),
        ("attention_mask", "tensor(int64)", ["batch", "sequence"]),
    ]
    assert [o.name for o in sess.get_outputs()] == [
        "scores",
        "features",
        "choice",
        "confidence",
        "uncertainty",
    ]
    # declared in the graph: a symbolic n_experts, so a head with more columns fits
    model = load_graph_proto(minilm_router_dir / GRAPH_FILE)
    declared = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in model.graph.output
    }
    width = Router.load(minilm_router_dir).config.feature_dim
    assert width == 384 * max(1, len(Router.load(minilm_router_dir).config.layers))
    assert declared == {
        "scores": ["batch", "n_experts"],
        "features": ["batch", width],
        "choice": ["batch"],
        "confidence": ["batch"],
        "uncertainty": ["batch", "n_experts"],
    }
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["irde.experts"]) == Router.load(minilm_router_dir).experts
    assert meta["irde.encoder"] == "minilm" and meta["irde.precision"] == "int8"


def test_demo_routes_held_out_prompts(minilm_router_dir, demo_samples):
    texts, expected = demo_samples
    routes = Router.load(minilm_router_dir, threads=1).route(texts, top_k=2)
    assert [r.expert for r in routes] == expected
    assert all(len(r.top) == 2 and r.top[0] == r.expert for r in routes)


def test_batching_and_truncation_do_not_change_scores(minilm_router_dir, demo_samples):
    texts, _ = demo_samples
    router = Router.load(minilm_router_dir)
    # int8 dynamic quantisation scales activations per call: the runtime encodes int8
    # prompts one at a time by default so a decision never depends on its batch neighbours
    one_by_one = np.vstack([router.scores([t]) for t in texts])
    np.testing.assert_array_equal(router.scores(texts), one_by_one)
    assert router.default_batch_size == 1
    long = "word " * 2000
    assert router.scores([long]).shape == (1, len(router.experts))


def _split(rows):
    """Deterministic in-source split by id hash: about 1 in 4 rows held out."""

    def held_out(row):
        return int(hashlib.sha256(row["id"].encode()).hexdigest(), 16) % 4 == 0

    return [r for r in rows if not held_out(r)], [r for r in rows if held_out(r)]


@pytest.mark.slow
def test_domains_from_shared_data_route_correctly(tmp_path):
    """Done-criterion of the core issue: 4 domains from ../shared/data, held-out prompts."""
    train, test = [], []
    for domain in ("math", "law", "medicine", "code"):
        rows = read_rows(shared_data_or_fail("domains", f"{domain}.jsonl"))
        tr, te = _split(rows)
        train += tr[:100]
        test += te[:50]
    trainer = RouterTrainer(encoder="minilm", max_length=128, progress=False)
    trainer.fit([r["text"] for r in train], [r["domain"] for r in train])
    router = Router.load(trainer.save(tmp_path / "domains"))
    picked = [r.expert for r in router.route([r["text"] for r in test])]
    accuracy = np.mean([p == r["domain"] for p, r in zip(picked, test, strict=True)])
    assert accuracy >= 0.9, accuracy


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32"])
def test_fp32_export_matches_transformers(precision, demo_train):
    texts, labels = demo_train
    tr = RouterTrainer(encoder="minilm", precision=precision, progress=False)
    tr.fit(texts[::4], labels[::4])
    assert tr.validation_.metric == "max_abs_diff" and tr.validation_.value <= 1e-4


def test_pooled_validation_raises_a_typed_error(minilm_trainer):
    from irde_onnx.errors import ExportValidationError
    from irde_onnx.export.validate import validate_pooled

    w, b = minilm_trainer.coef_, minilm_trainer.intercept_
    ref = minilm_reference_features
    assert validate_pooled(minilm_trainer.router_, w, b, ref).scores_max_abs_diff <= 1e-4
    with pytest.raises(ExportValidationError, match="features @ W"):
        validate_pooled(minilm_trainer.router_, w, b + 0.01, ref)


def test_calibrated_confidence_and_the_graphs_choice(
    minilm_trainer, minilm_router_dir, demo_train, demo_samples
):
    """The temperature is the NLL fit on the trainer's out-of-fold scores, and the graph's
    choice and confidence equal the numpy rule on its scores."""
    from irde_onnx.decision.policy import fit_temperature

    router = Router.load(minilm_router_dir)
    labels = np.array([router.experts.index(x) for x in demo_train[1]])
    assert minilm_trainer.oof_scores_.shape == (len(labels), len(router.experts))
    assert router.policy.temperature == pytest.approx(
        fit_temperature(minilm_trainer.oof_scores_, labels)
    )
    texts = demo_samples[0]
    routes = router.route(texts)
    choice, conf = router.decide(router.scores(texts))
    assert [r.expert for r in routes] == [router.experts[c] for c in choice]
    np.testing.assert_allclose([r.confidence for r in routes], conf, rtol=1e-5)
    assert all(0 < r.confidence <= 1 for r in routes)

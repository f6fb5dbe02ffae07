"""RouterTrainer: the exported head equals scikit-learn's Ridge on the same rows; errors."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import Ridge

from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.export.minilm import minilm_word_embeddings
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import DATA_FILE, GRAPH_FILE, HEAD_B, HEAD_W
from irde_onnx.store.graph_file import load_graph_proto, read_head


def test_static_head_equals_sklearn_on_token_rows(static_trainer, demo_train):
    texts, labels = demo_train
    tr = static_trainer
    table = minilm_word_embeddings().astype(np.float16).astype(np.float64)
    ids = tr.router_.tokenizer.content_ids(texts)
    x = np.concatenate([table[i] for i in ids])
    names = tr.experts_
    y = np.concatenate(
        [
            np.tile(np.eye(len(names))[names.index(lab)], (len(i), 1))
            for i, lab in zip(ids, labels, strict=True)
        ]
    )
    ref = Ridge(alpha=tr.lam_).fit(x, y)
    np.testing.assert_allclose(tr.coef_, ref.coef_.T, atol=1e-6)
    np.testing.assert_allclose(tr.intercept_, ref.intercept_, atol=1e-6)


def test_saved_graph_holds_the_head_inline(static_router_dir, static_trainer):
    w, b = read_head(static_router_dir / GRAPH_FILE)
    np.testing.assert_allclose(w, static_trainer.coef_, atol=1e-6)
    np.testing.assert_allclose(b, static_trainer.intercept_, atol=1e-6)
    model = load_graph_proto(static_router_dir / GRAPH_FILE)
    location = {t.name: t.data_location for t in model.graph.initializer}
    assert location[HEAD_W] == location[HEAD_B] == 0  # DEFAULT: inside router.onnx
    assert location["static.table"] == 1  # EXTERNAL: in router.onnx.data
    assert (static_router_dir / DATA_FILE).stat().st_size > 20_000_000
    assert (static_router_dir / GRAPH_FILE).stat().st_size < 100_000
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["irde.experts"]) == static_trainer.experts_


def test_round_trip_same_scores(static_router_dir, static_trainer, demo_samples):
    texts, _ = demo_samples
    before = static_trainer.router_.scores(texts)
    after = Router.load(static_router_dir).scores(texts)
    np.testing.assert_array_equal(before, after)


def test_plain_onnxruntime_runs_the_graph(static_router_dir, demo_samples):
    from tokenizers import Tokenizer

    texts, expected = demo_samples
    tok = Tokenizer.from_file(str(static_router_dir / "tokenizer.json"))
    # the shipped file truncates at the router's max_length and does not pad by itself
    assert tok.truncation["max_length"] == 256 and tok.padding is None
    tok.enable_padding(pad_id=0)
    enc = tok.encode_batch(texts)
    sess = ort.InferenceSession(str(static_router_dir / GRAPH_FILE))
    feed = {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
    }
    scores = sess.run(["scores"], feed)[0]
    experts = json.loads(sess.get_modelmeta().custom_metadata_map["irde.experts"])
    np.testing.assert_allclose(scores, Router.load(static_router_dir).scores(texts), atol=1e-6)
    picked = [experts[i] for i in scores.argmax(1)]
    assert np.mean([p == e for p, e in zip(picked, expected, strict=True)]) >= 0.8


def test_score_mode_head_equals_sklearn(demo_train):
    texts, labels = demo_train
    texts = texts[:60]
    rng = np.random.default_rng(1)
    y = rng.random((len(texts), 3))
    tr = RouterTrainer(encoder="static", strategy="mean", lam=2.0, progress=False)
    tr.fit(texts, scores=y, experts=["a", "b", "c"])
    table = minilm_word_embeddings().astype(np.float16).astype(np.float64)
    ids = tr.router_.tokenizer.content_ids(texts)
    x = np.concatenate([table[i] for i in ids])
    yy = np.concatenate([np.repeat(y[j : j + 1], len(i), axis=0) for j, i in enumerate(ids)])
    ref = Ridge(alpha=2.0).fit(x, yy)
    np.testing.assert_allclose(tr.coef_, ref.coef_.T, atol=1e-6)
    assert tr.router_.config.target == "score"


def test_lam_auto_is_chosen_by_cross_validation(demo_train):
    texts, labels = demo_train
    tr = RouterTrainer(encoder="static", progress=False).fit(texts, labels)
    assert tr.cv_errors_ and tr.lam_ == min(tr.cv_errors_, key=tr.cv_errors_.get)
    assert tr.router_.config.lam == tr.lam_


@pytest.mark.parametrize(
    ("kwargs", "fit", "match"),
    [
        ({"encoder": "bert"}, {}, "unknown encoder"),
        ({"encoder": "static", "precision": "int8"}, {}, "precision"),
        ({"encoder": "minilm", "strategy": "vote"}, {}, "strategy"),
        ({"lam": -1}, {}, "lam"),
        ({"lam": "big"}, {}, "lam"),
        ({"max_length": 0}, {}, "max_length"),
        ({"cv_folds": 1}, {}, "cv_folds"),
        ({"encoder": "static"}, {"labels": ["a"] * 4}, "at least 2 experts"),
        ({"encoder": "static"}, {"labels": ["a", "b"]}, "labels for"),
        (
            {"encoder": "static"},
            {"labels": ["a", "b", "a", "b"], "scores": np.ones((4, 2))},
            "exactly one",
        ),
        (
            {"encoder": "static"},
            {"scores": np.full((4, 2), np.nan), "experts": ["a", "b"]},
            "finite",
        ),
        ({"encoder": "static"}, {"scores": np.ones((4, 3)), "experts": ["a", "b"]}, "shape"),
        ({"encoder": "static"}, {"scores": np.ones((4, 2))}, "experts="),
        (
            {"encoder": "static"},
            {"labels": ["a", "b", "a", "c"], "experts": ["a", "b"]},
            "not in experts",
        ),
        (
            {"encoder": "static"},
            {"labels": ["a", "b", "a", "b"], "experts": ["a", "b", "z"]},
            "no texts",
        ),
    ],
)
def test_fit_errors(kwargs, fit, match):
    texts = ["one", "two", "three", "four"]
    if not fit:
        fit = {"labels": ["a", "b", "a", "b"]}
    with pytest.raises(InvalidInputError, match=match):
        RouterTrainer(progress=False, **kwargs).fit(texts, **fit)


def test_texts_must_be_a_list_of_strings():
    with pytest.raises(InvalidInputError, match="not one string"):
        RouterTrainer(encoder="static").fit("just one text", ["a"])
    with pytest.raises(InvalidInputError, match="no training texts"):
        RouterTrainer(encoder="static").fit([], [])


def test_unfitted_and_save_errors(static_trainer, tmp_path):
    with pytest.raises(InvalidInputError, match="not fitted"):
        RouterTrainer().predict(["x"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not empty"):
        static_trainer.save(tmp_path / "busy")
    assert (tmp_path / "busy" / "file").read_text() == "keep me"
    # overwrite replaces a router folder (as Router.save means it), never unrelated files
    with pytest.raises(InvalidInputError, match=r"not a router \(file\)"):
        static_trainer.save(tmp_path / "busy", overwrite=True)
    assert (tmp_path / "busy" / "file").read_text() == "keep me"
    first = static_trainer.save(tmp_path / "r")
    assert (
        json.loads((first / "router.json").read_text())["files"]["graph"]["name"] == GRAPH_FILE
    )  # a freshly trained router names router.onnx
    (first / "extra.txt").write_text("not the router's")
    (tmp_path / ".r.old").mkdir()  # a sibling the old code deleted
    out = static_trainer.save(first, overwrite=True)
    assert Router.load(out).experts == static_trainer.experts_
    assert (out / "extra.txt").read_text() == "not the router's"  # not a router file: kept
    assert (tmp_path / ".r.old").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.old", "busy", "r"]


def test_the_trained_router_outlives_its_trainer(demo_train, tmp_path):
    import gc

    texts, labels = demo_train
    router = (
        RouterTrainer(encoder="static", lam=1.0, progress=False, validate=False)
        .fit(texts[::4], labels[::4])
        .router_
    )
    gc.collect()  # the trainer is gone; its router lives in memory (no folder behind it)
    assert router.stats.experts == router.experts and router.path is None
    out = RouterEditor(router).save(tmp_path / "kept")
    assert Router.load(out).experts == router.experts


def test_validation_raises_a_typed_error_when_the_graph_differs(static_trainer):
    from irde_onnx.errors import ExportValidationError
    from irde_onnx.export.validate import validate_static

    tr = static_trainer
    table = minilm_word_embeddings().astype(np.float16)
    token_mask = np.ones(table.shape[0], np.float32)
    token_mask[tr.router_.tokenizer.special_ids] = 0.0
    report = validate_static(tr.router_, table, token_mask, tr.coef_, tr.intercept_)
    assert report.value <= 1e-5
    wrong = tr.coef_.copy()
    wrong[:, [0, 1]] = wrong[:, [1, 0]]  # a reference that disagrees with the graph
    with pytest.raises(ExportValidationError, match="numpy"):
        validate_static(tr.router_, table, token_mask, wrong, tr.intercept_)


def test_fit_validates_the_graph_that_ships(demo_train, tmp_path, monkeypatch):
    """The router fit validates runs the graph save writes, byte for byte; fit writes no file."""
    import tempfile

    from irde_onnx.export import RouterTrainer, minilm

    validated = []
    real = minilm.validate_static

    def spy(router, *args):
        validated.append(router)
        return real(router, *args)

    monkeypatch.setattr(minilm, "validate_static", spy)
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: pytest.fail("fit made a folder"))
    texts, labels = demo_train
    trainer = RouterTrainer(encoder="static", lam=1.0, progress=False)
    trainer.fit(texts, labels, costs={e: 1.0 for e in sorted(set(labels))}, wtp=0.5)
    (router,) = validated
    assert router.path is None and trainer.router_.graph == router.graph
    out = trainer.save(tmp_path / "r")
    saved = Router.load(out)
    assert (out / saved.config.graph_file).read_bytes() == router.graph
    assert saved.policy.wtp == 0.5

"""The tiny encoder end to end: trainer, exact add/remove, save/load, calibration, budget.

No torch: the table comes from the safetensors MiniLM weights; each router here is built in
about a second from the demo rows.
"""

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from sklearn.linear_model import Ridge

from irde_onnx.defaults import TINY_DIM, TINY_MAX_BYTES
from irde_onnx.encoders import get_encoder
from irde_onnx.export import RouterTrainer
from irde_onnx.export.tiny import max_table_rows
from irde_onnx.graph.build import TINY_ID_MAP
from irde_onnx.graph.rules import graph_problem
from irde_onnx.learning.tiny_features import select_vocabulary, vocabulary_within
from irde_onnx.runtime import Router, RouterEditor

# prompts of a new expert whose words are rare: many of their tokens are neither in the demo
# training prompts nor among the first 5,000 ids of the vocabulary order
ASTRO = [
    "Estimate the redshift of a quasar whose Lyman-alpha emission is observed at 486 nm.",
    "Why do pulsars spin down, and how is the magnetar's braking index measured?",
    "Describe the nucleosynthesis of lithium in the primordial plasma after inflation.",
    "How do gravitational lensing arcs constrain the dark matter halo of a galaxy cluster?",
    "Compute the Schwarzschild radius of a neutron star of 1.4 solar masses.",
    "What sets the Chandrasekhar limit of a white dwarf, and what happens beyond it?",
    "Explain the Hertzsprung-Russell diagram's main sequence turnoff in a globular cluster.",
    "How are exoplanets detected by transit photometry and radial velocity wobbles?",
]


def _without(texts, labels, name):
    keep = [i for i, lab in enumerate(labels) if lab != name]
    return [texts[i] for i in keep], [labels[i] for i in keep]


@pytest.fixture(scope="module")
def tiny(demo_train):
    return RouterTrainer(encoder="tiny", progress=False).fit(*demo_train)


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    return tiny.save(tmp_path_factory.mktemp("tiny") / "router")


def _id_map(folder):
    model = onnx.load(str(folder / "router.onnx"))  # external data beside it
    init = {i.name: i for i in model.graph.initializer}
    return numpy_helper.to_array(init[TINY_ID_MAP])


def test_registry_entry():
    spec = get_encoder("tiny")
    assert spec.pooled and spec.feature_dim == TINY_DIM
    assert spec.precisions == ("int8", "fp16") and spec.strategies == ("mean",)


def test_trains_validates_and_routes(tiny, demo_samples):
    cfg = tiny.router_.config
    assert (cfg.encoder, cfg.precision, cfg.strategy, cfg.feature_dim) == (
        "tiny",
        "int8",
        "mean",
        TINY_DIM,
    )
    report = tiny.validation_
    assert report is not None and report.reference == "numpy" and report.value <= 1e-5
    texts, labels = demo_samples
    assert np.mean([p == y for p, y in zip(tiny.predict(texts), labels, strict=True)]) >= 0.8


def test_confidence_is_calibrated_by_cv(tiny):
    temperature = tiny.router_.config.policy["temperature"]
    assert temperature > 0 and temperature != pytest.approx(1.0)


def test_save_load_round_trip_and_graph_rules(tiny, tiny_dir, demo_samples):
    texts, _ = demo_samples
    loaded = Router.load(tiny_dir)
    np.testing.assert_array_equal(loaded.scores(texts), tiny.router_.scores(texts))
    assert [r.expert for r in loaded.route(texts)] == tiny.predict(texts)
    size = sum((tiny_dir / f).stat().st_size for f in ("router.onnx", "router.onnx.data"))
    assert size <= TINY_MAX_BYTES
    data = (tiny_dir / "router.onnx").read_bytes()
    cfg = loaded.config
    assert graph_problem(data, "tiny", cfg.feature_dim, len(cfg.experts), 30522) is None


def test_add_expert_with_unseen_tokens_is_exact(tiny_dir, tmp_path):
    router = RouterEditor.open(shutil.copytree(tiny_dir, tmp_path / "r"))
    id_map = _id_map(tiny_dir)
    unknown = int(id_map.max()) - 1  # the shared row of every dropped content token
    ids = np.concatenate(router.tokenizer.content_ids(ASTRO))
    unseen = ids[id_map[ids] == unknown]
    assert len(unseen) >= 5 and len(set(unseen.tolist())) >= 5  # distinct tokens, one row

    start_w, start_b = router.head
    start = router.stats.copy()
    router.add_expert("astro", ASTRO)
    assert router.experts[-1] == "astro"
    feats = router.features(ASTRO)
    assert np.isfinite(feats).all()
    assert [r.expert for r in router.route(ASTRO)].count("astro") >= len(ASTRO) // 2
    router.remove_expert("astro")
    w_ref, b_ref = start.solve(router.config.lam)
    np.testing.assert_allclose(router.head[0], w_ref, atol=1e-9)
    np.testing.assert_allclose(router.head[1], b_ref, atol=1e-9)
    np.testing.assert_allclose(router.head[0], start_w, atol=1e-6)
    np.testing.assert_allclose(router.head[1], start_b, atol=1e-6)


def test_added_head_equals_ridge_on_graph_features(demo_train, tmp_path):
    texts, labels = _without(*demo_train, "medicine")
    four = RouterTrainer(encoder="tiny", lam=0.05, calibrate=False, progress=False)
    router = RouterEditor.open(four.fit(texts, labels).save(tmp_path / "four"))
    router.add_expert("astro", ASTRO)
    x = router.features(texts + ASTRO).astype(np.float64)
    names = router.experts
    y = np.zeros((len(x), len(names)))
    y[np.arange(len(x)), [names.index(lab) for lab in labels + ["astro"] * len(ASTRO)]] = 1
    ref = Ridge(alpha=0.05).fit(x, y)
    np.testing.assert_allclose(router.head[0], ref.coef_.T, atol=1e-5)
    np.testing.assert_allclose(router.head[1], ref.intercept_, atol=1e-5)


def test_fp16_precision(demo_train, demo_samples):
    tr = RouterTrainer(encoder="tiny", precision="fp16", lam=0.05, progress=False)
    tr.fit(*demo_train)
    assert tr.router_.config.precision == "fp16" and tr.validation_ is not None
    texts, labels = demo_samples
    assert np.mean([p == y for p, y in zip(tr.predict(texts), labels, strict=True)]) >= 0.8


def test_byte_budget_drops_the_rarest_training_tokens():
    train = [np.array([5, 5, 5, 6, 7]), np.array([5, 6, 8, 9])]
    frequent = np.arange(3, 20)
    full = select_vocabulary(train, 20, [0, 1, 2], frequent, 2)  # 3, 4 + 5..9
    assert full.tolist() == [3, 4, 5, 6, 7, 8, 9]
    cut = vocabulary_within(train, 20, [0, 1, 2], frequent, 2, 4)
    assert cut.tolist() == [3, 4, 5, 6]  # the frequent rows, then the most seen tokens
    assert vocabulary_within(train, 20, [0, 1, 2], frequent, 2, 10).tolist() == full.tolist()
    # MiniLM's vocabulary at k 256, int8, 10 experts: at most ~18,700 rows fit in 5 MB
    rows = max_table_rows(256, "int8", 30522, 10)
    assert 18_000 < rows < 19_000
    bytes_ = rows * (256 + 4 + 1) + 2 * 30522 + 4 * 257 * 10
    assert bytes_ <= TINY_MAX_BYTES


def test_needs_training_prompts():
    from irde_onnx.errors import InvalidInputError
    from irde_onnx.export.tiny import build_tiny

    with pytest.raises(InvalidInputError, match="training prompts"):
        build_tiny("int8", "mean", 10, None, 3)


def test_max_bytes_keeps_a_smaller_table_that_still_routes(demo_train, demo_samples, tmp_path):
    from irde_onnx.export.tiny import MIN_TINY_BYTES

    budget = 1_000_000
    tr = RouterTrainer(encoder="tiny", max_bytes=budget, lam=0.05, progress=False)
    tr.fit(*demo_train)
    folder = tr.save(tmp_path / "small")
    graph_bytes = (folder / "router.onnx").stat().st_size + (
        folder / "router.onnx.data"
    ).stat().st_size
    assert graph_bytes <= budget
    rows = len(np.unique(_id_map(folder)))
    # the demo prompts hold ~5,400 kept rows at the default budget; 1 MB holds fewer
    assert rows <= max_table_rows(TINY_DIM, "int8", 30522, len(tr.experts_), budget)
    assert tr.validation_ is not None  # the graph matches the numpy reference
    texts, labels = demo_samples
    assert np.mean([p == y for p, y in zip(tr.predict(texts), labels, strict=True)]) >= 0.7
    assert MIN_TINY_BYTES <= budget


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoder": "static", "max_bytes": 2_000_000}, "tiny encoder only"),
        ({"encoder": "tiny", "max_bytes": 1000}, "max_bytes must be an integer >= 500,000"),
        ({"encoder": "tiny", "max_bytes": 2.5e6}, "max_bytes must be an integer"),
    ],
)
def test_max_bytes_errors(demo_train, kwargs, match):
    from irde_onnx.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=match):
        RouterTrainer(progress=False, **kwargs).fit(*demo_train)

"""Every exporter's graph keeps the rules of ``irde_onnx.graph.rules`` (a new one updates them).

The MiniLM encoder is exported once per precision and process (``export_minilm`` caches it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from irde_onnx.decision.nodes import add_policy
from irde_onnx.decision.policy import Policy
from irde_onnx.graph.rules import ALLOWED_OPS, graph_problem, summarize_graph
from irde_onnx.runtime.tokenize import TextTokenizer

EXPERTS = ["code", "law", "math"]
POLICY = Policy.from_dict(
    {
        "costs": {"code": 1.0, "law": 2.0, "math": 3.0},
        "wtp": 1.0,
        "min_confidence": 0.2,
        "fallback": "code",
    }
)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from irde_onnx.export.minilm import minilm_tokenizer_file

    return TextTokenizer(minilm_tokenizer_file(), 256)


def _check(model, encoder, feature_dim, vocab_size):
    data = model.SerializeToString()
    ops = {op for _, op in summarize_graph(data).ops}
    assert ops <= ALLOWED_OPS[encoder], ops - ALLOWED_OPS[encoder]
    assert graph_problem(data, encoder, feature_dim, len(EXPERTS), vocab_size) is None
    add_policy(model, "domain", POLICY, EXPERTS)  # the decision nodes of a saved router
    data = model.SerializeToString()
    assert graph_problem(data, encoder, feature_dim, len(EXPERTS), vocab_size) is None
    return ops


@pytest.mark.parametrize(
    "precision,strategy",
    [("fp16", "vote"), ("fp16", "mean"), ("fp32", "entropy_top_k"), ("fp32", "vote")],
)
def test_static_graphs_use_listed_ops_and_fit_the_bound(minilm_tokenizer, precision, strategy):
    from irde_onnx.export.minilm import build_static

    built = build_static(precision, strategy, 10, minilm_tokenizer, len(EXPERTS))
    _check(built.model, "static", 384, minilm_tokenizer.vocab_size)


@pytest.mark.slow
@pytest.mark.parametrize("precision,layers", [("fp32", (6, 5)), ("int8", ()), ("int8", (6,))])
def test_minilm_graphs_use_listed_ops_and_fit_the_bound(minilm_tokenizer, precision, layers):
    from irde_onnx.export.minilm import build_minilm

    built = build_minilm(precision, "mean", 10, minilm_tokenizer, len(EXPERTS), layers)
    ops = _check(built.model, "minilm", 384 * max(1, len(layers)), minilm_tokenizer.vocab_size)
    assert "ConstantOfShape" in ops  # the rule on constant sizes is what guards it


def test_the_toy_router_keeps_the_static_rules(toy_router_dir):
    from irde_onnx.runtime import Router

    router = Router.load(toy_router_dir)
    data = router.graph_path.read_bytes()
    ops = {op for _, op in summarize_graph(data).ops}
    assert ops <= ALLOWED_OPS["static"]


def test_the_issue_s_11_kb_graph_asking_for_gigabytes_is_refused_at_load(
    static_router_dir, tmp_path
):
    import hashlib
    import json
    import shutil

    import onnx
    from onnx import TensorProto, helper

    from irde_onnx.errors import RouterFormatError
    from irde_onnx.runtime import Router

    root = Path(shutil.copytree(static_router_dir, tmp_path / "router"))
    config = json.loads((root / "router.json").read_text())
    graph = root / config["files"]["graph"]["name"]
    assert graph.stat().st_size < 12_000
    model = onnx.load(str(graph), load_external_data=False)
    scores = next(n for n in model.graph.node if "scores" in n.output)
    scores.output[list(scores.output).index("scores")] = "scores_raw"
    shape = helper.make_tensor("s", TensorProto.INT64, [1], [500_000_000])
    model.graph.node.extend(
        [
            helper.make_node("Constant", [], ["huge_shape"], value=shape),
            helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]),
            helper.make_node("ReduceSum", ["huge"], ["huge_sum"], keepdims=0),
            helper.make_node("Add", ["scores_raw", "huge_sum"], ["scores"]),
        ]
    )
    data = model.SerializeToString()
    graph.write_bytes(data)
    config["files"]["graph"]["sha256"] = hashlib.sha256(data).hexdigest()
    (root / "router.json").write_text(json.dumps(config))
    with pytest.raises(RouterFormatError, match="ConstantOfShape a constant size"):
        Router.load(root)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_tiny_graphs_use_listed_ops_and_fit_the_bound(minilm_tokenizer, demo_train, precision):
    from irde_onnx.export.tiny import build_tiny

    ids = minilm_tokenizer.content_ids(demo_train[0])
    built = build_tiny(precision, "mean", 10, minilm_tokenizer, len(EXPERTS), train_ids=ids)
    _check(built.model, "tiny", 256, minilm_tokenizer.vocab_size)

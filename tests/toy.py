"""A toy router built with numpy, onnx and tokenizers alone: no torch, no export extra.

A 40-word WordPiece vocabulary, an 8-d random static table and the static ``mean`` graph
(Gather -> masked mean -> MatMul + Add), written in the router directory layout with real
statistics, so loading, routing, adding and removing experts and saving run in milliseconds.
Bookkeeping tests (errors, saves, swaps, the command line) use it; the maths is tested
against references with the real routers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from irde_onnx._version import __version__
from irde_onnx.graph.metadata import graph_metadata, set_metadata
from irde_onnx.learning.statistics import RouterStats, token_moments
from irde_onnx.runtime.tokenize import TextTokenizer
from irde_onnx.store.config import (
    CONFIG_FILE,
    GRAPH_FILE,
    HEAD_B,
    HEAD_W,
    STATIC_TABLE,
    STATIC_TOKEN_MASK,
    STATS_FILE,
    TOKENIZER_FILE,
    RouterConfig,
    fingerprint,
)
from irde_onnx.store.folder import record_files
from irde_onnx.store.graph_file import save_router_graph

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = [
    "solve",
    "integral",
    "equation",
    "prime",
    "number",
    "sum",
    "derivative",
    "matrix",
    "contract",
    "court",
    "law",
    "statute",
    "judge",
    "tort",
    "appeal",
    "clause",
    "python",
    "function",
    "bug",
    "compile",
    "loop",
    "code",
    "class",
    "list",
    "patient",
    "dose",
    "symptom",
    "heart",
    "the",
    "a",
    "of",
    "what",
    "is",
    "how",
    "to",
    "write",
    "for",
    "x",
    "in",
    "my",
]
VOCAB = SPECIALS + WORDS
DIM = 8
MAX_LENGTH = 16
LAM = 1.0
TRAIN = {
    "code": [
        "write a python function",
        "fix the bug in my loop",
        "how to compile the code",
        "a python class for a list",
        "what is the bug in my function",
    ],
    "law": [
        "what is the statute of the court",
        "appeal to the judge",
        "a clause of the contract",
        "the law of tort",
        "how to write a contract clause",
    ],
    "math": [
        "solve the equation for x",
        "what is the integral of x",
        "the sum of a prime number",
        "the derivative of the matrix",
        "is x a prime number",
    ],
}
EXPERTS = sorted(TRAIN)


def toy_tokenizer(path: Path, max_length: int = MAX_LENGTH) -> None:
    """Write a BERT-like WordPiece ``tokenizer.json`` over :data:`VOCAB`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(SPECIALS)
    tok.enable_truncation(max_length)
    tok.save(str(path))


def toy_graph(
    table: np.ndarray, token_mask: np.ndarray, w: np.ndarray, b: np.ndarray
) -> onnx.ModelProto:
    """The static router's ``mean`` graph: masked mean of table rows, then the head."""

    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))

    nodes = [
        const("one", np.array(1.0, np.float32)),
        const("axis1", np.array([1], np.int64)),
        const("axis_last", np.array([-1], np.int64)),
        helper.make_node("Gather", [STATIC_TABLE, "input_ids"], ["emb"]),
        helper.make_node("Gather", [STATIC_TOKEN_MASK, "input_ids"], ["counted"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["counted", "mask_f"], ["valid"]),
        helper.make_node("Unsqueeze", ["valid", "axis_last"], ["valid3"]),
        helper.make_node("Mul", ["emb", "valid3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["emb_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["valid", "axis1"], ["n"], keepdims=1),
        helper.make_node("Max", ["n", "one"], ["n_c"]),
        helper.make_node("Div", ["emb_sum", "n_c"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", HEAD_W], ["xw"]),
        helper.make_node("Add", ["xw", HEAD_B], ["scores"]),
    ]
    inits = [
        numpy_helper.from_array(np.asarray(a, np.float32), name)
        for name, a in (
            (STATIC_TABLE, table),
            (STATIC_TOKEN_MASK, token_mask),
            (HEAD_W, w),
            (HEAD_B, b),
        )
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "n_experts"])]
    graph = helper.make_graph(nodes, "toy_router", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def build_toy_router(
    root: Path, train: dict[str, list[str]] | None = None, lam: float = LAM, seed: int = 0
) -> Path:
    """Write a complete toy router directory trained on ``train`` ({expert: texts})."""
    train = TRAIN if train is None else train
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    toy_tokenizer(root / TOKENIZER_FILE)
    tok = TextTokenizer(root / TOKENIZER_FILE, MAX_LENGTH)
    table = np.random.default_rng(seed).normal(size=(len(VOCAB), DIM)).astype(np.float32)
    token_mask = np.ones(len(VOCAB), np.float32)
    token_mask[tok.special_ids] = 0.0
    stats = RouterStats.empty(len(VOCAB), diagonal=True)
    names = sorted(train)
    for name in names:
        ids = tok.content_ids(train[name])
        stats.append_domain(name, token_moments(ids, np.ones((len(ids), 1)), len(VOCAB)))
    w, b = stats.solve(lam, table.astype(np.float64))
    config = RouterConfig(
        experts=tuple(names),
        expert_modes=("pooled",) * len(names),
        encoder="static",
        precision="fp32",
        strategy="mean",
        target="domain",
        lam=lam,
        max_length=MAX_LENGTH,
        feature_dim=DIM,
        fingerprint="",
        package_version=__version__,
    )
    model = toy_graph(table, token_mask, w, b)
    set_metadata(model, graph_metadata(config))
    save_router_graph(model, root / GRAPH_FILE)
    stats.fingerprint = fingerprint(root, "static", "fp32", MAX_LENGTH)
    config = RouterConfig(**{**config.__dict__, "fingerprint": stats.fingerprint})
    stats.save(root / STATS_FILE)
    config = record_files(root, config)
    (root / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    return root

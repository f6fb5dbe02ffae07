"""A toy router built with numpy, onnx and tokenizers alone: no torch, no export extra.

A 40-word WordPiece vocabulary, an 8-d random static table and the static ``mean`` graph
of the real builder (:func:`irde_onnx.graph.build.static_router`), saved by the store's
writer with real statistics, so loading, routing, adding and removing experts and saving
run in milliseconds.
Bookkeeping tests (errors, saves, swaps, the command line) use it; the maths is tested
against references with the real routers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from irde_onnx._version import __version__
from irde_onnx.graph.build import static_router
from irde_onnx.learning.statistics import RouterStats, token_moments
from irde_onnx.runtime.tokenize import TextTokenizer
from irde_onnx.store.config import RouterConfig
from irde_onnx.store.folder import write_router
from irde_onnx.store.graph_file import new_generation

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


def toy_tokenizer(max_length: int = MAX_LENGTH) -> bytes:
    """A BERT-like WordPiece ``tokenizer.json`` over :data:`VOCAB`."""
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
    return tok.to_str(pretty=True).encode("utf-8")


def build_toy_router(
    root: Path, train: dict[str, list[str]] | None = None, lam: float = LAM, seed: int = 0
) -> Path:
    """Write a complete toy router directory trained on ``train`` ({expert: texts})."""
    train = TRAIN if train is None else train
    tokenizer = toy_tokenizer()
    tok = TextTokenizer(tokenizer, MAX_LENGTH)
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
    model = static_router(table, token_mask, w, b, "mean")
    write_router(Path(root), new_generation(model, config, tokenizer, stats))
    return Path(root)

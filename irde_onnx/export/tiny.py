"""The tiny encoder: MiniLM's word-embedding table cut to the rows a router needs.

The kept rows are the training prompts' content tokens plus the first
:data:`~irde_onnx.defaults.TINY_FREQUENT_ROWS` ids of the tokenizer's vocabulary order, within
a byte budget; every other content token reads one shared unknown row. The table is
projected to :data:`~irde_onnx.defaults.TINY_DIM` dimensions by a PCA of the training prompts'
pooled features and stored as int8 (one scale per row) or fp16. The table is read from the
safetensors weights (the ``export`` extra; no torch); routing needs only onnxruntime. The
settings and how they were chosen: :mod:`irde_onnx.defaults`, ``research/tiny/``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irde_onnx.defaults import (
    TINY_DIM,
    TINY_FREQUENT_ROWS,
    TINY_MAX_BYTES,
    TINY_NORMALIZE,
    TINY_UNKNOWN,
)
from irde_onnx.errors import InvalidInputError
from irde_onnx.export.minilm import BuiltGraph, minilm_word_embeddings
from irde_onnx.export.validate import ValidationReport, validate_tiny
from irde_onnx.graph import build as graph
from irde_onnx.learning.tiny_features import (
    TinyTable,
    build_tiny_table,
    fit_projection,
    vocabulary_within,
)
from irde_onnx.runtime.router import Router
from irde_onnx.runtime.tokenize import TextTokenizer

# bytes of router.onnx besides the table and the head: nodes, names, small constants and the
# decision settings the editor writes (measured: under 8 KB; a wide margin)
GRAPH_OVERHEAD_BYTES = 64 * 1024
ROW_BYTES = {"int8": 1, "fp16": 2, "fp32": 4}


def vocabulary_order(tokenizer: TextTokenizer) -> np.ndarray:
    """Vocabulary ids in the tokenizer's order without specials and ``[unusedX]`` entries.

    BERT's WordPiece list holds single characters, then words roughly by corpus frequency:
    a data-free reference order (no prompt can leak into it).
    """
    tok = tokenizer.tokenizer
    ids = [
        i
        for i in range(tokenizer.vocab_size)
        if not (tok.id_to_token(i) or "").startswith("[unused")
    ]
    order = np.asarray(ids, np.int64)
    return order[~np.isin(order, tokenizer.special_ids)]


MIN_TINY_BYTES = 500_000  # the smallest budget RouterTrainer(max_bytes=...) accepts: ~1,500 rows


def max_table_rows(
    dim: int, precision: str, vocab_size: int, n_experts: int, budget: int = TINY_MAX_BYTES
) -> int:
    """The most table rows (kept + unknown + ignored) a graph of ``budget`` bytes holds."""
    per_row = dim * ROW_BYTES[precision] + (4 if precision == "int8" else 0) + 1
    head = 4 * (dim + 1) * n_experts
    fixed = head + GRAPH_OVERHEAD_BYTES
    rows = (budget - fixed - 2 * vocab_size) // per_row
    if rows > np.iinfo(np.int16).max:  # an int32 id map: twice the bytes
        rows = min(rows, (budget - fixed - 4 * vocab_size) // per_row)
    return int(rows)


def tiny_table(
    train_ids: Sequence[np.ndarray],
    tokenizer: TextTokenizer,
    precision: str,
    n_experts: int,
    dim: int = TINY_DIM,
    budget: int = TINY_MAX_BYTES,
) -> TinyTable:
    """The tiny table of the training prompts' content ids (the router's view applied)."""
    table = minilm_word_embeddings()
    vocab, full_dim = table.shape
    rows = max_table_rows(dim, precision, vocab, n_experts, budget) - 2
    kept = vocabulary_within(
        train_ids,
        vocab,
        tokenizer.special_ids,
        vocabulary_order(tokenizer),
        TINY_FREQUENT_ROWS,
        rows,
    )
    # PCA of the training prompts' pooled features on the full fp32 table; with no prompts
    # (a cold start), of the kept rows themselves (each a one-token prompt)
    pooled = np.zeros((len(train_ids), full_dim))
    for i, ids in enumerate(train_ids):
        if len(ids):
            pooled[i] = table[np.asarray(ids, np.int64)].mean(axis=0, dtype=np.float64)
    if not len(train_ids):
        pooled = np.asarray(table[kept], np.float64)
    projection = None
    if dim < full_dim:
        projection = fit_projection(pooled, dim)
    return build_tiny_table(table, kept, tokenizer.special_ids, TINY_UNKNOWN, projection, precision)


def build_tiny(
    precision: str,
    strategy: str,
    top_k_tokens: int,
    tokenizer: TextTokenizer,
    n_experts: int,
    layers: tuple[int, ...] = (),
    *,
    train_ids: Sequence[np.ndarray] | None = None,
    budget: int = TINY_MAX_BYTES,
) -> BuiltGraph:
    """The tiny router of ``train_ids`` (each training prompt's content ids) + a zero head.

    No prompts (a cold start): the table keeps the tokenizer's most frequent ids alone.

    The trainer passes ``train_ids`` to the builders that take it, and ``budget`` (the
    graph's bytes) when ``RouterTrainer(max_bytes=...)`` is set; see
    :func:`irde_onnx.export.minilm.build_minilm` for the other arguments.
    """
    del strategy, top_k_tokens, layers  # one strategy (mean), no layers
    if train_ids is None:
        raise InvalidInputError("the tiny encoder needs the training prompts (train_ids)")
    t = tiny_table(train_ids, tokenizer, precision, n_experts, budget=budget)
    zeros_w = np.zeros((t.dim, n_experts), np.float32)
    zeros_b = np.zeros(n_experts, np.float32)
    model = graph.tiny_router(t.rows, t.id_map, zeros_w, zeros_b, t.weight, t.scale, TINY_NORMALIZE)

    def validate(router: Router, w: np.ndarray, b: np.ndarray) -> ValidationReport:
        return validate_tiny(router, t, TINY_NORMALIZE, w, b)

    return BuiltGraph(model, validate)

"""Numpy reference of the tiny router: a kept-rows token table, mean-pooled per prompt.

The tiny encoder is MiniLM's word-embedding table cut to the rows a router needs. Each
vocabulary id maps (``id_map``) to one row of a small table: a kept token to its own row,
any other content token to one shared *unknown* row, and the special tokens to an *ignored*
row that never counts. A prompt's features are the masked mean of its rows (optionally
L2-normalised); a ridge head on them gives the scores. The table may be projected to fewer
dimensions (PCA, fit on training prompts) and is stored as fp16 or int8 with one scale per
row. :func:`tiny_features` mirrors the graph (:func:`irde_onnx.graph.build.tiny_router`)
operation for operation in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNKNOWN_MODES = ("zero", "mean", "skip")
PRECISIONS = ("fp16", "int8", "fp32")
EPS_NORM = 1e-12


@dataclass
class TinyTable:
    """What the tiny graph holds besides its head.

    Attributes:
        id_map: (vocab,) int16 (when the table has at most 32,767 rows) or int32, the table
            row of every vocabulary id.
        rows: (R, k) float16, int8 or float32; the last two rows are the shared unknown row
            (``R - 2``) and the ignored row of special tokens (``R - 1``, zeros).
        scale: (R,) float32 per-row scale of int8 rows (``row = rows * scale``), else None.
        weight: (R,) uint8: 1 for rows that count in the mean, 0 for those that do not (the
            ignored row; the unknown row too when unknown tokens are skipped).
        kept: (R - 2,) int64, the vocabulary id of each kept row, in row order.

    """

    id_map: np.ndarray
    rows: np.ndarray
    scale: np.ndarray | None
    weight: np.ndarray
    kept: np.ndarray

    @property
    def dim(self) -> int:
        """k, the width of the features."""
        return int(self.rows.shape[1])

    @property
    def unknown_row(self) -> int:
        """The row every content token outside the kept vocabulary reads."""
        return int(self.rows.shape[0]) - 2

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays as stored in the graph (rows, scales, weights, id map)."""
        scale = 0 if self.scale is None else self.scale.nbytes
        return int(self.rows.nbytes + scale + self.weight.nbytes + self.id_map.nbytes)

    def dequantised(self) -> np.ndarray:
        """The rows as float32 (int8 rows times their scale)."""
        rows = self.rows.astype(np.float32)
        return rows if self.scale is None else rows * self.scale[:, None]


def select_vocabulary(
    train_ids: Sequence[np.ndarray],
    vocab_size: int,
    special_ids: Sequence[int],
    frequent: np.ndarray | None = None,
    n_frequent: int = 0,
) -> np.ndarray:
    """The vocabulary ids to keep: every token seen in training plus ``n_frequent`` more.

    Args:
        train_ids: content token ids of each training prompt.
        vocab_size: V.
        special_ids: ids never kept (they read the ignored row).
        frequent: vocabulary ids from most to least frequent in a reference corpus; the
            first ``n_frequent`` of them that are not special are kept too.
        n_frequent: how many of ``frequent`` to keep (0: training tokens only).

    Returns:
        Sorted int64 ids.

    """
    keep = np.zeros(vocab_size, bool)
    if len(train_ids):
        flat = np.concatenate([np.asarray(a, np.int64) for a in train_ids])
        keep[flat] = True
    special = np.asarray(special_ids, np.int64)
    if frequent is not None and n_frequent > 0:
        order = np.asarray(frequent, np.int64)
        order = order[~np.isin(order, special)]
        keep[order[:n_frequent]] = True
    keep[special] = False
    return np.flatnonzero(keep).astype(np.int64)


def vocabulary_within(
    train_ids: Sequence[np.ndarray],
    vocab_size: int,
    special_ids: Sequence[int],
    frequent: np.ndarray | None,
    n_frequent: int,
    max_rows: int,
) -> np.ndarray:
    """:func:`select_vocabulary` cut to at most ``max_rows`` ids (a byte budget).

    The first ``n_frequent`` ids of ``frequent`` are kept first, then the training tokens
    from the most to the least often seen (ties: the smaller id); the ones left out read the
    shared unknown row. Sorted int64 ids.
    """
    kept = select_vocabulary(train_ids, vocab_size, special_ids, frequent, n_frequent)
    if len(kept) <= max_rows:
        return kept
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    counts = np.zeros(vocab_size, np.float64)
    if len(train_ids):
        flat = np.concatenate([np.asarray(a, np.int64) for a in train_ids])
        counts = np.bincount(flat, minlength=vocab_size).astype(np.float64)
    if frequent is not None and n_frequent > 0:
        order = np.asarray(frequent, np.int64)
        order = order[~np.isin(order, np.asarray(special_ids, np.int64))]
        counts[order[:n_frequent]] = np.inf
    rank = np.lexsort((kept, -counts[kept]))  # most seen first, then the smaller id
    return np.sort(kept[rank[:max_rows]])


def fit_projection(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of pooled training features: ``(mean (d,), components (d, k))``, float64."""
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:k]
    vectors = vectors[:, order]
    # a deterministic sign per component: its largest entry is positive
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
    return mean, vectors * np.where(signs == 0, 1.0, signs)


def quantise_rows(rows: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows as stored: fp16, fp32, or int8 with a per-row scale (max |row| / 127)."""
    rows = np.asarray(rows, np.float32)
    if precision == "fp16":
        return rows.astype(np.float16), None
    if precision == "fp32":
        return rows, None
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    peak = np.abs(rows).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def build_tiny_table(
    table: np.ndarray,
    kept: np.ndarray,
    special_ids: Sequence[int],
    unknown: str = "zero",
    projection: tuple[np.ndarray, np.ndarray] | None = None,
    precision: str = "fp16",
) -> TinyTable:
    """The tiny table of ``kept`` ids from the full ``table`` (vocab, d).

    Args:
        table: the full word-embedding table, float32 (vocab, d).
        kept: vocabulary ids to keep (:func:`select_vocabulary`).
        special_ids: ids that read the ignored row.
        unknown: the shared unknown row: ``zero`` (a zero row that counts in the mean),
            ``mean`` (the mean of the dropped rows) or ``skip`` (unknown tokens do not count).
        projection: ``(mean, components)`` of :func:`fit_projection`: rows become
            ``(row - mean) @ components`` (the unknown row is built in the projected space).
        precision: ``fp16``, ``int8`` (per-row scale) or ``fp32``.

    """
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown mode {unknown!r}; choose one of {UNKNOWN_MODES}")
    table = np.asarray(table, np.float32)
    vocab = table.shape[0]
    kept = np.asarray(kept, np.int64)
    special = np.asarray(special_ids, np.int64)
    dropped = np.ones(vocab, bool)
    dropped[kept] = False
    dropped[special] = False
    kept_rows = table[kept].astype(np.float64)
    dropped_rows = table[dropped].astype(np.float64)
    if projection is not None:
        mean, comp = projection
        kept_rows = (kept_rows - mean) @ comp
        dropped_rows = (dropped_rows - mean) @ comp
    d = kept_rows.shape[1]
    unknown_row = np.zeros(d)
    if unknown == "mean" and len(dropped_rows):
        unknown_row = dropped_rows.mean(axis=0)
    rows = np.vstack([kept_rows, unknown_row[None], np.zeros((1, d))])
    stored, scale = quantise_rows(rows, precision)
    n_kept = len(kept)
    index = np.int16 if n_kept + 2 <= np.iinfo(np.int16).max else np.int32
    id_map = np.full(vocab, n_kept, index)
    id_map[kept] = np.arange(n_kept, dtype=index)
    id_map[special] = n_kept + 1
    weight = np.ones(n_kept + 2, np.uint8)
    weight[n_kept + 1] = 0
    if unknown == "skip":
        weight[n_kept] = 0
    return TinyTable(id_map, stored, scale, weight, kept)


def tiny_features(
    input_ids: np.ndarray, attention_mask: np.ndarray, t: TinyTable, normalize: bool
) -> np.ndarray:
    """Features (batch, k) as the graph computes them, float32.

    ``row = id_map[id]``; ``valid = weight[row] * mask``; ``features = sum(rows[row] *
    valid * scale[row]) / max(sum(valid), 1)``, then L2-normalised when ``normalize``.
    """
    row = t.id_map[input_ids]
    emb = t.rows[row].astype(np.float32)
    valid = t.weight[row].astype(np.float32) * attention_mask.astype(np.float32)
    n = valid.sum(axis=1, keepdims=True)
    factor = valid if t.scale is None else valid * t.scale[row]
    pooled = (emb * factor[..., None]).sum(axis=1) / np.maximum(n, np.float32(1.0))
    if not normalize:
        return pooled
    norm = np.sqrt((pooled * pooled).sum(axis=1, keepdims=True))
    return pooled / np.maximum(norm, np.float32(EPS_NORM))


def tiny_scores(
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    t: TinyTable,
    w: np.ndarray,
    b: np.ndarray,
    normalize: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, features)`` of the tiny router, float32, as the graph outputs them."""
    x = tiny_features(input_ids, attention_mask, t, normalize)
    return x @ np.asarray(w, np.float32) + np.asarray(b, np.float32), x

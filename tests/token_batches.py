"""Random token batches for the graph tests: ids 3..vocab, pad 0, CLS 1, SEP 2."""

from __future__ import annotations

import numpy as np


def padded_batch(
    rng: np.random.Generator, vocab: int, batch: int = 16, seq: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` of variable lengths, one prompt with no content tokens."""
    ids = rng.integers(3, vocab, size=(batch, seq))
    mask = np.ones_like(ids)
    ids[:, 0] = 1
    for row in range(batch):  # variable lengths with padding, a SEP before the padding
        length = rng.integers(2, seq + 1)
        ids[row, length - 1] = 2
        ids[row, length:] = 0
        mask[row, length:] = 0
    ids[0, 1:] = 0  # a prompt with no content tokens at all
    mask[0, 2:] = 0
    return ids.astype(np.int64), mask.astype(np.int64)

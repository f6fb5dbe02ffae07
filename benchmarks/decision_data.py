"""Data of the decision benchmark: RouterBench rows (with the tail cut), and cached features.

RouterBench's ARC prompts all open with the same 5-shot preamble (~1,500 characters), so a
router that keeps the first max_length tokens sees the same text for every ARC prompt. This
benchmark's feature step keeps the *tail*: the last ``max_length - 2`` tokens of each prompt
(:func:`tail_texts`), and trains and routes the irde router on those texts. It was written
before the input views (``irde_onnx/views.py``) existed; a router ships the same idea as
``--view tail`` (the last ``max_length * 3`` code points, cut at a line start), and
``research/generalisation/`` reports RouterBench per view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.splits import read_rows


@dataclass
class CostRows:
    """Prompts with each model's 0/1 result and USD cost (RouterBench)."""

    ids: list[str]
    texts: list[str]
    tasks: list[str]
    y: np.ndarray  # (n, E) 0/1 results
    cost: np.ndarray  # (n, E) USD per prompt
    experts: list[str]


def load_cost_rows(path: Path, experts: list[str] | None = None) -> CostRows:
    """RouterBench rows of ``path`` in file order."""
    rows = read_rows(path)
    names = experts or list(rows[0]["scores"])
    return CostRows(
        [str(r["id"]) for r in rows],
        [r["text"] for r in rows],
        [r["task"] for r in rows],
        np.array([[float(r["scores"][e]) for e in names] for r in rows]),
        np.array([[float(r["costs"][e]) for e in names] for r in rows]),
        names,
    )


def tail_texts(texts: list[str], tokenizer_file: Path, max_length: int) -> list[str]:
    """Each text from the character where its last ``max_length - 2`` tokens start.

    Tokenized without truncation or special tokens by the router's own tokenizer, so the
    router (which keeps the head of a text) sees exactly the tail.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    keep = max_length - 2
    out = []
    for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False), strict=True):
        if len(enc.offsets) <= keep:
            out.append(text)
        else:
            out.append(text[enc.offsets[-keep][0] :])
    return out


def describe(rows: CostRows) -> dict[str, Any]:
    """Per model: mean quality and mean cost per 1k prompts."""
    return {
        e: {
            "quality": float(rows.y[:, k].mean()),
            "usd_per_1k": float(rows.cost[:, k].mean() * 1000),
        }
        for k, e in enumerate(rows.experts)
    }

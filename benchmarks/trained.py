"""irde routers built with ``RouterTrainer`` for the quality benchmark.

The encoder variants (``minilm-int8``, ``static-fp16``, ...) come from the package's encoder
registry, so a new encoder shows up here without a change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.heads import FOLDS, folds_of, log
from irde_onnx.encoders import variants

VARIANTS = variants()
DEFAULT_VARIANTS = [
    name for name in ("minilm-int8", "minilm-fp32", "static-fp16") if name in VARIANTS
]


def trainer_for(name: str, threads: int | None, **kwargs: Any) -> Any:
    """An unfitted RouterTrainer of the variant ``name`` (e.g. ``minilm-int8``)."""
    from irde_onnx.export import RouterTrainer

    encoder, precision = VARIANTS[name]
    return RouterTrainer(
        encoder=encoder, precision=precision, threads=threads, progress=False, **kwargs
    )


def is_pooled(name: str) -> bool:
    """True when the variant's router has pooled features."""
    from irde_onnx.encoders import get_encoder

    return get_encoder(VARIANTS[name][0]).pooled


def train_scored_router(
    name: str, texts: list[str], y: np.ndarray, experts: list[str], threads: int | None, work: Path
) -> Any:
    """RouterTrainer with its defaults (lam by cross-validation) on score targets, saved."""
    start = time.perf_counter()
    trainer = trainer_for(name, threads).fit(texts, scores=y, experts=experts)
    trainer.save(work / name)
    log(
        f"trained {name} on {len(texts)} prompts in {time.perf_counter() - start:.0f} s "
        f"(lam {trainer.lam_:.4g})"
    )
    return trainer


def static_strategy_cv(
    texts: list[str],
    experts: list[str],
    strategy: str,
    threads: int | None,
    *,
    labels: Sequence[str] | None = None,
    scores: np.ndarray | None = None,
    precision: str | None = None,
) -> tuple[np.ndarray, Any]:
    """Out-of-fold scores of a static router with ``strategy``, and the router on all rows.

    Give ``labels`` (domain targets) or ``scores`` (per-expert targets).
    """
    from irde_onnx.export import RouterTrainer

    def fit(rows: np.ndarray, validate: bool) -> Any:
        tr = RouterTrainer(
            encoder="static",
            precision=precision,
            strategy=strategy,
            threads=threads,
            progress=False,
            validate=validate,
        )
        return tr.fit(
            [texts[i] for i in rows],
            None if labels is None else [labels[i] for i in rows],
            scores=None if scores is None else scores[rows],
            experts=experts,
        )

    fold = folds_of(len(texts))
    pred = np.zeros((len(texts), len(experts)))
    for k in range(FOLDS):
        a, b = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        pred[b] = fit(a, False).router_.scores([texts[i] for i in b])
    return pred, fit(np.arange(len(texts)), True)


def encoder_router(name: str, threads: int | None) -> Any:
    """A router of the variant ``name`` (its features do not depend on the head)."""
    texts = ["what is two plus two", "a contract clause", "solve for x", "the law of torts"]
    tr = trainer_for(name, threads, lam=1.0)
    return tr.fit(texts, ["math", "law", "math", "law"]).router_

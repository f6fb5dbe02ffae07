"""Result rows of the quality benchmark and the metrics behind them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.heads import SEED
from benchmarks.splits import Labelled, Scored
from irde_onnx.evaluation.routing import label_metrics, score_metrics


@dataclass
class Result:
    """One row of a RouterDC results table."""

    name: str
    kind: str  # irde, variant, baseline, reference
    metrics: dict[str, Any] = field(default_factory=dict)  # split name -> score_metrics/...
    cv: float | None = None  # the train cross-validation criterion used to choose
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a variant's head


@dataclass
class LabelResult:
    """One router or baseline on one domain split."""

    name: str
    kind: str
    metrics: dict[str, Any]
    unseen: dict[str, Any] | None = None  # cross-source: only rows of held-out sources
    cv: float | None = None
    note: str = ""


def bootstrap_se(
    picked: np.ndarray, tasks: Sequence[str], n: int = 1000, seed: int = SEED
) -> float:
    """Bootstrap standard error of the plain mean over tasks (prompts resampled per task)."""
    rng = np.random.default_rng(seed)
    tasks = np.asarray(tasks)
    means = np.zeros(n)
    names = list(dict.fromkeys(tasks.tolist()))
    for t in names:
        values = picked[tasks == t]
        means += values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return float(np.std(means / len(names), ddof=1))


def scored_metrics(
    pred: np.ndarray, split: Scored, tie: np.ndarray | None = None
) -> dict[str, Any]:
    """RouterDC metrics of the argmax of ``pred`` on ``split``, with a bootstrap s.e."""
    if tie is not None:  # break exact ties by the LLMs' mean train score, not by column order
        pred = pred + 1e-9 * tie
    chosen = np.argmax(pred, axis=1)
    out = score_metrics(chosen, split.y, split.experts, split.tasks)
    out["mean"]["bootstrap_se"] = bootstrap_se(split.y[np.arange(len(chosen)), chosen], split.tasks)
    return out


def expected_metrics(metrics: dict[str, Any], key: str) -> dict[str, Any]:
    """A metrics dict whose router value is ``key`` (e.g. the random router's expectation)."""
    tasks = {t: {**v, "router": v[key]} for t, v in metrics["tasks"].items()}
    return {"tasks": tasks, "mean": {**metrics["mean"], "router": metrics["mean"][key]}}


def label_result(
    name: str,
    kind: str,
    scores: np.ndarray,
    classes: list[str],
    test: Labelled,
    unseen: np.ndarray | None,
    cv: float | None = None,
    note: str = "",
    tie: np.ndarray | None = None,
) -> LabelResult:
    """Accuracy and macro-F1 of the argmax of ``scores``; also on ``unseen`` rows if given."""
    if tie is not None:
        scores = scores + 1e-9 * tie
    pred = [classes[k] for k in np.argmax(scores, axis=1)]
    metrics = label_metrics(test.labels, pred, classes)
    held = None
    if unseen is not None and unseen.any():
        held = label_metrics(
            [t for t, u in zip(test.labels, unseen, strict=True) if u],
            [p for p, u in zip(pred, unseen, strict=True) if u],
            classes,
        )
    return LabelResult(name, kind, metrics, held, cv, note)

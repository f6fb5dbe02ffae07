"""Routing metrics (numpy only): score rows (real LLM quality) and labelled rows.

Score rows follow the RouterDC protocol: for each prompt take the score of the expert the
router picks, average within each task, then take the plain mean over tasks (every task
counts the same, whatever its size). Labelled rows give accuracy, macro-F1, per-class
recall and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from irde_onnx.errors import InvalidInputError

__all__ = ["score_metrics", "label_metrics", "chosen_fractions", "check_experts"]

ALL_TASKS = "all"


def check_experts(data_experts: Sequence[str], router_experts: Sequence[str], what: str) -> None:
    """Raise unless the data's expert names are usable with the router.

    Score rows must name exactly the router's experts; labels must all be router experts.

    Args:
        data_experts: expert names found in the data (score keys, or labels).
        router_experts: the router's experts.
        what: ``"scores"`` (sets must be equal) or ``"labels"`` (data must be a subset).

    """
    data_set, router_set = set(data_experts), set(router_experts)
    if what == "scores":
        bad = data_set != router_set
    elif what == "labels":
        bad = not data_set <= router_set
    else:
        raise ValueError(f"what must be 'scores' or 'labels', got {what!r}")
    if bad:
        missing = sorted(router_set - data_set)
        unknown = sorted(data_set - router_set)
        detail = []
        if unknown:
            detail.append(f"not in the router: {unknown}")
        if what == "scores" and missing:
            detail.append(f"missing from the data: {missing}")
        raise InvalidInputError(
            f"the data's {what} name {sorted(data_set)} but the router's experts are "
            f"{sorted(router_set)} ({'; '.join(detail)})"
        )


def chosen_fractions(chosen: np.ndarray, experts: Sequence[str]) -> dict[str, float]:
    """Fraction of prompts routed to each expert, in column order.

    Args:
        chosen: column index of the chosen expert per prompt, shape (n,).
        experts: expert names in column order.

    """
    chosen = np.asarray(chosen, dtype=np.int64)
    counts = np.bincount(chosen, minlength=len(experts)) if chosen.size else np.zeros(len(experts))
    total = max(int(chosen.size), 1)
    return {name: float(c) / total for name, c in zip(experts, counts, strict=True)}


def _check_chosen(chosen: np.ndarray, n: int, n_experts: int) -> np.ndarray:
    chosen = np.asarray(chosen)
    if chosen.shape != (n,) or not np.issubdtype(chosen.dtype, np.integer):
        raise InvalidInputError(f"chosen must be {n} integer column indices, got {chosen.shape}")
    if n and (chosen.min() < 0 or chosen.max() >= n_experts):
        raise InvalidInputError(f"chosen indices must lie in 0..{n_experts - 1}")
    return chosen.astype(np.int64)


def score_metrics(
    chosen: np.ndarray,
    scores: np.ndarray,
    experts: Sequence[str],
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """RouterDC-style metrics of a routing decision on prompts with per-expert scores.

    Args:
        chosen: column index of the expert picked for each prompt, shape (n,).
        scores: quality of every expert on every prompt, shape (n, E), in the data's units.
        experts: expert names in column order (E).
        tasks: task of each prompt; None puts every prompt in one task named ``all``.

    Returns:
        ``{"n", "tasks": {task: {...}}, "mean": {...}, "chosen": {expert: fraction}}``.
        Per task: ``n``, ``router`` (mean score of the chosen experts), ``oracle`` (best
        expert per prompt), ``random`` (expected score of a uniform random choice),
        ``best_expert`` (the single expert with the best mean on this task, with its
        ``score``), ``fraction_of_oracle`` and ``chosen``. ``mean`` holds the plain means over
        tasks, and ``best_single_expert``: the one expert with the best mean over tasks.

    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(experts):
        raise InvalidInputError(f"scores must have shape (n, {len(experts)}), got {scores.shape}")
    n = scores.shape[0]
    if n == 0:
        raise InvalidInputError("no prompts to evaluate")
    chosen = _check_chosen(chosen, n, len(experts))
    task_of = np.array([ALL_TASKS] * n if tasks is None else [str(t) for t in tasks])
    if task_of.shape != (n,):
        raise InvalidInputError(f"{len(task_of)} tasks for {n} prompts")
    picked = scores[np.arange(n), chosen]
    names = list(dict.fromkeys(task_of.tolist()))  # first-seen order, as in the data
    per_task: dict[str, dict[str, Any]] = {}
    expert_means = np.empty((len(names), len(experts)))
    for t, name in enumerate(names):
        rows = task_of == name
        sub = scores[rows]
        expert_means[t] = sub.mean(axis=0)
        best = int(np.argmax(expert_means[t]))
        router = float(picked[rows].mean())
        oracle = float(sub.max(axis=1).mean())
        per_task[name] = {
            "n": int(rows.sum()),
            "router": router,
            "oracle": oracle,
            "random": float(sub.mean()),
            "best_expert": {"name": experts[best], "score": float(expert_means[t, best])},
            "fraction_of_oracle": router / oracle if oracle else None,
            "chosen": chosen_fractions(chosen[rows], experts),
        }
    over_tasks = expert_means.mean(axis=0)
    single = int(np.argmax(over_tasks))
    router_mean = float(np.mean([v["router"] for v in per_task.values()]))
    oracle_mean = float(np.mean([v["oracle"] for v in per_task.values()]))
    return {
        "n": int(n),
        "tasks": per_task,
        "mean": {
            "router": router_mean,
            "oracle": oracle_mean,
            "random": float(np.mean([v["random"] for v in per_task.values()])),
            "best_single_expert": {"name": experts[single], "score": float(over_tasks[single])},
            "best_expert_per_task": float(expert_means.max(axis=1).mean()),
            "fraction_of_oracle": router_mean / oracle_mean if oracle_mean else None,
        },
        "chosen": chosen_fractions(chosen, experts),
    }


def label_metrics(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class recall and the confusion matrix of labelled prompts.

    Macro-F1 averages over the classes that occur in ``true`` (an expert with no prompt in
    the data has no recall to average); this is scikit-learn's
    ``f1_score(true, predicted, labels=<classes present>, average="macro")``.

    Args:
        true: the expected label of each prompt.
        predicted: the label the router chose.
        labels: every label (the router's experts), the confusion matrix's order.

    Returns:
        ``{"n", "accuracy", "macro_f1", "per_class": {label: {"support", "recall",
        "precision", "f1"}}, "confusion": {"labels", "matrix"}, "chosen"}``; the matrix has
        one row per true label and one column per predicted label. ``per_class`` lists the
        labels present in ``true``; precision is None for a label never predicted.

    """
    labels = list(labels)
    index = {name: k for k, name in enumerate(labels)}
    if len(index) != len(labels):
        raise InvalidInputError(f"duplicate labels in {labels}")
    if len(true) != len(predicted):
        raise InvalidInputError(f"{len(true)} true labels but {len(predicted)} predictions")
    if not true:
        raise InvalidInputError("no prompts to evaluate")
    unknown = sorted((set(true) | set(predicted)) - set(index))
    if unknown:
        raise InvalidInputError(f"labels {unknown} are not in {labels}")
    t = np.array([index[x] for x in true], dtype=np.int64)
    p = np.array([index[x] for x in predicted], dtype=np.int64)
    k = len(labels)
    matrix = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    support = matrix.sum(axis=1)
    predicted_n = matrix.sum(axis=0)
    hits = np.diag(matrix)
    per_class: dict[str, dict[str, Any]] = {}
    f1s = []
    for j, name in enumerate(labels):
        recall = hits[j] / support[j] if support[j] else None
        precision = hits[j] / predicted_n[j] if predicted_n[j] else None
        denom = support[j] + predicted_n[j]
        f1 = 2.0 * hits[j] / denom if denom else None
        if support[j]:
            f1s.append(f1)
            per_class[name] = {
                "support": int(support[j]),
                "recall": float(recall),
                "precision": None if precision is None else float(precision),
                "f1": float(f1),
            }
    return {
        "n": int(len(t)),
        "accuracy": float(hits.sum() / len(t)),
        "macro_f1": float(np.mean(f1s)),
        "per_class": per_class,
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
        "chosen": chosen_fractions(p, labels),
    }

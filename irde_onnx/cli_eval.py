"""``irde eval``: measure a saved router on scored or labelled prompts, print JSON metrics.

Wired into :mod:`irde_onnx.cli` through :func:`add_parser` and :func:`run`; imports nothing
of the command line module. Light: only the
runtime (onnxruntime, numpy, tokenizers) is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx.cli_args import positive_int
from irde_onnx.errors import InvalidInputError

EVAL_EXAMPLES = """\
examples:
  # rows {"text", "task", "scores": {expert: value}}: the RouterDC protocol (mean of the
  # chosen expert's score per task, plain mean over tasks, oracle, best single expert)
  irde eval router-scores --data ../shared/data/routerdc7/test_id.jsonl
  # rows {"text", "domain"}: accuracy, macro-F1, per-class recall, confusion matrix
  irde eval my-router --data ../shared/data/domains/law.jsonl --data math.jsonl \\
      --label-field domain
  irde eval my-router --data held_out.jsonl --threads 2 --quiet > metrics.json
"""
SCORE_CHUNK = 256


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``eval`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "eval", help="measure a router on scored or labelled prompts (JSON metrics)",
        epilog=EVAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Route every prompt of the data with the router and print JSON metrics. "
                    'Rows with "scores" {expert: value} (the experts must be the router\'s): '
                    "per task the mean score of the chosen expert, the plain mean over tasks, "
                    "the oracle (best expert per prompt), random choice, the best single "
                    "expert, the fraction of oracle and how often each expert is chosen. "
                    "Rows with a label (--label-field, default \"expert\"; every label must be "
                    "a router expert): accuracy, macro-F1 over the labels present, per-class "
                    "recall and the confusion matrix (rows: true label, columns: chosen). "
                    "Score values are reported in the data's units.")
    p.add_argument("router", metavar="DIR")
    p.add_argument("--data", action="append", required=True, metavar="FILE.jsonl",
                   help="evaluation rows (repeat for several files)")
    p.add_argument("--label-field", default="expert",
                   help='label field of labelled rows (default "expert")')
    p.add_argument("--task-field", default="task",
                   help='task field of scored rows (default "task"; without it, one task "all")')
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="prompts per onnxruntime call (default 1 for int8 routers, else 32)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _tasks(rows: list[dict[str, Any]], field: str) -> list[str] | None:
    have = [field in r for r in rows]
    if not any(have):
        return None
    if not all(have):
        raise InvalidInputError(
            f'{have.count(False)} of {len(rows)} rows lack the "{field}" field; give every '
            "row a task or none (or choose the field with --task-field)")
    return [str(r[field]) for r in rows]


def _scores(router: Any, texts: list[str], batch_size: int | None, progress: bool) -> np.ndarray:
    from irde_onnx._progress import Progress

    out = np.empty((len(texts), len(router.experts)), dtype=np.float32)
    with Progress(len(texts), "routing", progress) as bar:
        for start in range(0, len(texts), SCORE_CHUNK):
            chunk = texts[start:start + SCORE_CHUNK]
            out[start:start + len(chunk)] = router.scores(chunk, batch_size)
            bar.update(len(chunk))
    return out


def evaluate_router(
    router_dir: str | Path,
    data: list[str],
    label_field: str = "expert",
    task_field: str = "task",
    threads: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """What ``irde eval`` prints: metrics of the router at ``router_dir`` on ``data`` files."""
    from irde_onnx.data import load_training_set
    from irde_onnx.evaluate import check_experts, label_metrics, score_metrics
    from irde_onnx.runtime import Router

    router = Router.load(router_dir, threads=threads)
    rows = load_training_set(data, label_field)
    experts = router.experts
    head: dict[str, Any] = {
        "router": str(router_dir), "data": [str(d) for d in data],
        "kind": "label" if rows.labels is not None else "score",
        "experts": experts, "encoder": router.config.encoder,
        "precision": router.config.precision,
    }
    if rows.labels is not None:
        check_experts(sorted(set(rows.labels)), experts, "labels")
        chosen = np.argmax(_scores(router, rows.texts, batch_size, progress), axis=1)
        metrics = label_metrics(rows.labels, [experts[c] for c in chosen], experts)
        return {**head, "label_field": label_field, **metrics}
    check_experts(rows.experts, experts, "scores")
    tasks = _tasks(rows.rows, task_field)
    assert rows.scores is not None  # a score-kind TrainingSet always has scores
    order = [rows.experts.index(e) for e in experts]  # data columns in router column order
    y = rows.scores[:, order]
    # argmax takes the first of tied columns, as Router.route does
    chosen = np.argmax(_scores(router, rows.texts, batch_size, progress), axis=1)
    return {**head, **score_metrics(chosen, y, experts, tasks)}


def run(args: argparse.Namespace) -> int:
    """Run ``irde eval`` from parsed arguments; print the metrics as JSON; return 0."""
    progress = not args.quiet and sys.stderr.isatty()
    metrics = evaluate_router(args.router, args.data, args.label_field, args.task_field,
                              args.threads, args.batch_size, progress)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0

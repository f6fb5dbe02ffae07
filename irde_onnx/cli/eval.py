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

from irde_onnx.cli.args import positive_int
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
  # rows with "costs" {expert: USD}: the quality-cost curve over a sweep of the
  # willingness to pay, its AIQ, and a chart
  irde eval router-cost --data routerbench/test.jsonl --plot curve.png --json
"""
SCORE_CHUNK = 256


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``eval`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "eval",
        help="measure a router on scored or labelled prompts (JSON metrics)",
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Route every prompt of the data with the router and print JSON metrics. "
        'Rows with "scores" {expert: value} (the experts must be the router\'s): '
        "per task the mean score of the chosen expert, the plain mean over tasks, "
        "the oracle (best expert per prompt), random choice, the best single "
        "expert, the fraction of oracle and how often each expert is chosen. "
        'Rows with a label (--label-field, default "expert"; every label must be '
        "a router expert): accuracy, macro-F1 over the labels present, per-class "
        "recall and the confusion matrix (rows: true label, columns: chosen). "
        "Score values are reported in the data's units.",
    )
    p.add_argument("router", metavar="DIR")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="FILE.jsonl",
        help="evaluation rows (repeat for several files)",
    )
    p.add_argument(
        "--label-field", default="expert", help='label field of labelled rows (default "expert")'
    )
    p.add_argument(
        "--task-field",
        default="task",
        help='task field of scored rows (default "task"; without it, one task "all")',
    )
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="prompts per onnxruntime call (default 1 for int8 routers, else 32)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on one line (keys include aiq, quality, cost, accuracy, ece)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help='draw the quality-cost curve of rows with "costs" (needs matplotlib: '
        'pip install "irde-onnx[bench]")',
    )


def _tasks(rows: list[dict[str, Any]], field: str) -> list[str] | None:
    have = [field in r for r in rows]
    if not any(have):
        return None
    if not all(have):
        raise InvalidInputError(
            f'{have.count(False)} of {len(rows)} rows lack the "{field}" field; give every '
            "row a task or none (or choose the field with --task-field)"
        )
    return [str(r[field]) for r in rows]


def _scores(router: Any, texts: list[str], batch_size: int | None, progress: bool) -> np.ndarray:
    from irde_onnx._progress import Progress

    out = np.empty((len(texts), len(router.experts)), dtype=np.float32)
    with Progress(len(texts), "routing", progress) as bar:
        for start in range(0, len(texts), SCORE_CHUNK):
            chunk = texts[start : start + SCORE_CHUNK]
            out[start : start + len(chunk)] = router.scores(chunk, batch_size)
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
    from irde_onnx.evaluation.routing import check_experts, label_metrics, score_metrics
    from irde_onnx.runtime import Router

    router = Router.load(router_dir, threads=threads)
    rows = load_training_set(data, label_field)
    experts = router.experts
    head: dict[str, Any] = {
        "router": str(router_dir),
        "data": [str(d) for d in data],
        "kind": "label" if rows.labels is not None else "score",
        "experts": experts,
        "encoder": router.config.encoder,
        "precision": router.config.precision,
    }
    if rows.labels is not None:
        check_experts(sorted(set(rows.labels)), experts, "labels")
        # the router's decision (the graph's choice): argmax of the scores unless its
        # policy (costs, threshold) says otherwise
        chosen, confidence = router.decide(_scores(router, rows.texts, batch_size, progress))
        metrics = label_metrics(rows.labels, [experts[c] for c in chosen], experts)
        correct = np.array([experts[c] == t for c, t in zip(chosen, rows.labels, strict=True)])
        return {
            **head,
            "label_field": label_field,
            **metrics,
            **confidence_metrics(confidence, correct),
        }
    check_experts(rows.experts, experts, "scores")
    tasks = _tasks(rows.rows, task_field)
    assert rows.scores is not None  # a score-kind TrainingSet always has scores
    order = [rows.experts.index(e) for e in experts]  # data columns in router column order
    y = rows.scores[:, order]
    scores = _scores(router, rows.texts, batch_size, progress)
    chosen, confidence = router.decide(scores)
    picked = y[np.arange(len(y)), chosen]
    out = {
        **head,
        **score_metrics(chosen, y, experts, tasks),
        "quality": float(picked.mean()),
        **confidence_metrics(confidence, picked),
    }
    costs = _row_costs(rows.rows, experts)
    if costs is not None:
        out.update(cost_metrics(router, scores, y, costs, chosen))
    return out


def confidence_metrics(confidence: np.ndarray, outcome: np.ndarray) -> dict[str, Any]:
    """ECE (15 bins) of the confidence against the outcome, and accuracy at coverage."""
    from irde_onnx.evaluation.decisions import accuracy_at_coverage, expected_calibration_error

    return {
        "ece": expected_calibration_error(confidence, outcome),
        "mean_confidence": float(np.mean(confidence)),
        "at_coverage": {
            f"{c:g}": accuracy_at_coverage(confidence, outcome, c) for c in (0.5, 0.8, 0.9, 1.0)
        },
    }


def _row_costs(rows: list[dict[str, Any]], experts: list[str]) -> np.ndarray | None:
    """Per-prompt costs (n, E) in router column order when every row has ``costs``."""
    if not all(isinstance(r.get("costs"), dict) for r in rows):
        return None
    try:
        c = np.array([[float(r["costs"][e]) for e in experts] for r in rows])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f'every row\'s "costs" must give a number for each expert {experts}: {exc}'
        ) from exc
    if not np.isfinite(c).all() or (c < 0).any():
        raise InvalidInputError('"costs" must be finite numbers >= 0')
    return c


def cost_metrics(
    router: Any, scores: np.ndarray, y: np.ndarray, costs: np.ndarray, chosen: np.ndarray
) -> dict[str, Any]:
    """The router's mean cost, and its quality-cost curve and AIQ over a sweep of wtp.

    The sweep decides with the router's costs, or the data's mean costs if it has none.
    """
    from irde_onnx.evaluation.decisions import cost_curve

    policy = router.policy
    own = policy.costs is not None
    decision_costs = policy.cost_vector(router.experts) if own else costs.mean(axis=0)
    curve = cost_curve(
        scores, router.config.target, y, costs, decision_costs, temperature=policy.temperature
    )
    return {
        "cost": float(costs[np.arange(len(costs)), chosen].mean()),
        "aiq": curve["aiq"],
        "cost_curve": {
            **curve,
            "costs_from": "router" if own else "data (mean per expert)",
            "singles": [{"expert": router.experts[p["column"]], **p} for p in curve["singles"]],
        },
    }


def plot_curve(metrics: dict[str, Any], path: str | Path) -> None:
    """Draw the quality-cost curve, its hull and the single experts into a PNG."""
    from irde_onnx.evaluation.decisions import upper_hull

    try:
        import matplotlib
    except ImportError as exc:
        raise InvalidInputError('--plot needs matplotlib: pip install "irde-onnx[bench]"') from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = metrics["cost_curve"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = curve["points"]
    ax.plot(
        [p["cost"] for p in pts],
        [p["quality"] for p in pts],
        ".",
        color="tab:blue",
        label=f"router, wtp sweep (AIQ {curve['aiq']:.3f})",
    )
    hull = upper_hull([p["cost"] for p in pts], [p["quality"] for p in pts])
    ax.plot([h[0] for h in hull], [h[1] for h in hull], "-", color="tab:blue")
    singles = curve["singles"]
    ax.plot(
        [s["cost"] for s in singles],
        [s["quality"] for s in singles],
        "s",
        color="tab:gray",
        label=f"single experts (AIQ {curve['aiq_singles']:.3f})",
    )
    for s in singles:
        ax.annotate(s["expert"], (s["cost"], s["quality"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt")
    ax.set_ylabel("mean quality")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run ``irde eval`` from parsed arguments; print the metrics as JSON; return 0."""
    progress = not args.quiet and sys.stderr.isatty()
    if args.plot is not None and not Path(args.plot).parent.is_dir():
        raise InvalidInputError(f"--plot: the folder of {args.plot} does not exist")
    metrics = evaluate_router(
        args.router,
        args.data,
        args.label_field,
        args.task_field,
        args.threads,
        args.batch_size,
        progress,
    )
    if args.plot is not None:
        if "cost_curve" not in metrics:
            raise InvalidInputError('--plot needs rows with "costs" {expert: cost}')
        plot_curve(metrics, args.plot)
        metrics["plot"] = str(args.plot)
    print(json.dumps(metrics, indent=None if args.json else 2, ensure_ascii=False))
    return 0

"""``irde feedback``: fold feedback rows (JSONL) into a router exactly and save it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from irde_onnx.cli.args import FORMATTER

FEEDBACK_EXAMPLES = """\
examples:
  # domain router: the right expert for each prompt
  echo '{"text": "Is this clause enforceable?", "expert": "law"}' > fb.jsonl
  irde feedback my-router --data fb.jsonl
  # score router: scores for some experts, or the outcome of the expert that served
  #   {"text": "...", "scores": {"gpt-4o": 0.9, "llama-3": 0.4}}
  #   {"text": "...", "expert": "llama-3", "outcome": 0.0}
  irde feedback my-router --data outcomes.jsonl --traffic-weight 10
"""


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``feedback`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "feedback",
        help="learn from labelled or scored traffic (exact update)",
        formatter_class=FORMATTER,
        description="Fold feedback rows into the router's statistics and re-solve the head; "
        "the result equals training on the training rows plus the feedback rows, each "
        "feedback row weighing --traffic-weight training rows. Pending rows of the folder's "
        "feedback journal (from `irde serve`) are folded by the same save.",
        epilog=FEEDBACK_EXAMPLES,
    )
    p.add_argument("router", metavar="DIR")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE",
        help='JSONL rows {"text", "expert"}, {"text", "scores": {...}} or '
        '{"text", "expert", "outcome"}; repeatable; - reads stdin',
    )
    p.add_argument(
        "--traffic-weight",
        type=float,
        metavar="W",
        help="training rows one feedback row weighs (default: the router's recorded weight, "
        "else 10: training rows at 0.1 against traffic, the issue's and research's best)",
    )
    p.add_argument(
        "--half-life",
        type=float,
        metavar="N",
        help="forget feedback: earlier feedback rows weigh half as much every N rows "
        "(training rows stay); chosen with the first feedback and recorded; default: none",
    )


def run(args: argparse.Namespace) -> int:
    """Check every row first, fold under the folder's lock, save, print one JSON line."""
    from irde_onnx.data import read_jsonl
    from irde_onnx.learning.feedback import parse_rows
    from irde_onnx.runtime import RouterEditor

    labels, rows = [], []
    for path in args.data:
        for where, row in read_jsonl(path):
            labels.append(where)
            rows.append(row)
    editor = RouterEditor.open(args.router)
    with editor.lock():
        cfg = editor.config
        stats = editor.stats  # routing and shadow experts both take feedback
        parse_rows(rows, stats.experts, stats.modes, cfg.target, labels=labels)
        n = editor.add_feedback(rows, traffic_weight=args.traffic_weight, half_life=args.half_life)
        out = editor.save()
    stats = editor.stats
    print(
        json.dumps(
            {
                "router": str(out),
                "rows": n,
                "traffic_weight": stats.traffic_weight,
                "half_life": stats.half_life or None,
                "feedback_rows": dict(
                    zip(stats.experts, stats.feedback_rows.astype(int).tolist(), strict=True)
                ),
            },
            ensure_ascii=False,
        )
    )
    return 0

"""``irde route``: route prompts with a router folder, one JSON line each."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from irde_onnx.arguments import check_top_k
from irde_onnx.cli import policy as cli_policy
from irde_onnx.cli.args import FORMATTER, UsageError, positive_int, threads_argument
from irde_onnx.decision.policy import UNSET

ROUTE_EXAMPLES = """\
examples:
  irde route router "Solve 3x + 5 = 20" "Write a SQL query that counts users"
  irde route router --input prompts.jsonl --top-k 2 > routes.jsonl
  cat prompts.jsonl | irde route router --input -
"""


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``route`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "route",
        help="route prompts with a router",
        epilog=ROUTE_EXAMPLES,
        formatter_class=FORMATTER,
        description="Route prompts; one JSON line each.",
    )
    p.add_argument("router", metavar="DIR")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--input", metavar="FILE.jsonl", help='rows {"text": ...}; - for stdin')
    p.add_argument("--top-k", type=positive_int, default=1, help="rank the k best experts")
    threads_argument(p)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="prompts per onnxruntime call (default 1 for int8 routers, else 32)",
    )
    p.add_argument(
        "--wtp",
        type=cli_policy.optional_number,
        default=UNSET,
        help="willingness to pay for these prompts, overriding the router's "
        "default ('none': quality only); needs a router with costs",
    )


def run(args: argparse.Namespace) -> int:
    """Route TEXT arguments then ``--input`` rows; rows' ``id`` is echoed first."""
    from irde_onnx.data import load_prompts
    from irde_onnx.runtime import Router

    texts: list[str] = list(args.texts)
    rows: list[dict] = [{} for _ in texts]
    if args.input:
        more, more_rows = load_prompts(args.input)
        texts += more
        rows += more_rows
    if not texts:
        raise UsageError("no prompts: give TEXT arguments or --input FILE.jsonl")
    router = Router.load(args.router, threads=args.threads)
    check_top_k(args.top_k, len(router.experts), "--top-k")  # >= 1 by the parser
    if args.wtp is UNSET:
        routes = router.route(texts, top_k=args.top_k, batch_size=args.batch_size)
    else:
        routes = router.route(texts, top_k=args.top_k, batch_size=args.batch_size, wtp=args.wtp)
    out = sys.stdout
    for row, r in zip(rows, routes, strict=True):
        record = r.to_dict()
        if "id" in row:
            record = {"id": row["id"], **record}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0

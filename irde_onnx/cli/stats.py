"""``irde stats merge``: add other shards' statistics to a router and re-solve the head."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from irde_onnx.cli.args import FORMATTER, Parser

STATS_EXAMPLES = """\
examples:
  # routers trained with the same encoder on two shards of the data
  irde train --data shard-a.jsonl --out router-a
  irde train --data shard-b.jsonl --out router-b
  irde stats merge router-a router-b --out router-ab
"""


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``stats`` subcommand (merge) to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "stats",
        help="combine statistics computed elsewhere",
        formatter_class=FORMATTER,
        description="Merge the statistics of routers trained on other shards "
        "with the same encoder, then re-solve the head.",
        epilog=STATS_EXAMPLES,
    )
    ssub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = ssub.add_parser(
        "merge",
        help="merge other shards' statistics into a router",
        formatter_class=FORMATTER,
        epilog=STATS_EXAMPLES,
    )
    q.add_argument("router", metavar="DIR")
    q.add_argument(
        "others",
        nargs="+",
        metavar="OTHER",
        help="router directories or stats.npz files of the other shards",
    )
    q.add_argument("--out", metavar="DIR", help="write the merged router here instead")


def run(args: argparse.Namespace) -> int:
    """Merge under the folder's lock, save, print one JSON line."""
    from irde_onnx.runtime import RouterEditor
    from irde_onnx.store.folder import check_output_folder

    if args.out and Path(args.out).resolve() != Path(args.router).resolve():
        check_output_folder(args.out, force=False)  # before the merge, not after
    router = RouterEditor.open(args.router)
    with router.lock():
        for other in args.others:
            router.merge_stats(other)
        out = router.save(args.out)
    stats = router.stats
    print(
        json.dumps(
            {
                "router": str(out),
                "experts": router.experts,
                "rows": float(stats.shared.n + sum(m.n for m in stats.owned)),
            },
            ensure_ascii=False,
        )
    )
    return 0

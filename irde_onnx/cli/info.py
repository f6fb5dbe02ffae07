"""``irde info``: describe a router folder (experts, encoder, sizes, format version)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irde_onnx.cli.args import FORMATTER

if TYPE_CHECKING:
    from irde_onnx.learning.statistics import RouterStats


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``info`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "info",
        help="describe a router",
        formatter_class=FORMATTER,
        description="Experts, encoder, precision, sizes and format version.",
        epilog="examples:\n  irde info my-router\n",
    )
    p.add_argument("router", metavar="DIR")


def router_info(path: str | Path) -> dict:
    """What ``irde info`` prints."""
    from irde_onnx.learning.statistics import RouterStats
    from irde_onnx.store.config import check_router_dir, read_config
    from irde_onnx.store.folder import read_generation, router_file_sizes
    from irde_onnx.store.journal import JOURNAL_FILE, journal_size

    root = check_router_dir(path)
    cfg = read_config(root)
    stats = read_generation(root, lambda gen: RouterStats.load(gen.stats, gen.where("stats")))
    sizes = router_file_sizes(root, cfg)
    if journal_size(root):
        sizes[JOURNAL_FILE] = journal_size(root)
    return {
        "router": str(root),
        "experts": list(cfg.experts),
        "expert_modes": list(cfg.expert_modes),
        "encoder": cfg.encoder,
        "precision": cfg.precision,
        "strategy": cfg.strategy,
        "target": cfg.target,
        "lam": cfg.lam,
        "max_length": cfg.max_length,
        "view": cfg.view,
        "layers": list(cfg.layers),
        "feature_dim": cfg.feature_dim,
        "selection": cfg.selection,
        "format_version": cfg.format_version,
        "package_version": cfg.package_version,
        "fingerprint": cfg.fingerprint,
        "policy": cfg.policy,
        # experts solved but not routing until their gate passes (`irde experts list`)
        "shadow_experts": {
            name: {"rows": len(rows), "cost": rows.cost} for name, rows in stats.shadows.items()
        },
        "feedback": feedback_info(root, stats),
        "file_bytes": sizes,
        "total_bytes": sum(sizes.values()),
    }


def feedback_info(root: Path, stats: RouterStats | None = None) -> dict:
    """Per expert, how much of its column rests on training rows and on traffic (feedback).

    Weights are row counts times row weights (tokens for the static encoder); ``traffic_share``
    is the traffic part of the column's total. ``journal_rows``: rows accepted by a server and
    not yet folded by a save (a load replays them).
    """
    from irde_onnx.learning.statistics import RouterStats
    from irde_onnx.store.folder import read_generation
    from irde_onnx.store.journal import read_journal

    if stats is None:
        stats = read_generation(root, lambda gen: RouterStats.load(gen.stats, gen.where("stats")))
    experts = {}
    for k, name in enumerate(stats.experts):
        total, traffic = stats.column_n(k), float(stats.feedback_n[k])
        experts[name] = {
            "training_weight": total - traffic,
            "traffic_weight": traffic,
            "traffic_share": traffic / total if total > 0 else 0.0,
            "feedback_rows": int(stats.feedback_rows[k]),
        }
    return {
        "traffic_weight": stats.traffic_weight or None,
        "journal_rows": len(read_journal(root, stats.journal_seq)[0]),
        "kappa": stats.kappa,  # lam relative to the data (None: a fixed lam)
        "experts": experts,
    }


def run(args: argparse.Namespace) -> int:
    """Print :func:`router_info` as indented JSON."""
    print(json.dumps(router_info(args.router), indent=2, ensure_ascii=False))
    return 0

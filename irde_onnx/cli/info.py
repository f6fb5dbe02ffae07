"""``irde info``: describe a router folder (experts, encoder, sizes, format version)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from irde_onnx.cli.args import FORMATTER


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
    from irde_onnx.store.config import check_router_dir, read_config
    from irde_onnx.store.folder import router_file_sizes

    root = check_router_dir(path)
    cfg = read_config(root)
    sizes = router_file_sizes(root, cfg)
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
        "file_bytes": sizes,
        "total_bytes": sum(sizes.values()),
    }


def run(args: argparse.Namespace) -> int:
    """Print :func:`router_info` as indented JSON."""
    print(json.dumps(router_info(args.router), indent=2, ensure_ascii=False))
    return 0

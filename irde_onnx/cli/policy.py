"""``irde policy``: show or change a router's decision settings (costs, knob, threshold).

Wired into :mod:`irde_onnx.cli` through :func:`add_parser` and :func:`run`, and used by
``irde train --costs`` and ``irde experts add --cost``. Runtime only (no torch).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx.decision.policy import check_costs
from irde_onnx.errors import InvalidInputError

POLICY_EXAMPLES = """\
examples:
  irde policy my-router                                   # print the settings
  irde policy my-router --costs costs.json --wtp 0.002    # {"gpt-4": 0.006, ...} USD/prompt
  irde policy my-router --min-confidence 0.6 --fallback generalist
  irde policy my-router --wtp none --min-confidence 0 --fallback none   # quality only
"""


def optional_number(text: str) -> float | None:
    """A finite number, or ``none`` (argparse ``type``)."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite")
    return value


def read_costs(path: str | Path) -> dict[str, float]:
    """``{expert: cost}`` from a JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"costs file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path} is not a JSON object {{expert: cost}}: {exc}") from exc
    return check_costs(data, source=str(path))


def mean_costs(rows: Sequence[dict[str, Any]], experts: Sequence[str]) -> dict[str, float] | None:
    """Mean per-expert cost of rows that all carry ``costs`` {expert: value}; else None."""
    if not rows or not all(isinstance(r.get("costs"), dict) for r in rows):
        return None
    try:
        c = np.array([[float(r["costs"][e]) for e in experts] for r in rows])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f'every row\'s "costs" must give a number for each expert {list(experts)}: {exc}'
        ) from exc
    return check_costs(
        {e: float(v) for e, v in zip(experts, c.mean(axis=0), strict=True)},
        source='the rows\' "costs"',
    )


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``policy`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "policy",
        help="show or change costs, willingness to pay, threshold and fallback",
        epilog=POLICY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The graph decides `choice` = argmax(predicted quality - cost / wtp), "
        "or the fallback expert when the confidence is below min_confidence. "
        "Options not given stay as they are; the head and encoder are untouched.",
    )
    p.add_argument("router", metavar="DIR")
    p.add_argument(
        "--costs",
        metavar="FILE.json",
        help='{expert: cost per prompt} for every expert, or "none" to clear',
    )
    p.add_argument(
        "--wtp",
        type=optional_number,
        default=argparse.SUPPRESS,
        help="default willingness to pay (cost units per unit of quality), or none (quality only)",
    )
    p.add_argument(
        "--min-confidence",
        type=optional_number,
        default=argparse.SUPPRESS,
        help="send prompts below this confidence (0..1) to the fallback",
    )
    p.add_argument(
        "--fallback", default=argparse.SUPPRESS, help='expert for unsure prompts, or "none"'
    )
    p.add_argument("--out", metavar="DIR", help="write the changed router here instead")


def run(args: argparse.Namespace) -> int:
    """Run ``irde policy``: apply the given settings, save, print the policy as JSON."""
    from irde_onnx.runtime import RouterEditor
    from irde_onnx.store.folder import check_output_folder

    settings: dict[str, Any] = {}
    if args.costs is not None:
        settings["costs"] = None if args.costs.lower() == "none" else read_costs(args.costs)
    if "wtp" in args:
        settings["wtp"] = args.wtp
    if "min_confidence" in args:
        settings["min_confidence"] = args.min_confidence or 0.0
    if "fallback" in args:
        settings["fallback"] = None if args.fallback.lower() == "none" else args.fallback
    router = RouterEditor.open(args.router)
    out = router.path
    if settings:
        if args.out:
            check_output_folder(args.out, force=False)
        with router.lock():
            router.set_policy(**settings)
            out = router.save(args.out)
    print(
        json.dumps(
            {
                "router": str(out),
                "experts": router.experts,
                "target": router.config.target,
                "policy": router.policy.to_dict(),
            },
            ensure_ascii=False,
        )
    )
    return 0

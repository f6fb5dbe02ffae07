"""Benchmark: routing quality on real LLM scores (RouterDC protocol) and on domain labels.

Part 1, RouterDC (``routerdc7/``, see ``routerdc.py``): routers trained on the 7 LLMs'
per-prompt scores, scored per task on ``test_id`` and ``test_ood``. Part 2, domains
(``domains/``, see ``domains.py``): in-source and cross-source splits, accuracy and macro-F1.
In both, the irde encoders as ``RouterTrainer`` builds them by default, the baselines of
``baselines.py`` on the same features, and candidate improvements of the head.

(Every input view x pooled-layer variant on every protocol, and the rule that set the
trainer's defaults, is research: ``research/generalisation/``.)

Everything is chosen on train data (cross-validation inside train), never on test.

    python -m benchmarks.quality [--data ../shared/data] [--cache DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.domains import domains
from benchmarks.heads import FeatureCache
from benchmarks.quality_report import draw_charts, plain, report
from benchmarks.report import DEFAULT_DATA, RESULTS, write_section
from benchmarks.routerdc import routerdc
from benchmarks.trained import DEFAULT_VARIANTS, VARIANTS, is_pooled
from irde_onnx.encoders import get_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STATIC_STRATEGIES = get_encoder("static").strategies


def build_parser() -> argparse.ArgumentParser:
    """The command line (also the settings the report renders the committed results with)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[-1:]),
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding routerdc7/ and domains/ (default ../shared/data)",
    )
    parser.add_argument(
        "--encoders",
        nargs="+",
        choices=list(VARIANTS),
        default=DEFAULT_VARIANTS,
        help="irde routers to train (the first one is checked against targets)",
    )
    parser.add_argument(
        "--baseline-features",
        default="minilm-int8",
        choices=[*(v for v in VARIANTS if is_pooled(v)), "static-mean"],
        help="features of kNN / logistic regression / MLP (static-mean: mean of "
        "the static table's rows, for smoke tests)",
    )
    parser.add_argument(
        "--part",
        choices=["all", "routerdc", "domains"],
        default="all",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="keep N rows per task / per domain source (smoke tests)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep encoded features here (npz) to rerun faster"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--static-strategies",
        nargs="+",
        default=list(STATIC_STRATEGIES),
        choices=list(STATIC_STRATEGIES),
        help="static strategies compared by train CV (default all)",
    )
    parser.add_argument("--no-static-variants", dest="static_variants", action="store_false")
    parser.add_argument("--results", type=Path, default=RESULTS, help="charts and json")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="file to write the section into (default BENCHMARKS.md)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write BENCHMARKS.md's section, charts and quality.json."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    cache = FeatureCache(args.cache)
    out: dict[str, Any] = {}
    routers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="irde-quality-") as tmp:
        work = Path(tmp)
        if args.part in ("all", "routerdc"):
            out["routerdc"] = routerdc(args, cache, routers, work)
        if args.part in ("all", "domains"):
            out["domains"] = domains(args, cache, routers, work)
    seconds = time.perf_counter() - start
    charts: list[Path] = []
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        charts = draw_charts(out, args.results)
        (args.results / "quality.json").write_text(
            json.dumps(plain(out), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    text = report(out, args, seconds, charts)
    print(text)
    if not args.no_write:
        (args.results / "quality.md").write_text(text, encoding="utf-8")
        write_section("quality", text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The tiny router as the product trains it, on research/tiny's two protocols, beside static.

Protocols (research/tiny/README.md, ``research.tiny.study.protocols``): *in-source*, the first
1,000 rows per domain of ../shared/data/domains, test = sha256(id) mod 5 == 0; *cross-source*,
each domain with several source benchmarks trains on its largest and is tested on the others
(the headline counts only test rows of held-out sources). Every router is fit by
``RouterTrainer`` on the training rows alone, with ``groups`` (the source benchmark; the
source subset for cross-source) so that lam and the calibration are chosen by grouped CV, and
also without groups (5 shuffled folds, the trainer's default) for tiny; the test rows are
scored once. Side by side in the same run: the static router (vote and mean), same folds.

    .venv/bin/python -m benchmarks.tiny_quality              # writes BENCHMARKS.md + JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)

SECTION = "tiny-quality"
PAGE_BUDGET = 2_000_000  # RouterTrainer(max_bytes=...) of the page-sized tiny router
TARGETS = {"in_source": 0.88, "cross_source": 0.69}
VARIANTS = {
    "tiny int8 (grouped CV)": ({"encoder": "tiny"}, True),
    "tiny int8 (5 shuffled folds)": ({"encoder": "tiny"}, False),
    # the page budget: a graph whose page (wasm + scripts + tokenizer + graph) stays <= 6 MB gzip
    "tiny int8, 2 MB budget (grouped CV)": ({"encoder": "tiny", "max_bytes": PAGE_BUDGET}, True),
    "static fp16 vote (grouped CV)": ({"encoder": "static", "strategy": "vote"}, True),
    "static fp16 mean (grouped CV)": ({"encoder": "static", "strategy": "mean"}, True),
}


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[tiny-quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def slug(variant: str) -> str:
    """A folder name for a variant (``--save-routers``)."""
    return "".join(c if c.isalnum() else "-" for c in variant).strip("-").replace("--", "-")


def run(data: Path, variants: Sequence[str], save: Path | None = None) -> dict[str, Any]:
    """Every variant on both protocols; ``save``: keep the in-source tiny routers there."""
    from irde_onnx.export import RouterTrainer
    from research.tiny.study import protocols

    out: dict[str, Any] = {}
    for name, p in protocols(data).items():
        rows, test = p["rows"], p["test"]
        texts = [str(r["text"]) for r in rows]
        labels = [str(r["domain"]) for r in rows]
        tr, te = np.flatnonzero(~test), np.flatnonzero(test)
        scored = te[p["unseen"][te]] if name == "cross_source" else te
        out[name] = {"n_train": len(tr), "n_test": len(scored), "variants": {}}
        for variant in variants:
            kwargs, grouped = VARIANTS[variant]
            t0 = time.perf_counter()
            trainer = RouterTrainer(**kwargs, progress=False).fit(
                [texts[i] for i in tr],
                [labels[i] for i in tr],
                groups=[p["groups"][i] for i in tr] if grouped else None,
                group_name=p["group_kind"] if grouped else None,
            )
            seconds = time.perf_counter() - t0
            pred = trainer.predict([texts[i] for i in scored])
            acc = float(np.mean([a == labels[i] for a, i in zip(pred, scored, strict=True)]))
            cfg = trainer.router_.config
            with tempfile.TemporaryDirectory(prefix="irde-tiny-quality-") as tmp:
                keep = save is not None and name == "in_source" and variant.startswith("tiny")
                where = save / slug(variant) if keep else Path(tmp) / "router"
                graph = trainer.save(where, overwrite=keep)
                size = sum(
                    (graph / f).stat().st_size
                    for f in ("router.onnx", "router.onnx.data")
                    if (graph / f).exists()
                )
            out[name]["variants"][variant] = {
                "accuracy": acc,
                "lam": trainer.lam_,
                "temperature": cfg.policy.get("temperature"),
                "graph_bytes": size,
                "train_s": seconds,
            }
            log(f"{name} {variant}: {acc:.3f} ({seconds:.0f} s)")
    return out


def render(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section."""
    prot = result["protocols"]
    names = list(next(iter(prot.values()))["variants"])
    rows = []
    for v in names:
        cells = [v]
        for p, target in TARGETS.items():
            r = prot[p]["variants"][v]
            mark = ""
            if v.startswith("tiny") and "grouped" in v:
                mark = f" (target {target:.0%}: {'met' if r['accuracy'] >= target else 'missed'})"
            cells.append(f"{100 * r['accuracy']:.1f}{mark}")
        r = prot["in_source"]["variants"][v]
        t = r["temperature"]
        cells += [
            f"{r['graph_bytes'] / 1e6:.2f}",
            f"{r['lam']:.3g}",
            "-" if t is None else f"{t:.3g}",
        ]
        rows.append(cells)
    return (
        "\n".join(
            [
                "## The tiny router's accuracy (`benchmarks/tiny_quality.py`)",
                "",
                result["header"],
                "The product trainer (`RouterTrainer`, the registry's defaults) on research/tiny's "
                f"two protocols: in-source {prot['in_source']['n_train']} training rows, "
                f"{prot['in_source']['n_test']} test rows; cross-source "
                f"{prot['cross_source']['n_train']} training rows, "
                f"{prot['cross_source']['n_test']} test rows of held-out sources. lam (and the "
                "tiny router's temperature) chosen by grouped CV on the training rows (groups: "
                "source benchmark; source subset for cross-source), or by 5 shuffled folds where "
                "said; test rows scored once. The graph, lam and temperature columns are the "
                "in-source routers'. The 2 MB budget (`irde train --encoder tiny --max-bytes "
                f"{PAGE_BUDGET}`) keeps fewer vocabulary rows so that a browser page holding the "
                "router stays under 6 MB gzip (see the page download section).",
                "",
                markdown_table(
                    [
                        "router",
                        "in-source accuracy (%)",
                        "cross-source accuracy, held-out sources (%)",
                        "graph (MB)",
                        "lam",
                        "temperature",
                    ],
                    rows,
                ),
            ]
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="../shared/data")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", type=Path, default=RESULTS / "tiny_quality.json")
    parser.add_argument("--md", type=Path, default=None, help="markdown file (BENCHMARKS.md)")
    parser.add_argument(
        "--save-routers",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the in-source tiny routers in DIR/<variant> (for benchmarks.page_download)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    protocols = run(args.data, args.variants, args.save_routers)
    result = {"header": header(command_line()), "protocols": protocols}
    result["seconds"] = time.perf_counter() - t0
    markdown = render(result)
    print(markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_section(SECTION, markdown, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

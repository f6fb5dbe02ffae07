"""Benchmark: calibrated confidence and abstaining (domains and routerdc7).

The confidence is what the graph's ``confidence`` output computes (irde_onnx.decision.policy):
domain routers ``softmax(scores / T)`` of the pick, with ``T`` fit on out-of-fold scores of
the training folds; score routers the pick's predicted quality after the per-expert affine
calibration fit on out-of-fold predictions (both as RouterTrainer fits them). Measured on
held-out rows: expected calibration error (15 equal-width bins), reliability diagrams, and
on the domains cross-source split the accuracy of the prompts routed with the most
confidence at 50, 80, 90 and 100% coverage (the rest would go to the fallback).

    python -m benchmarks.calibration [--data ../shared/data] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.heads import FeatureCache, folds_of
from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)
from benchmarks.splits import (
    cross_source_split,
    in_source_split,
    load_domains,
    load_scored,
    onehot,
)
from irde_onnx.decision.policy import fit_affine, fit_temperature, softmax
from irde_onnx.defaults import default_layers, default_view
from irde_onnx.evaluation.decisions import (
    accuracy_at_coverage,
    expected_calibration_error,
    reliability,
)
from irde_onnx.learning.calibration import out_of_fold_scores
from irde_onnx.learning.moments import Moments, choose_lam, solve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
COVERAGES = (0.5, 0.8, 0.9, 1.0)


def log(message: str) -> None:
    print(f"[calibration {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fit_head(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """RouterTrainer's head on features: lam by 5-fold CV, and the out-of-fold scores."""
    fold = folds_of(len(x))
    folds = [Moments.from_rows(x[fold == k], y[fold == k]) for k in range(int(fold.max()) + 1)]
    lam, _ = choose_lam(folds)
    w, b = solve(Moments.from_rows(x, y), lam)
    return w, b, lam, out_of_fold_scores(folds, fold, x, lam)


def domain_split(
    name: str, x: np.ndarray, xt: np.ndarray, labels: list[str], test_labels: list[str]
) -> dict[str, Any]:
    classes = sorted(set(labels))
    y = onehot(labels, classes)
    w, b, lam, oof = fit_head(x, y)
    temp = fit_temperature(oof, y.argmax(1))
    s = xt @ w + b
    truth = np.array([classes.index(t) for t in test_labels])
    pick = s.argmax(1)
    right = (pick == truth).astype(float)
    conf = {
        "softmax, T fit on train folds": softmax(s / temp).max(1),
        "softmax, T = 1": softmax(s).max(1),
        "raw top score, clipped to [0, 1]": np.clip(s.max(1), 0, 1),
    }
    out = {
        "split": name,
        "n_train": len(x),
        "n_test": len(xt),
        "lam": lam,
        "temperature": temp,
        "accuracy": float(right.mean()),
        "ece": {k: expected_calibration_error(c, right) for k, c in conf.items()},
        "at_coverage": {
            f"{c:g}": accuracy_at_coverage(conf["softmax, T fit on train folds"], right, c)
            for c in COVERAGES
        },
        "reliability": reliability(conf["softmax, T fit on train folds"], right),
        "threshold_at_80": float(np.quantile(conf["softmax, T fit on train folds"], 0.2)),
    }
    log(f"{name}: accuracy {out['accuracy']:.3f}, T {temp:.3f}, ECE {out['ece']}")
    return out


def sampled_cross_source(data: Any, train_source: dict[str, str]) -> np.ndarray:
    """Test mask: rows of a domain's other sources; single-source domains split in-source."""
    in_test = in_source_split(data)
    return np.array(
        [
            src != train_source[d] if d in train_source else t
            for d, src, t in zip(data.labels, data.sources, in_test, strict=True)
        ]
    )


def routerdc(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> dict[str, Any]:
    w, b, lam, oof = fit_head(x, y)
    ab = np.array(fit_affine(oof, y))
    raw = xt @ w + b
    cal = raw * ab[:, 0] + ab[:, 1]
    n = np.arange(len(yt))
    out: dict[str, Any] = {
        "split": "routerdc7 test_id",
        "n_train": len(x),
        "n_test": len(xt),
        "lam": lam,
        "ece": {},
        "calibration": ab.tolist(),
    }
    for title, s in (("affine per expert, fit on train folds", cal), ("uncalibrated", raw)):
        pick = s.argmax(1)
        conf = np.clip(s[n, pick], 0, 1)
        out["ece"][title] = expected_calibration_error(conf, yt[n, pick])
        if title.startswith("affine"):
            out["reliability"] = reliability(conf, yt[n, pick])
            out["quality"] = float(yt[n, pick].mean())
    log(f"routerdc7: ECE {out['ece']}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None, help="keep features here (npz)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--domain-limit",
        type=int,
        default=300,
        help="rows per domain source (id-hash order; None: all 33,763)",
    )
    parser.add_argument(
        "--dc-limit", type=int, default=400, help="routerdc7 rows per task (id-hash order)"
    )
    args = parser.parse_args(argv)
    from benchmarks.trained import encoder_router

    enc = encoder_router("minilm-int8", args.threads)
    cache = FeatureCache(args.cache)
    data = load_domains(args.data / "domains", args.domain_limit)
    feats = cache.features(enc, data.texts, "minilm-int8-domains")
    results = []
    # the training source of each domain is the largest one in the full data (as in
    # quality.py), not in the sample, where every source is capped at the same size
    _, _, train_source = cross_source_split(load_domains(args.data / "domains"))
    for name in ("in_source", "cross_source"):
        test = (
            in_source_split(data)
            if name == "in_source"
            else sampled_cross_source(data, train_source)
        )
        labels = np.array(data.labels)
        results.append(
            domain_split(
                name.replace("_", "-"),
                feats[~test],
                feats[test],
                labels[~test].tolist(),
                labels[test].tolist(),
            )
        )
    train = load_scored(args.data / "routerdc7" / "train.jsonl", limit=args.dc_limit)
    test = load_scored(args.data / "routerdc7" / "test_id.jsonl", train.experts, args.dc_limit)
    x = cache.features(enc, train.texts, "minilm-int8-dc-train")
    xt = cache.features(enc, test.texts, "minilm-int8-dc-test_id")
    results.append(routerdc(x, train.y, xt, test.y))
    for r in results:
        r["limits"] = {"domains_per_source": args.domain_limit, "routerdc_per_task": args.dc_limit}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "calibration.json").write_text(json.dumps(results, indent=1) + "\n")
    draw(results, RESULTS / "calibration.png")
    md = report(results)
    print(md)
    write_section("calibration", md)
    return 0


def draw(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.2))
    for ax, r in zip(axes, results, strict=True):
        pts = r["reliability"]
        ax.plot([0, 1], [0, 1], ":", color="gray")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
        ece = next(iter(r["ece"].values()))
        ax.set_title(f"{r['split']} (ECE {ece:.3f})", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy" if "test_id" not in r["split"] else "mean score")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DEFAULT_NAME = (
    f"view {default_view('minilm')}, layers "
    f"{','.join(map(str, default_layers('minilm'))) or 'last'}"
)


def _limit(n: int) -> str:
    """A row limit as the report words it (a limit above every file's size means all)."""
    return "all rows" if n >= 1_000_000 else f"at most {n:,} rows"


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for title, ece in r["ece"].items():
            rows.append(
                [r["split"], title, f"{ece:.4f}", f"{r.get('accuracy', r.get('quality', 0)):.4f}"]
            )
    cov = [r for r in results if "at_coverage" in r]
    cov_rows = [
        [r["split"], *(f"{r['at_coverage'][f'{c:g}']:.3f}" for c in COVERAGES)] for r in cov
    ]
    return (
        "## Calibrated confidence and abstaining (`benchmarks/calibration.py`)\n\n"
        + header(command_line())
        + "\n"
        f"Rows: {_limit(results[0]['limits']['domains_per_source'])} per domain source and "
        f"{_limit(results[0]['limits']['routerdc_per_task'])} per routerdc7 task (id-hash "
        "order); "
        f"domains {results[0]['n_train']} train / {results[0]['n_test']} test in-source. "
        f"Features: the trainer's default int8 MiniLM router ({DEFAULT_NAME}); ridge head "
        "with lam by 5-fold CV on train; the calibration "
        "(softmax temperature for domains, per-expert affine map for routerdc7 scores) is fit "
        "on out-of-fold scores of the same folds, as `RouterTrainer` does. ECE over 15 "
        "equal-width bins on held-out rows.\n\n"
        + markdown_table(["split", "confidence", "ECE", "accuracy / mean score"], rows)
        + "\n\nAccuracy of the prompts the router is most confident about (the rest go to "
        "the fallback):\n\n"
        + markdown_table(["split", *(f"{c:.0%} coverage" for c in COVERAGES)], cov_rows)
        + "\n\n![reliability diagrams](benchmarks/results/calibration.png)\n"
    )


if __name__ == "__main__":
    sys.exit(main())

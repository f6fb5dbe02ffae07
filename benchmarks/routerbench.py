"""Benchmark: cost-aware routing on RouterBench (11 LLMs, 0/1 results and real USD costs).

Every router predicts each LLM's quality on a prompt; one decision rule for all of them,
``argmax(predicted quality - cost / wtp)`` (irde_onnx.decision.policy.decide) with the models' mean
train costs, swept over the willingness to pay ``wtp``. Reported on test.jsonl: the quality
-cost curve, AIQ (area under its non-decreasing convex hull over the single models' cost
range, divided by that range), the cheapest point that reaches gpt-4's quality, and the
operating point whose wtp was chosen on train (out-of-fold) to reach gpt-4's train quality.

Routers: the single models' hull (the "zero router"), irde as ``RouterTrainer`` builds it
(ridge, lam by k-fold CV, per-LLM affine calibration, saved and routed through the graph),
irde head variants on the same features, kNN and logistic regression on the same features,
and the oracle (cheapest correct model). Every choice (lam, k, C, wtp) by 5-fold CV on
train only. Features: the int8 MiniLM router's, on the prompt's tail (see decision_data).

    python -m benchmarks.routerbench [--data ../shared/data] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.baselines import KNN_KS, LOGREG_CS, knn_predict, logreg_scores
from benchmarks.decision_data import CostRows, describe, load_cost_rows, tail_texts
from benchmarks.heads import FeatureCache, folds_of
from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)
from irde_onnx.decision.policy import decide, fit_affine
from irde_onnx.evaluation.decisions import aiq, upper_hull, wtp_grid
from irde_onnx.learning.calibration import out_of_fold_scores
from irde_onnx.learning.moments import Moments, choose_lam, lam_grid, solve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GPT4 = "gpt-4-1106-preview"
N_WTP = 200
Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def log(message: str) -> None:
    print(f"[routerbench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the sweep ----------------------------------------------------------------------------------
def sweep(pred: np.ndarray, rows: CostRows, costs: np.ndarray) -> list[dict[str, Any]]:
    """(wtp, quality, cost) of the decisions on ``pred`` over the wtp grid, then quality only."""
    grid: list[float | None] = [*wtp_grid(costs, N_WTP), None]
    n = np.arange(len(pred))
    out = []
    for wtp in grid:
        choice, _ = decide(pred, "score", costs=costs, wtp=wtp)
        out.append(
            {
                "wtp": wtp,
                "quality": float(rows.y[n, choice].mean()),
                "cost": float(rows.cost[n, choice].mean()),
            }
        )
    return out


def curve_aiq(points: list[dict[str, Any]], rows: CostRows) -> float:
    single = rows.cost.mean(axis=0)
    return aiq(
        [p["cost"] for p in points],
        [p["quality"] for p in points],
        float(single.min()),
        float(single.max()),
    )


def cheapest_reaching(points: list[dict[str, Any]], target: float) -> float | None:
    """The least cost on the curve's hull at which quality ``target`` is reached."""
    hull = upper_hull([p["cost"] for p in points], [p["quality"] for p in points])
    for (c0, q0), (c1, q1) in zip(hull, hull[1:], strict=False):
        if q0 >= target:
            return c0
        if q1 >= target:
            return c0 + (c1 - c0) * (target - q0) / (q1 - q0)
    return hull[-1][0] if hull and hull[-1][1] >= target else None


def wtp_for(points: list[dict[str, Any]], target: float) -> float | None:
    """The cheapest sweep point's wtp whose quality reaches ``target`` (None: quality only)."""
    ok = [p for p in points if p["quality"] >= target]
    if not ok:
        return None
    return min(ok, key=lambda p: p["cost"])["wtp"]


# -- predictors on features ----------------------------------------------------------------------
def oof(x: np.ndarray, y: np.ndarray, fit_predict: Predictor) -> np.ndarray:
    """Out-of-fold predictions with the trainer's folds."""
    fold = folds_of(len(x))
    pred = np.zeros(y.shape)
    for k in range(int(fold.max()) + 1):
        a, b = fold != k, fold == k
        pred[b] = fit_predict(x[a], y[a], x[b])
    return pred


def choose(
    grid: Sequence[Any],
    x: np.ndarray,
    tr: CostRows,
    costs: np.ndarray,
    make: Callable[[Any], Predictor],
) -> tuple[Any, float]:
    """The parameter of ``grid`` with the best out-of-fold AIQ on train."""
    scored = [(curve_aiq(sweep(oof(x, tr.y, make(p)), tr, costs), tr), p) for p in grid]
    best = max(scored, key=lambda t: t[0])
    return best[1], best[0]


def ridge_predictor(lam: float, calibrate: bool) -> Predictor:
    """irde's head: ridge with ``lam``; optionally the per-LLM affine calibration fit on
    out-of-fold predictions of the training rows (as RouterTrainer does)."""

    def fit_predict(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray) -> np.ndarray:
        w, b = solve(Moments.from_rows(xa, ya), lam)
        pred = xb @ w + b
        if calibrate:
            fold = folds_of(len(xa))
            folds = [
                Moments.from_rows(xa[fold == k], ya[fold == k]) for k in range(int(fold.max()) + 1)
            ]
            ab = np.array(fit_affine(out_of_fold_scores(folds, fold, xa, lam), ya))
            pred = pred * ab[:, 0] + ab[:, 1]
        return pred

    return fit_predict


def trainer_lam(x: np.ndarray, y: np.ndarray) -> float:
    fold = folds_of(len(x))
    lam, _ = choose_lam(
        [Moments.from_rows(x[fold == k], y[fold == k]) for k in range(int(fold.max()) + 1)]
    )
    return lam


# -- the product path --------------------------------------------------------------------------
def write_rows(path: Path, rows: CostRows, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            fh.write(
                json.dumps(
                    {
                        "id": rows.ids[i],
                        "text": text,
                        "task": rows.tasks[i],
                        "scores": dict(zip(rows.experts, rows.y[i].tolist(), strict=True)),
                        "costs": dict(zip(rows.experts, rows.cost[i].tolist(), strict=True)),
                    }
                )
                + "\n"
            )


def product(
    tr: CostRows,
    te: CostRows,
    tr_texts: list[str],
    te_texts: list[str],
    costs: np.ndarray,
    threads: int | None,
    work: Path,
) -> dict[str, Any]:
    """Train with RouterTrainer (costs, calibration), save, evaluate with ``irde eval``'s code."""
    from irde_onnx.cli.eval import evaluate_router
    from irde_onnx.export import RouterTrainer
    from irde_onnx.runtime import Router

    start = time.perf_counter()
    trainer = RouterTrainer(threads=threads, progress=False).fit(
        tr_texts,
        scores=tr.y,
        experts=tr.experts,
        costs=dict(zip(tr.experts, costs.tolist(), strict=True)),
    )
    trainer.save(work / "irde-routerbench")
    log(
        f"trained the product router in {time.perf_counter() - start:.0f} s "
        f"(lam {trainer.lam_:.4g})"
    )
    write_rows(work / "test.jsonl", te, te_texts)
    metrics = evaluate_router(
        work / "irde-routerbench", [str(work / "test.jsonl")], threads=threads
    )
    router = Router.load(work / "irde-routerbench")
    return {
        "metrics": metrics,
        "lam": trainer.lam_,
        "policy": router.policy.to_dict(),
        "oof": trainer.oof_scores_,
    }


# -- main -------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None, help="keep features here (npz)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--no-product",
        action="store_true",
        help="skip training and evaluating the saved router (quick runs)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the section and chart again from results/routerbench.json",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        result = json.loads((RESULTS / "routerbench.json").read_text())
        draw(result, RESULTS / "routerbench.png")
        write_section("routerbench", report(result))
        return 0
    from benchmarks.trained import encoder_router

    folder = args.data / "routerbench"
    tr = load_cost_rows(folder / "train.jsonl")
    te = load_cost_rows(folder / "test.jsonl", tr.experts)
    enc = encoder_router("minilm-int8", args.threads)
    tok_file = enc.path / "tokenizer.json"
    tr_texts = tail_texts(tr.texts, tok_file, args.max_length)
    te_texts = tail_texts(te.texts, tok_file, args.max_length)
    cache = FeatureCache(args.cache)
    x = cache.features(enc, tr_texts, "minilm-int8-routerbench-tail-train")
    xt = cache.features(enc, te_texts, "minilm-int8-routerbench-tail-test")
    head_x = cache.features(enc, tr.texts, "minilm-int8-routerbench-head-train")
    head_xt = cache.features(enc, te.texts, "minilm-int8-routerbench-head-test")
    costs = tr.cost.mean(axis=0)  # what the router knows: mean train cost per model
    gpt4 = tr.experts.index(GPT4)
    target_train = float(tr.y[:, gpt4].mean())
    target_test = float(te.y[:, gpt4].mean())
    gpt4_cost = float(te.cost[:, gpt4].mean())
    methods: list[dict[str, Any]] = []

    def add(
        name: str,
        kind: str,
        pred_test: np.ndarray,
        pred_oof: np.ndarray | None,
        note: str,
        cv_aiq: float | None = None,
    ) -> None:
        points = sweep(pred_test, te, costs)
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "note": note,
            "cv_aiq": cv_aiq,
            "aiq": curve_aiq(points, te),
            "points": points,
            "cost_at_gpt4_quality": cheapest_reaching(points, target_test),
        }
        if pred_oof is not None:
            wtp = wtp_for(sweep(pred_oof, tr, costs), target_train)
            n = np.arange(len(te.y))
            choice, _ = decide(pred_test, "score", costs=costs, wtp=wtp)
            entry["train_wtp"] = {
                "wtp": wtp,
                "quality": float(te.y[n, choice].mean()),
                "cost": float(te.cost[n, choice].mean()),
            }
        methods.append(entry)
        log(f"{name}: AIQ {entry['aiq']:.4f}")

    # single models and oracle
    singles = describe(te)
    single_pts = [
        {"wtp": None, "quality": v["quality"], "cost": v["usd_per_1k"] / 1000}
        for v in singles.values()
    ]
    methods.append(
        {
            "name": "single models (zero router)",
            "kind": "baseline",
            "note": "",
            "aiq": curve_aiq(single_pts, te),
            "points": single_pts,
            "cv_aiq": None,
            "cost_at_gpt4_quality": cheapest_reaching(single_pts, target_test),
        }
    )
    correct = te.y > 0
    cheapest = np.where(correct, te.cost, np.inf).argmin(axis=1)
    anyone = correct.any(axis=1)
    n = np.arange(len(te.y))
    oracle_cost = float(np.where(anyone, te.cost[n, cheapest], te.cost.min(axis=1)).mean())
    oracle = {"quality": float(anyone.mean()), "cost": oracle_cost}

    # irde on features: the trainer's computation, then variants
    lam = trainer_lam(x, tr.y)
    for calibrate in (True, False):
        fp = ridge_predictor(lam, calibrate)
        add(
            f"irde ridge, lam by CV (squared error){'' if calibrate else ', uncalibrated'}",
            "irde" if calibrate else "variant",
            fp(x, tr.y, xt),
            oof(x, tr.y, fp),
            f"lam {lam:.3g}; tail of the prompt",
        )
    grid = list(lam_grid(Moments.from_rows(x, tr.y), num=5))
    best_lam, cv = choose(grid, x, tr, costs, lambda p: ridge_predictor(float(p), True))
    fp = ridge_predictor(float(best_lam), True)
    add(
        "irde ridge, lam by CV AIQ",
        "variant",
        fp(x, tr.y, xt),
        oof(x, tr.y, fp),
        f"lam {best_lam:.3g}",
        cv,
    )
    fp = ridge_predictor(trainer_lam(head_x, tr.y), True)
    add(
        "irde ridge on the head of the prompt (no tail cut)",
        "variant",
        fp(head_x, tr.y, head_xt),
        oof(head_x, tr.y, fp),
        "what a plain router sees: the 5-shot preamble",
    )
    log("irde variants done")

    # baselines on the same features, same rule
    k, cv = choose(KNN_KS, x, tr, costs, lambda k: lambda a, ya, b: knn_predict(a, ya, b, k))
    fp = lambda a, ya, b: knn_predict(a, ya, b, k)  # noqa: E731
    add(f"kNN (cosine, k={k} by CV AIQ)", "baseline", fp(x, tr.y, xt), oof(x, tr.y, fp), "", cv)
    c, cv = choose(LOGREG_CS, x, tr, costs, lambda c: lambda a, ya, b: logreg_scores(a, ya, b, c))
    fp = lambda a, ya, b: logreg_scores(a, ya, b, c)  # noqa: E731
    add(
        f"logistic regression per LLM (C={c:g} by CV AIQ)",
        "baseline",
        fp(x, tr.y, xt),
        oof(x, tr.y, fp),
        "",
        cv,
    )

    product_out = None
    if not args.no_product:
        with tempfile.TemporaryDirectory(prefix="irde-routerbench-") as work:
            product_out = product(tr, te, tr_texts, te_texts, costs, args.threads, Path(work))
        m = product_out["metrics"]
        methods.insert(
            1,
            {
                "name": "irde router as saved (RouterTrainer, irde eval)",
                "kind": "irde",
                "note": f"lam {product_out['lam']:.3g}; irde eval's default sweep "
                f"of 41 wtp values; test ECE {m['ece']:.3f}",
                "aiq": m["aiq"],
                "points": m["cost_curve"]["points"],
                "cv_aiq": None,
                "cost_at_gpt4_quality": cheapest_reaching(m["cost_curve"]["points"], target_test),
            },
        )
    result = {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "n_train": len(tr.y),
        "n_test": len(te.y),
        "singles": singles,
        "oracle": oracle,
        "gpt4": {"quality": target_test, "cost": gpt4_cost, "train_quality": target_train},
        "methods": methods,
        "product": None
        if product_out is None
        else {k: v for k, v in product_out.items() if k != "oof"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "routerbench.json").write_text(json.dumps(result, indent=1) + "\n")
    draw(result, RESULTS / "routerbench.png")
    md = report(result)
    print(md)
    write_section("routerbench", md)
    return 0


def draw(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for m in result["methods"]:
        if m["kind"] == "variant":
            continue
        pts = m["points"]
        hull = upper_hull([p["cost"] * 1000 for p in pts], [p["quality"] for p in pts])
        style = "s" if m["name"].startswith("single") else "-"
        ax.plot(
            [h[0] for h in hull],
            [h[1] for h in hull],
            style,
            label=f"{m['name']} (AIQ {m['aiq']:.3f})",
        )
    for name, s in result["singles"].items():
        ax.annotate(name.split("/")[-1], (s["usd_per_1k"], s["quality"]), fontsize=6)
    o = result["oracle"]
    ax.plot([o["cost"] * 1000], [o["quality"]], "*", ms=10, label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel("USD per 1k prompts (test)")
    ax.set_ylabel("mean quality (test)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result: dict[str, Any]) -> str:
    g = result["gpt4"]
    rows = []
    for m in result["methods"]:
        at = m.get("cost_at_gpt4_quality")
        tw = m.get("train_wtp")
        rows.append(
            [
                m["name"],
                f"{m['aiq']:.4f}",
                "" if m["cv_aiq"] is None else f"{m['cv_aiq']:.4f}",
                "not reached" if at is None else f"${at * 1000:.2f} ({at / g['cost']:.0%})",
                "" if tw is None else f"{tw['quality']:.3f} at ${tw['cost'] * 1000:.2f}",
                m["note"],
            ]
        )
    o = result["oracle"]
    table = markdown_table(
        [
            "router",
            "AIQ (test)",
            "AIQ (train CV)",
            "cost at gpt-4's quality (% of gpt-4)",
            "wtp chosen on train for gpt-4's train quality: test quality at USD/1k",
            "note",
        ],
        rows,
    )
    return (
        "## Cost-aware routing on RouterBench (`benchmarks/routerbench.py`)\n\n"
        + header(result.get("command", command_line()))
        + "\n"
        + f"Train {result['n_train']} prompts, test {result['n_test']}. gpt-4 on test: quality "
        f"{g['quality']:.3f} at ${g['cost'] * 1000:.2f} per 1k prompts; oracle (cheapest "
        f"correct model) {o['quality']:.3f} at ${o['cost'] * 1000:.2f}. One decision rule for "
        "every router: argmax(predicted quality - cost / wtp) with the mean train costs, "
        f"swept over {N_WTP} values of wtp plus quality only. Features: int8 MiniLM on the "
        "last 254 tokens of each prompt (the ARC prompts open with the same 5-shot preamble; "
        "this cut is done in the benchmark's feature step by token offsets; a router ships the "
        "same idea as the `tail` input view, whose AIQ is in the generalisation section). "
        "Every choice by 5-fold CV on train.\n\n"
        + table
        + "\n\n![quality-cost curves](benchmarks/results/routerbench.png)\n"
    )


if __name__ == "__main__":
    sys.exit(main())

"""The RouterDC part of the quality benchmark (``routerdc7/``): real per-LLM scores.

Each router is trained on ``train.jsonl`` with the 7 LLMs' per-prompt scores as targets and
scored on ``test_id`` (5 tasks) and ``test_ood`` (3 tasks): per task the mean score of the
chosen LLM, and the plain mean over tasks. Variants of the irde head (lam and targets chosen
by cross-validated routing score on train) are tried as candidate improvements.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.baselines import (
    KNN_KS,
    LOGREG_CS,
    knn_predict,
    logreg_scores,
    mlp_model,
    static_mean_features,
)
from benchmarks.heads import (
    TARGET_MAKERS,
    FeatureCache,
    choose_by_cv,
    cv_predictions,
    cv_ridge,
    log,
    ridge_fit,
    ridge_predict,
    routing_utility,
    standardiser,
)
from benchmarks.results import Result, bootstrap_se, expected_metrics, scored_metrics
from benchmarks.splits import Scored, load_scored, task_mean_table
from benchmarks.trained import is_pooled, static_strategy_cv, train_scored_router
from irde_onnx.learning.moments import Moments, lam_grid, solve
from irde_onnx.runtime.session import open_session

ROUTERDC_PUBLISHED_ID = 58.54
CHECK_ROWS = 128  # test prompts routed through the graph to check features @ head


def routerdc(
    args: argparse.Namespace, cache: FeatureCache, routers: dict[str, Any], work: Path
) -> dict[str, Any]:
    """Train every router and baseline on routerdc7/train, score them on test_id/test_ood."""
    folder = args.data / "routerdc7"
    train = load_scored(folder / "train.jsonl", limit=args.limit)
    splits = {
        s: load_scored(folder / f"{s}.jsonl", train.experts, args.limit)
        for s in ("test_id", "test_ood")
    }
    experts = train.experts
    tie = train.y.mean(axis=0)
    results: list[Result] = []
    checks: dict[str, Any] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}

    trainers: dict[str, Any] = {}
    for name in args.encoders:
        trainer = train_scored_router(name, train.texts, train.y, experts, args.threads, work)
        router = trainer.router_
        routers[name] = router
        res = Result(
            f"irde {name}", "irde", note=f"lam {trainer.lam_:.3g} (5-fold CV, squared error)"
        )
        if is_pooled(name):
            f = {"train": cache.features(router, train.texts, f"{name}-dc-train")}
            for s, split in splits.items():
                f[s] = cache.features(router, split.texts, f"{name}-dc-{s}")
            feats[name] = f
            trainers[name] = trainer
            checks[name] = pooled_checks(trainer, f, train, splits["test_id"].texts[:CHECK_ROWS])
            for s, split in splits.items():
                res.metrics[s] = scored_metrics(f[s] @ trainer.coef_ + trainer.intercept_, split)
            res.cv = routing_utility(
                cv_predictions(
                    len(train.texts),
                    lambda a, b, x=f["train"], lam=trainer.lam_: ridge_predict(
                        x[a], train.y[a], x[b], lam
                    ),
                    len(experts),
                ),
                train.y,
                train.tasks,
            )
        else:
            for s, split in splits.items():
                res.metrics[s] = scored_metrics(router.scores(split.texts), split)
            res.note += f", strategy {router.config.strategy}"
        results.append(res)

    base_name = args.baseline_features
    if base_name == "static-mean":
        feats[base_name] = {
            "train": static_mean_features(train.texts),
            **{s: static_mean_features(v.texts) for s, v in splits.items()},
        }
    for name in feats:
        variants = scored_variants(name, feats[name], train, splits)
        results += variants
        if name in trainers:
            checks[name]["selected_variant_in_graph"] = variant_graph_check(
                trainers[name].router_,
                next(v for v in variants if v.extra.get("selected")),
                feats[name],
                train,
                splits["test_id"].texts[:CHECK_ROWS],
            )
    if base_name not in feats:
        raise SystemExit(f"--baseline-features {base_name} needs that encoder in --encoders")
    results += scored_baselines(feats[base_name], train, splits, tie, base_name)
    static = [n for n in args.encoders if not is_pooled(n)]
    if static and args.static_variants:
        results += static_strategy_results(train, splits, args.static_strategies, args.threads)

    # protocol references computed from the files
    single = int(np.argmax(task_mean_table(train).mean(axis=0)))
    best_train = Result(
        f"best single LLM chosen on train ({experts[single]})",
        "baseline",
        note="the LLM with the best plain mean over train tasks",
    )
    rand = Result("random router (expected)", "baseline")
    for s, split in splits.items():
        best_train.metrics[s] = scored_metrics(
            np.tile(np.eye(len(experts))[single], (len(split.y), 1)), split
        )
        rand.metrics[s] = expected_metrics(best_train.metrics[s], "random")
        rand.metrics[s]["mean"]["bootstrap_se"] = bootstrap_se(split.y.mean(axis=1), split.tasks)
    results += [rand, best_train]
    refs = {s: best_train.metrics[s]["mean"] for s in splits}
    return {
        "results": results,
        "checks": checks,
        "experts": experts,
        "references": refs,
        "n": {"train": len(train.texts), **{s: len(v.texts) for s, v in splits.items()}},
        "tasks": {s: list(dict.fromkeys(v.tasks)) for s, v in splits.items()},
    }


def pooled_checks(
    trainer: Any, f: dict[str, np.ndarray], train: Scored, sample: list[str]
) -> dict[str, Any]:
    """The graph's scores are features @ head, and the trainer's head is ridge_fit's."""
    graph = trainer.router_.scores(sample)
    via_feats = f["test_id"][: len(sample)] @ trainer.coef_ + trainer.intercept_
    coef, _, lam = ridge_fit(f["train"], train.y)
    return {
        "graph_vs_features_head_max_abs": float(np.abs(graph - via_feats).max()),
        "argmax_agreement": float(np.mean(graph.argmax(1) == via_feats.argmax(1))),
        "numpy_ridge_vs_trainer_coef_max_abs": float(np.abs(coef - trainer.coef_).max()),
        "numpy_lam": lam,
        "trainer_lam": trainer.lam_,
    }


def scored_variants(
    name: str, f: dict[str, np.ndarray], train: Scored, splits: dict[str, Scored]
) -> list[Result]:
    """Candidate improvements of the irde head: targets x feature scaling, lam by routing CV.

    Every candidate is scored by 5-fold cross-validated routing score on train; the best one
    is marked as selected. Test numbers are shown for all, but nothing is chosen on them.
    """
    x, tasks = f["train"].astype(np.float64), np.asarray(train.tasks)
    out = []
    for standardise in (False, True):
        scale = standardiser(x, standardise)
        grid = lam_grid(Moments.from_rows(scale(x), train.y), num=7)
        for title, make in TARGET_MAKERS.items():
            table = cv_ridge(x, train.y, tasks, make, grid, standardise)
            lam = max(table, key=lambda k: table[k])
            coef, bias = solve(Moments.from_rows(scale(x), make(train.y, tasks)), lam)
            res = Result(
                f"irde {name}: {title}" + (", standardised features" if standardise else ""),
                "variant",
                cv=table[lam],
                note=f"lam {lam:.3g} by routing CV",
            )
            for s, split in splits.items():
                res.metrics[s] = scored_metrics(scale(f[s].astype(np.float64)) @ coef + bias, split)
            res.extra = {"target": title, "standardise": standardise, "lam": lam}
            out.append(res)
    best = max(out, key=lambda r: r.cv)
    best.note += "; **selected by train CV**"
    best.extra["selected"] = True
    log(f"{name}: {len(out)} head variants scored")
    return out


def scored_baselines(
    f: dict[str, np.ndarray],
    train: Scored,
    splits: dict[str, Scored],
    tie: np.ndarray,
    feature_name: str,
) -> list[Result]:
    """kNN, logistic regression and MLP on the same features (hyper-parameters by train CV)."""
    x, y, e = f["train"], train.y, len(train.experts)

    def cv_of(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
        pred = cv_predictions(len(x), fit_predict, e)
        return routing_utility(pred + 1e-9 * tie, y, train.tasks)

    def tuned(
        title: str,
        grid: Sequence[Any],
        predict: Callable[[np.ndarray, np.ndarray, np.ndarray, Any], np.ndarray],
    ) -> Result:
        start = time.perf_counter()
        best, cv, _ = choose_by_cv(grid, lambda p: cv_of(lambda a, b: predict(x[a], y[a], x[b], p)))
        res = Result(title.format(best), "baseline", cv=cv, note=f"{feature_name} features")
        for s, split in splits.items():
            res.metrics[s] = scored_metrics(predict(x, y, f[s], best), split, tie)
        log(f"{res.name} in {time.perf_counter() - start:.0f} s")
        return res

    out = [
        tuned("kNN (cosine, k={} by train CV)", KNN_KS, knn_predict),
        tuned("logistic regression per LLM (C={:g} by train CV)", LOGREG_CS, logreg_scores),
    ]
    start = time.perf_counter()
    mlp = mlp_model(classifier=False, n=len(x)).fit(x, y)  # fixed: nothing to choose
    res = Result(
        "MLP regressor (256 hidden, early stopping)", "baseline", note=f"{feature_name} features"
    )
    for s, split in splits.items():
        res.metrics[s] = scored_metrics(mlp.predict(f[s]), split, tie)
    out.append(res)
    log(f"MLP baseline in {time.perf_counter() - start:.0f} s")
    return out


def variant_graph_check(
    router: Any, variant: Result, f: dict[str, np.ndarray], train: Scored, texts: list[str]
) -> dict[str, Any]:
    """Run a variant's head inside the router's ONNX graph (head initializers overridden).

    Feature standardisation folds into the head: ``W = W' / sd``, ``b = b' - (mu / sd) W'``,
    so every variant ships as the same one-graph router with another head.
    """
    x = f["train"].astype(np.float64)
    tasks = np.asarray(train.tasks)
    targets = TARGET_MAKERS[variant.extra["target"]](train.y, tasks)
    mu, sd = (
        (x.mean(axis=0), x.std(axis=0) + 1e-12)
        if variant.extra["standardise"]
        else (np.zeros(x.shape[1]), np.ones(x.shape[1]))
    )
    coef, bias = solve(Moments.from_rows((x - mu) / sd, targets), variant.extra["lam"])
    w, b = coef / sd[:, None], bias - (mu / sd) @ coef
    session = open_session(router.graph_path, head=(w, b))
    graph = np.concatenate(
        [
            session.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
            for text in texts
            for _, ids, mask in router.tokenizer.batches([text], 1)
        ]
    )
    via = ((router.features(texts).astype(np.float64) - mu) / sd) @ coef + bias
    return {
        "variant": variant.name,
        "rows": len(texts),
        "max_abs": float(np.abs(graph - via).max()),
        "argmax_agreement": float(np.mean(graph.argmax(1) == via.argmax(1))),
    }


def static_strategy_results(
    train: Scored, splits: dict[str, Scored], strategies: Sequence[str], threads: int | None
) -> list[Result]:
    """The static router's strategies, each scored by routing CV on train."""
    out = []
    for strategy in strategies:
        pred, tr = static_strategy_cv(train.texts, train.experts, strategy, threads, scores=train.y)
        res = Result(
            f"irde static, strategy {strategy}",
            "variant",
            cv=routing_utility(pred, train.y, train.tasks),
            note=f"lam {tr.lam_:.3g}",
        )
        for s, split in splits.items():
            res.metrics[s] = scored_metrics(tr.router_.scores(split.texts), split)
        out.append(res)
    log("static strategies done")
    return out

"""The domain part of the quality benchmark (``domains/``): accuracy and macro-F1.

Two splits: in-source (sha256 of the id) and cross-source (train on the largest source of
each domain that has several, test on the others). minilm heads are fit with the package's
ridge on the router's own features (what RouterTrainer computes; checked in the run).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.baselines import (
    KNN_KS,
    LOGREG_CS,
    class_columns,
    knn_classify,
    logreg_classify,
    mlp_model,
    static_mean_features,
)
from benchmarks.heads import (
    FeatureCache,
    accuracy_cv,
    choose_by_cv,
    log,
    ridge_fit,
    ridge_predict,
)
from benchmarks.results import LabelResult, label_result
from benchmarks.splits import (
    Labelled,
    cross_source_split,
    id_hash,
    in_source_split,
    load_domains,
    onehot,
)
from benchmarks.trained import encoder_router, is_pooled, static_strategy_cv, trainer_for
from irde_onnx.learning.moments import Moments, lam_grid


def domains(
    args: argparse.Namespace, cache: FeatureCache, routers: dict[str, Any], work: Path
) -> dict[str, Any]:
    """The domain task on both splits."""
    data = load_domains(args.data / "domains", args.limit)
    feats: dict[str, np.ndarray] = {}
    checks: dict[str, Any] = {}
    for name in args.encoders:
        if not is_pooled(name):
            continue
        router = routers.get(name) or encoder_router(name, args.threads)
        feats[name] = cache.features(router, data.texts, f"{name}-domains")
        if name == args.baseline_features:
            checks[name] = domain_check(name, data, feats[name], args.threads)
    feats["static-mean-extra"] = static_mean_features(data.texts)  # for the hybrid variant
    if args.baseline_features == "static-mean":
        feats["static-mean"] = feats["static-mean-extra"]
    out = {
        "n": len(data.texts),
        "duplicates_dropped": data.duplicates_dropped,
        "checks": checks,
        "sources": sorted(set(data.sources)),
    }
    for split in ("in_source", "cross_source"):
        out[split] = domain_split(split, data, feats, args)
    return out


def domain_split(
    split: str, data: Labelled, feats: dict[str, np.ndarray], args: argparse.Namespace
) -> dict[str, Any]:
    """Every router, variant and baseline on one split (``in_source`` or ``cross_source``)."""
    if split == "in_source":
        test_mask = in_source_split(data)
        unseen_mask, train_source = None, {}
    else:
        test_mask, unseen_all, train_source = cross_source_split(data)
        unseen_mask = unseen_all[test_mask]
    train, test = data.take(~test_mask), data.take(test_mask)
    classes = sorted(set(data.labels))
    ytr = onehot(train.labels, classes)
    prior = ytr.mean(axis=0)
    results: list[LabelResult] = []
    log(f"{split}: {len(train.texts)} train, {len(test.texts)} test prompts")

    def evaluate(
        name: str,
        kind: str,
        scores: np.ndarray,
        cv: float | None = None,
        note: str = "",
        tie: np.ndarray | None = None,
    ) -> None:
        results.append(label_result(name, kind, scores, classes, test, unseen_mask, cv, note, tie))

    for name in args.encoders:
        if name in feats:
            x, xt = feats[name][~test_mask], feats[name][test_mask]
            coef, bias, lam = ridge_fit(x, ytr)
            cv = accuracy_cv(ytr, lambda a, b, x=x, lam=lam: ridge_predict(x[a], ytr[a], x[b], lam))
            evaluate(
                f"irde {name}",
                "irde",
                xt @ coef + bias,
                cv,
                f"lam {lam:.3g} (5-fold CV, squared error)",
            )
        else:
            tr = trainer_for(name, args.threads).fit(train.texts, train.labels, experts=classes)
            evaluate(
                f"irde {name}",
                "irde",
                tr.router_.scores(test.texts),
                note=f"lam {tr.lam_:.3g}, strategy {tr.router_.config.strategy}",
            )
    log(f"{split}: irde routers done")
    if any(not is_pooled(n) for n in args.encoders) and args.static_variants:
        for strategy in args.static_strategies:
            pred, tr = static_strategy_cv(
                train.texts, classes, strategy, args.threads, labels=train.labels
            )
            evaluate(
                f"irde static, strategy {strategy}",
                "variant",
                tr.router_.scores(test.texts),
                float(np.mean(pred.argmax(1) == ytr.argmax(1))),
                f"lam {tr.lam_:.3g}",
            )
        log(f"{split}: static strategies done")

    base = args.baseline_features
    x, xt = feats[base][~test_mask], feats[base][test_mask]
    labels = np.array(train.labels)

    def lam_by_accuracy(
        tr_x: np.ndarray, weights: np.ndarray | None = None
    ) -> tuple[float, float, np.ndarray, np.ndarray]:
        grid = lam_grid(Moments.from_rows(tr_x, ytr), num=7)
        lam, cv, _ = choose_by_cv(
            list(grid),
            lambda lam: accuracy_cv(
                ytr,
                lambda a, b: ridge_predict(
                    tr_x[a], ytr[a], tr_x[b], float(lam), None if weights is None else weights[a]
                ),
            ),
        )
        coef, bias, _ = ridge_fit(tr_x, ytr, float(lam), weights)
        return float(lam), cv, coef, bias

    # candidate improvements of the head, chosen by CV accuracy on train
    lam, cv, coef, bias = lam_by_accuracy(x)
    evaluate(f"irde {base}, lam by accuracy CV", "variant", xt @ coef + bias, cv, f"lam {lam:.3g}")
    balance = (1.0 / (len(classes) * prior))[ytr.argmax(1)]  # every domain weighs the same
    lam, cv, coef, bias = lam_by_accuracy(x, balance)
    evaluate(
        f"irde {base}, balanced domains, lam by accuracy CV",
        "variant",
        xt @ coef + bias,
        cv,
        f"rows weighted 1/(K n_domain), lam {lam:.3g}",
    )
    for title, (tr_x, te_x) in feature_variants(
        x, xt, feats.get("static-mean-extra"), ~test_mask, test_mask
    ).items():
        lam, cv, coef, bias = lam_by_accuracy(tr_x)
        evaluate(
            f"irde {base}, {title}, lam by accuracy CV",
            "variant",
            te_x @ coef + bias,
            cv,
            f"lam {lam:.3g}",
        )
    log(f"{split}: head variants done")

    # baselines on the same features
    evaluate("most frequent domain (train)", "baseline", np.tile(prior, (len(test.texts), 1)))

    def tuned(
        title: str,
        grid: Sequence[Any],
        classify: Callable[[np.ndarray, np.ndarray, np.ndarray, Any], np.ndarray],
        tie: np.ndarray | None = None,
    ) -> None:
        best, cv, _ = choose_by_cv(
            grid,
            lambda p: accuracy_cv(
                ytr,
                lambda a, b: class_columns(classify(x[a], labels[a], x[b], p), labels[a], classes),
            ),
        )
        evaluate(
            title.format(best),
            "baseline",
            class_columns(classify(x, labels, xt, best), labels, classes),
            cv,
            f"{base} features",
            tie,
        )
        log(f"{split}: {title.format(best)} done")

    tuned("kNN (cosine, k={} by train CV)", KNN_KS, knn_classify, prior)
    tuned("logistic regression (C={:g} by train CV)", LOGREG_CS, logreg_classify)
    mlp = mlp_model(classifier=True, n=len(x)).fit(x, labels)  # fixed: nothing to choose
    evaluate(
        "MLP classifier (256 hidden, early stopping)",
        "baseline",
        class_columns(mlp.predict_proba(xt), labels, classes),
        None,
        f"{base} features",
    )
    log(f"{split}: MLP done")
    return {
        "results": results,
        "n_train": len(train.texts),
        "n_test": len(test.texts),
        "n_unseen": int(unseen_mask.sum()) if unseen_mask is not None else None,
        "train_source": train_source,
        "classes": classes,
        "test_sources": sorted(set(test.sources)),
    }


def feature_variants(
    x: np.ndarray,
    xt: np.ndarray,
    extra: np.ndarray | None,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Candidate feature maps for the domain head: standardised, and MiniLM + static mean.

    Standardisation folds into the head; the hybrid (pooled MiniLM features concatenated
    with the mean of the static table's rows) would need a second path in the graph.
    """
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-12
    out = {"standardised features": ((x - mu) / sd, (xt - mu) / sd)}
    if extra is not None:
        out["hybrid features (MiniLM + static mean; a graph change)"] = (
            np.hstack([x, extra[train_rows]]),
            np.hstack([xt, extra[test_rows]]),
        )
    return out


def domain_check(
    name: str, data: Labelled, feats: np.ndarray, threads: int | None, n: int = 300
) -> dict[str, float]:
    """Fit RouterTrainer on ``n`` domain prompts; compare its head with ridge_fit on features."""
    idx = np.argsort([id_hash(i) for i in data.ids], kind="stable")[:n]
    texts = [data.texts[i] for i in idx]
    labels = [data.labels[i] for i in idx]
    tr = trainer_for(name, threads).fit(texts, labels)
    coef, _, lam = ridge_fit(feats[idx], onehot(labels, tr.experts_))
    return {
        "numpy_ridge_vs_trainer_coef_max_abs": float(np.abs(coef - tr.coef_).max()),
        "numpy_lam": lam,
        "trainer_lam": float(tr.lam_),
        "rows": len(idx),
    }

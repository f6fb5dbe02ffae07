"""Benchmark: routing quality on real LLM scores (RouterDC protocol) and on domain labels.

Part 1, RouterDC (``routerdc7/``): each router is trained on ``train.jsonl`` with the 7 LLMs'
per-prompt scores as targets and scored on ``test_id`` (5 tasks) and ``test_ood`` (3 tasks):
per task the mean score of the chosen LLM, and the plain mean over tasks. Routers: the irde
encoders (minilm int8, minilm fp32, static) as ``RouterTrainer`` builds them by default; in the
same run the baselines random (expected value), the best single LLM chosen on train, kNN and
logistic regression and an MLP on the same MiniLM features; fixed rows from the RouterDC paper
and the data README. Variants of the irde head (lam and targets chosen by cross-validated
routing score on train) are tried as candidate improvements.

Part 2, domains (``domains/``): a deterministic in-source split (sha256 of the id) and a
cross-source split (train on the largest source of each domain that has several, test on the
others): accuracy and macro-F1 for the same routers and baselines.

Everything is chosen on train data (cross-validation inside train), never on test.

    python benchmarks/quality.py [--data ../shared/data] [--cache DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _report import (  # noqa: E402
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)

from irde_onnx.config import GRAPH_FILE  # noqa: E402
from irde_onnx.evaluate import label_metrics, score_metrics  # noqa: E402
from irde_onnx.ridge import Moments, choose_lam, lam_grid, solve  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENCODERS: dict[str, dict[str, str]] = {
    "minilm-int8": {"encoder": "minilm", "precision": "int8"},
    "minilm-fp32": {"encoder": "minilm", "precision": "fp32"},
    "static": {"encoder": "static"},
}
ROUTERDC_PUBLISHED_ID = 58.54
# The data README's reference points (computed from the files; the run recomputes them).
README_REFERENCES = [
    ("RouterDC, published (paper)", 58.54, None),
    ("best single LLM (dolphin-2.9-llama3-8b), chosen on test", 54.56, 43.95),
    ("random router (expected)", 47.67, 38.02),
    ("each task's best LLM, chosen on test (needs the task label)", 58.70, 46.36),
    ("oracle (best LLM per prompt)", 77.52, 70.34),
]
TARGETS = {"id": ROUTERDC_PUBLISHED_ID, "ood": 43.95, "in_source": 0.97, "cross_source": 0.90}
FOLDS = 5
SEED = 0
KNN_KS = (1, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
LOGREG_CS = (0.1, 1.0, 10.0)
STATIC_STRATEGIES = ("vote", "mean", "entropy_top_k")
CHECK_ROWS = 128  # test prompts routed through the graph to check features @ head


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ---------------------------------------------------------------------------------------
def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16)


def _read(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _limit(rows: list[dict[str, Any]], key: Callable[[dict], str], limit: int | None) -> list:
    """The first ``limit`` rows of each group in id-hash order (all rows, file order if None)."""
    if limit is None:
        return rows
    kept: dict[str, int] = {}
    out = []
    for r in sorted(rows, key=lambda r: _hash(str(r["id"]))):
        g = key(r)
        if kept.get(g, 0) < limit:
            kept[g] = kept.get(g, 0) + 1
            out.append(r)
    return out


@dataclass
class Scored:
    """Prompts with per-LLM scores (RouterDC rows)."""

    texts: list[str]
    tasks: list[str]
    y: np.ndarray  # (n, E)
    experts: list[str]


def load_scored(path: Path, experts: Sequence[str] | None = None,
                limit: int | None = None) -> Scored:
    """RouterDC rows of ``path`` (``limit`` rows per task, for smoke tests)."""
    rows = _limit(_read(path), lambda r: r["task"], limit)
    names = list(experts) if experts is not None else list(rows[0]["scores"])
    y = np.array([[float(r["scores"][e]) for e in names] for r in rows])
    return Scored([r["text"] for r in rows], [r["task"] for r in rows], y, names)


@dataclass
class Labelled:
    """Prompts labelled by domain, with their source benchmark."""

    ids: list[str]
    texts: list[str]
    labels: list[str]
    sources: list[str]
    duplicates_dropped: int = 0

    def take(self, mask: np.ndarray) -> Labelled:
        """The rows where ``mask`` is True."""
        idx = np.flatnonzero(mask)
        return Labelled([self.ids[i] for i in idx], [self.texts[i] for i in idx],
                        [self.labels[i] for i in idx], [self.sources[i] for i in idx])


def source_of(row: dict[str, Any]) -> str:
    """The benchmark of a row: ``mmlu/anatomy`` -> ``mmlu``, ``gsm8k/train`` -> ``gsm8k``."""
    return str(row["source"]).split("/", 1)[0]


def load_domains(folder: Path, limit: int | None = None) -> Labelled:
    """Every ``domains/*.jsonl`` row; exact duplicate texts are kept once (first seen)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += _limit(_read(path), lambda r: f"{r['domain']}|{source_of(r)}", limit)
    seen: set[str] = set()
    kept = []
    for r in rows:
        if r["text"] not in seen:
            seen.add(r["text"])
            kept.append(r)
    return Labelled([str(r["id"]) for r in kept], [r["text"] for r in kept],
                    [r["domain"] for r in kept], [source_of(r) for r in kept],
                    duplicates_dropped=len(rows) - len(kept))


def in_source_split(data: Labelled, test_fraction: int = 5) -> np.ndarray:
    """Test mask: sha256(id) mod ``test_fraction`` == 0 (20% of rows by default)."""
    return np.array([_hash(i) % test_fraction == 0 for i in data.ids])


def cross_source_split(data: Labelled) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Train on the largest source of each multi-source domain, test on its other sources.

    Domains with one source are split in-source (by id hash), so that every domain is both
    trained and tested. Returns (test mask, mask of test rows from unseen sources, the
    training source of each multi-source domain).
    """
    labels = np.array(data.labels)
    sources = np.array(data.sources)
    in_test = in_source_split(data)
    test = np.zeros(len(labels), bool)
    unseen = np.zeros(len(labels), bool)
    train_source: dict[str, str] = {}
    for d in sorted(set(data.labels)):
        rows = labels == d
        names, counts = np.unique(sources[rows], return_counts=True)
        if len(names) == 1:
            test |= rows & in_test
            continue
        best = names[np.lexsort((names, -counts))[0]]  # most rows, then name
        train_source[d] = str(best)
        held = rows & (sources != best)
        test |= held
        unseen |= held
    return test, unseen, train_source


# -- features and heads ------------------------------------------------------------------------
class FeatureCache:
    """Router features of text lists, kept in ``folder`` as npz (no pickle) when given."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def features(self, router: Any, texts: list[str], what: str) -> np.ndarray:
        """``router.features(texts)`` (router's default batch size), float32 (n, d)."""
        digest = hashlib.sha256(router.config.fingerprint.encode())
        for t in texts:
            digest.update(hashlib.sha256(t.encode("utf-8")).digest())
        path = None
        if self.folder is not None:
            path = self.folder / f"{what}-{digest.hexdigest()[:20]}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    return z["x"]
        start = time.perf_counter()
        x = np.empty((len(texts), router.config.feature_dim), np.float32)
        for i in range(0, len(texts), 1024):
            x[i:i + 1024] = router.features(texts[i:i + 1024])
        log(f"encoded {len(texts)} {what} prompts in {time.perf_counter() - start:.0f} s")
        if path is not None:
            np.savez(path, x=x)
        return x


def fold_ids(n: int, k: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """Fold of each row, as RouterTrainer assigns them (a seeded permutation, round robin)."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % min(k, n)
    return fold


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float | str = "auto",
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The irde head on dense features: irde_onnx.ridge, lam by k-fold squared error if auto.

    This is RouterTrainer's computation for pooled encoders (checked in the run against the
    trainer's coef_). ``weights`` (n,) weighs rows, as a candidate improvement.
    """
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)

    def moments(rows: np.ndarray) -> Moments:
        xs = np.asarray(x[rows], np.float64)
        ys = np.asarray(y[rows], np.float64)
        ws = w[rows]
        return Moments(float(ws.sum()), ws @ xs, (xs * ws[:, None]).T @ xs,
                       (xs * ws[:, None]).T @ ys, ws @ ys, ws @ (ys * ys))

    everything = np.arange(len(x))
    if lam == "auto":
        fold = fold_ids(len(x))
        lam, _ = choose_lam([moments(np.flatnonzero(fold == f)) for f in range(FOLDS)])
    coef, bias = solve(moments(everything), float(lam))
    return coef, bias, float(lam)


def routing_utility(pred: np.ndarray, y: np.ndarray, tasks: Sequence[str]) -> float:
    """Plain mean over tasks of the score of the argmax expert (the RouterDC protocol)."""
    chosen = np.argmax(pred, axis=1)
    picked = y[np.arange(len(y)), chosen]
    tasks = np.asarray(tasks)
    return float(np.mean([picked[tasks == t].mean() for t in dict.fromkeys(tasks.tolist())]))


def cv_predictions(x: np.ndarray, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
                   n_out: int) -> np.ndarray:
    """Out-of-fold predictions: ``fit_predict(train_rows, test_rows) -> (len(test), n_out)``."""
    fold = fold_ids(len(x))
    out = np.zeros((len(x), n_out))
    for f in range(FOLDS):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        if len(test) and len(train):
            out[test] = fit_predict(train, test)
    return out


def task_mean_targets(y: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """Each row's target replaced by its task's mean scores (a domain one-hot times a table)."""
    tasks = np.asarray(tasks)
    out = np.empty_like(y, dtype=np.float64)
    for t in set(tasks.tolist()):
        out[tasks == t] = y[tasks == t].mean(axis=0)
    return out


# -- score routers ------------------------------------------------------------------------------
@dataclass
class Result:
    """One row of a results table."""

    name: str
    kind: str  # irde, variant, baseline, reference
    metrics: dict[str, Any] = field(default_factory=dict)  # split name -> score_metrics/...
    cv: float | None = None  # the train cross-validation criterion used to choose
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a variant's head


def bootstrap_se(picked: np.ndarray, tasks: Sequence[str], n: int = 1000,
                 seed: int = SEED) -> float:
    """Bootstrap standard error of the plain mean over tasks (prompts resampled per task)."""
    rng = np.random.default_rng(seed)
    tasks = np.asarray(tasks)
    means = np.zeros(n)
    names = list(dict.fromkeys(tasks.tolist()))
    for t in names:
        values = picked[tasks == t]
        means += values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return float(np.std(means / len(names), ddof=1))


def _metrics(pred: np.ndarray, split: Scored, tie: np.ndarray | None = None) -> dict[str, Any]:
    if tie is not None:  # break exact ties by the LLMs' mean train score, not by column order
        pred = pred + 1e-9 * tie
    chosen = np.argmax(pred, axis=1)
    out = score_metrics(chosen, split.y, split.experts, split.tasks)
    out["mean"]["bootstrap_se"] = bootstrap_se(split.y[np.arange(len(chosen)), chosen],
                                               split.tasks)
    return out


def knn_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    """Mean target of the k nearest training rows by cosine similarity."""
    from sklearn.neighbors import KNeighborsRegressor

    knn = KNeighborsRegressor(n_neighbors=min(k, len(xtr)), metric="cosine", algorithm="brute")
    return knn.fit(xtr, ytr).predict(xte)


def knn_classify(xtr: np.ndarray, labels: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    """Class scores (vote shares) of the k nearest training rows by cosine similarity."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(xtr)), metric="cosine", algorithm="brute")
    return knn.fit(xtr, labels).predict_proba(xte)


def logreg_scores(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, c: float) -> np.ndarray:
    """P(LLM answers well) per LLM: one logistic regression each, fractional scores as weights.

    A row with score s counts as a positive with weight s and a negative with weight 1 - s.
    """
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(xte), ytr.shape[1]))
    xx = np.vstack([xtr, xtr])
    for k in range(ytr.shape[1]):
        s = np.clip(ytr[:, k], 0.0, 1.0)
        target = np.r_[np.ones(len(xtr)), np.zeros(len(xtr))]
        weight = np.r_[s, 1.0 - s]
        if s.min() == s.max():  # one class only: a constant
            out[:, k] = s[0]
            continue
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(xx, target, sample_weight=weight)
        out[:, k] = model.predict_proba(xte)[:, 1]
    return out


def logreg_classify(xtr: np.ndarray, labels: np.ndarray, xte: np.ndarray, c: float) -> np.ndarray:
    """Multinomial logistic regression class probabilities."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(xtr, labels).predict_proba(xte)


def mlp_model(classifier: bool, n: int) -> Any:
    """The MLP baseline: one hidden layer of 256, early stopping on 10% of the training rows."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if classifier else MLPRegressor
    return cls(hidden_layer_sizes=(256,), early_stopping=n >= 50, validation_fraction=0.1,
               max_iter=300, random_state=SEED)


def choose_by_cv(candidates: Sequence[Any], score: Callable[[Any], float]) -> tuple[Any, float,
                                                                                       dict]:
    """The candidate with the best (highest) cross-validated score; ties: the first."""
    table = {c: score(c) for c in candidates}
    best = max(table, key=lambda c: table[c])
    return best, table[best], table


# -- the RouterDC part -------------------------------------------------------------------------
def train_scored_router(name: str, train: Scored, threads: int | None, work: Path) -> Any:
    """``RouterTrainer`` with its defaults (lam by cross-validation) on the score targets."""
    from irde_onnx.export import RouterTrainer

    start = time.perf_counter()
    trainer = RouterTrainer(**ENCODERS[name], threads=threads, progress=False)
    trainer.fit(train.texts, scores=train.y, experts=train.experts)
    trainer.save(work / name)
    log(f"trained {name} on {len(train.texts)} prompts in {time.perf_counter() - start:.0f} s "
        f"(lam {trainer.lam_:.4g})")
    return trainer


def routerdc(args: argparse.Namespace, cache: FeatureCache, routers: dict[str, Any],
             work: Path) -> dict[str, Any]:
    """Train every router and baseline on routerdc7/train, score them on test_id/test_ood."""
    folder = args.data / "routerdc7"
    train = load_scored(folder / "train.jsonl", limit=args.limit)
    splits = {s: load_scored(folder / f"{s}.jsonl", train.experts, args.limit)
              for s in ("test_id", "test_ood")}
    experts = train.experts
    tie = train.y.mean(axis=0)
    results: list[Result] = []
    checks: dict[str, Any] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}

    trainers: dict[str, Any] = {}
    for name in args.encoders:
        trainer = train_scored_router(name, train, args.threads, work)
        router = trainer.router_
        routers[name] = router
        res = Result(f"irde {name}", "irde", note=f"lam {trainer.lam_:.3g} (5-fold CV, "
                     "squared error)")
        if router.config.pooled:
            f = {"train": cache.features(router, train.texts, f"{name}-dc-train")}
            for s, split in splits.items():
                f[s] = cache.features(router, split.texts, f"{name}-dc-{s}")
            feats[name] = f
            trainers[name] = trainer
            # the graph's scores are features @ head: check it on real prompts, then use it
            sample = splits["test_id"].texts[:CHECK_ROWS]
            graph = router.scores(sample)
            via_feats = f["test_id"][:CHECK_ROWS] @ trainer.coef_ + trainer.intercept_
            coef, bias, lam = ridge_fit(f["train"], train.y)
            checks[name] = {
                "graph_vs_features_head_max_abs": float(np.abs(graph - via_feats).max()),
                "argmax_agreement": float(np.mean(graph.argmax(1) == via_feats.argmax(1))),
                "numpy_ridge_vs_trainer_coef_max_abs": float(np.abs(coef - trainer.coef_).max()),
                "numpy_lam": lam, "trainer_lam": trainer.lam_,
            }
            for s, split in splits.items():
                res.metrics[s] = _metrics(f[s] @ trainer.coef_ + trainer.intercept_, split)
            res.cv = routing_utility(cv_predictions(
                f["train"], lambda a, b, x=f["train"], lam=trainer.lam_: _ridge_pred(
                    x[a], train.y[a], x[b], lam), len(experts)), train.y, train.tasks)
        else:
            for s, split in splits.items():
                res.metrics[s] = _metrics(router.scores(split.texts), split)
            res.note += f", strategy {router.config.strategy}"
        results.append(res)

    base_name = args.baseline_features
    if base_name == "static-mean":
        feats[base_name] = {"train": static_mean_features(train.texts),
                            **{s: static_mean_features(v.texts) for s, v in splits.items()}}
    for name in feats:
        variants = scored_variants(name, feats[name], train, splits)
        results += variants
        if name in trainers:
            checks[name]["selected_variant_in_graph"] = variant_graph_check(
                trainers[name], next(v for v in variants if v.extra.get("selected")),
                feats[name], train, splits["test_id"].texts[:CHECK_ROWS])
    if base_name not in feats:
        raise SystemExit(f"--baseline-features {base_name} needs that encoder in --encoders")
    results += scored_baselines(feats[base_name], train, splits, tie, base_name)
    if "static" in args.encoders and args.static_variants:
        results += static_strategy_variants(train, splits, args.static_strategies,
                                            args.threads, work)

    # protocol references computed from the files, and the fixed rows
    single = int(np.argmax(task_mean_table(train).mean(axis=0)))
    best_train = Result(f"best single LLM chosen on train ({experts[single]})", "baseline",
                        note="the LLM with the best plain mean over train tasks")
    rand = Result("random router (expected)", "baseline")
    for s, split in splits.items():
        best_train.metrics[s] = _metrics(np.tile(np.eye(len(experts))[single], (len(split.y), 1)),
                                         split)
        rand.metrics[s] = _expected(best_train.metrics[s], "random")
        rand.metrics[s]["mean"]["bootstrap_se"] = bootstrap_se(split.y.mean(axis=1), split.tasks)
    results += [rand, best_train]
    refs = {s: best_train.metrics[s]["mean"] for s in splits}
    return {"results": results, "checks": checks, "experts": experts, "references": refs,
            "n": {"train": len(train.texts), **{s: len(v.texts) for s, v in splits.items()}},
            "tasks": {s: list(dict.fromkeys(v.tasks)) for s, v in splits.items()}}


def _expected(metrics: dict[str, Any], key: str) -> dict[str, Any]:
    """A metrics dict whose router value is ``key`` (e.g. the random router's expectation)."""
    tasks = {t: {**v, "router": v[key]} for t, v in metrics["tasks"].items()}
    return {"tasks": tasks, "mean": {**metrics["mean"], "router": metrics["mean"][key]}}


def task_mean_table(split: Scored) -> np.ndarray:
    """Mean score of each LLM on each task, shape (n_tasks, E)."""
    tasks = np.asarray(split.tasks)
    return np.array([split.y[tasks == t].mean(axis=0) for t in dict.fromkeys(split.tasks)])


def _ridge_pred(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, lam: float | str) -> np.ndarray:
    coef, bias, _ = ridge_fit(xtr, ytr, lam)
    return xte @ coef + bias


def task_standardised_targets(y: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """Each row's task-mean scores, standardised across LLMs within the task (z-scores)."""
    m = task_mean_targets(y, tasks)
    return (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-9)


def task_best_targets(y: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """One-hot of the LLM with the best mean score on the row's task (ties share)."""
    m = task_mean_targets(y, tasks)
    return (m == m.max(axis=1, keepdims=True)).astype(np.float64)


# Candidate training targets, computed from the training rows only (inside each CV fold too).
TARGET_MAKERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "raw scores": lambda y, t: y,
    "task-mean scores": task_mean_targets,
    "task-standardised scores": task_standardised_targets,
    "best LLM of the task (one-hot)": task_best_targets,
    "raw + task-standardised": lambda y, t: (y - y.mean(axis=1, keepdims=True)
                                             + y.std() * task_standardised_targets(y, t)),
}


def _standardiser(x: np.ndarray, on: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Feature z-scoring with the mean and deviation of ``x`` (identity when off)."""
    if not on:
        return lambda z: z
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-12
    return lambda z: (z - mu) / sd


def cv_ridge(x: np.ndarray, y: np.ndarray, tasks: np.ndarray,
             make: Callable[[np.ndarray, np.ndarray], np.ndarray], grid: Sequence[float],
             standardise: bool) -> dict[float, float]:
    """Routing score (5-fold CV on train) of the ridge head for every lam of ``grid``.

    Targets and feature scaling are computed from each fold's training rows only.
    """
    fold = fold_ids(len(x))
    preds = {float(lam): np.zeros_like(y, dtype=np.float64) for lam in grid}
    for k in range(FOLDS):
        a, b = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        scale = _standardiser(x[a], standardise)
        sxx, sxy, mean_x, mean_y = Moments.from_rows(scale(x[a]), make(y[a], tasks[a])).centred()
        # one eigendecomposition serves every lam: (Sxx + lam I)^-1 = V diag(1/(e+lam)) V^T
        e, v = np.linalg.eigh(sxx)
        vty = v.T @ sxy
        xb = scale(x[b])
        for lam in preds:
            coef = v @ (vty / (e + lam)[:, None])
            preds[lam][b] = xb @ coef + (mean_y - mean_x @ coef)
    return {lam: routing_utility(p, y, tasks) for lam, p in preds.items()}


def scored_variants(name: str, f: dict[str, np.ndarray], train: Scored,
                    splits: dict[str, Scored]) -> list[Result]:
    """Candidate improvements of the irde head: targets x feature scaling, lam by routing CV.

    Every candidate is scored by 5-fold cross-validated routing score on train; the best one
    is marked as selected. Test numbers are shown for all, but nothing is chosen on them.
    """
    x, tasks = f["train"].astype(np.float64), np.asarray(train.tasks)
    out = []
    for standardise in (False, True):
        scale = _standardiser(x, standardise)
        grid = lam_grid(Moments.from_rows(scale(x), train.y), num=7)
        for title, make in TARGET_MAKERS.items():
            table = cv_ridge(x, train.y, tasks, make, grid, standardise)
            lam = max(table, key=lambda k: table[k])
            coef, bias = solve(Moments.from_rows(scale(x), make(train.y, tasks)), lam)
            res = Result(f"irde {name}: {title}" + (", standardised features" if standardise
                                                     else ""), "variant", cv=table[lam],
                         note=f"lam {lam:.3g} by routing CV")
            for s, split in splits.items():
                res.metrics[s] = _metrics(scale(f[s].astype(np.float64)) @ coef + bias, split)
            res.extra = {"target": title, "standardise": standardise, "lam": lam}
            out.append(res)
    best = max(out, key=lambda r: r.cv)
    best.note += "; **selected by train CV**"
    best.extra["selected"] = True
    log(f"{name}: {len(out)} head variants scored")
    return out


def scored_baselines(f: dict[str, np.ndarray], train: Scored, splits: dict[str, Scored],
                     tie: np.ndarray, feature_name: str) -> list[Result]:
    """kNN, logistic regression and MLP on the same features (hyper-parameters by train CV)."""
    x, y, e = f["train"], train.y, len(train.experts)
    out = []

    def cv_of(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
        pred = cv_predictions(x, fit_predict, e)
        return routing_utility(pred + 1e-9 * tie, y, train.tasks)

    start = time.perf_counter()
    k, cv, _ = choose_by_cv(KNN_KS, lambda k: cv_of(lambda a, b: knn_predict(x[a], y[a], x[b],
                                                                             k)))
    res = Result(f"kNN (cosine, k={k} by train CV)", "baseline", cv=cv,
                 note=f"{feature_name} features")
    for s, split in splits.items():
        res.metrics[s] = _metrics(knn_predict(x, y, f[s], k), split, tie)
    out.append(res)
    log(f"kNN baseline in {time.perf_counter() - start:.0f} s (k={k})")

    start = time.perf_counter()
    c, cv, _ = choose_by_cv(LOGREG_CS, lambda c: cv_of(lambda a, b: logreg_scores(x[a], y[a], x[b],
                                                                                  c)))
    res = Result(f"logistic regression per LLM (C={c:g} by train CV)", "baseline", cv=cv,
                 note=f"{feature_name} features")
    for s, split in splits.items():
        res.metrics[s] = _metrics(logreg_scores(x, y, f[s], c), split, tie)
    out.append(res)
    log(f"logistic regression baseline in {time.perf_counter() - start:.0f} s (C={c:g})")

    start = time.perf_counter()
    mlp = mlp_model(classifier=False, n=len(x)).fit(x, y)  # fixed: nothing to choose
    res = Result("MLP regressor (256 hidden, early stopping)", "baseline",
                 note=f"{feature_name} features")
    for s, split in splits.items():
        res.metrics[s] = _metrics(mlp.predict(f[s]), split, tie)
    out.append(res)
    log(f"MLP baseline in {time.perf_counter() - start:.0f} s")
    return out


def variant_graph_check(trainer: Any, variant: Result, f: dict[str, np.ndarray],
                        train: Scored, texts: list[str]) -> dict[str, Any]:
    """Run a variant's head inside the router's ONNX graph (head initializers overridden).

    Feature standardisation folds into the head: ``W = W' / sd``, ``b = b' - (mu / sd) W'``,
    so every variant ships as the same one-graph router with another head.
    """
    from irde_onnx.runtime.session import open_session

    x = f["train"].astype(np.float64)
    tasks = np.asarray(train.tasks)
    targets = TARGET_MAKERS[variant.extra["target"]](train.y, tasks)
    mu, sd = (x.mean(axis=0), x.std(axis=0) + 1e-12) if variant.extra["standardise"] else \
        (np.zeros(x.shape[1]), np.ones(x.shape[1]))
    coef, bias = solve(Moments.from_rows((x - mu) / sd, targets), variant.extra["lam"])
    w, b = coef / sd[:, None], bias - (mu / sd) @ coef
    router = trainer.router_
    session = open_session(router.path / GRAPH_FILE, head=(w, b))
    got = np.concatenate([session.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
                          for _, ids, mask in router.tokenizer.batches(texts, 1)])
    order = np.concatenate([idx for idx, _, _ in router.tokenizer.batches(texts, 1)])
    graph = np.empty_like(got)
    graph[order] = got
    via = ((router.features(texts).astype(np.float64) - mu) / sd) @ coef + bias
    return {"variant": variant.name, "rows": len(texts),
            "max_abs": float(np.abs(graph - via).max()),
            "argmax_agreement": float(np.mean(graph.argmax(1) == via.argmax(1)))}


def static_strategy_variants(train: Scored, splits: dict[str, Scored],
                             strategies: Sequence[str], threads: int | None,
                             work: Path) -> list[Result]:
    """The static router's strategies, the choice made by routing CV on train."""
    from irde_onnx.export import RouterTrainer

    out = []
    fold = fold_ids(len(train.texts))
    for strategy in strategies:
        pred = np.zeros_like(train.y)
        for k in range(FOLDS):
            a, b = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            tr = RouterTrainer(encoder="static", strategy=strategy, threads=threads,
                               progress=False, validate=False)
            tr.fit([train.texts[i] for i in a], scores=train.y[a], experts=train.experts)
            pred[b] = tr.router_.scores([train.texts[i] for i in b])
        tr = RouterTrainer(encoder="static", strategy=strategy, threads=threads, progress=False)
        tr.fit(train.texts, scores=train.y, experts=train.experts)
        res = Result(f"irde static, strategy {strategy}", "variant",
                     cv=routing_utility(pred, train.y, train.tasks), note=f"lam {tr.lam_:.3g}")
        for s, split in splits.items():
            res.metrics[s] = _metrics(tr.router_.scores(split.texts), split)
        out.append(res)
    log("static strategies done")
    return out


# -- the domain part ---------------------------------------------------------------------------
def onehot(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """One-hot targets (n, K) in ``classes`` order."""
    index = {c: k for k, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)))
    y[np.arange(len(labels)), [index[x] for x in labels]] = 1.0
    return y


def static_mean_features(texts: list[str], max_length: int = 256) -> np.ndarray:
    """Mean of the static table's rows over a prompt's content tokens, L2-normalised.

    A cheap stand-in for MiniLM features, used only when the run has no MiniLM encoder
    (``--baseline-features static``: smoke tests).
    """
    from irde_onnx.export.encoders import minilm_tokenizer_file
    from irde_onnx.runtime.tokenize import TextTokenizer

    table = _static_table()
    ids = TextTokenizer(minilm_tokenizer_file(), max_length).content_ids(texts)
    x = np.stack([table[i].mean(axis=0) if len(i) else np.zeros(table.shape[1], np.float32)
                  for i in ids])
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=1)
def _static_table() -> np.ndarray:
    from irde_onnx.export.encoders import minilm_word_embeddings

    return minilm_word_embeddings().astype(np.float16).astype(np.float32)


@dataclass
class LabelResult:
    """One router or baseline on one domain split."""

    name: str
    kind: str
    metrics: dict[str, Any]
    unseen: dict[str, Any] | None = None  # cross-source: only rows of held-out sources
    cv: float | None = None
    note: str = ""


def _label_eval(name: str, kind: str, scores: np.ndarray, classes: list[str], test: Labelled,
                unseen: np.ndarray | None, cv: float | None = None, note: str = "",
                tie: np.ndarray | None = None) -> LabelResult:
    if tie is not None:
        scores = scores + 1e-9 * tie
    pred = [classes[k] for k in np.argmax(scores, axis=1)]
    metrics = label_metrics(test.labels, pred, classes)
    held = None
    if unseen is not None and unseen.any():
        held = label_metrics([t for t, u in zip(test.labels, unseen, strict=True) if u],
                             [p for p, u in zip(pred, unseen, strict=True) if u], classes)
    return LabelResult(name, kind, metrics, held, cv, note)


def accuracy_cv(x: np.ndarray, y: np.ndarray,
                fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    """5-fold cross-validated accuracy on train rows (y one-hot)."""
    pred = cv_predictions(x, fit_predict, y.shape[1])
    return float(np.mean(pred.argmax(1) == y.argmax(1)))


def domain_split(split: str, data: Labelled, feats: dict[str, np.ndarray],
                 args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every router, variant and baseline on one split (``in_source`` or ``cross_source``)."""
    from irde_onnx.export import RouterTrainer

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

    for name in args.encoders:
        if name in feats:
            x, xt = feats[name][~test_mask], feats[name][test_mask]
            coef, bias, lam = ridge_fit(x, ytr)
            cv = accuracy_cv(x, ytr, lambda a, b, x=x, lam=lam: _ridge_pred(x[a], ytr[a], x[b],
                                                                             lam))
            results.append(_label_eval(f"irde {name}", "irde", xt @ coef + bias, classes, test,
                                       unseen_mask, cv, f"lam {lam:.3g} (5-fold CV, squared "
                                       "error)"))
        else:
            tr = RouterTrainer(**ENCODERS[name], threads=args.threads, progress=False)
            tr.fit(train.texts, train.labels, experts=classes)
            results.append(_label_eval(f"irde {name}", "irde", tr.router_.scores(test.texts),
                                       classes, test, unseen_mask,
                                       note=f"lam {tr.lam_:.3g}, strategy "
                                            f"{tr.router_.config.strategy}"))
    log(f"{split}: irde routers done")
    if "static" in args.encoders and args.static_variants:
        fold = fold_ids(len(train.texts))
        for strategy in args.static_strategies:
            pred = np.zeros_like(ytr)
            for k in range(FOLDS):
                a, b = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
                tr = RouterTrainer(encoder="static", strategy=strategy, threads=args.threads,
                                   progress=False, validate=False)
                tr.fit([train.texts[i] for i in a], [train.labels[i] for i in a],
                       experts=classes)
                pred[b] = tr.router_.scores([train.texts[i] for i in b])
            tr = RouterTrainer(encoder="static", strategy=strategy, threads=args.threads,
                               progress=False)
            tr.fit(train.texts, train.labels, experts=classes)
            cv = float(np.mean(pred.argmax(1) == ytr.argmax(1)))
            results.append(_label_eval(f"irde static, strategy {strategy}", "variant",
                                       tr.router_.scores(test.texts), classes, test,
                                       unseen_mask, cv, f"lam {tr.lam_:.3g}"))
        log(f"{split}: static strategies done")

    base = args.baseline_features
    x, xt = feats[base][~test_mask], feats[base][test_mask]
    labels = np.array(train.labels)
    # candidate improvements of the head, chosen by CV accuracy on train
    grid = lam_grid(Moments.from_rows(x, ytr), num=7)
    lam, cv, _ = choose_by_cv(list(grid), lambda lam: accuracy_cv(
        x, ytr, lambda a, b: _ridge_pred(x[a], ytr[a], x[b], float(lam))))
    coef, bias, _ = ridge_fit(x, ytr, float(lam))
    results.append(_label_eval(f"irde {base}, lam by accuracy CV", "variant", xt @ coef + bias,
                               classes, test, unseen_mask, cv, f"lam {lam:.3g}"))
    balance = (1.0 / (len(classes) * prior))[ytr.argmax(1)]  # every domain weighs the same

    def weighted(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
        c, d, _ = ridge_fit(x[a], ytr[a], lam, balance[a])
        return x[b] @ c + d

    lam_b, cv_b, _ = choose_by_cv(list(grid), lambda lam: accuracy_cv(
        x, ytr, lambda a, b: weighted(a, b, float(lam))))
    coef, bias, _ = ridge_fit(x, ytr, float(lam_b), balance)
    results.append(_label_eval(f"irde {base}, balanced domains, lam by accuracy CV", "variant",
                               xt @ coef + bias, classes, test, unseen_mask, cv_b,
                               f"rows weighted 1/(K n_domain), lam {lam_b:.3g}"))
    for title, (tr_x, te_x) in _feature_variants(x, xt, feats.get("static-mean-extra"),
                                                  ~test_mask, test_mask).items():
        g = lam_grid(Moments.from_rows(tr_x, ytr), num=7)
        lam_v, cv_v, _ = choose_by_cv(list(g), lambda lam, tr_x=tr_x: accuracy_cv(
            tr_x, ytr, lambda a, b: _ridge_pred(tr_x[a], ytr[a], tr_x[b], float(lam))))
        coef, bias, _ = ridge_fit(tr_x, ytr, float(lam_v))
        results.append(_label_eval(f"irde {base}, {title}, lam by accuracy CV", "variant",
                                   te_x @ coef + bias, classes, test, unseen_mask, cv_v,
                                   f"lam {lam_v:.3g}"))
    log(f"{split}: head variants done")

    # baselines on the same features
    results.append(_label_eval("most frequent domain (train)", "baseline",
                               np.tile(prior, (len(test.texts), 1)), classes, test, unseen_mask))
    k, cv, _ = choose_by_cv(KNN_KS, lambda k: accuracy_cv(
        x, ytr, lambda a, b: _proba(knn_classify(x[a], labels[a], x[b], k), labels[a],
                                    classes)))
    results.append(_label_eval(f"kNN (cosine, k={k} by train CV)", "baseline",
                               _proba(knn_classify(x, labels, xt, k), labels, classes), classes,
                               test, unseen_mask, cv, f"{base} features", prior))
    log(f"{split}: kNN done (k={k})")
    c, cv, _ = choose_by_cv(LOGREG_CS, lambda c: accuracy_cv(
        x, ytr, lambda a, b: _proba(logreg_classify(x[a], labels[a], x[b], c), labels[a],
                                    classes)))
    results.append(_label_eval(f"logistic regression (C={c:g} by train CV)", "baseline",
                               _proba(logreg_classify(x, labels, xt, c), labels, classes),
                               classes, test, unseen_mask, cv, f"{base} features"))
    log(f"{split}: logistic regression done (C={c:g})")
    mlp = mlp_model(classifier=True, n=len(x)).fit(x, labels)  # fixed: nothing to choose
    results.append(_label_eval("MLP classifier (256 hidden, early stopping)", "baseline",
                               _proba(mlp.predict_proba(xt), labels, classes), classes, test,
                               unseen_mask, None, f"{base} features"))
    log(f"{split}: MLP done")
    return {"results": results, "n_train": len(train.texts), "n_test": len(test.texts),
            "n_unseen": int(unseen_mask.sum()) if unseen_mask is not None else None,
            "train_source": train_source, "classes": classes,
            "test_sources": sorted(set(test.sources))}


def _feature_variants(x: np.ndarray, xt: np.ndarray, extra: np.ndarray | None,
                      train_rows: np.ndarray, test_rows: np.ndarray
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Candidate feature maps for the domain head: standardised, and MiniLM + static mean.

    Standardisation folds into the head; the hybrid (pooled MiniLM features concatenated
    with the mean of the static table's rows) would need a second path in the graph.
    """
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-12
    out = {"standardised features": ((x - mu) / sd, (xt - mu) / sd)}
    if extra is not None:
        out["hybrid features (MiniLM + static mean; a graph change)"] = (
            np.hstack([x, extra[train_rows]]), np.hstack([xt, extra[test_rows]]))
    return out


def _proba(p: np.ndarray, train_labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """sklearn's class-probability columns (sorted labels seen in training) in ``classes``."""
    seen = sorted(set(train_labels.tolist()))
    out = np.zeros((len(p), len(classes)))
    out[:, [classes.index(c) for c in seen]] = p
    return out


def domain_check(name: str, data: Labelled, feats: np.ndarray, threads: int | None,
                 n: int = 300) -> tuple[Any, dict[str, float]]:
    """Fit RouterTrainer on ``n`` domain prompts; compare its head with ridge_fit on features.

    Returns the trainer (its router gives the encoder's features) and the differences.
    """
    from irde_onnx.export import RouterTrainer

    idx = np.argsort([_hash(i) for i in data.ids], kind="stable")[:n]
    texts = [data.texts[i] for i in idx]
    labels = [data.labels[i] for i in idx]
    tr = RouterTrainer(**ENCODERS[name], threads=threads, progress=False).fit(texts, labels)
    coef, bias, lam = ridge_fit(feats[idx], onehot(labels, tr.experts_))
    return tr, {"numpy_ridge_vs_trainer_coef_max_abs": float(np.abs(coef - tr.coef_).max()),
                "numpy_lam": lam, "trainer_lam": float(tr.lam_), "rows": len(idx)}


def encoder_router(name: str, threads: int | None) -> Any:
    """A router of encoder ``name`` (its features do not depend on the head)."""
    from irde_onnx.export import RouterTrainer

    texts = ["what is two plus two", "a contract clause", "solve for x", "the law of torts"]
    tr = RouterTrainer(**ENCODERS[name], threads=threads, lam=1.0, progress=False)
    return tr.fit(texts, ["math", "law", "math", "law"]).router_


def domains(args: argparse.Namespace, cache: FeatureCache,
            routers: dict[str, Any], work: Path) -> dict[str, Any]:
    """The domain task on both splits."""
    data = load_domains(args.data / "domains", args.limit)
    feats: dict[str, np.ndarray] = {}
    checks: dict[str, Any] = {}
    for name in args.encoders:
        if ENCODERS[name]["encoder"] != "minilm":
            continue
        router = routers.get(name) or encoder_router(name, args.threads)
        feats[name] = cache.features(router, data.texts, f"{name}-domains")
        if name == args.baseline_features:
            _, checks[name] = domain_check(name, data, feats[name], args.threads)
    feats["static-mean-extra"] = static_mean_features(data.texts)  # for the hybrid variant
    if args.baseline_features == "static-mean":
        feats["static-mean"] = feats["static-mean-extra"]
    out = {"n": len(data.texts), "duplicates_dropped": data.duplicates_dropped, "checks": checks,
           "sources": sorted(set(data.sources))}
    for split in ("in_source", "cross_source"):
        out[split] = domain_split(split, data, feats, args, work)
    return out


# -- report -----------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def routerdc_table(part: dict[str, Any]) -> str:
    """The RouterDC table: every task and both means, in percent."""
    id_tasks, ood_tasks = part["tasks"]["test_id"], part["tasks"]["test_ood"]
    head = (["router", "train CV"] + id_tasks + ["**ID mean** ± s.e."] + ood_tasks
            + ["**OOD mean** ± s.e.", "note"])
    rows = []
    for r in part["results"]:
        cells = [r.name, _pct(r.cv)]
        for split, tasks in (("test_id", id_tasks), ("test_ood", ood_tasks)):
            m = r.metrics[split]
            cells += [_pct(m["tasks"][t]["router"]) for t in tasks]
            se = m["mean"].get("bootstrap_se")
            cells.append(f"**{_pct(m['mean']['router'])}**"
                         + ("" if se is None else f" ± {100 * se:.2f}"))
        rows.append(cells + [r.note])
    refs = part["references"]
    oracle = ["oracle (best LLM per prompt), this run", "—"]
    per_task = ["each task's best LLM chosen on test, this run", "—"]
    for split, tasks in (("test_id", id_tasks), ("test_ood", ood_tasks)):
        m = part["results"][-1].metrics[split]
        oracle += [_pct(m["tasks"][t]["oracle"]) for t in tasks] + [_pct(refs[split]["oracle"])]
        per_task += [_pct(m["tasks"][t]["best_expert"]["score"]) for t in tasks] + [
            _pct(refs[split]["best_expert_per_task"])]
    rows += [oracle + ["upper bound"], per_task + ["needs the task label; not a router"]]
    blank = ["—"] * len(id_tasks)
    blank_ood = ["—"] * len(ood_tasks)
    for name, id_mean, ood_mean in README_REFERENCES:
        rows.append([f"*{name}* (fixed)", "—", *blank, f"{id_mean:.2f}", *blank_ood,
                     "—" if ood_mean is None else f"{ood_mean:.2f}", "data README / paper"])
    return markdown_table(head, rows)


def chosen_table(part: dict[str, Any]) -> str:
    """How often each LLM is chosen on test_id + test_ood by the irde routers."""
    experts = part["experts"]
    rows = []
    for r in part["results"]:
        if r.kind != "irde":
            continue
        for split in ("test_id", "test_ood"):
            rows.append([r.name, split] + [f"{100 * r.metrics[split]['chosen'][e]:.1f}"
                                           for e in experts])
    return markdown_table(["router", "split"] + experts, rows)


def domain_table(part: dict[str, Any]) -> str:
    """Accuracy and macro-F1 on both domain splits."""
    ins, cross = part["in_source"], part["cross_source"]
    by_name = {r.name: r for r in cross["results"]}
    rows = []
    for r in ins["results"]:
        c = by_name.get(r.name) or next((x for x in cross["results"]
                                         if x.name.split(" (")[0] == r.name.split(" (")[0]), None)
        cells = [r.name, _pct(r.cv), _pct(r.metrics["accuracy"]), _pct(r.metrics["macro_f1"])]
        if c is None:
            cells += ["—"] * 5
        else:
            u = c.unseen or {}
            cells += [_pct(c.cv), f"**{_pct(u.get('accuracy'))}**", _pct(u.get("macro_f1")),
                      _pct(c.metrics["accuracy"]), _pct(c.metrics["macro_f1"])]
        rows.append(cells + [r.note if c is None or c.note == r.note else
                             f"{r.note}; cross: {c.note}"])
    return markdown_table(
        ["router", "in-source train CV acc", "**in-source accuracy**", "in-source macro-F1",
         "cross train CV acc", "**cross-source accuracy (held-out sources)**",
         "cross macro-F1 (held-out sources)", "cross accuracy (all test rows)",
         "cross macro-F1 (all test rows)", "note"], rows)


def recall_table(part: dict[str, Any], name: str) -> str:
    """Per-domain recall of one router on both splits."""
    ins = next(r for r in part["in_source"]["results"] if r.name == name)
    cross = next(r for r in part["cross_source"]["results"] if r.name == name)
    classes = part["in_source"]["classes"]
    rows = []
    for c in classes:
        u = (cross.unseen or {}).get("per_class", {}).get(c)
        i = ins.metrics["per_class"].get(c)
        rows.append([c, i["support"] if i else 0, _pct(i["recall"]) if i else "—",
                     part["cross_source"]["train_source"].get(c, "(in-source split)"),
                     u["support"] if u else "—", _pct(u["recall"]) if u else "—"])
    return markdown_table(["domain", "in-source test rows", "in-source recall",
                           "cross: trained on", "cross: held-out rows", "cross: recall"], rows)


def targets_table(out: dict[str, Any], encoders: Sequence[str]) -> str:
    """The issue's quality targets for the minilm routers (defaults, and the train-CV pick)."""
    rows = []
    minilm = [e for e in encoders if ENCODERS[e]["encoder"] == "minilm"]

    def row(label: str, value: float, ok: bool) -> None:
        rows.append([label, _pct(value), "met" if ok else "**missed**"])

    for name in minilm:
        if "routerdc" in out:
            for r in out["routerdc"]["results"]:
                if r.name == f"irde {name}":
                    label = f"{r.name} (RouterTrainer defaults)"
                elif r.extra.get("selected") and r.name.startswith(f"irde {name}:"):
                    label = f"{r.name} (candidate selected by train CV)"
                else:
                    continue
                m_id, m_ood = (r.metrics[s]["mean"]["router"] for s in ("test_id", "test_ood"))
                row(f"{label}: ID mean > {TARGETS['id']}", m_id, 100 * m_id > TARGETS["id"])
                row(f"{label}: OOD mean > {TARGETS['ood']}", m_ood,
                    100 * m_ood > TARGETS["ood"])
        if "domains" in out:
            for r in out["domains"]["in_source"]["results"]:
                if r.name == f"irde {name}":
                    acc = r.metrics["accuracy"]
                    row(f"{r.name}: in-source accuracy >= 97%", acc,
                        acc >= TARGETS["in_source"])
            for r in out["domains"]["cross_source"]["results"]:
                if r.name == f"irde {name}" and r.unseen:
                    acc = r.unseen["accuracy"]
                    row(f"{r.name}: cross-source accuracy >= 90% (held-out sources)", acc,
                        acc >= TARGETS["cross_source"])
    return markdown_table(["target", "measured", "status"], rows)


# -- charts -----------------------------------------------------------------------------------
def draw_charts(out: dict[str, Any], folder: Path) -> list[Path]:
    """PNG charts: RouterDC means, RouterDC per task, domain accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if "routerdc" in out:
        part = out["routerdc"]
        shown = [r for r in part["results"] if r.kind in ("irde", "baseline")
                 or r.extra.get("selected")]
        names = [r.name for r in shown]
        fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(shown) + 1.8), sharey=True)
        refs = part["references"]
        for ax, split, target, title in ((axes[0], "test_id", TARGETS["id"], "in-distribution"),
                                         (axes[1], "test_ood", TARGETS["ood"],
                                          "out-of-distribution")):
            vals = [100 * r.metrics[split]["mean"]["router"] for r in shown]
            colors = ["tab:blue" if r.kind == "irde" else "tab:green" if r.kind == "variant"
                      else "tab:gray" for r in shown]
            ax.barh(range(len(shown)), vals, color=colors)
            for i, v in enumerate(vals):
                ax.text(v + 0.2, i, f"{v:.2f}", va="center", fontsize=8)
            ax.axvline(target, color="red", ls="--", lw=1,
                       label=f"target {target:.2f}")
            ax.axvline(100 * refs[split]["oracle"], color="black", ls=":", lw=1,
                       label=f"oracle {100 * refs[split]['oracle']:.2f}")
            lo = min(vals + [100 * refs[split]["random"]]) - 3
            ax.set_xlim(lo, 100 * refs[split]["oracle"] + 2)
            ax.set_title(f"RouterDC {title}: mean over tasks (%)")
            ax.legend(loc="lower right", fontsize=8)
        axes[0].set_yticks(range(len(shown)), names, fontsize=8)
        axes[0].invert_yaxis()
        fig.tight_layout()
        paths.append(folder / "quality_routerdc_means.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

        tasks = part["tasks"]["test_id"] + part["tasks"]["test_ood"]
        main_rows = [r for r in part["results"] if r.kind == "irde"] + [
            r for r in part["results"] if r.kind == "baseline" and "random" not in r.name]
        fig, ax = plt.subplots(figsize=(13, 5))
        width = 0.8 / len(main_rows)
        for j, r in enumerate(main_rows):
            vals = [100 * r.metrics["test_id" if t in part["tasks"]["test_id"] else
                                    "test_ood"]["tasks"][t]["router"] for t in tasks]
            ax.bar(np.arange(len(tasks)) + j * width, vals, width, label=r.name)
        any_row = part["results"][-1]
        oracle = [100 * any_row.metrics["test_id" if t in part["tasks"]["test_id"] else
                                        "test_ood"]["tasks"][t]["oracle"] for t in tasks]
        ax.scatter(np.arange(len(tasks)) + 0.4 - width / 2, oracle, marker="_", s=600,
                   color="black", label="oracle")
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2,
                      [t + (" (OOD)" if t in part["tasks"]["test_ood"] else "") for t in tasks],
                      fontsize=8)
        ax.set_ylabel("mean score of the chosen LLM (%)")
        ax.set_title("RouterDC protocol: per task, routers against baselines and the oracle")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        paths.append(folder / "quality_routerdc_tasks.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if "domains" in out:
        ins = out["domains"]["in_source"]["results"]
        cross = {r.name: r for r in out["domains"]["cross_source"]["results"]}
        names = [r.name for r in ins]
        a = [100 * r.metrics["accuracy"] for r in ins]
        b = [100 * ((cross[n].unseen or cross[n].metrics)["accuracy"]) if n in cross else 0.0
             for n in names]
        fig, ax = plt.subplots(figsize=(11, 0.5 * len(names) + 1.5))
        y = np.arange(len(names))
        ax.barh(y - 0.2, a, 0.4, label="in-source (id-hash split)")
        ax.barh(y + 0.2, b, 0.4, label="cross-source (held-out sources)")
        for i in range(len(names)):
            ax.text(a[i] + 0.3, i - 0.2, f"{a[i]:.1f}", va="center", fontsize=7)
            ax.text(b[i] + 0.3, i + 0.2, f"{b[i]:.1f}", va="center", fontsize=7)
        ax.axvline(97, color="tab:blue", ls="--", lw=1, label="target 97 (in-source)")
        ax.axvline(90, color="tab:orange", ls="--", lw=1, label="target 90 (cross-source)")
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 105)
        ax.set_xlabel("accuracy (%)")
        ax.set_title("Domain routing (10 domains)", pad=48)
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
        fig.tight_layout()
        paths.append(folder / "quality_domains.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _plain(obj: Any) -> Any:
    """JSON-ready copy of results (dataclasses to dicts, arrays dropped)."""
    if isinstance(obj, (Result, LabelResult)):
        d = {k: _plain(v) for k, v in obj.__dict__.items() if k != "extra"}
        if isinstance(obj, Result):
            d["variant"] = {k: v for k, v in obj.extra.items() if not isinstance(v, np.ndarray)}
        return d
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def report(out: dict[str, Any], args: argparse.Namespace, seconds: float,
           charts: list[Path]) -> str:
    """The markdown section of BENCHMARKS.md."""
    default = args.encoders[0]
    lines = ["## Routing quality (`benchmarks/quality.py`)", "", header(command_line()),
             f"Run time {seconds / 60:.1f} min. Threads: "
             f"{args.threads or 'onnxruntime default'}."
             + (f" **Sampled: {args.limit} rows per task/source (--limit)**." if args.limit
                else " All rows of every file."), "",
             "Every choice (lam, k, C, targets, strategy) is made by 5-fold cross-validation "
             "on the training rows; test rows are only scored. The *train CV* column is that "
             "criterion (routing score or accuracy on held-out train folds).", ""]
    if "routerdc" in out:
        part = out["routerdc"]
        n = part["n"]
        lines += [
            "### RouterDC protocol (`routerdc7/`)", "",
            f"Trained on train.jsonl ({n['train']} prompts, the 7 LLMs' scores as targets), "
            f"scored on test_id ({n['test_id']}) and test_ood ({n['test_ood']}): per task the "
            "mean score (%) of the LLM each router picks, and the plain mean over tasks. "
            "`irde ...` rows are RouterTrainer's defaults (lam by 5-fold CV on squared "
            "error). Baselines use the "
            f"`{args.baseline_features}` features of the same prompts. Random is the expected "
            "value of a uniform choice. Ties in a baseline's scores go to the LLM with the "
            "best mean train score.", "",
            routerdc_table({**part, "results": [r for r in part["results"]
                                                if r.kind != "variant"]}), "",
            "#### Candidate improvements of the head (chosen on train)", "",
            "Targets: the raw scores; each task's mean scores; those standardised across the "
            "7 LLMs within the task; the one-hot of the task's best LLM (a domain target); raw "
            "scores plus the task-standardised ones. Each with and without feature "
            "standardisation (foldable into the head: the router stays one graph). lam "
            "by routing CV for each. The row marked *selected* has the best train CV.", "",
            routerdc_table({**part, "results": [r for r in part["results"]
                                                if r.kind == "variant"]}).split(
                "\n| oracle")[0], "",
            "How often each LLM is chosen (%):", "", chosen_table(part), "",
            "Checks in this run: " + "; ".join(
                f"{k}: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
                for k, v in part["checks"].items()) + ".", ""]
    if "domains" in out:
        dom = out["domains"]
        cross = dom["cross_source"]
        lines += [
            "### Domain routing (`domains/`)", "",
            f"{dom['n']} prompts in 10 domains ({dom['duplicates_dropped']} exact duplicate "
            "texts dropped). *In-source*: test = rows whose sha256(id) mod 5 is 0 "
            f"({dom['in_source']['n_test']} test, {dom['in_source']['n_train']} train). "
            "*Cross-source*: each domain with several source benchmarks trains on its largest "
            "source and is tested on the others ("
            + ", ".join(f"{d}: {s}" for d, s in cross["train_source"].items())
            + "); single-source domains are split by id hash as above and stay in both sets "
            f"({cross['n_train']} train, {cross['n_test']} test, of which {cross['n_unseen']} "
            "from held-out sources; the headline column counts only those). minilm heads are "
            "fit with `irde_onnx.ridge` on the router's own features (what RouterTrainer "
            "computes; checked below), the static router with RouterTrainer.", "",
            domain_table(dom), "",
            f"Per-domain recall of `irde {default}`:", "",
            recall_table(dom, f"irde {default}") if any(
                r.name == f"irde {default}" for r in dom["in_source"]["results"]) else "", "",
            "Checks in this run: " + "; ".join(
                f"{k}: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
                for k, v in dom["checks"].items()) + ".", ""]
    lines += ["### Quality targets (minilm routers)", "", targets_table(out, args.encoders), ""]
    lines += [f"![{p.stem}](benchmarks/results/{p.name})" for p in charts]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items()) + "}"
    return str(v)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write BENCHMARKS.md's section, charts and quality.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[-1:]))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding routerdc7/ and domains/ (default ../shared/data)")
    parser.add_argument("--encoders", nargs="+", choices=list(ENCODERS), default=list(ENCODERS),
                        help="irde routers to train (the first one is checked against targets)")
    parser.add_argument("--baseline-features", default="minilm-int8",
                        choices=["minilm-int8", "minilm-fp32", "static-mean"],
                        help="features of kNN / logistic regression / MLP (static-mean: mean of "
                             "the static table's rows, for smoke tests)")
    parser.add_argument("--part", choices=["all", "routerdc", "domains"], default="all")
    parser.add_argument("--limit", type=int, default=None,
                        help="keep N rows per task / per domain source (smoke tests)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep encoded features here (npz) to rerun faster")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--static-strategies", nargs="+", default=list(STATIC_STRATEGIES),
                        choices=list(STATIC_STRATEGIES),
                        help="static strategies compared by train CV (default all)")
    parser.add_argument("--no-static-variants", dest="static_variants", action="store_false")
    parser.add_argument("--results", type=Path, default=RESULTS, help="charts and json")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="file to write the section into (default BENCHMARKS.md)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
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
            json.dumps(_plain(out), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = report(out, args, seconds, charts)
    print(text)
    if not args.no_write:
        (args.results / "quality.md").write_text(text, encoding="utf-8")
        write_section("quality", text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

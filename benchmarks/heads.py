"""Ridge heads on encoded features: the package's solver, cross-validation and target maps.

Folds, weighted moments, the lam search and the solve are :mod:`irde_onnx.learning.moments`'s, so a
head fit here is the head ``RouterTrainer`` fits on the same features (checked in the run).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx.learning.moments import Moments, choose_lam, fold_ids, solve

FOLDS = 5
SEED = 0


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
            x[i : i + 1024] = router.features(texts[i : i + 1024])
        log(f"encoded {len(texts)} {what} prompts in {time.perf_counter() - start:.0f} s")
        if path is not None:
            np.savez(path, x=x)
        return x


def folds_of(n: int) -> np.ndarray:
    """The fold of each row, as RouterTrainer assigns them by default."""
    return fold_ids(n, FOLDS, SEED)


def ridge_fit(
    x: np.ndarray, y: np.ndarray, lam: float | str = "auto", weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """The irde head on dense features; lam by k-fold squared error if ``"auto"``.

    This is RouterTrainer's computation for pooled encoders. ``weights`` (n,) weighs rows.
    """

    def moments(rows: np.ndarray) -> Moments:
        return Moments.from_rows(x[rows], y[rows], None if weights is None else weights[rows])

    if lam == "auto":
        fold = folds_of(len(x))
        lam, _ = choose_lam([moments(np.flatnonzero(fold == f)) for f in range(FOLDS)])
    coef, bias = solve(moments(np.arange(len(x))), float(lam))
    return coef, bias, float(lam)


def ridge_predict(
    xtr: np.ndarray,
    ytr: np.ndarray,
    xte: np.ndarray,
    lam: float | str,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of ``xte`` by the head fit on ``(xtr, ytr)``."""
    coef, bias, _ = ridge_fit(xtr, ytr, lam, weights)
    return xte @ coef + bias


def routing_utility(pred: np.ndarray, y: np.ndarray, tasks: Sequence[str]) -> float:
    """Plain mean over tasks of the score of the argmax expert (the RouterDC protocol)."""
    chosen = np.argmax(pred, axis=1)
    picked = y[np.arange(len(y)), chosen]
    tasks = np.asarray(tasks)
    return float(np.mean([picked[tasks == t].mean() for t in dict.fromkeys(tasks.tolist())]))


def cv_predictions(
    n: int, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n_out: int
) -> np.ndarray:
    """Out-of-fold predictions: ``fit_predict(train_rows, test_rows) -> (len(test), n_out)``."""
    fold = folds_of(n)
    out = np.zeros((n, n_out))
    for f in range(FOLDS):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        if len(test) and len(train):
            out[test] = fit_predict(train, test)
    return out


def accuracy_cv(
    y: np.ndarray, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> float:
    """5-fold cross-validated accuracy on train rows (``y`` one-hot)."""
    pred = cv_predictions(len(y), fit_predict, y.shape[1])
    return float(np.mean(pred.argmax(1) == y.argmax(1)))


def choose_by_cv(
    candidates: Sequence[Any], score: Callable[[Any], float]
) -> tuple[Any, float, dict]:
    """The candidate with the best (highest) cross-validated score; ties: the first."""
    table = {c: score(c) for c in candidates}
    best = max(table, key=lambda c: table[c])
    return best, table[best], table


def task_mean_targets(y: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """Each row's target replaced by its task's mean scores (a domain one-hot times a table)."""
    tasks = np.asarray(tasks)
    out = np.empty_like(y, dtype=np.float64)
    for t in set(tasks.tolist()):
        out[tasks == t] = y[tasks == t].mean(axis=0)
    return out


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
    "raw + task-standardised": lambda y, t: (
        y - y.mean(axis=1, keepdims=True) + y.std() * task_standardised_targets(y, t)
    ),
}


def standardiser(x: np.ndarray, on: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Feature z-scoring with the mean and deviation of ``x`` (identity when off)."""
    if not on:
        return lambda z: z
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-12
    return lambda z: (z - mu) / sd


def cv_ridge(
    x: np.ndarray,
    y: np.ndarray,
    tasks: np.ndarray,
    make: Callable[[np.ndarray, np.ndarray], np.ndarray],
    grid: Sequence[float],
    standardise: bool,
) -> dict[float, float]:
    """Routing score (5-fold CV on train) of the ridge head for every lam of ``grid``.

    Targets and feature scaling are computed from each fold's training rows only.
    """
    fold = folds_of(len(x))
    preds = {float(lam): np.zeros_like(y, dtype=np.float64) for lam in grid}
    for k in range(FOLDS):
        a, b = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        scale = standardiser(x[a], standardise)
        sxx, sxy, mean_x, mean_y = Moments.from_rows(scale(x[a]), make(y[a], tasks[a])).centred()
        # one eigendecomposition serves every lam: (Sxx + lam I)^-1 = V diag(1/(e+lam)) V^T
        e, v = np.linalg.eigh(sxx)
        vty = v.T @ sxy
        xb = scale(x[b])
        for lam in preds:
            coef = v @ (vty / (e + lam)[:, None])
            preds[lam][b] = xb @ coef + (mean_y - mean_x @ coef)
    return {lam: routing_utility(p, y, tasks) for lam, p in preds.items()}

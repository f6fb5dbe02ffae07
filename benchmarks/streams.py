"""Feedback streams on cached features, learned with the product's statistics and fold.

Used by ``benchmarks/feedback.py``. Two pieces:

- :class:`FeatureCache`: the pooled features of the evaluation prompts, read from the cache
  ``research/feedback/encode.py`` wrote (one ``<part>-<sha256(fingerprint)[:12]>.npz`` per
  dataset part, keys ``x`` and ``ids``, made by the router in ``<cache>/router-default``);
  a missing part is encoded with ``Router.features`` of that router (built with
  ``RouterTrainer``'s defaults if the folder is missing) and written to the cache.
- :class:`Learner`: a router's statistics (:class:`irde_onnx.learning.statistics.RouterStats`)
  that feedback rows are parsed (``learning.feedback.parse_rows``) and folded into
  (``learning.feedback.fold``, features given as ``EncodedRows``), then re-solved per column
  group with ``learning.moments.solve``: lam fixed, or relative to each column's data
  (the product's ``learning.moments.relative_lam``, the rule ``RouterStats.solve`` applies
  with a kappa); columns without rows predict their prior, as the product's cold start does.
  :meth:`Learner.width` is the product's uncertainty (``learning.uncertainty``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.splits import limit_rows, load_domain_records, read_rows
from irde_onnx.learning import feedback
from irde_onnx.learning.moments import (
    Moments,
    choose_lam,
    data_scale,
    fold_ids,
    relative_lam,
    solve,
)
from irde_onnx.learning.statistics import EncodedRows, RouterStats
from irde_onnx.learning.uncertainty import subspace_width

CACHE_ENV = "IRDE_FEATURE_CACHE"
DC_TEST_CAP = 100000  # test_id "capped" at 100000 per task: every row, in id-hash order
DOMAIN_CAP = 600  # rows per (domain, source), as research/feedback/encode.py encoded them


def default_cache() -> Path:
    """``$IRDE_FEATURE_CACHE``, else ``~/.cache/irde-onnx/features``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "irde-onnx" / "features"


def dataset_rows(data: Path, part: str) -> list[dict[str, Any]]:
    """The rows of a dataset part, in the order their features are cached."""
    dc, rb = data / "routerdc7", data / "routerbench"
    if part == "routerdc7-train":
        return read_rows(dc / "train.jsonl")
    if part == "routerdc7-test_ood":
        return read_rows(dc / "test_ood.jsonl")
    if part == f"routerdc7-test_id-cap{DC_TEST_CAP}":
        return limit_rows(read_rows(dc / "test_id.jsonl"), lambda r: r["task"], DC_TEST_CAP)
    if part in ("routerbench-train", "routerbench-test"):
        return read_rows(rb / f"{part.split('-', 1)[1]}.jsonl")
    if part == f"domains-cap{DOMAIN_CAP}":
        return load_domain_records(data / "domains", DOMAIN_CAP)[0]
    raise ValueError(f"unknown dataset part {part!r}")


class FeatureCache:
    """Cached pooled features of dataset parts (see the module docstring)."""

    def __init__(self, cache: Path, data: Path, threads: int | None = None) -> None:
        self.cache, self.data, self.threads = Path(cache), Path(data), threads
        self.router_dir = self.cache / "router-default"
        self._router = None
        self.encoded: list[str] = []  # parts this run encoded (not found in the cache)

    def router(self):
        """The router whose features are cached (built with the trainer's defaults if missing)."""
        if self._router is None:
            from irde_onnx import Router

            if not self.router_dir.is_dir():
                from irde_onnx.export import RouterTrainer

                trainer = RouterTrainer(progress=False, lam=1.0, validate=False)
                trainer.fit(
                    [
                        "what is two plus two",
                        "a contract clause",
                        "solve for x",
                        "the law of torts",
                    ],
                    ["math", "law", "math", "law"],
                )
                trainer.save(self.router_dir)
            self._router = Router.load(self.router_dir, threads=self.threads)
        return self._router

    def fingerprint(self) -> str:
        """The feature fingerprint of the cache's router."""
        txt = self.router_dir / "fingerprint.txt"
        if txt.is_file():
            return txt.read_text().strip()
        return self.router().config.fingerprint

    def describe(self) -> str:
        """Which router made the features (for the report)."""
        cfg = json.loads((self.router_dir / "router.json").read_text())
        return (
            f"{cfg['encoder']} {cfg['precision']}, view {cfg.get('view')}, layers "
            f"{cfg.get('layers')}, {cfg['feature_dim']}-d, fingerprint {cfg['fingerprint'][:12]} "
            f"({self.router_dir})"
        )

    def path(self, part: str) -> Path:
        sha = hashlib.sha256(self.fingerprint().encode()).hexdigest()[:12]
        return self.cache / f"{part}-{sha}.npz"

    def features(self, part: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """``(x float64 (n, d), rows)`` of a part; encodes and caches it when missing."""
        rows = dataset_rows(self.data, part)
        ids = np.array([str(r["id"]) for r in rows], dtype=np.str_)
        path = self.path(part)
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                x, cached_ids = z["x"], z["ids"]
            if not np.array_equal(cached_ids, ids):
                raise SystemExit(
                    f"{path} holds other rows than {self.data} gives for {part}; delete it "
                    "to encode the part again"
                )
            return x.astype(np.float64), rows
        router = self.router()
        print(f"encoding {part} ({len(rows)} prompts) with {self.router_dir}", file=sys.stderr)
        texts = [r["text"] for r in rows]
        x = np.empty((len(texts), router.config.feature_dim), np.float32)
        for i in range(0, len(texts), 512):
            x[i : i + 512] = router.features(texts[i : i + 512], batch_size=32)
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, ids=ids)
        tmp.replace(path)
        self.encoded.append(part)
        return x.astype(np.float64), rows


# -- lam -----------------------------------------------------------------------------------------
def trace_scale(mom: Moments) -> float:
    """``trace(centred Sxx) / d`` of dense moments: the product's :func:`data_scale`."""
    return data_scale(mom)


def cv_lam(x: np.ndarray, y: np.ndarray, groups: Sequence[int] | None = None) -> float:
    """lam by 5-fold CV (or by the given folds) on rows, as ``irde train`` chooses it."""
    fold = fold_ids(len(x), 5, 0) if groups is None else np.asarray(groups)
    parts = [Moments.from_rows(x[fold == f], y[fold == f]) for f in np.unique(fold)]
    return float(choose_lam(parts)[0])


@dataclass(frozen=True)
class LamRule:
    """``fixed``: every column at ``lam0``; ``relative``: :func:`relative_lam` per column."""

    kind: str
    lam0: float
    kappa: float = 0.0

    def lam(self, mom: Moments) -> float:
        return self.lam0 if self.kind == "fixed" else relative_lam(mom, self.kappa, self.lam0)


# -- the learner -----------------------------------------------------------------------------------
class Learner:
    """A router's statistics with feedback folded by the product's code, and its head.

    Columns without rows (a cold start) predict ``prior`` (W = 0, b = prior), as
    ``RouterStats.solve`` does for a router of ``irde train --experts``.
    """

    def __init__(self, stats: RouterStats, target: str, prior: float = 0.5) -> None:
        self.stats, self.target, self.prior = stats, target, prior
        self.w = np.zeros((stats.dim, stats.n_experts))
        self.b = np.full(stats.n_experts, prior)
        self._solved: dict[tuple[int, ...], tuple] = {}
        self._lams = np.zeros(stats.n_experts)
        self._width = None

    @property
    def experts(self) -> list[str]:
        return list(self.stats.experts)

    @classmethod
    def scored(cls, x: np.ndarray, y: np.ndarray, experts: Sequence[str]) -> Learner:
        """A score router trained on rows scored for every expert (pooled columns)."""
        d = x.shape[1]
        pool = Moments.from_rows(x, y)
        stats = RouterStats.empty(d, diagonal=False)
        stats.shared = Moments(
            pool.n, pool.sum_x, pool.gram, np.zeros((d, 0)), np.zeros(0), np.zeros(0)
        )
        for k, name in enumerate(experts):
            stats.append(
                name,
                "pooled",
                Moments.zeros(d, 0),
                pool.sum_xy[:, k],
                pool.sum_y[k],
                pool.sum_yy[k],
            )
        return cls(stats, "score")

    @classmethod
    def cold(cls, d: int, experts: Sequence[str], prior: float) -> Learner:
        """A score router of named experts with no rows: every column predicts ``prior``."""
        stats = RouterStats.empty(d, diagonal=False)
        for name in experts:
            stats.append(name, "own", Moments.zeros(d, 0), np.zeros(d), 0.0, 0.0)
        return cls(stats, "score", prior)

    @classmethod
    def domains(cls, x: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> Learner:
        """A domain router: one pooled one-hot column per class, fit on its rows."""
        stats = RouterStats.empty(x.shape[1], diagonal=False)
        labels = np.asarray(labels)
        for name in classes:
            r = labels == name
            stats.append_domain(name, Moments.from_rows(x[r], np.zeros((int(r.sum()), 0))))
        return cls(stats, "domain")

    def copy(self) -> Learner:
        out = Learner(self.stats.copy(), self.target, self.prior)
        out.w, out.b, out._solved = self.w.copy(), self.b.copy(), dict(self._solved)
        out._lams, out._width = self._lams.copy(), self._width
        return out

    def feed(self, x: np.ndarray, rows: Sequence[Mapping[str, Any]], weight: float) -> None:
        """Parse and fold feedback rows (features ``x``, one per row) with the product's code."""
        s = self.stats
        parsed = feedback.parse_rows(rows, s.experts, s.modes, self.target)
        feedback.fold(s, None, parsed, EncodedRows(np.asarray(x), None, s.dim), weight, None)

    def solve(self, rule: LamRule) -> None:
        """Re-solve every column group whose rows changed (the others keep their solution,
        which a fresh solve would give again)."""
        s = self.stats
        for cols, mom in s.column_moments():
            key = (tuple(cols), float(mom.n), float(s.feedback_rows[cols].sum()), rule)
            if self._solved.get(tuple(cols)) == key:
                continue
            self._width = None
            if mom.n <= 0:
                self.w[:, cols], self.b[cols] = 0.0, self.prior
                self._lams[cols] = rule.lam0
            else:
                self._lams[cols] = rule.lam(mom)
                self.w[:, cols], self.b[cols] = solve(mom, self._lams[cols][0])
            self._solved[tuple(cols)] = key

    def width(self, x: np.ndarray) -> np.ndarray:
        """The uncertainty output's widths (n, E): the product's k=32 subspace width of the
        statistics as solved (each column at its lam), as the graph computes it."""
        if self._width is None:
            self._width = subspace_width(self.stats, self._lams)
        return self._width.width(x)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The head's scores (n, E), as the graph's ``scores`` output."""
        return x @ self.w + self.b


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean and a 95% t interval over seeds."""
    from scipy import stats as sps

    a = np.asarray(values, float)
    half = 0.0
    if len(a) > 1:
        half = float(sps.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return {
        "mean": float(a.mean()),
        "ci95": [float(a.mean() - half), float(a.mean() + half)],
        "per_seed": [float(v) for v in a],
    }

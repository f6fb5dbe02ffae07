"""Shared pieces of the feedback research: cached features, data, and a per-expert ridge.

Everything here is numpy on features cached by ``encode.py``; the lam search is
:func:`irde_onnx.learning.moments.choose_lam`, so lam is the value ``RouterTrainer`` picks on the same rows.

The per-expert ridge (:class:`ExpertRidge`) is the statistics layout issue 19 asks for: each
expert k owns raw moments (n, sum x, sum x x^T, sum x y, sum y) of the rows that inform it;
training rows enter with weight ``omega`` (shared, so kept once), feedback rows with their
own weight, and feedback decays by ``gamma`` per event when a half-life is set. Each column
is solved as ``irde_onnx.learning.moments.solve`` does: centred moments, unpenalised intercept.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from benchmarks.splits import limit_rows, load_domain_records, read_rows
from irde_onnx.learning.moments import Moments, choose_lam, fold_ids

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data"
DEFAULT_CACHE = Path("/work/cache/features")
SEEDS = (0, 1, 2, 3, 4)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cached(cache: Path, part: str) -> np.ndarray:
    """Features (float64) of a part encoded by encode.py, rows in the encoder's order."""
    from research.feedback.encode import load_part

    return load_part(cache, part)["x"].astype(np.float64)


@dataclass
class Scored:
    x: np.ndarray  # (n, d)
    y: np.ndarray  # (n, E)
    tasks: np.ndarray  # (n,) str
    experts: list[str]
    costs: np.ndarray | None = None  # (n, E) USD, RouterBench only


def routerdc(data: Path, cache: Path, split: str) -> Scored:
    rows = read_rows(data / "routerdc7" / f"{split}.jsonl")
    if split == "test_id":
        rows = limit_rows(rows, lambda r: r["task"], 100000)
        part = "routerdc7-test_id-cap100000"
    else:
        part = f"routerdc7-{split}"
    experts = list(rows[0]["scores"])
    y = np.array([[float(r["scores"][e]) for e in experts] for r in rows])
    return Scored(cached(cache, part), y, np.array([r["task"] for r in rows]), experts)


def routerbench(data: Path, cache: Path, split: str) -> Scored:
    rows = read_rows(data / "routerbench" / f"{split}.jsonl")
    experts = list(rows[0]["scores"])
    y = np.array([[float(r["scores"][e]) for e in experts] for r in rows])
    c = np.array([[float(r["costs"][e]) for e in experts] for r in rows])
    return Scored(
        cached(cache, f"routerbench-{split}"), y, np.array([r["task"] for r in rows]), experts, c
    )


def domains(data: Path, cache: Path, cap: int = 600):
    """(x, labels, sources, classes) of the capped domain rows encode.py encoded."""
    from benchmarks.splits import source_of

    rows = load_domain_records(data / "domains", cap)[0]
    labels = np.array([r["domain"] for r in rows])
    sources = np.array([source_of(r) for r in rows])
    ids = np.array([str(r["id"]) for r in rows])
    return cached(cache, f"domains-cap{cap}"), labels, sources, ids


def task_mean(picked: np.ndarray, tasks: np.ndarray) -> float:
    """RouterDC protocol: mean over tasks of the mean picked score."""
    return float(np.mean([picked[tasks == t].mean() for t in dict.fromkeys(tasks.tolist())]))


def cv_lam(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """lam by 5-fold CV squared error (RouterTrainer's default choice)."""
    fold = fold_ids(len(x), 5, 0)
    parts = []
    for f in range(5):
        r = fold == f
        parts.append(Moments.from_rows(x[r], y[r], None if weights is None else weights[r]))
    return float(choose_lam(parts)[0])


def ridge(x: np.ndarray, y: np.ndarray, lam: float, w: np.ndarray | None = None):
    """Fresh weighted ridge with an unpenalised intercept (the reference): W (d, m), b (m,)."""
    w = np.ones(len(x)) if w is None else w
    n = w.sum()
    mx = w @ x / n
    my = w @ y / n
    xc = x - mx
    yc = y - my
    a = (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1])
    wt = np.linalg.solve(a, (xc * w[:, None]).T @ yc)
    return wt, my - mx @ wt


class ExpertRidge:
    """Per-expert ridge on additive moments: training rows (weight omega) + feedback rows.

    ``base_*`` hold the training rows' moments (shared Gram; per-expert cross products), and
    ``fb_*`` each expert's feedback moments. ``decay(g)`` multiplies feedback moments by g.
    Experts with no rows at all predict ``prior``.
    """

    def __init__(
        self,
        d: int,
        n_experts: int,
        lam: float,
        prior: float | np.ndarray = 0.5,
        kappa: float | None = None,
    ):
        """``kappa`` set: each column's lam is kappa * trace(Sxx_e)/d of its own (weighted)
        moments, so the penalty keeps its place in the trainer's grid as rows and weights
        change; None: lam fixed."""
        self.d, self.E, self.lam = d, n_experts, lam
        self.kappa = kappa
        self.prior = np.broadcast_to(np.asarray(prior, float), (n_experts,)).copy()
        self.base_n = 0.0
        self.base_sx = np.zeros(d)
        self.base_g = np.zeros((d, d))
        self.base_sxy = np.zeros((n_experts, d))
        self.base_sy = np.zeros(n_experts)
        self.omega = 1.0
        self.fb_n = np.zeros(n_experts)
        self.fb_sx = np.zeros((n_experts, d))
        self.fb_g = np.zeros((n_experts, d, d))
        self.fb_sxy = np.zeros((n_experts, d))
        self.fb_sy = np.zeros(n_experts)
        self.dirty = np.ones(n_experts, bool)
        self.W = np.zeros((d, n_experts))
        self.b = self.prior.copy()
        self.chol: list = [None] * n_experts
        self.mean: np.ndarray = np.zeros((n_experts, d))
        self.count = np.zeros(n_experts)

    def set_base(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Training rows scored for every expert (full information)."""
        w = np.ones(len(x)) if weights is None else weights
        self.base_n = float(w.sum())
        self.base_sx = w @ x
        self.base_g = (x * w[:, None]).T @ x
        self.base_sxy = ((x * w[:, None]).T @ y).T
        self.base_sy = w @ y
        self.dirty[:] = True

    def set_omega(self, omega: float) -> None:
        if omega != self.omega:
            self.omega = omega
            self.dirty[:] = True

    def decay(self, g: float) -> None:
        if g == 1.0:
            return
        self.fb_n *= g
        self.fb_sx *= g
        self.fb_g *= g
        self.fb_sxy *= g
        self.fb_sy *= g
        self.dirty[:] = True

    def add(self, x: np.ndarray, k: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
        """Bandit rows: row i informs expert k[i] with outcome y[i] (weight w[i])."""
        w = np.ones(len(x)) if w is None else w
        for e in np.unique(k):
            r = k == e
            xr, wr = x[r], w[r]
            self.fb_n[e] += wr.sum()
            self.fb_sx[e] += wr @ xr
            self.fb_g[e] += (xr * wr[:, None]).T @ xr
            self.fb_sxy[e] += (wr * y[r]) @ xr
            self.fb_sy[e] += wr @ y[r]
            self.dirty[e] = True

    def add_full(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
        """Score rows for every expert (y (n, E)) as feedback."""
        for e in range(self.E):
            self.add(x, np.full(len(x), e), y[:, e], w)

    def moments(self, e: int):
        o = self.omega
        n = o * self.base_n + self.fb_n[e]
        sx = o * self.base_sx + self.fb_sx[e]
        g = o * self.base_g + self.fb_g[e]
        sxy = o * self.base_sxy[e] + self.fb_sxy[e]
        sy = o * self.base_sy[e] + self.fb_sy[e]
        return n, sx, g, sxy, sy

    def solve(self) -> None:
        for e in np.flatnonzero(self.dirty):
            n, sx, g, sxy, sy = self.moments(e)
            self.count[e] = n
            if n <= 1e-12:
                self.W[:, e] = 0.0
                self.b[e] = self.prior[e]
                self.chol[e] = None
                continue
            m = sx / n
            sxx = g - n * np.outer(m, m)
            lam = (
                self.lam if self.kappa is None else self.kappa * max(np.trace(sxx), 1e-12) / self.d
            )
            sxx[np.diag_indices(self.d)] += lam
            c = cho_factor(sxx, lower=True, check_finite=False)
            self.W[:, e] = cho_solve(c, sxy - m * sy, check_finite=False)
            self.b[e] = sy / n - m @ self.W[:, e]
            self.chol[e] = c
            self.mean[e] = m
        self.dirty[:] = False

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W + self.b

    def width(self, x: np.ndarray) -> np.ndarray:
        """sqrt(1/n + (x-m)^T (Sxx + lam I)^-1 (x-m)) per expert: LinUCB's width; inf if no rows."""
        out = np.full((len(x), self.E), np.inf)
        for e in range(self.E):
            c = self.chol[e]
            if c is None:
                continue
            z = solve_triangular(c[0], (x - self.mean[e]).T, lower=True, check_finite=False)
            out[:, e] = np.sqrt(1.0 / self.count[e] + np.einsum("ij,ij->j", z, z))
        return out


class SubspaceWidth:
    """LinUCB width in a k-dimensional PCA subspace: z = [P^T (x - mu), 1], A_e = sum z z^T + lam I.

    What a graph would carry: P (d, k), mu (d,), and per expert A_e^-1 ((k+1)^2): the bonus is
    sqrt(z^T A_e^-1 z). Moments in the subspace are projections of the full moments, so they
    follow the same additive updates.
    """

    def __init__(self, basis_x: np.ndarray, k: int, lam: float, n_experts: int):
        self.mu = basis_x.mean(0)
        _, _, vt = np.linalg.svd(basis_x - self.mu, full_matrices=False)
        self.P = vt[:k].T
        self.k = k
        self.lam = lam
        self.A = np.zeros((n_experts, k + 1, k + 1))
        self.Ainv = np.zeros_like(self.A)
        self.E = n_experts

    def z(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([(x - self.mu) @ self.P, np.ones((len(x), 1))])

    def add(self, x: np.ndarray, k: np.ndarray, w: np.ndarray | None = None) -> None:
        z = self.z(x)
        w = np.ones(len(x)) if w is None else w
        for e in np.unique(k):
            r = k == e
            self.A[e] += (z[r] * w[r, None]).T @ z[r]

    def add_full(self, x: np.ndarray, w: np.ndarray | None = None) -> None:
        z = self.z(x)
        w = np.ones(len(x)) if w is None else w
        self.A += ((z * w[:, None]).T @ z)[None]

    def decay(self, g: float) -> None:
        self.A *= g

    def solve(self) -> None:
        eye = self.lam * np.eye(self.k + 1)
        self.Ainv = np.linalg.inv(self.A + eye)

    def width(self, x: np.ndarray) -> np.ndarray:
        z = self.z(x)
        return np.sqrt(np.einsum("ij,ejk,ik->ie", z, self.Ainv, z))

    def bytes_float32(self) -> int:
        return 4 * (self.P.size + self.mu.size + self.Ainv.size)

    def flops_per_prompt(self) -> int:
        d = self.P.shape[0]
        return 2 * d * self.k + d + self.E * (2 * (self.k + 1) ** 2 + 1)


def mean_ci(a) -> dict:
    """Mean and a 95% interval over seeds: mean ± t(4 d.f.) = 2.776 × s.e. (exact for 5 seeds)."""
    a = np.asarray(a, float)
    se = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0.0
    return {
        "mean": float(a.mean()),
        "ci95": [float(a.mean() - 2.776 * se), float(a.mean() + 2.776 * se)],
        "per_seed": [float(v) for v in a],
    }


def write_results(path: Path, key: str, value) -> None:
    """Merge ``value`` under ``key`` in the results JSON."""
    out = json.loads(path.read_text()) if path.is_file() else {}
    out[key] = value
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")

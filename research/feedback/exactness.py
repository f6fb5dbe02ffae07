"""Exactness spec for feedback rows (issue 19, point 1): folding == a fresh weighted ridge fit.

A small numpy reference the product's tests can reuse. ``FeedbackStats`` folds feedback rows
into float64 per-expert moments, one row at a time or in batches, with a weight per row, a
weight ``omega`` on the training rows, and exponential forgetting (a half-life in events:
before each feedback row is folded, the feedback moments so far are multiplied by
``gamma = 0.5 ** (1 / half_life)``; training rows are the anchor and do not decay). Solving
must equal a fresh ridge fit (centred, unpenalised intercept, as ``irde_onnx.learning.moments.solve``)
on the same rows with the weights each row ends with:

    training row i:       omega * w_i
    feedback row t of T:  w_t * gamma ** (T - t)      (t = 1..T, counted over all feedback rows)

Three row kinds:
- ``{"text", "expert"}`` on a domain router (all columns ``pooled``): the row joins the shared
  Gram with a one-hot target; every column changes (exactly as training with one more row).
- ``{"text", "scores": {subset}}`` on a score router (columns ``own``): only the named
  experts' moments change; each column is the ridge fit on the rows that score it.
- ``{"text", "expert", "outcome"}`` (bandit): a score row with a one-expert subset.

    python research/feedback/exactness.py            # prints the max differences, exits 1 if > 1e-9
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def fresh_ridge(x, y, w, lam):
    """Reference: weighted ridge with an unpenalised intercept, solved directly on rows."""
    n = w.sum()
    mx, my = w @ x / n, w @ y / n
    xc, yc = x - mx, y - my
    coef = np.linalg.solve(
        (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1]), (xc * w[:, None]).T @ yc
    )
    return coef, my - mx @ coef


class FeedbackStats:
    """Per-group moments: group ``"pooled"`` (shared Gram, E targets) or one group per own expert."""

    def __init__(self, d, experts, mode, lam, omega=1.0, half_life=None):
        self.d, self.experts, self.mode, self.lam = d, list(experts), mode, lam
        self.omega = omega
        self.gamma = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
        E = len(experts)
        groups = ["pooled"] if mode == "pooled" else self.experts

        def z(m):
            return {
                "n": 0.0,
                "sx": np.zeros(d),
                "g": np.zeros((d, d)),
                "sxy": np.zeros((d, m)),
                "sy": np.zeros(m),
            }

        m = E if mode == "pooled" else 1
        self.train = {g: z(m) for g in groups}
        self.fb = {g: z(m) for g in groups}

    @staticmethod
    def _fold(mom, x, y, w):
        mom["n"] += w
        mom["sx"] += w * x
        mom["g"] += w * np.outer(x, x)
        mom["sxy"] += w * np.outer(x, y)
        mom["sy"] += w * y

    def train_row(self, x, target, w=1.0):
        """Training row: one-hot/score vector (pooled) or {expert: score} (own)."""
        if self.mode == "pooled":
            self._fold(self.train["pooled"], x, np.asarray(target, float), w)
        else:
            for e, s in target.items():
                self._fold(self.train[e], x, np.array([s]), w)

    def feedback_row(self, row, x, w=1.0):
        """Fold one feedback row (decaying earlier feedback first)."""
        for mom in self.fb.values():
            for k in mom:
                mom[k] = mom[k] * self.gamma
        if self.mode == "pooled":
            y = np.zeros(len(self.experts))
            y[self.experts.index(row["expert"])] = 1.0
            self._fold(self.fb["pooled"], x, y, w)
        elif "scores" in row:
            for e, s in row["scores"].items():
                self._fold(self.fb[e], x, np.array([float(s)]), w)
        else:
            self._fold(self.fb[row["expert"]], x, np.array([float(row["outcome"])]), w)

    def solve(self):
        W = np.zeros((self.d, len(self.experts)))
        b = np.zeros(len(self.experts))
        for g in self.train:
            t, f, o = self.train[g], self.fb[g], self.omega
            n = o * t["n"] + f["n"]
            sx = o * t["sx"] + f["sx"]
            m = sx / n
            sxx = o * t["g"] + f["g"] - n * np.outer(m, m)
            sxy = o * t["sxy"] + f["sxy"] - np.outer(m, o * t["sy"] + f["sy"])
            coef = np.linalg.cholesky(sxx + self.lam * np.eye(self.d))
            coef = np.linalg.solve(coef.T, np.linalg.solve(coef, sxy))
            bias = (o * t["sy"] + f["sy"]) / n - m @ coef
            cols = list(range(len(self.experts))) if g == "pooled" else [self.experts.index(g)]
            W[:, cols], b[cols] = coef, bias
        return W, b


def check(seed=0, d=12, E=4, n_train=60, n_fb=300, half_life=50.0, omega=0.1, lam=0.3):
    rng = np.random.default_rng(seed)
    experts = [f"e{i}" for i in range(E)]
    out = {}
    xt = rng.normal(size=(n_train, d))
    xf = rng.normal(size=(n_fb, d)) + 0.5
    wf = rng.uniform(0.5, 3.0, n_fb)
    decay = (0.5 ** (1 / half_life)) ** (n_fb - 1 - np.arange(n_fb))

    # 1. pooled one-hot rows
    lt = rng.integers(0, E, n_train)
    lf = rng.integers(0, E, n_fb)
    st = FeedbackStats(d, experts, "pooled", lam, omega, half_life)
    for i in range(n_train):
        st.train_row(xt[i], np.eye(E)[lt[i]])
    for t in range(n_fb):
        st.feedback_row({"expert": experts[lf[t]]}, xf[t], wf[t])
    W, b = st.solve()
    x_all = np.vstack([xt, xf])
    y_all = np.eye(E)[np.concatenate([lt, lf])]
    w_all = np.concatenate([np.full(n_train, omega), wf * decay])
    W0, b0 = fresh_ridge(x_all, y_all, w_all, lam)
    out["pooled one-hot rows"] = float(max(np.abs(W - W0).max(), np.abs(b - b0).max()))
    # and the product's solver on the same weighted rows (irde_onnx.learning.moments, public API)
    from irde_onnx.learning.moments import Moments, solve

    W1, b1 = solve(Moments.from_rows(x_all, y_all, w_all), lam)
    out["pooled one-hot rows vs irde_onnx.learning.moments.solve"] = float(
        max(np.abs(W - W1).max(), np.abs(b - b1).max())
    )

    # 2. score rows for a subset of experts, 3. bandit rows (one expert's outcome)
    yt = rng.uniform(size=(n_train, E))
    for kind in ("score rows (subsets)", "bandit rows"):
        st = FeedbackStats(d, experts, "own", lam, omega, half_life)
        for i in range(n_train):
            st.train_row(xt[i], dict(zip(experts, yt[i], strict=True)))
        has = np.zeros((n_fb, E), bool)
        yf = rng.uniform(size=(n_fb, E))
        for t in range(n_fb):
            if kind == "bandit rows":
                k = rng.integers(E)
                has[t, k] = True
                row = {"expert": experts[k], "outcome": yf[t, k]}
            else:
                has[t] = rng.uniform(size=E) < 0.5
                row = {"scores": {experts[k]: yf[t, k] for k in np.flatnonzero(has[t])}}
            st.feedback_row(row, xf[t], wf[t])
        W, b = st.solve()
        err = 0.0
        for k in range(E):
            r = has[:, k]
            xk = np.vstack([xt, xf[r]])
            yk = np.concatenate([yt[:, k], yf[r, k]])[:, None]
            wk = np.concatenate([np.full(n_train, omega), (wf * decay)[r]])
            Wk, bk = fresh_ridge(xk, yk, wk, lam)
            err = max(err, np.abs(W[:, k] - Wk[:, 0]).max(), abs(b[k] - bk[0]))
        out[kind] = float(err)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-9)
    args = ap.parse_args()
    worst: dict[str, float] = {}
    for s in range(args.seeds):
        for hl in (None, 50.0):
            for k, v in check(seed=s, half_life=hl if hl else 1e300).items():
                key = f"{k}, half-life {hl}"
                worst[key] = max(worst.get(key, 0.0), v)
    print(json.dumps(worst, indent=1))
    sys.exit(0 if max(worst.values()) <= args.tol else 1)


if __name__ == "__main__":
    main()

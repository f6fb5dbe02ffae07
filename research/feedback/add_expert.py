"""Point 4: adding an LLM from n random labels must not hurt routing (routerdc7).

For each of the 7 LLMs in turn: the other 6 are a pooled router on every train row (lam by
5-fold CV, as RouterTrainer); the new LLM gets n random train rows with its score (seeded),
and its column is fit by one of the rules below. Routing is scored on test_id with the
RouterDC protocol (mean over tasks of the picked LLM's score); the figure is the difference
"with the new column" minus "without the new LLM" (points), paired per seed.

Rules for the new column (all linear in x, so each folds into head.W / head.b):
  plain        ridge on the n rows with the router's lam (today's `add_expert` with scores)
  loo          ridge on the n rows, lam by leave-one-out on those rows (closed form, dual)
  mean-prior   prior = mean of the 6 columns' predictions; ridge on the residual y - prior
               (with intercept: the offset is learned), lam by LOO. Large lam -> the prior.
  stack-prior  prior = ridge of y on the 6 columns' predictions (7 numbers, lam by LOO);
               then a ridge on the residual with lam by LOO
  kappa        ridge on the n rows with the router's lam *relative* to the data: lam =
               kappa * trace(Sxx_n)/d, kappa = the router's lam / (trace(Sxx_train)/d)
  mean-prior-kappa  mean-prior with that lam instead of LOO
  *+gate2se    the same gate with a margin: the gain estimate minus 2 standard errors (over
               the n rows) must be positive
  *+lcb        route with the new column's lower confidence bound: prediction minus
               sigma * width(x), sigma the LOO rms residual on the n rows, width(x) =
               sqrt(1/n + (x-m)^T (Sxx + lam I)^-1 (x-m)) of the residual stage (its n rows'
               own LinUCB width): the column is trusted only near prompts like its n rows
  *+gate       include the new LLM only if its estimated routing gain on the n rows is
               positive: mean_i 1[loo_pred_i > max_j p_j(x_i)] * (y_i - max_j p_j(x_i)), with
               p_j the existing columns' predictions (the product has no true scores of the
               other LLMs on the new rows) and loo_pred the leave-one-out prediction of the
               new column's residual stage (its prior stage in-sample)
Every choice uses only the n labelled rows and the existing head; test rows are only scored.

    python research/feedback/add_expert.py --help
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from research.feedback.common import (
    DEFAULT_CACHE,
    DEFAULT_DATA,
    HERE,
    SEEDS,
    cv_lam,
    log,
    mean_ci,
    ridge,
    routerdc,
    task_mean,
    write_results,
)

NS = (25, 50, 100, 200, 400)
RULES = (
    "plain",
    "loo",
    "mean-prior",
    "stack-prior",
    "plain+gate",
    "loo+gate",
    "mean-prior+gate",
    "stack-prior+gate",
    "plain+gate2se",
    "mean-prior+gate2se",
    "mean-prior+lcb",
    "mean-prior+lcb+gate2se",
    "kappa",
    "kappa+gate",
    "kappa+gate2se",
    "mean-prior-kappa",
    "mean-prior-kappa+lcb",
)
LOO_GRID = np.logspace(-4, 4, 17)  # times trace(Sxx)/d of the n rows


def dual_ridge_loo(
    x: np.ndarray,
    y: np.ndarray,
    lams: np.ndarray | None,
    fixed: float | None = None,
    kappa: float | None = None,
):
    """Ridge with unpenalised intercept on few rows via the n x n kernel.

    lam is ``fixed`` or chosen from ``lams * trace(Sxx)/d`` by leave-one-out squared error.
    Returns (w (d,), b, lam, loo predictions (n,)).
    """
    n, d = x.shape
    mx, my = x.mean(0), y.mean()
    xc, yc = x - mx, y - my
    s, u = np.linalg.eigh(xc @ xc.T)
    s = np.maximum(s, 0.0)
    uy = u.T @ yc
    scale = max(s.sum() / d, 1e-12)
    cands = (
        [fixed]
        if fixed is not None
        else [kappa * scale]
        if kappa is not None
        else list(scale * lams)
    )
    best = None
    for lam in cands:
        f = s / (s + lam)
        fit = u @ (f * uy)
        h = 1.0 / n + (u * u) @ f
        loo_res = (yc - fit) / np.maximum(1.0 - h, 1e-12)
        err = float(np.mean(loo_res**2))
        if best is None or err < best[0]:
            best = (err, lam, fit, loo_res)
    _, lam, fit, loo_res = best
    alpha = u @ (uy / (s + lam))
    w = xc.T @ alpha
    b = my - mx @ w
    loo_pred = y - loo_res
    sigma = float(np.sqrt(np.mean(loo_res**2)))
    kinv_xc = u @ ((u.T @ xc) / (s + lam)[:, None])  # (K + lam I)^-1 Xc, (n, d)

    def width(xf):
        z = xf - mx
        q = (np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", z @ xc.T, z @ kinv_xc.T)) / lam
        return np.sqrt(1.0 / n + np.maximum(q, 0.0))

    dual_ridge_loo.last = (sigma, width)
    return w, b, lam, loo_pred


def new_column(
    rule: str,
    x: np.ndarray,
    y: np.ndarray,
    p_old: np.ndarray,
    lam: float,
    kappa: float | None = None,
):
    """Fit the new column on n rows. Returns (predict(x_feats, p_old_feats) -> (m,), loo_pred)."""
    base = rule.split("+")[0]
    if base in ("plain", "loo"):
        w, b, _, loo = dual_ridge_loo(x, y, LOO_GRID, lam if base == "plain" else None)
        return (lambda xf, pf: xf @ w + b), loo
    if base == "kappa":
        w, b, _, loo = dual_ridge_loo(x, y, None, kappa=kappa)
        return (lambda xf, pf: xf @ w + b), loo
    if base == "mean-prior-kappa":
        prior = p_old.mean(1)
        w, b, _, loo = dual_ridge_loo(x, y - prior, None, kappa=kappa)
        if "+lcb" in rule:
            sigma, width = dual_ridge_loo.last
            return (lambda xf, pf: pf.mean(1) + xf @ w + b - sigma * width(xf)), loo + prior
        return (lambda xf, pf: pf.mean(1) + xf @ w + b), loo + prior
    if base == "mean-prior":
        prior = p_old.mean(1)
        w, b, _, loo = dual_ridge_loo(x, y - prior, LOO_GRID)
        if "+lcb" in rule:
            sigma, width = dual_ridge_loo.last
            return (lambda xf, pf: pf.mean(1) + xf @ w + b - sigma * width(xf)), loo + prior
        return (lambda xf, pf: pf.mean(1) + xf @ w + b), loo + prior
    if base == "stack-prior":
        c, c0, _, _ = dual_ridge_loo(p_old, y, LOO_GRID)
        prior = p_old @ c + c0
        w, b, _, loo = dual_ridge_loo(x, y - prior, LOO_GRID)
        return (lambda xf, pf: pf @ c + c0 + xf @ w + b), loo + prior
    raise ValueError(rule)


def gain_estimate(
    loo_pred: np.ndarray, y: np.ndarray, p_old: np.ndarray, margin: float = 0.0
) -> float:
    best_old = p_old.max(1)
    g = (loo_pred > best_old) * (y - best_old)
    return float(g.mean() - margin * g.std(ddof=1) / np.sqrt(len(g)))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seeds", type=int, default=len(SEEDS))
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--key", default="add_expert")
    args = ap.parse_args()
    start = time.time()
    tr = routerdc(args.data, args.cache, "train")
    te = routerdc(args.data, args.cache, "test_id")
    E = len(tr.experts)
    lam7 = cv_lam(tr.x, tr.y)
    w7, b7 = ridge(tr.x, tr.y, lam7)
    full7 = task_mean(te.y[np.arange(len(te.y)), np.argmax(te.x @ w7 + b7, 1)], te.tasks)
    log(f"7-LLM router: lam {lam7:.4g}, test_id {100 * full7:.2f}")
    res: dict = {"lam7": lam7, "full7": full7, "per_llm": {}}
    rules = tuple(args.rules)
    deltas = {r: np.zeros((E, len(NS), args.seeds)) for r in rules}
    for k, name in enumerate(tr.experts):
        old = [j for j in range(E) if j != k]
        lam6 = cv_lam(tr.x, tr.y[:, old])
        xc = tr.x - tr.x.mean(0)
        kappa = lam6 / (np.einsum("ij,ij->", xc, xc) / tr.x.shape[1])
        w6, b6 = ridge(tr.x, tr.y[:, old], lam6)
        p_te = te.x @ w6 + b6
        p_tr = tr.x @ w6 + b6
        pick6 = np.argmax(p_te, 1)
        without = task_mean(te.y[:, old][np.arange(len(te.y)), pick6], te.tasks)
        info = {"without": without, "removal_cost_full": full7 - without}
        for a, n in enumerate(NS):
            for s in range(args.seeds):
                idx = np.random.default_rng(1000 * s + n).choice(len(tr.x), n, replace=False)
                for rule in rules:
                    pred, loo = new_column(rule, tr.x[idx], tr.y[idx, k], p_tr[idx], lam6, kappa)
                    margin = 2.0 if rule.endswith("+gate2se") else 0.0
                    if "+gate" in rule and gain_estimate(loo, tr.y[idx, k], p_tr[idx], margin) <= 0:
                        deltas[rule][k, a, s] = 0.0
                        continue
                    new = pred(te.x, p_te)
                    pick = np.argmax(np.column_stack([p_te, new]), 1)
                    ys = np.column_stack([te.y[:, old], te.y[:, k]])
                    deltas[rule][k, a, s] = (
                        task_mean(ys[np.arange(len(ys)), pick], te.tasks) - without
                    )
        res["per_llm"][name] = info
        log(
            f"{name}: without {100 * without:.2f} (removal costs {100 * (full7 - without):.2f}); "
            + ", ".join(f"{r} {(100 * deltas[r][k].mean(1)).round(2).tolist()}" for r in rules)
        )
    summary = {}
    for rule in rules:
        d = 100 * deltas[rule]  # points
        m = d.mean(2)  # (E, NS)
        ge50 = [i for i, n in enumerate(NS) if n >= 50]
        summary[rule] = {
            "n": list(NS),
            "mean_delta_points_by_n": {
                tr.experts[k]: [float(m[k, i]) for i in range(len(NS))] for k in range(E)
            },
            "worst_mean_delta_n>=50": float(m[:, ge50].min()),
            "worst_mean_delta_all_n": float(m.min()),
            "worst_single_seed_n>=50": float(d[:, ge50].min()),
            "dolphin-2.9_delta_by_n": {
                str(n): mean_ci(d[tr.experts.index("dolphin-2.9-llama3-8b"), i])
                for i, n in enumerate(NS)
            },
            "meets_target": bool(m[:, ge50].min() >= -0.2),
        }
        log(
            f"{rule:18s} worst mean delta (n>=50) {summary[rule]['worst_mean_delta_n>=50']:+.2f}, "
            f"all n {summary[rule]['worst_mean_delta_all_n']:+.2f}, worst seed {summary[rule]['worst_single_seed_n>=50']:+.2f}; "
            f"dolphin-2.9 "
            + " ".join(
                f"{n}:{summary[rule]['dolphin-2.9_delta_by_n'][str(n)]['mean']:+.2f}" for n in NS
            )
        )
    res["rules"] = summary
    res["seeds"] = args.seeds
    res["seconds"] = time.time() - start
    write_results(args.out, args.key, res)
    log(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()

"""Bandit feedback streams (points 1-3): routerdc7 test_id and test_ood, RouterBench with costs.

A stream replays prompts in a seeded random order. For each batch of ``--batch`` prompts the
router picks an expert per prompt (argmax of predicted quality - cost/wtp, plus an
exploration rule), only the picked expert's score is revealed, and that (x, expert, outcome)
row is folded into that expert's own moments (issue 19's bandit row); then the changed
columns are re-solved. Reward = the picked expert's true score.

Starts: ``100`` random labelled train rows (every expert's score, weight 1, lam by 5-fold CV
on them, as ``irde train``), ``none`` (no rows: every expert predicts the prior 0.5,
lam fixed at 1.7, the value CV picks on 100 rows), or ``train`` (all train rows).

Exploration: ``greedy``; ``eps:E`` (a uniform random expert with probability E);
``linucb:A`` (full LinUCB width sqrt(1/n + (x-m)^T (Sxx + lam I)^-1 (x-m)) per expert, times A);
``sub64:A`` / ``sub32:A`` (the same width in a k-dim PCA subspace of the train prompts'
features, unlabelled: what a graph output could carry).

Training weight (``--omega``): a number (training rows' weight once traffic exists; feedback
rows weigh 1), or ``preq`` (prequential choice among 1, 0.3, 0.1, 0.03: one head per
candidate sees the same feedback; before each batch is folded, every candidate's squared
error on the revealed outcomes is added to its score; the candidate with the lowest
running error routes). ``--half-life`` (events) decays feedback rows.

    python research/feedback/stream.py --help
    python research/feedback/stream.py dc-id --start 100 --policy greedy linucb:0.1 sub64:0.1
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
    ExpertRidge,
    SubspaceWidth,
    cv_lam,
    log,
    mean_ci,
    ridge,
    routerbench,
    routerdc,
    write_results,
)

PREQ = (1.0, 0.3, 0.1, 0.03)
NONE_LAM = 1.7
NONE_KAPPA = 3.16  # the kappa 5-fold CV picks on all routerdc7 train rows (lam 33)
WTP = 0.02


def run_stream(
    xs,
    ys,
    base_x,
    base_y,
    *,
    lam,
    policy,
    omega,
    half_life,
    batch,
    seed,
    basis_x,
    cost=None,
    prior=0.5,
    kappa=None,
):
    """One stream. Returns (rewards (n,), picks (n,), final acting ExpertRidge, chosen omegas)."""
    rng = np.random.default_rng(seed)
    n, E = ys.shape
    d = xs.shape[1]
    cands = PREQ if omega == "preq" else (float(omega),)
    models = []
    for om in cands:
        m = ExpertRidge(d, E, lam, prior, kappa)
        if base_x is not None and len(base_x):
            m.set_base(base_x, base_y)
        m.set_omega(1.0)  # omega applies once traffic exists
        m.solve()
        models.append((om, m))
    kind, _, a = policy.partition(":")
    alpha = float(a) if a else 0.0
    sub = None
    if kind.startswith("sub"):
        sub = SubspaceWidth(basis_x, int(kind[3:]), lam, E)
        if base_x is not None and len(base_x):
            sub.add_full(base_x)
        sub.solve()
    costpen = np.zeros(E) if cost is None else cost / WTP
    gamma = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
    err = np.zeros(len(models))
    rewards = np.zeros(n)
    picks = np.zeros(n, int)
    used = []
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        x = xs[sl]
        best = int(np.argmin(err)) if len(models) > 1 else 0
        used.append(models[best][0])
        act = models[best][1]
        score = act.predict(x) - costpen
        if kind == "linucb":
            wd = act.width(x)
            score = score + alpha * np.where(np.isinf(wd), 1e6, wd)
        elif sub is not None:
            score = score + alpha * sub.width(x)
        pick = np.argmax(score, 1)
        if kind == "eps":
            flip = rng.uniform(size=len(x)) < alpha
            pick = np.where(flip, rng.integers(0, E, len(x)), pick)
        out = ys[sl][np.arange(len(x)), pick]
        rewards[sl], picks[sl] = out, pick
        # prequential error of every candidate on the revealed outcomes, before folding
        for i, (_om, m) in enumerate(models):
            err[i] += np.sum((m.predict(x)[np.arange(len(x)), pick] - out) ** 2)
        w = gamma ** (len(x) - 1 - np.arange(len(x)))
        for om, m in models:
            m.decay(gamma ** len(x))
            m.set_omega(om)
            m.add(x, pick, out, w)
            m.solve()
        if sub is not None:
            sub.decay(gamma ** len(x))
            sub.add(x, pick, w)
            sub.solve()
    best = int(np.argmin(err)) if len(models) > 1 else 0
    return rewards, picks, models[best][1], used


def kappa_of(x, lam) -> float:
    """lam as a multiple of trace(Sxx)/d (its place in irde_onnx.learning.moments.lam_grid)."""
    xc = x - x.mean(0)
    return float(lam / (np.einsum("ij,ij->", xc, xc) / x.shape[1]))


def start_rows(start: str, tr, seed: int):
    if start == "none":
        return None, None, NONE_LAM
    if start == "train":
        return tr.x, tr.y, cv_lam(tr.x, tr.y)
    idx = np.random.default_rng(10_000 + seed).choice(len(tr.x), int(start), replace=False)
    return tr.x[idx], tr.y[idx], cv_lam(tr.x[idx], tr.y[idx])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "stream",
        choices=["dc-id", "dc-ood", "routerbench", "dc-train"],
        help="dc-train replays routerdc7 train itself: for choosing exploration "
        "settings without test rows (its 'offline' figure is in-sample)",
    )
    ap.add_argument("--start", default="100", help="100 (labelled train rows), none, or train")
    ap.add_argument("--policy", nargs="+", default=["greedy"])
    ap.add_argument("--omega", nargs="+", default=["1"], help="numbers or preq")
    ap.add_argument("--half-life", nargs="+", default=["none"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--lam-rule",
        choices=["fixed", "relative"],
        default="fixed",
        help="fixed: the start's CV lam throughout; relative: each column's lam = "
        "kappa * trace(Sxx)/d with kappa from the start's CV (none: %s)" % NONE_KAPPA,
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--prior",
        type=float,
        nargs="+",
        default=[0.5],
        help="predicted quality of an expert with no rows (start none); >0.5 is optimistic",
    )
    ap.add_argument(
        "--order",
        choices=["shuffled", "tasks"],
        default="shuffled",
        help="tasks: the stream comes task by task (a seeded task order, shuffled "
        "within each task): drift, for the half-life option",
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--key", default=None, help="results key (default: stream-start)")
    args = ap.parse_args()
    t0 = time.time()
    if args.stream == "routerbench":
        tr, te = (
            routerbench(args.data, args.cache, "train"),
            routerbench(args.data, args.cache, "test"),
        )
    else:
        tr = routerdc(args.data, args.cache, "train")
        te = (
            tr
            if args.stream == "dc-train"
            else routerdc(
                args.data, args.cache, "test_id" if args.stream == "dc-id" else "test_ood"
            )
        )
    # the full-information offline router: every train row, lam by CV
    lam_off = cv_lam(tr.x, tr.y)
    w_off, b_off = ridge(tr.x, tr.y, lam_off)
    mean_cost = None if tr.costs is None else tr.costs.mean(0)
    out: dict = {
        "stream": args.stream,
        "start": args.start,
        "batch": args.batch,
        "seeds": args.seeds,
        "lam_rule": args.lam_rule,
        "order": args.order,
        "lam_offline": lam_off,
        "runs": {},
    }
    results: dict = {}
    for s in range(args.seeds):
        rng = np.random.default_rng(s)
        if args.stream == "routerbench":
            # base: 100 labelled train rows; stream: the other train rows; scored on test after
            idx = rng.permutation(len(tr.x))
            nb = 0 if args.start == "none" else int(args.start)
            base_idx, st_idx = idx[:nb], idx[nb:]
            bx, by = (tr.x[base_idx], tr.y[base_idx]) if nb else (None, None)
            lam = cv_lam(bx, by) if nb else NONE_LAM
            xs, ys = tr.x[st_idx], tr.y[st_idx]
            cost = tr.costs[base_idx].mean(0) if nb else mean_cost
        else:
            bx, by, lam = start_rows(args.start, tr, s)
            perm = rng.permutation(len(te.x))
            if args.order == "tasks":
                names = list(dict.fromkeys(te.tasks.tolist()))
                rank = {t: i for i, t in enumerate(rng.permutation(names))}
                perm = perm[np.argsort([rank[t] for t in te.tasks[perm]], kind="stable")]
            xs, ys = te.x[perm], te.y[perm]
            cost = None
        half = len(xs) // 2
        kappa = None
        if args.lam_rule == "relative":
            kappa = NONE_KAPPA if bx is None else kappa_of(bx, lam)
        if args.stream == "routerbench":
            off_pick = np.argmax(te.x @ w_off + b_off - mean_cost / WTP, 1)
            off = {
                "utility": float(
                    np.mean(
                        te.y[np.arange(len(te.y)), off_pick]
                        - te.costs[np.arange(len(te.y)), off_pick] / WTP
                    )
                ),
                "quality": float(np.mean(te.y[np.arange(len(te.y)), off_pick])),
            }
        else:
            off_pick = np.argmax(xs @ w_off + b_off, 1)
            off_r = ys[np.arange(len(ys)), off_pick]
            off = {"last_half": float(off_r[half:].mean()), "all": float(off_r.mean())}
            oracle = ys.max(1)
            off["oracle_last_half"] = float(oracle[half:].mean())
            if args.start != "none" and bx is not None:
                w0, b0 = ridge(bx, by, lam)
                r0 = ys[np.arange(len(ys)), np.argmax(xs @ w0 + b0, 1)]
                off["start_router_last_half"] = float(r0[half:].mean())
        results.setdefault("offline", []).append(off)
        for pol in args.policy:
            for om in args.omega:
                for hl, prior in [(h, p) for h in args.half_life for p in args.prior]:
                    name = f"{pol} omega={om} half-life={hl}" + (
                        f" prior={prior}" if len(args.prior) > 1 else ""
                    )
                    t1 = time.time()
                    rew, picks, model, used = run_stream(
                        xs,
                        ys,
                        bx,
                        by,
                        lam=lam,
                        policy=pol,
                        omega=om if om == "preq" else float(om),
                        half_life=None if hl == "none" else float(hl),
                        batch=args.batch,
                        seed=s,
                        basis_x=tr.x,
                        cost=cost,
                        kappa=kappa,
                        prior=prior,
                    )
                    r = {
                        "last_half": float(rew[half:].mean()),
                        "all": float(rew.mean()),
                        "seconds": time.time() - t1,
                    }
                    if om == "preq":
                        r["omega_used_last"] = used[-1]
                        r["omega_used_share"] = {
                            str(c): float(np.mean(np.array(used) == c)) for c in PREQ
                        }
                    if args.stream == "routerbench":
                        p = np.argmax(model.predict(te.x) - cost / WTP, 1)
                        r["utility"] = float(
                            np.mean(
                                te.y[np.arange(len(te.y)), p]
                                - te.costs[np.arange(len(te.y)), p] / WTP
                            )
                        )
                        r["quality"] = float(np.mean(te.y[np.arange(len(te.y)), p]))
                        r["delta_utility_vs_offline"] = r["utility"] - off["utility"]
                    else:
                        r["delta_vs_offline"] = r["last_half"] - off["last_half"]
                    results.setdefault(name, []).append(r)
                    log(
                        f"seed {s} {name}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if isinstance(v, float))
                    )
    summary = {}
    for name, runs in results.items():
        keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
        summary[name] = {k: mean_ci([r[k] for r in runs]) for k in keys}
        if name != "offline":
            d = "delta_utility_vs_offline" if args.stream == "routerbench" else "delta_vs_offline"
            summary[name]["ahead_on_every_seed"] = bool(all(r[d] > 0 for r in runs))
            if "omega_used_last" in runs[0]:
                summary[name]["omega_used_last"] = [r["omega_used_last"] for r in runs]
        log(
            f"{name}: "
            + ", ".join(
                f"{k} {v['mean']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]"
                for k, v in summary[name].items()
                if isinstance(v, dict) and k != "seconds"
            )
        )
    out["summary"] = summary
    out["seconds"] = time.time() - t0
    write_results(args.out, args.key or f"{args.stream}-start{args.start}", out)
    log(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

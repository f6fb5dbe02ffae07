"""Benchmark: learning from traffic (issue 19 point 5), measured on the product's code.

Replays feedback streams on features cached from the product's default router and folds
every feedback row with the product (``learning.feedback.parse_rows`` and ``fold`` into
``RouterStats``, re-solved with ``learning.moments.solve``); decisions are the product's
(``decision.policy.decide``: argmax of the head, or quality - cost/wtp on RouterBench).
Protocol as research/feedback (README there): >= 5 seeds, each comparison paired (the same
stream order and start rows per seed), 95% t intervals over seeds, reward in points.

Parts (``--parts``, default all):

- ``domains``: cross-source domains; labelled ``{text, expert}`` rows from the held-out
  sources' first half, accuracy on the other half after 50/200/.../all rows.
- ``dc-id`` / ``dc-id-none``: routerdc7 test_id as a bandit stream ``{text, expert, outcome}``
  from 100 labelled train rows / from no rows (every expert predicts 0.5); reward over the
  last half against the full-information offline router and the oracle.
- ``dc-ood``: routerdc7 test_ood as a bandit stream after training on all train rows.
- ``routerbench``: 100 labelled train rows, the other train rows as a bandit stream with
  costs (wtp 0.02); utility (quality - cost/wtp) on test after the stream.
- ``observe``: ``RouterEditor.add_feedback`` per row and per batch of 64 (p50/p99), and the
  fold + solve alone.
- ``memory``: RSS while folding 1M synthetic 768-d rows in batches of 1000.

Results go to benchmarks/results/feedback.json (one key per part), plots next to it, and
the ``feedback`` section of BENCHMARKS.md (``--report`` rebuilds it from the JSON).

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.feedback [--parts ...] [--seeds 5]
        [--cache DIR] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)
from benchmarks.splits import (
    cross_source_split,
    in_source_split,
    labelled_domains,
    load_domain_records,
    onehot,
    source_of,
)
from benchmarks.streams import (
    FeatureCache,
    LamRule,
    Learner,
    cv_lam,
    default_cache,
    mean_ci,
    trace_scale,
)
from irde_onnx.decision.policy import decide
from irde_onnx.learning.moments import COLD_KAPPA, COLD_LAM, Moments, group_fold_ids

PARTS = ("domains", "dc-id", "dc-id-none", "dc-ood", "routerbench", "observe", "memory")
RESULTS_JSON = RESULTS / "feedback.json"
WTP = 0.02
# the product's cold start (irde train --experts): lam floor and kappa
NONE_LAM, NONE_KAPPA = COLD_LAM, COLD_KAPPA
TRAIN_SPLIT = "routerdc7-train"
TEST_ID = "routerdc7-test_id-cap100000"
BINS = 40


def log(msg: str) -> None:
    print(f"[feedback {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- exploration -----------------------------------------------------------------------------------
def bonus_hook(scores: np.ndarray, x: np.ndarray, learner: Learner, alpha: float) -> np.ndarray:
    """The uncertainty-bonus policy: scores + alpha * the product's uncertainty widths (what
    ``irde serve --explore bonus:A`` adds to each expert's utility)."""
    return scores + alpha * learner.width(x)


def choose(
    policy: str, scores: np.ndarray, x: np.ndarray, learner: Learner, rng, costs, wtp
) -> np.ndarray:
    """The expert each prompt goes to: the product's decision rule plus exploration."""
    kind, _, arg = policy.partition(":")
    if kind == "bonus":
        scores = bonus_hook(scores, x, learner, float(arg))
    pick, _ = decide(scores, "score", costs=costs, wtp=wtp)
    if kind == "eps":
        flip = rng.uniform(size=len(pick)) < float(arg)
        pick = np.where(flip, rng.integers(0, scores.shape[1], len(pick)), pick)
    return pick


def run_stream(
    learner: Learner,
    xs: np.ndarray,
    ys: np.ndarray,
    texts: Sequence[str],
    *,
    policy: str,
    rule: LamRule,
    weight: float,
    batch: int,
    seed: int,
    costs: np.ndarray | None = None,
    cost_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Bandit stream: route each batch, reveal the pick's score, fold it, re-solve.

    Returns the reward of every prompt (its pick's score, minus cost/wtp with costs)."""
    rng = np.random.default_rng(1000 + seed)
    learner.solve(rule)
    names = learner.experts
    wtp = WTP if costs is not None else None
    rewards = np.zeros(len(xs))
    for start in range(0, len(xs), batch):
        sl = slice(start, min(len(xs), start + batch))
        x = xs[sl]
        pick = choose(policy, learner.scores(x), x, learner, rng, costs, wtp)
        out = ys[sl][np.arange(len(x)), pick]
        rewards[sl] = (
            out if cost_rows is None else out - cost_rows[sl][np.arange(len(x)), pick] / WTP
        )
        rows = [
            {"text": t, "expert": names[k], "outcome": float(o)}
            for t, k, o in zip(texts[sl], pick, out, strict=True)
        ]
        learner.feed(x, rows, weight)
        learner.solve(rule)
    return rewards


def binned(r: np.ndarray, bins: int = BINS) -> list[float]:
    return [float(c.mean()) for c in np.array_split(np.asarray(r, float), bins)]


def points(v: float) -> float:
    return 100.0 * v


def summarise(per_seed: dict[str, list[float]], reference: str | None) -> dict[str, Any]:
    """Mean [95% CI] of each config, and paired deltas against ``reference`` (per seed)."""
    out: dict[str, Any] = {}
    for name, vals in per_seed.items():
        out[name] = mean_ci(vals)
        if reference is not None and name != reference:
            d = np.asarray(vals) - np.asarray(per_seed[reference])
            out[name]["delta"] = mean_ci(d)
            out[name]["ahead_every_seed"] = bool((d > 0).all())
    return out


# -- parts ---------------------------------------------------------------------------------
def part_domains(cache: FeatureCache, seeds: int) -> dict[str, Any]:
    x, rows = cache.features("domains-cap600")
    labels = np.array([r["domain"] for r in rows])
    sources = np.array([source_of(r) for r in rows])
    texts = [r["text"] for r in rows]
    data = labelled_domains(rows)
    _, _, train_source = cross_source_split(
        labelled_domains(load_domain_records(cache.data / "domains")[0])
    )
    unseen = np.array(
        [
            lab in train_source and src != train_source[lab]
            for lab, src in zip(labels, sources, strict=True)
        ]
    )
    test = unseen | (np.array([lab not in train_source for lab in labels]) & in_source_split(data))
    tr = ~test
    classes = sorted(set(labels.tolist()))
    folds, _ = group_fold_ids(sources[tr])
    lam = cv_lam(x[tr], onehot(labels[tr], classes), folds)
    base = Learner.domains(x[tr], labels[tr], classes)
    pooled = base.stats.column_moments()[0][1]
    kappa = lam / trace_scale(pooled)
    configs = {
        "weight 10, lam fixed (product default)": (10.0, LamRule("fixed", lam)),
        "weight 10, lam relative": (10.0, LamRule("relative", lam, kappa)),
        "weight 1, lam fixed": (1.0, LamRule("fixed", lam)),
    }
    pool = np.flatnonzero(unseen)
    half = len(pool) // 2
    marks = sorted({50, 200, *range(100, half, 100), half})
    log(f"domains: {tr.sum()} training rows, {len(pool)} held-out-source rows, lam {lam:.4g}")
    curves: dict[str, list[list[float]]] = {n: [] for n in ["offline", *configs]}
    for s in range(seeds):
        perm = np.random.default_rng(s).permutation(pool)
        fb, rest = perm[:half], perm[half:]
        truth = np.array([classes.index(v) for v in labels[rest]])
        learners = {w: base.copy() for w in {w for w, _ in configs.values()}}

        def acc(lr: Learner, rule: LamRule, rest=rest, truth=truth) -> float:
            lr.solve(rule)
            pick, _ = decide(lr.scores(x[rest]), "domain")
            return float(np.mean(pick == truth))

        off = acc(base.copy(), LamRule("fixed", lam))
        curves["offline"].append([off] * len(marks))
        got = {n: [] for n in configs}
        seen = 0
        for m in marks:
            idx = fb[seen:m]
            for w, lr in learners.items():
                lr.feed(x[idx], [{"text": texts[i], "expert": labels[i]} for i in idx], w)
            seen = m
            for n, (w, rule) in configs.items():
                got[n].append(acc(learners[w], rule))
        for n in configs:
            curves[n].append(got[n])
        log(
            f"domains seed {s}: offline {off:.4f}, "
            + ", ".join(f"{n} {v[marks.index(200)]:.4f}/{v[-1]:.4f}" for n, v in got.items())
        )
    at = {
        f"after {m}" if m != half else "after the first half": summarise(
            {n: [c[marks.index(m)] for c in curves[n]] for n in curves}, "offline"
        )
        for m in (50, 200, half)
    }
    return {
        "lam": lam,
        "kappa": kappa,
        "train_rows": int(tr.sum()),
        "held_out_rows": int(len(pool)),
        "first_half": int(half),
        "marks": marks,
        "curves": curves,
        "summary": at,
        "seeds": seeds,
    }


def scored_part(cache: FeatureCache, part: str, costs: bool = False):
    x, rows = cache.features(part)
    experts = list(rows[0]["scores"])
    y = np.array([[float(r["scores"][e]) for e in experts] for r in rows])
    c = np.array([[float(r["costs"][e]) for e in experts] for r in rows]) if costs else None
    return x, y, [r["text"] for r in rows], experts, c


def dc_configs(which: str) -> dict[str, tuple[str, float, str]]:
    """The stream's configurations: name -> (policy, traffic weight, lam rule)."""
    if which == "dc-id":
        return {
            "greedy, weight 10, lam relative": ("greedy", 10.0, "relative"),
            "greedy, weight 10, lam fixed": ("greedy", 10.0, "fixed"),
            "bonus 0.1, weight 10, lam relative": ("bonus:0.1", 10.0, "relative"),
        }
    if which == "dc-id-none":
        return {
            "greedy, lam relative": ("greedy", 10.0, "relative"),
            "eps 0.05, lam relative": ("eps:0.05", 10.0, "relative"),
            "bonus 0.1, lam relative": ("bonus:0.1", 10.0, "relative"),
        }
    return {
        "greedy, weight 10, lam relative": ("greedy", 10.0, "relative"),
        "greedy, weight 10, lam fixed": ("greedy", 10.0, "fixed"),
    }


def part_dc(
    cache: FeatureCache,
    seeds: Sequence[int],
    which: str,
    batch: int | None = None,
    on_seed: Callable[[dict[str, Any], int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """routerdc7 bandit streams: ``dc-id`` (from 100 rows), ``dc-id-none``, ``dc-ood``.

    ``on_seed(meta, seed, result)`` is called as each seed finishes (results are saved per
    seed, so seeds can run in separate processes and a cut run keeps what it finished)."""
    trx, try_, _, experts, _ = scored_part(cache, TRAIN_SPLIT)
    tex, tey, tet, _, _ = scored_part(cache, "routerdc7-test_ood" if which == "dc-ood" else TEST_ID)
    batch = batch or (64 if which == "dc-ood" else 128)
    lam_off = cv_lam(trx, try_)
    offline = Learner.scored(trx, try_, experts)
    offline.solve(LamRule("fixed", lam_off))
    configs = dc_configs(which)
    meta = {
        "batch": batch,
        "lam_offline": lam_off,
        "stream_rows": int(len(tex)),
        "order": list(configs),
        "configs": {
            n: {"policy": p, "traffic_weight": w, "lam_rule": k} for n, (p, w, k) in configs.items()
        },
    }
    per_seed: dict[str, Any] = {}
    for s in seeds:
        perm = np.random.default_rng(s).permutation(len(tex))
        xs, ys, texts = tex[perm], tey[perm], [tet[i] for i in perm]
        half = len(xs) // 2
        if which == "dc-id":
            idx = np.random.default_rng(10_000 + s).choice(len(trx), 100, replace=False)
            lam0 = cv_lam(trx[idx], try_[idx])
            kappa = lam0 / trace_scale(Moments.from_rows(trx[idx], try_[idx]))
            base = Learner.scored(trx[idx], try_[idx], experts)
        elif which == "dc-id-none":
            lam0, kappa = NONE_LAM, NONE_KAPPA
            base = Learner.cold(trx.shape[1], experts, 0.5)
        else:
            lam0 = lam_off
            kappa = lam0 / trace_scale(Moments.from_rows(trx, try_))
            base = offline
        refs = {"offline": offline, "oracle": None}
        if which == "dc-id":
            start = base.copy()
            start.solve(LamRule("fixed", lam0))
            refs["start router, no feedback"] = start
        res: dict[str, Any] = {"last": {}, "curves": {}, "seconds": {}}
        for name, lr in refs.items():
            r = (
                ys.max(1)
                if lr is None
                else ys[np.arange(len(ys)), decide(lr.scores(xs), "score")[0]]
            )
            res["last"][name] = points(r[half:].mean())
            res["curves"][name] = binned(r)
        for name, (pol, w, kind) in configs.items():
            t = time.perf_counter()
            rule = LamRule(kind, lam0, kappa)
            r = run_stream(
                base.copy(), xs, ys, texts, policy=pol, rule=rule, weight=w, batch=batch, seed=s
            )
            res["seconds"][name] = time.perf_counter() - t
            res["last"][name] = points(r[half:].mean())
            res["curves"][name] = binned(r)
            log(
                f"{which} seed {s} {name}: last half {res['last'][name]:.2f} "
                f"(offline {res['last']['offline']:.2f}) {time.perf_counter() - t:.0f} s"
            )
        per_seed[str(s)] = res
        if on_seed is not None:
            on_seed(meta, s, res)
    return assemble_dc({**meta, "per_seed": per_seed})


def assemble_dc(entry: dict[str, Any]) -> dict[str, Any]:
    """Summary, curves and times of a routerdc7 stream from its per-seed results."""
    per_seed = entry["per_seed"]
    seeds = sorted(per_seed, key=int)
    names = list(per_seed[seeds[0]]["last"])
    last = {n: [per_seed[s]["last"][n] for s in seeds] for n in names}
    first = entry["order"][0]
    summary = summarise(last, "offline")
    for name in entry["order"][1:]:
        d = np.asarray(last[name]) - np.asarray(last[first])
        summary[name]["vs " + first] = mean_ci(d)
    return {
        **entry,
        "summary": summary,
        "curves": {n: [per_seed[s]["curves"][n] for s in seeds] for n in names},
        "seconds": {n: sum(per_seed[s]["seconds"][n] for s in seeds) for n in entry["order"]},
        "seeds": len(seeds),
        "seed_ids": [int(s) for s in seeds],
    }


def save_seed(path: Path, which: str, meta: dict[str, Any], seed: int, res: dict[str, Any]) -> None:
    """Add one seed's stream results to the JSON and re-assemble the summary (locked)."""
    with open(lock_path(path), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.is_file() else {}
        entry = data.get(which, {})
        per_seed = dict(entry.get("per_seed", {}))
        per_seed[str(seed)] = res
        assemble = assemble_routerbench if which == "routerbench" else assemble_dc
        data[which] = assemble({**meta, "per_seed": per_seed})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)


def part_routerbench(
    cache: FeatureCache,
    seeds: Sequence[int],
    batch: int = 32,
    on_seed: Callable[[dict[str, Any], int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """RouterBench: 100 labelled train rows, the rest as a bandit stream with costs; utility
    on test after the stream. ``on_seed`` as in :func:`part_dc`."""
    trx, try_, trt, experts, trc = scored_part(cache, "routerbench-train", costs=True)
    tex, tey, _, _, tec = scored_part(cache, "routerbench-test", costs=True)
    lam_off = cv_lam(trx, try_)
    offline = Learner.scored(trx, try_, experts)
    offline.solve(LamRule("fixed", lam_off))

    def utility(lr: Learner, costs: np.ndarray) -> tuple[float, float]:
        p = decide(lr.scores(tex), "score", costs=costs, wtp=WTP)[0]
        q = tey[np.arange(len(tey)), p]
        return points(np.mean(q - tec[np.arange(len(tey)), p] / WTP)), points(np.mean(q))

    configs = {
        "greedy, weight 10, lam relative": ("greedy", 10.0, "relative"),
        "greedy, weight 1, lam relative": ("greedy", 1.0, "relative"),
    }
    u_off, q_off = utility(offline, trc.mean(0))
    meta = {
        "batch": batch,
        "wtp": WTP,
        "lam_offline": lam_off,
        "offline": {"utility": u_off, "quality": q_off},
        "oracle_utility_test": points(np.mean((tey - tec / WTP).max(1))),
        "order": list(configs),
    }
    per_seed: dict[str, Any] = {}
    for s in seeds:
        perm = np.random.default_rng(s).permutation(len(trx))
        b, st = perm[:100], perm[100:]
        costs = trc[b].mean(0)
        lam0 = cv_lam(trx[b], try_[b])
        kappa = lam0 / trace_scale(Moments.from_rows(trx[b], try_[b]))
        base = Learner.scored(trx[b], try_[b], experts)
        start = base.copy()
        start.solve(LamRule("fixed", lam0))
        res: dict[str, Any] = {"utility": {}, "quality": {}, "curves": {}}
        ar = np.arange(len(st))
        for name, lr, c in (
            ("offline", offline, trc.mean(0)),
            ("start router, no feedback", start, costs),
        ):
            res["utility"][name], res["quality"][name] = utility(lr, c)
            p = decide(lr.scores(trx[st]), "score", costs=c, wtp=WTP)[0]
            res["curves"][name] = binned(try_[st][ar, p] - trc[st][ar, p] / WTP, 20)
        res["curves"]["oracle"] = binned((try_[st] - trc[st] / WTP).max(1), 20)
        for name, (pol, w, kind) in configs.items():
            lr = base.copy()
            r = run_stream(
                lr,
                trx[st],
                try_[st],
                [trt[i] for i in st],
                policy=pol,
                rule=LamRule(kind, lam0, kappa),
                weight=w,
                batch=batch,
                seed=s,
                costs=costs,
                cost_rows=trc[st],
            )
            u, q = utility(lr, costs)
            res["utility"][name], res["quality"][name] = u, q
            res["curves"][name] = binned(r, 20)
            log(
                f"routerbench seed {s} {name}: utility {u:.2f} (offline {u_off:.2f}), "
                f"quality {q:.2f}"
            )
        per_seed[str(s)] = res
        if on_seed is not None:
            on_seed(meta, s, res)
    return assemble_routerbench({**meta, "per_seed": per_seed})


def assemble_routerbench(entry: dict[str, Any]) -> dict[str, Any]:
    """Summary and curves of the RouterBench stream from its per-seed results."""
    per_seed = entry["per_seed"]
    seeds = sorted(per_seed, key=int)
    names = list(per_seed[seeds[0]]["utility"])
    summary = {
        k: summarise({n: [per_seed[s][k][n] for s in seeds] for n in names}, "offline")
        for k in ("utility", "quality")
    }
    return {
        **entry,
        "summary": summary,
        "curves": {
            n: [per_seed[s]["curves"][n] for s in seeds] for n in per_seed[seeds[0]]["curves"]
        },
        "seeds": len(seeds),
        "seed_ids": [int(s) for s in seeds],
    }


def percentiles(ts: Sequence[float], cpu: Sequence[float]) -> dict[str, float]:
    """p50/p99 of wall time and of the process's CPU time (the machine is shared: the CPU
    time is the cost, the wall time adds the wait for a core)."""
    a, c = np.asarray(ts) * 1000.0, np.asarray(cpu) * 1000.0
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "cpu_p50_ms": float(np.percentile(c, 50)),
        "cpu_p99_ms": float(np.percentile(c, 99)),
        "calls": len(a),
    }


def part_observe(cache: FeatureCache, calls: int) -> dict[str, Any]:
    """add_feedback on a copy of the cache's router (MiniLM int8), and the fold alone."""
    from irde_onnx.learning import feedback
    from irde_onnx.learning.statistics import EncodedRows
    from irde_onnx.runtime import RouterEditor

    cache.router()  # builds the folder if missing
    _, rows = cache.features("domains-cap600")
    rows = [r for r in rows if r["domain"] in ("law", "math")]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"router": cache.describe(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "router"
        shutil.copytree(cache.router_dir, folder)
        editor = RouterEditor.open(folder)
        editor.add_feedback([{"text": rows[0]["text"], "expert": rows[0]["domain"]}])  # warm-up
        for size in (1, 64):
            ts, cpu = [], []
            for _ in range(calls):
                pick = rng.choice(len(rows), size, replace=False)
                batch = [{"text": rows[i]["text"], "expert": rows[i]["domain"]} for i in pick]
                t, c = time.perf_counter(), time.process_time()
                editor.add_feedback(batch)
                ts.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            out[f"add_feedback, {size} row(s)"] = percentiles(ts, cpu)
            log(f"observe add_feedback {size}: {out[f'add_feedback, {size} row(s)']}")
        stats, lam = editor.stats.copy(), float(editor.router.config.lam)
    d = stats.dim
    # the fold alone on the same (2-expert domain) statistics, and on a 7-expert score router
    x7 = rng.normal(size=(200, d)) / np.sqrt(d)
    score = Learner.scored(x7, rng.uniform(size=(200, 7)), [f"llm{i}" for i in range(7)])
    for label, st, target, names in (
        ("2 domain experts", stats, "domain", stats.experts),
        ("7 score experts, bandit rows", score.stats, "score", score.experts),
    ):
        for size in (1, 64):
            ts_fold, ts_solve, cpu_fold, cpu_solve = [], [], [], []
            for _ in range(calls):
                x = (rng.normal(size=(size, d)) / np.sqrt(d)).astype(np.float32)
                if target == "domain":
                    raw = [
                        {"text": "p", "expert": names[int(rng.integers(len(names)))]}
                        for _ in range(size)
                    ]
                else:
                    raw = [
                        {
                            "text": "p",
                            "expert": names[int(rng.integers(len(names)))],
                            "outcome": float(rng.uniform()),
                        }
                        for _ in range(size)
                    ]
                t, c = time.perf_counter(), time.process_time()
                parsed = feedback.parse_rows(raw, st.experts, st.modes, target)
                feedback.fold(st, None, parsed, EncodedRows(x, None, d), 10.0, None)
                t1, c1 = time.perf_counter(), time.process_time()
                st.solve(lam)
                ts_fold.append(t1 - t)
                ts_solve.append(time.perf_counter() - t1)
                cpu_fold.append(c1 - c)
                cpu_solve.append(time.process_time() - c1)
            out[f"fold, {label}, {size} row(s)"] = percentiles(ts_fold, cpu_fold)
            out[f"solve, {label}, after {size} row(s)"] = percentiles(ts_solve, cpu_solve)
            out["load_after"] = os.getloadavg()[0]
            log(
                f"observe fold {label} {size}: {out[f'fold, {label}, {size} row(s)']}, "
                f"solve {out[f'solve, {label}, after {size} row(s)']}"
            )
    return out


def part_memory(
    total: int, batch: int = 1000, d: int = 768, save: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """RSS before/after folding ``total`` synthetic rows (7-expert score router, bandit rows)."""
    import psutil

    proc = psutil.Process()
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(200, d)) / np.sqrt(d)
    lr = Learner.scored(x0, rng.uniform(size=(200, 7)), [f"llm{i}" for i in range(7)])
    names = lr.experts
    from irde_onnx.learning import feedback
    from irde_onnx.learning.statistics import EncodedRows

    marks = sorted({0, total // 4, total // 2, 3 * total // 4, total, *range(0, total, 50_000)})
    out: dict[str, Any] = {"rows": total, "batch": batch, "dim": d, "rss_mib": {}, "seconds": {}}
    t0 = time.perf_counter()
    done = 0
    while True:
        if done in marks:
            gc.collect()
            out["rss_mib"][str(done)] = proc.memory_info().rss / 2**20
            out["seconds"][str(done)] = time.perf_counter() - t0
            log(
                f"memory: {done} rows, RSS {out['rss_mib'][str(done)]:.1f} MiB, "
                f"{out['seconds'][str(done)]:.0f} s"
            )
            if save is not None:
                save(out)
        if done >= total:
            break
        x = (rng.normal(size=(batch, d)) / np.sqrt(d)).astype(np.float32)
        k = rng.integers(0, 7, batch)
        o = rng.uniform(size=batch)
        raw = [
            {"text": "p", "expert": names[int(k[i])], "outcome": float(o[i])} for i in range(batch)
        ]
        parsed = feedback.parse_rows(raw, lr.stats.experts, lr.stats.modes, "score")
        feedback.fold(lr.stats, None, parsed, EncodedRows(x, None, d), 10.0, None)
        done += batch
    out["fold_ms_per_row"] = 1000.0 * (time.perf_counter() - t0) / max(total, 1)
    return out


# -- results, plots, report ------------------------------------------------------------------------
def lock_path(path: Path) -> Path:
    """The lock file serialising writers of the results JSON (outside the repository)."""
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"irde-bench-{path.stem}-{tag}.lock"


def save_result(key: str, value: dict[str, Any], path: Path = RESULTS_JSON) -> None:
    """Merge one part's results into the JSON (under a lock: parts may run in parallel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(path), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[key] = value
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)


def plot(key: str, res: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = res.get("curves")
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if key == "domains":
        xs = res["marks"]
        xlabel, ylabel = (
            "labelled feedback rows",
            "accuracy on the other half of the held-out sources",
        )
    else:
        n = len(next(iter(curves.values()))[0])
        xs = (np.arange(n) + 0.5) / n
        xlabel = "position in the stream (fraction; mean over seeds per bin)"
        ylabel = (
            "reward (picked score - cost/wtp)" if key == "routerbench" else "reward (picked score)"
        )
    for name, c in curves.items():
        m = np.mean(np.asarray(c), 0)
        style = "--" if name in ("offline", "oracle") or name.startswith("start") else "-"
        ax.plot(xs, m, style, label=name, lw=1.4 if style == "-" else 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{key} ({res['seeds']} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"feedback_{key}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(ci: dict[str, Any], digits: int = 2) -> str:
    lo, hi = ci["ci95"]
    return f"{ci['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_delta(ci: dict[str, Any]) -> str:
    lo, hi = ci["ci95"]
    return f"{ci['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def seeds_str(ci: dict[str, Any]) -> str:
    return " ".join(f"{v:+.2f}" for v in ci["per_seed"])


def render(data: dict[str, Any], cache_note: str, command: str) -> str:
    """The BENCHMARKS.md section from the results JSON."""
    lines = ["## Learning from traffic (issue 19 point 5)", "", header(command)]
    lines.append(
        "Measured on the product's code: feedback rows are parsed and folded by "
        "`irde_onnx.learning.feedback` (`parse_rows`, `fold`) into `RouterStats`, each column "
        "group re-solved with `learning.moments.solve`; decisions by `decision.policy.decide` "
        "(argmax of the head; RouterBench: quality - cost/wtp, wtp 0.02). Protocol as "
        "research/feedback: paired seeds (same stream order and start rows for every row of a "
        "table), mean [95% t interval] over seeds, points. Re-solves every 128 prompts on "
        "test_id, 64 on test_ood, 32 on RouterBench (the research's cadence, not the issue's 16). "
        'Traffic weight 10 is the product default (`DEFAULT_TRAFFIC_WEIGHT`). "lam relative": '
        "each column's lam = max(lam0, kappa * trace(centred Sxx_e)/d), kappa = lam0 / "
        "(trace/d) of the start rows (the product's `learning.moments.relative_lam`, which "
        "`RouterStats.solve` applies once a router has a kappa: trained with lam auto, or at "
        'its first feedback); "lam fixed": lam0 throughout (routers saved before kappa '
        "existed, until their first feedback). A cold column (no rows) predicts its prior, "
        '0.5, as a router of `irde train --experts` does. "bonus A": the head\'s scores plus '
        "A times the product's uncertainty widths (`learning.uncertainty`, the graph's "
        '`uncertainty` output; `irde serve --explore bonus:A`); "eps E": another expert with '
        "probability E. The `observe` figures time the product's batched fold "
        "(one weighted product per group of columns a batch informs). "
        f"Features: {cache_note}."
    )
    lines.append("")
    targets = target_rows(data)
    if targets:
        lines += [
            "### Targets (measured figure first)",
            "",
            markdown_table(["target", "measured", "met?"], targets),
            "",
        ]
    for key in ("domains", "dc-id", "dc-id-none", "dc-ood", "routerbench"):
        if key in data:
            lines += stream_section(key, data[key])
    if "observe" in data:
        o = data["observe"]
        lines += [
            "### `observe` cost",
            "",
            f"Router: {o['router']}, copied to a temporary folder; `RouterEditor.add_feedback` "
            "(parse, encode, fold, solve, graph rebuild, new session) with `{text, expert}` rows "
            "of law/math prompts. The fold alone: `learning.feedback.fold` (+ parse) and "
            "`RouterStats.solve`, on the same statistics and on a 7-expert score router with "
            "bandit rows (random 768-d features). Wall time includes waiting for a core on "
            f"this shared machine (load average {o.get('load_before', 0):.1f} before, "
            f"{o.get('load_after', 0):.1f} after); CPU time is the process's.",
            "",
        ]
        rows = [
            [
                k,
                f"{v['p50_ms']:.1f}",
                f"{v['p99_ms']:.1f}",
                f"{v.get('cpu_p50_ms', float('nan')):.1f}",
                f"{v.get('cpu_p99_ms', float('nan')):.1f}",
                v["calls"],
            ]
            for k, v in o.items()
            if isinstance(v, dict)
        ]
        head = ["what", "wall p50 (ms)", "wall p99 (ms)", "CPU p50 (ms)", "CPU p99 (ms)", "calls"]
        lines += [markdown_table(head, rows), ""]
    if "memory" in data:
        m = data["memory"]
        rows = [
            [f"{int(k):,}", f"{v:.1f}", f"{m['seconds'][k]:.0f}"]
            for k, v in sorted(m["rss_mib"].items(), key=lambda kv: int(kv[0]))
        ]
        done = max(int(k) for k in m["rss_mib"])
        note = ""
        if done < 1_000_000:
            fold64 = data.get("observe", {}).get("fold, 7 score experts, bandit rows, 64 row(s)")
            ms = fold64["cpu_p50_ms"] / 64 if fold64 else 3.0
            per_row = f"{ms:.1f} ms of CPU" if fold64 else "milliseconds"
            note = (
                f" **1M rows were not reached**: the product's fold takes {per_row} per row at "
                f"768-d (row by row: an outer product and several d x d temporaries per row), so "
                f"1M rows need about {1e6 * ms / 6e4:.0f}"
                " CPU-minutes, more than this run could get on the shared machine; this run "
                f"folded {done:,} rows."
            )
        lines += [
            "### Memory while folding feedback rows",
            "",
            f"RSS of the process while `learning.feedback.fold` folds synthetic "
            f"{m['dim']}-d bandit rows (a 7-expert score router, batches of {m['batch']})." + note,
            "",
            markdown_table(["rows folded", "RSS (MiB)", "wall seconds"], rows),
            "",
        ]
    return "\n".join(lines)


def few(ci: dict[str, Any]) -> str:
    """A warning when fewer than 5 seeds ran (the protocol asks for >= 5)."""
    n = len(ci["per_seed"])
    return f" ({n} of 5 seeds: the run was cut, not conclusive)" if n < 5 else ""


def target_rows(data: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    if "domains" in data:
        s = data["domains"]["summary"]
        name = "weight 10, lam fixed (product default)"
        for label, key, bar in (
            ("after 200 feedback rows", "after 200", 90),
            ("after the first half", "after the first half", 95),
        ):
            c = s[key][name]
            best = max(s[key], key=lambda n: s[key][n]["mean"] if n != "offline" else -1)
            rows.append(
                [
                    f"domains cross-source >= {bar}% {label}",
                    f"{100 * c['mean']:.2f}% [{100 * c['ci95'][0]:.2f}, "
                    f"{100 * c['ci95'][1]:.2f}] (product default; lowest seed "
                    f"{100 * min(c['per_seed']):.2f}); best: {best} "
                    f"{100 * s[key][best]['mean']:.2f}%",
                    "yes" if c["mean"] >= bar / 100 else "no",
                ]
            )
    for key, bar, label in (
        ("dc-id", 0.5, "test_id from 100 labels, last half within 0.5 of offline"),
        ("dc-id-none", 0.3, "test_id from no labels, within 0.3 of offline"),
    ):
        if key in data:
            s = data[key]["summary"]
            cfgs = [n for n in data[key]["configs"]]
            best = max(cfgs, key=lambda n: s[n]["delta"]["mean"])
            c = s[best]["delta"]
            rows.append(
                [
                    label,
                    f"{fmt_delta(c)} points ({best}); per seed {seeds_str(c)}" + few(c),
                    ("yes" if c["mean"] >= -bar else "no") + few(c),
                ]
            )
    if "dc-ood" in data:
        s = data["dc-ood"]["summary"]
        cfgs = list(data["dc-ood"]["configs"])
        best = max(cfgs, key=lambda n: s[n]["delta"]["mean"])
        c = s[best]["delta"]
        ok = c["mean"] >= 0.5 and s[best]["ahead_every_seed"]
        rows.append(
            [
                "test_ood after train: >= +0.5 over offline, ahead on every seed",
                f"{fmt_delta(c)} points ({best}); per seed {seeds_str(c)}" + few(c),
                ("yes" if ok else "no") + few(c),
            ]
        )
    if "routerbench" in data:
        s = data["routerbench"]["summary"]["utility"]
        cfgs = [n for n in s if n not in ("offline", "start router, no feedback")]
        best = max(cfgs, key=lambda n: s[n]["delta"]["mean"])
        c = s[best]["delta"]
        rows.append(
            [
                "RouterBench from 100 labels: utility within 1 point of offline",
                f"{fmt_delta(c)} points ({best}); per seed {seeds_str(c)}" + few(c),
                ("yes (mean)" if c["mean"] >= -1 else "no") + few(c),
            ]
        )
    if "observe" in data:
        o = data["observe"]
        a, b = o.get("add_feedback, 1 row(s)"), o.get("add_feedback, 64 row(s)")
        if a and b:
            rows.append(
                [
                    "`observe` per row and per batch of 64, p50/p99",
                    f"add_feedback wall: 1 row {a['p50_ms']:.0f}/{a['p99_ms']:.0f} ms, "
                    f"64 rows {b['p50_ms']:.0f}/{b['p99_ms']:.0f} ms (CPU: "
                    f"{a['cpu_p50_ms']:.0f}/{a['cpu_p99_ms']:.0f}, "
                    f"{b['cpu_p50_ms']:.0f}/{b['cpu_p99_ms']:.0f} ms)",
                    "measured (no bar)",
                ]
            )
    if "memory" in data:
        m = data["memory"]["rss_mib"]
        marks = sorted(m, key=int)
        last = int(marks[-1])
        first = marks[1] if len(marks) > 2 else marks[0]  # after the first batches: warm
        warm = m[first]
        grew = m[marks[-1]] - warm
        verdict = "no" if grew >= 5 else ("yes" if last >= 1_000_000 else "1M not reached")
        if len(marks) <= 2:
            verdict = "not measured (too few marks)"
        rows.append(
            [
                "memory flat over 1M feedback rows",
                f"RSS {m[marks[0]]:.1f} MiB before, {warm:.1f} after {int(first):,} rows, "
                f"{m[marks[-1]]:.1f} after {last:,} rows ({grew:+.1f} MiB since the first mark)",
                verdict,
            ]
        )
    return rows


def stream_section(key: str, res: dict[str, Any]) -> list[str]:
    titles = {
        "domains": "domains cross-source, labelled feedback",
        "dc-id": "routerdc7 test_id, bandit feedback from 100 labelled rows",
        "dc-id-none": "routerdc7 test_id, bandit feedback from no rows",
        "dc-ood": "routerdc7 test_ood, bandit feedback after training on train",
        "routerbench": "RouterBench with costs, 100 labelled rows then bandit feedback",
    }
    out = [f"### {titles[key]}", ""]
    if key == "domains":
        out.append(
            f"{res['train_rows']} training rows (each domain's largest source; 600 rows per "
            f"(domain, source) cached), {res['held_out_rows']} held-out-source rows: the first "
            f"half ({res['first_half']}) arrives as `{{text, expert}}` feedback, accuracy on the "
            f"other half. lam {res['lam']:.4g} (leave-one-source-out CV). Deltas vs offline in "
            "points of accuracy."
        )
        s200 = res["summary"]["after 200"]
        out.append(
            f"Check against the research harness (research/feedback, numpy on the same features): "
            f"offline {100 * s200['offline']['mean']:.2f}% and equal weight after 200 rows "
            f"{100 * s200['weight 1, lam fixed']['mean']:.2f}% here; 81.15% and 84.04% there. "
            "Weight 10 at the router's lam is the product's rule (the research's omega 0.1 "
            "at lam / 10)."
        )
        out.insert(-1, "")
        out.append("")
        rows = []
        order = ["after 50", "after 200", "after the first half"]
        for when, s in sorted(res["summary"].items(), key=lambda kv: order.index(kv[0])):
            for name, c in s.items():
                d = c.get("delta")
                rows.append(
                    [
                        when,
                        name,
                        fmt(
                            {
                                k: (
                                    100 * v
                                    if k == "mean"
                                    else [100 * u for u in v]
                                    if k == "ci95"
                                    else v
                                )
                                for k, v in c.items()
                                if k in ("mean", "ci95")
                            }
                        ),
                        ""
                        if d is None
                        else fmt_delta(
                            {"mean": 100 * d["mean"], "ci95": [100 * u for u in d["ci95"]]}
                        ),
                        "" if d is None else " ".join(f"{100 * v:+.1f}" for v in d["per_seed"]),
                    ]
                )
        out += [
            markdown_table(["after", "rule", "accuracy (%)", "delta vs offline", "per seed"], rows),
            "",
        ]
    elif key == "routerbench":
        out.append(
            f"Stream: the other 1,218 train rows, batch {res['batch']}, costs = each LLM's mean "
            f"cost on the 100 start rows; scored on test after the stream. Offline (all train "
            f"rows, full information): utility {res['offline']['utility']:.2f}, quality "
            f"{res['offline']['quality']:.2f}; oracle utility on test "
            f"{res['oracle_utility_test']:.2f}. Seeds {res.get('seed_ids')}."
        )
        out.append("")
        u, q = res["summary"]["utility"], res["summary"]["quality"]
        rows = [
            [
                n,
                fmt(u[n]),
                fmt(q[n]),
                fmt_delta(u[n]["delta"]) if "delta" in u[n] else "",
                seeds_str(u[n]["delta"]) if "delta" in u[n] else "",
            ]
            for n in u
        ]
        out += [
            markdown_table(
                ["router", "utility", "quality", "delta utility vs offline", "per seed"], rows
            ),
            "",
        ]
    else:
        s = res["summary"]
        out.append(
            f"{res['stream_rows']} prompts in a seeded order, re-solve every {res['batch']}; "
            f"reward = the picked LLM's score, mean over the last half (points). Offline: all "
            f"train rows, full information, lam {res['lam_offline']:.4g} by 5-fold CV. Seeds "
            f"{res.get('seed_ids', list(range(res['seeds'])))}."
        )
        out.append("")
        first = res.get("order", list(res["configs"]))[0]
        rows = []
        for n, c in s.items():
            d = c.get("delta")
            vs = c.get("vs " + first)
            rows.append(
                [
                    n,
                    fmt(c),
                    "" if d is None else fmt_delta(d),
                    "" if d is None else seeds_str(d),
                    "" if vs is None else fmt_delta(vs),
                    "" if d is None else ("yes" if c["ahead_every_seed"] else "no"),
                ]
            )
        out += [
            markdown_table(
                [
                    "router",
                    "last-half reward",
                    "delta vs offline",
                    "per seed",
                    f"paired vs {first}",
                    "ahead every seed",
                ],
                rows,
            ),
            "",
        ]
        secs = res.get("seconds", {})
        if secs:
            out += [
                "Stream time (all seeds): "
                + ", ".join(f"{n} {v:.0f} s" for n, v in secs.items())
                + ".",
                "",
            ]
    out += [f"![{key}](benchmarks/results/feedback_{key}.png)", ""]
    return out


def report(data: dict[str, Any], cache_note: str, command: str, write: bool) -> str:
    if write:
        for key, res in data.items():
            if key in PARTS and isinstance(res, dict) and "curves" in res:
                plot(key, res, RESULTS)
    text = render(data, cache_note, command)
    if write:
        write_section("feedback", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
        help="features cache (default $IRDE_FEATURE_CACHE or ~/.cache/irde-onnx/features)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per observe figure")
    parser.add_argument("--results", type=Path, default=RESULTS_JSON)
    parser.add_argument(
        "--report", action="store_true", help="only rebuild the section and plots from the JSON"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only: no JSON, plots or BENCHMARKS.md"
    )
    parser.add_argument(
        "--seed-list",
        type=int,
        nargs="+",
        default=None,
        help="streams (not domains): run only these seeds (default 0..seeds-1); seeds run in "
        "separate processes are merged in the JSON",
    )
    args = parser.parse_args(argv)
    seed_list = args.seed_list if args.seed_list is not None else list(range(args.seeds))
    cache = FeatureCache(args.cache, args.data)
    data: dict[str, Any] = {}
    if not args.report:
        for part in args.parts:
            t = time.perf_counter()
            if part == "domains":
                res = part_domains(cache, args.seeds)
            elif part in ("dc-id", "dc-id-none", "dc-ood"):
                res = part_dc(
                    cache,
                    seed_list,
                    part,
                    on_seed=None
                    if args.no_write
                    else (lambda m, sd, r, p=part: save_seed(args.results, p, m, sd, r)),
                )
                if not args.no_write:  # the per-seed saves hold it, with other processes' seeds
                    log(f"{part} done in {time.perf_counter() - t:.0f} s")
                    continue
            elif part == "routerbench":
                res = part_routerbench(
                    cache,
                    seed_list,
                    on_seed=None
                    if args.no_write
                    else (lambda m, sd, r: save_seed(args.results, "routerbench", m, sd, r)),
                )
                if not args.no_write:
                    log(f"routerbench done in {time.perf_counter() - t:.0f} s")
                    continue
            elif part == "observe":
                res = part_observe(cache, args.calls)
            else:
                res = part_memory(
                    args.memory_rows,
                    save=None
                    if args.no_write
                    else (lambda r: save_result("memory", r, args.results)),
                )
            res["wall_seconds"] = time.perf_counter() - t
            data[part] = res
            if not args.no_write:
                save_result(part, res, args.results)
            log(f"{part} done in {res['wall_seconds']:.0f} s")
    if (args.report or not args.no_write) and args.results.is_file():
        data = json.loads(args.results.read_text())
    note = cache.describe() if (cache.router_dir / "router.json").is_file() else str(cache.cache)
    if cache.encoded:
        note += f"; encoded in this run: {', '.join(cache.encoded)}"
    text = report(data, note, command_line(), write=not args.no_write)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

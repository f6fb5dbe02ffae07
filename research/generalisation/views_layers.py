"""Research: input views x pooled layers on every protocol, and the rule behind the defaults.

The question (research/generalisation/README.md): which input view and pooled MiniLM layers
should the trainer use by default, chosen from training rows alone? The answer is
``irde_onnx/defaults.py``'s ``MEASURED``; this script is the measurement, run again only to
revisit that choice (a new encoder, new candidates). It reuses the quality benchmark's data,
heads and RouterBench sweep (``benchmarks.*``).

Each variant (an input view of :mod:`irde_onnx.views` and a set of pooled MiniLM layers) is
trained and tested on every protocol in one run: RouterDC ID/OOD (train grouped by task),
domains in-source and cross-source (train on each domain's largest source, test on its
others), and RouterBench AIQ (the cost-aware decision of :mod:`irde_onnx.decision.policy` swept over
the willingness to pay, as ``routerbench.py`` does). Beside the test numbers, every variant
gets the criteria a user has *without* test data, on each protocol's training rows: grouped
cross-validation squared error (what ``RouterTrainer(view="auto", layers="auto")``
minimises), accuracy and regret, with the domain rows grouped by source subset
(``mmlu/anatomy``) or by source benchmark (``mmlu``); for RouterBench, the AIQ of the
out-of-fold predictions on train (the trainer's 5 folds).
Selection rules combine them over RouterDC and the domains; ``DEFAULT_RULE`` is the one that
sets the trainer's default (README, "How the defaults were chosen"), and the report shows
what every rule picks and how it ranks the variants against the held-out-source test.

Features come from one graph pooling every candidate layer from one forward pass, and each
distinct prompt text (after its view) is encoded once and cached on disk by its sha256.

    python -m research.generalisation.views_layers [--data ../shared/data] [--cache DIR]
        [--threads N] [--limit N]    # writes BENCHMARKS.md's generalisation section and
                                     # results.json beside this script
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.decision_data import CostRows, load_cost_rows
from benchmarks.heads import log, routing_utility
from benchmarks.quality_report import plain
from benchmarks.report import DEFAULT_DATA, command_line, header, markdown_table, write_section
from benchmarks.results import label_result, scored_metrics
from benchmarks.routerbench import curve_aiq, oof, ridge_predictor, sweep, trainer_lam
from benchmarks.splits import (
    Labelled,
    cross_source_split,
    id_hash,
    in_source_split,
    load_scored,
    onehot,
)
from irde_onnx.learning.moments import choose_lam, group_fold_ids, lam_grid, solve
from irde_onnx.learning.selection import block_columns, fold_moments
from irde_onnx.runtime.tokenize import prepare_text

# the candidates of the trainer's view="auto" (irde_onnx.views.AUTO_VIEWS), then two more
VIEWS = (
    "full",
    "strip_options",
    "tail",
    "strip_options+tail",
    "head_tail",
    "strip_options+head_tail",
)
LAYER_SETS: tuple[tuple[int, ...], ...] = ((6,), (6, 5))
UNION = (6, 5)
WIDTH = 384
MAX_LENGTH = 256
# --limit keeps at least this many RouterBench rows per task (5-fold CV with calibration
# inside each fold needs a few rows per fold)
MIN_ROUTERBENCH_ROWS = 25


class TextFeatures:
    """Features of prompt texts by the sha256 of the text, kept in one npz (no pickle)."""

    def __init__(self, path: Path | None, router: Any) -> None:
        self.path = path
        self.router = router
        self.encoded = 0  # texts encoded by this object (not read from the cache)
        self.keys: dict[str, int] = {}
        self.rows: list[np.ndarray] = []
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                x = z["x"]
                self.keys = {k: i for i, k in enumerate(z["keys"].tolist())}
                self.rows = [x]
        self._x: np.ndarray | None = self.rows[0] if self.rows else None

    @staticmethod
    def key(text: str) -> str:
        """sha256 of the text's UTF-8 bytes (lone surrogates escaped)."""
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def matrix(self) -> np.ndarray:
        """All cached rows as one array."""
        if self._x is None or len(self._x) != len(self.keys):
            self._x = np.concatenate(self.rows) if self.rows else np.zeros((0, 0), np.float32)
            self.rows = [self._x]
        return self._x

    def save(self) -> None:
        """Write the cache (atomically: a temporary file, then a rename)."""
        if self.path is None:
            return
        x = self.matrix()
        keys = np.array(sorted(self.keys, key=self.keys.__getitem__), dtype=np.str_)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, keys=keys)
        tmp.replace(self.path)

    def features(self, texts: Sequence[str], what: str) -> np.ndarray:
        """Features of each text (already viewed), encoding only the texts not cached."""
        keys = [self.key(t) for t in texts]
        missing = list(
            dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.keys)
        )
        if missing:
            start = time.perf_counter()
            log(f"{what}: encoding {len(missing)} new texts ({len(texts)} asked)")
            for i in range(0, len(missing), 1024):
                part = missing[i : i + 1024]
                x = self.router.features(part).astype(np.float32)
                for t in part:
                    self.keys[self.key(t)] = len(self.keys)
                self.rows.append(x)
                self.encoded += len(part)
                self.save()
                log(
                    f"{what}: {i + len(part)}/{len(missing)} in {time.perf_counter() - start:.0f} s"
                )
        x = self.matrix()
        return x[[self.keys[k] for k in keys]]


def viewed(texts: Sequence[str], view: str) -> list[str]:
    """The texts a router with ``view`` tokenizes (before truncation to tokens)."""
    return [prepare_text(t, MAX_LENGTH, view) for t in texts]


def probe_router(threads: int | None, work: Path) -> Any:
    """A MiniLM int8 router pooling layers 6 and 5 (view full): the features of every variant."""
    from irde_onnx.export import RouterTrainer

    texts = ["what is two plus two", "a contract clause", "solve for x", "the law of torts"]
    tr = RouterTrainer(
        encoder="minilm",
        precision="int8",
        threads=threads,
        progress=False,
        lam=1.0,
        view="full",
        layers=UNION,
        validate=False,
    )
    tr.fit(texts, ["math", "law", "math", "law"])
    return tr.save(work / "probe-6-5")


def held_out_scores(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores of the ridge head for every lam of the trainer's grid.

    Each fold is predicted by the head solved on the other folds (one eigendecomposition per
    fold serves every lam, as :func:`irde_onnx.learning.moments.choose_lam` does). Returns the grid
    (:func:`irde_onnx.learning.moments.lam_grid` of all rows) and the scores, shape (lams, n, m).
    """
    folds = fold_moments(x, y, fold)
    total = fold_moments(x, y, np.zeros(len(x), np.int64))[0]
    grid = lam_grid(total)
    pred = np.zeros((len(grid), *y.shape))
    for f, held in enumerate(folds):
        rows = fold == f
        if held.n <= 0 or held.n >= total.n:
            continue
        sxx, sxy, mean_x, mean_y = (total - held).centred()
        e, v = np.linalg.eigh(sxx)
        xv = (x[rows] - mean_x) @ v
        vt_sxy = v.T @ sxy
        for i, lam in enumerate(grid):
            pred[i, rows] = xv @ (vt_sxy / (np.maximum(e, 0.0) + lam)[:, None]) + mean_y
    return grid, pred


def evaluable_rows(y: np.ndarray, fold: np.ndarray, kind: str) -> np.ndarray:
    """Held-out rows a head can get right: for domains, rows whose domain is in other folds.

    Leaving a whole benchmark out removes every row of a domain that has no other source;
    no head can route those, so they are left out of the criterion (a user's group field
    should cut across the labels). Scored rows are all evaluable.
    """
    if kind != "domain":
        return np.ones(len(y), bool)
    label = y.argmax(1)
    ok = np.zeros(len(y), bool)
    for f in np.unique(fold):
        rows = fold == f
        present = np.unique(label[~rows])
        ok[rows] = np.isin(label[rows], present)
    return ok


def grouped_criteria(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, kind: str, tasks: Sequence[str] | None = None
) -> dict[str, Any]:
    """Grouped-CV criteria of one variant on training rows, each at its own best lam.

    ``error``: mean held-out squared error (what the trainer's ``auto`` minimises; its lam
    is the one the head is fit with). ``quality``: held-out accuracy (domains) or mean score
    of the chosen LLM averaged over tasks (RouterDC). ``regret``: the decision loss, 1 -
    accuracy, or the oracle's (best LLM per prompt) mean score minus ``quality``. All on the
    evaluable held-out rows (:func:`evaluable_rows`); None when there are none.
    """
    ok = evaluable_rows(y, fold, kind)
    grid, pred = held_out_scores(x, y, fold)
    # what the trainer's auto computes (irde_onnx.learning.moments.choose_lam): every held-out row
    error_all = float(((pred - y) ** 2).sum(axis=2).mean(axis=1).min())
    if not ok.any():
        return {
            "error": None,
            "quality": None,
            "regret": None,
            "lam": None,
            "evaluable": 0.0,
            "error_all": error_all,
        }
    p, t = pred[:, ok], y[ok]
    errors = ((p - t) ** 2).sum(axis=2).mean(axis=1)
    if kind == "domain":
        quality = (p.argmax(axis=2) == t.argmax(axis=1)).mean(axis=1)
        ceiling = 1.0
    else:
        held_tasks = np.asarray(tasks)[ok]
        quality = np.array([routing_utility(q, t, held_tasks) for q in p])
        ceiling = routing_utility(t, t, held_tasks)
    i_err, i_q = int(np.argmin(errors)), int(np.argmax(quality))
    return {
        "error": float(errors[i_err]),
        "lam": float(grid[i_err]),
        "quality": float(quality[i_q]),
        "lam_quality": float(grid[i_q]),
        "regret": float(ceiling - quality[i_q]),
        "evaluable": float(ok.mean()),
        "error_all": error_all,
    }


def _columns(layers: tuple[int, ...]) -> np.ndarray:
    return block_columns(UNION, layers, WIDTH)


def _name(view: str, layers: tuple[int, ...]) -> str:
    return f"view {view}, layers {','.join(map(str, layers))}"


def _fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    return solve(fold_moments(x, y, np.zeros(len(x), np.int64))[0], lam)


def routerdc_variants(
    data: Path, limit: int | None, feats: TextFeatures
) -> dict[tuple[str, tuple[int, ...]], dict[str, Any]]:
    """RouterDC ID/OOD of every variant; criteria: leave-one-task-out CV on train."""
    folder = data / "routerdc7"
    train = load_scored(folder / "train.jsonl", limit=limit)
    splits = {
        s: load_scored(folder / f"{s}.jsonl", train.experts, limit) for s in ("test_id", "test_ood")
    }
    fold, method = group_fold_ids(train.tasks)
    out = {}
    for view in VIEWS:
        f = {"train": feats.features(viewed(train.texts, view), f"dc-train {view}")}
        for s, split in splits.items():
            f[s] = feats.features(viewed(split.texts, view), f"dc-{s} {view}")
        for layers in LAYER_SETS:
            cols = _columns(layers)
            x = f["train"][:, cols].astype(np.float64)
            crit = grouped_criteria(x, train.y, fold, "score", train.tasks)
            coef, bias = _fit(x, train.y, crit["lam"])
            out[(view, layers)] = {
                "criteria": {"routerdc/task": {**crit, "method": method}},
                "test": {
                    s: scored_metrics(f[s][:, cols] @ coef + bias, split)
                    for s, split in splits.items()
                },
            }
    log("generalisation: RouterDC variants done")
    return out


def load_domain_rows(folder: Path, limit: int | None) -> tuple[Labelled, list[str]]:
    """Domain rows (duplicates dropped as splits.load_domains does) and each row's subset."""
    from benchmarks.splits import labelled_domains, load_domain_records

    kept, dropped = load_domain_records(folder, limit)
    return labelled_domains(kept, dropped), [str(r["source"]) for r in kept]


def domain_variants(
    data_dir: Path, limit: int | None, feats: TextFeatures
) -> dict[tuple[str, tuple[int, ...]], dict[str, Any]]:
    """In-source and cross-source accuracy of every variant, and its criteria on train rows.

    Each protocol's training rows are grouped two ways: by source subset (``mmlu/anatomy``,
    ``legalbench/abercrombie``: grouped 5-fold) and by source benchmark (``mmlu``,
    ``legalbench``: leave-one-benchmark-out, scored on the rows whose domain has another
    benchmark in training).
    """
    data, subsets = load_domain_rows(data_dir / "domains", limit)
    classes = sorted(set(data.labels))
    groupings = {"subset": np.array(subsets), "benchmark": np.array(data.sources)}
    test_cross, unseen, _ = cross_source_split(data)
    masks = {"in_source": (in_source_split(data), None), "cross_source": (test_cross, unseen)}
    out: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    for view in VIEWS:
        x_view = feats.features(viewed(data.texts, view), f"domains {view}")
        for layers in LAYER_SETS:
            x_all = x_view[:, _columns(layers)].astype(np.float64)
            rec: dict[str, Any] = {"criteria": {}, "test": {}, "lam": {}}
            for split, (test_mask, unseen_mask) in masks.items():
                train, test = data.take(~test_mask), data.take(test_mask)
                x, xt = x_all[~test_mask], x_all[test_mask]
                ytr = onehot(train.labels, classes)
                for g, groups in groupings.items():
                    fold, method = group_fold_ids(groups[~test_mask])
                    rec["criteria"][f"{split}/{g}"] = {
                        **grouped_criteria(x, ytr, fold, "domain"),
                        "method": method,
                    }
                # the head as the trainer fits it with --group-field source: lam by the
                # held-out squared error of every row, grouped by source subset
                fold, _ = group_fold_ids(groupings["subset"][~test_mask])
                lam, _ = choose_lam(fold_moments(x, ytr, fold))
                rec["lam"][split] = lam
                coef, bias = _fit(x, ytr, lam)
                res = label_result(
                    _name(view, layers),
                    "generalisation",
                    xt @ coef + bias,
                    classes,
                    test,
                    None if unseen_mask is None else unseen_mask[test_mask],
                )
                rec["test"][split] = (res.unseen or res.metrics)["accuracy"]
                rec["test"][f"{split}_macro_f1"] = (res.unseen or res.metrics)["macro_f1"]
            out[(view, layers)] = rec
    log("generalisation: domain variants done")
    return out


def limit_cost_rows(rows: CostRows, limit: int | None) -> CostRows:
    """The first ``limit`` rows of each task in id-hash order, file order kept (all if None)."""
    if limit is None:
        return rows
    seen: dict[str, int] = {}
    keep = []
    for i in sorted(range(len(rows.ids)), key=lambda i: id_hash(rows.ids[i])):
        if seen.get(rows.tasks[i], 0) < limit:
            seen[rows.tasks[i]] = seen.get(rows.tasks[i], 0) + 1
            keep.append(i)
    keep.sort()
    return CostRows(
        [rows.ids[i] for i in keep],
        [rows.texts[i] for i in keep],
        [rows.tasks[i] for i in keep],
        rows.y[keep],
        rows.cost[keep],
        rows.experts,
    )


def cost_aware_aiq(
    x: np.ndarray, train: CostRows, xt: np.ndarray, test: CostRows
) -> dict[str, float]:
    """Test AIQ and train-CV AIQ of the head as RouterTrainer fits it on score targets.

    lam by the trainer's 5-fold squared error on train, the per-LLM affine calibration on
    out-of-fold predictions, then ``decide``'s cost-aware rule with the mean train costs over
    ``routerbench.py``'s wtp sweep; AIQ over the single models' cost range of the rows
    scored. ``cv_aiq``: the same on train, each row predicted by the head fit without its
    fold (the criterion a user has without test data).
    """
    costs = train.cost.mean(axis=0)
    lam = trainer_lam(x, train.y)
    predict = ridge_predictor(lam, calibrate=True)
    test_points = sweep(predict(x, train.y, xt), test, costs)
    cv_points = sweep(oof(x, train.y, predict), train, costs)
    return {"aiq": curve_aiq(test_points, test), "cv_aiq": curve_aiq(cv_points, train), "lam": lam}


def routerbench_variants(
    data: Path, limit: int | None, feats: TextFeatures
) -> dict[tuple[str, tuple[int, ...]], dict[str, float]]:
    """RouterBench test AIQ and train-CV AIQ of every variant (empty without the data)."""
    folder = data / "routerbench"
    if not (folder / "train.jsonl").is_file() or not (folder / "test.jsonl").is_file():
        log(f"generalisation: no {folder}/train.jsonl and test.jsonl, RouterBench AIQ skipped")
        return {}
    keep = None if limit is None else max(limit, MIN_ROUTERBENCH_ROWS)
    train = limit_cost_rows(load_cost_rows(folder / "train.jsonl"), keep)
    test = limit_cost_rows(load_cost_rows(folder / "test.jsonl", train.experts), keep)
    out = {}
    for view in VIEWS:
        f = feats.features(viewed(train.texts, view), f"routerbench-train {view}")
        ft = feats.features(viewed(test.texts, view), f"routerbench-test {view}")
        for layers in LAYER_SETS:
            cols = _columns(layers)
            out[(view, layers)] = cost_aware_aiq(
                f[:, cols].astype(np.float64), train, ft[:, cols].astype(np.float64), test
            )
    log("generalisation: RouterBench variants done")
    return out


# The selection rules compared. Each is the mean, over RouterDC train (leave-one-task-out)
# and the in-source training rows of the domains (grouped as named), of a grouped-CV
# criterion relative to the plain router's (view full, last layer); lower is better.
RULES: dict[str, tuple[str, str, str]] = {
    # name: (criterion, domain grouping, description)
    "error-all/subset": (
        "error_all",
        "subset",
        "squared error of every held-out row (the trainer's auto), domains "
        "grouped by source subset",
    ),
    "error-all/benchmark": (
        "error_all",
        "benchmark",
        "squared error of every held-out row (the trainer's auto), "
        "domains grouped by source benchmark",
    ),
    "error/subset": (
        "error",
        "subset",
        "squared error of the evaluable held-out rows, domains grouped by source subset",
    ),
    "error/benchmark": (
        "error",
        "benchmark",
        "squared error of the evaluable held-out rows, domains grouped by source benchmark",
    ),
    "regret/subset": ("regret", "subset", "decision regret, domains grouped by source subset"),
    "regret/benchmark": (
        "regret",
        "benchmark",
        "decision regret, domains grouped by source benchmark",
    ),
}
# the rule that sets the trainer's default (README, "How the defaults were chosen")
DEFAULT_RULE = "error-all/benchmark"
PLAIN = ("full", (6,))


def apply_rules(variants: dict[tuple[str, tuple[int, ...]], dict[str, Any]]) -> dict[str, Any]:
    """Every rule's value for every variant, and the variant each rule picks."""
    base = variants[PLAIN]["criteria"]
    values: dict[str, dict[tuple[str, tuple[int, ...]], float]] = {}
    for name, (crit, grouping, _) in RULES.items():
        keys = ("routerdc/task", f"in_source/{grouping}")
        values[name] = {
            v: float(np.mean([rec["criteria"][k][crit] / base[k][crit] for k in keys]))
            for v, rec in variants.items()
        }
    picks = {name: min(vals, key=vals.__getitem__) for name, vals in values.items()}
    return {"values": values, "picks": picks}


def rank_correlation(criterion: dict[Any, float | None], test: dict[Any, float]) -> float | None:
    """Spearman correlation across variants of minus a criterion (lower is better) and a test
    figure: +1 when the criterion orders the variants exactly as the test does."""
    keys = [k for k, v in criterion.items() if v is not None]
    if len(keys) < 3:
        return None
    a = np.argsort(np.argsort([-float(criterion[k]) for k in keys]))  # type: ignore[arg-type]
    b = np.argsort(np.argsort([test[k] for k in keys]))
    return float(np.corrcoef(a, b)[0, 1])


def protocol_picks(
    variants: dict[tuple[str, tuple[int, ...]], dict[str, Any]],
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The variant each single criterion picks on its own protocol's training rows."""
    picks = {}
    keys = next(iter(variants.values()))["criteria"]
    for key in keys:
        for crit in ("error", "regret"):
            scored = {
                v: r["criteria"][key][crit]
                for v, r in variants.items()
                if r["criteria"][key][crit] is not None
            }
            if scored:
                picks[f"{key} {crit}"] = min(scored, key=scored.__getitem__)
    return picks


def generalisation(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every variant on every protocol, with its grouped-CV criteria and the rules' picks."""
    from irde_onnx.runtime import Router

    router = Router.load(probe_router(args.threads, work), threads=args.threads)

    def cache(part: str) -> TextFeatures:
        # one file per data set, so two processes can fill them at the same time
        if args.cache is None:
            return TextFeatures(None, router)
        args.cache.mkdir(parents=True, exist_ok=True)
        name = f"text-features-{router.config.fingerprint[:16]}-{part}.npz"
        return TextFeatures(args.cache / name, router)

    caches = {part: cache(part) for part in ("routerdc", "domains", "routerbench")}
    dc = routerdc_variants(args.data, args.limit, caches["routerdc"])
    dom = domain_variants(args.data, args.limit, caches["domains"])
    rb = routerbench_variants(args.data, args.limit, caches["routerbench"])
    variants = {
        v: {
            "view": v[0],
            "layers": list(v[1]),
            "criteria": {**dc[v]["criteria"], **dom[v]["criteria"]},
            "test": {
                "routerdc_id": dc[v]["test"]["test_id"]["mean"]["router"],
                "routerdc_ood": dc[v]["test"]["test_ood"]["mean"]["router"],
                **dom[v]["test"],
                "routerbench_aiq": rb[v]["aiq"] if rb else None,
            },
            "routerbench_cv_aiq": rb[v]["cv_aiq"] if rb else None,
            "lam": {
                "routerdc": dc[v]["criteria"]["routerdc/task"]["lam"],
                **dom[v]["lam"],
                "routerbench": rb[v]["lam"] if rb else None,
            },
            "routerdc_tasks": {s: dc[v]["test"][s] for s in ("test_id", "test_ood")},
        }
        for v in dc
    }
    rules = apply_rules(variants)
    return {
        "variants": variants,
        "rules": rules,
        "protocol_picks": protocol_picks(variants),
        "default_rule": DEFAULT_RULE,
        "default": rules["picks"][DEFAULT_RULE],
        "encoded": sum(c.encoded for c in caches.values()),
    }


def json_ready(out: dict[str, Any]) -> dict[str, Any]:
    """The run as JSON (variant keys as ``view|layers``)."""

    def key(v: tuple[str, tuple[int, ...]]) -> str:
        return f"{v[0]}|{','.join(map(str, v[1]))}"

    return {
        "variants": [{k: val for k, val in r.items()} for r in out["variants"].values()],
        "rules": {
            "values": {
                n: {key(v): x for v, x in vals.items()}
                for n, vals in out["rules"]["values"].items()
            },
            "picks": {n: key(v) for n, v in out["rules"]["picks"].items()},
        },
        "protocol_picks": {n: key(v) for n, v in out["protocol_picks"].items()},
        "default_rule": out["default_rule"],
        "default": key(out["default"]),
        "encoded": out["encoded"],
    }


def from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`json_ready`: the JSON as :func:`report_section` takes it."""

    def variant(key: str) -> tuple[str, tuple[int, ...]]:
        view, layers = key.split("|")
        return view, tuple(int(x) for x in layers.split(",") if x)

    return {
        "variants": {(r["view"], tuple(r["layers"])): r for r in data["variants"]},
        "rules": {
            "values": {
                n: {variant(k): x for k, x in vals.items()}
                for n, vals in data["rules"]["values"].items()
            },
            "picks": {n: variant(k) for n, k in data["rules"]["picks"].items()},
        },
        "protocol_picks": {n: variant(k) for n, k in data["protocol_picks"].items()},
        "default_rule": data["default_rule"],
        "default": variant(data["default"]),
        "encoded": data["encoded"],
    }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _label(v: tuple[str, tuple[int, ...]]) -> str:
    return f"`{v[0]}`, layers {','.join(map(str, v[1]))}"


TARGETS = {"routerdc_id": 0.585, "routerdc_ood": 0.46, "in_source": 0.95, "cross_source": 0.85}
TITLES = {
    "routerdc_id": "RouterDC ID",
    "routerdc_ood": "RouterDC OOD",
    "in_source": "in-source",
    "cross_source": "cross-source",
}


def report_section(out: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    """The markdown section: every variant on every protocol beside the selection criteria."""
    variants = out["variants"]
    values, picks = out["rules"]["values"], out["rules"]["picks"]
    default = out["default"]

    def test_cells(v: tuple[str, tuple[int, ...]]) -> list[str]:
        t = variants[v]["test"]
        return [
            *(
                f"**{_pct(t[k])}**"
                for k in ("routerdc_id", "routerdc_ood", "in_source", "cross_source")
            ),
            f"**{_num(t.get('routerbench_aiq'))}**",
        ]

    cv_aiq: dict[Any, float | None] = {v: r.get("routerbench_cv_aiq") for v, r in variants.items()}
    measured = {v: float(c) for v, c in cv_aiq.items() if c is not None}
    aiq_pick = max(measured, key=measured.__getitem__) if measured else None
    rows = []
    for v in variants:
        mark = " ◀" if v == default else ""
        rows.append(
            [
                f"`{v[0]}`",
                ",".join(map(str, v[1])),
                f"{values[DEFAULT_RULE][v]:.4f}{mark}",
                _num(cv_aiq[v]) + (" ◀" if v == aiq_pick else ""),
                *test_cells(v),
            ]
        )
    crit_keys = list(next(iter(variants.values()))["criteria"])
    crit_rows = []
    for v, r in variants.items():
        cells = [f"`{v[0]}`", ",".join(map(str, v[1]))]
        for k in crit_keys:
            c = r["criteria"][k]
            cells.append(f"{_num(c['error'])} / {_pct(c['quality'])}")
        crit_rows.append(cells)
    cross = {v: r["test"]["cross_source"] for v, r in variants.items()}

    def rho(criterion: dict[Any, float | None]) -> str:
        r = rank_correlation(criterion, cross)
        return "—" if r is None else f"{r:+.2f}"

    rule_rows = [
        [
            f"{name}: {RULES[name][2]}"
            + (" (**the default rule**)" if name == DEFAULT_RULE else ""),
            _label(picks[name]),
            rho(values[name]),
            *test_cells(picks[name]),
        ]
        for name in RULES
    ]
    proto_rows = []
    for name, v in out["protocol_picks"].items():
        key, crit = name.split(" ")
        proto_rows.append(
            [
                name,
                _label(v),
                rho({u: r["criteria"][key][crit] for u, r in variants.items()}),
                *test_cells(v),
            ]
        )
    if aiq_pick is not None:
        proto_rows.append(
            [
                "routerbench train-CV AIQ",
                _label(aiq_pick),
                rho({v: -c for v, c in measured.items()}),
                *test_cells(aiq_pick),
            ]
        )
    best = {k: max(variants, key=lambda v, k=k: variants[v]["test"][k]) for k in TARGETS}
    if aiq_pick is None:
        aiq_text = "RouterBench AIQ: no `routerbench/` in --data, not measured."
    else:
        test_aiq = {v: r["test"]["routerbench_aiq"] for v, r in variants.items()}
        r_aiq = rank_correlation({v: -c for v, c in measured.items()}, test_aiq)
        top = max(test_aiq, key=test_aiq.__getitem__)
        aiq_text = (
            "*RouterBench AIQ*: the head as the trainer fits it on RouterBench's 0/1 results "
            "(lam by 5-fold squared error on train, the per-LLM affine calibration on "
            "out-of-fold predictions), then `irde_onnx.decision.policy.decide`'s rule "
            "argmax(predicted quality - cost / wtp) with the mean train costs over the wtp "
            "sweep of `benchmarks/routerbench.py` (200 values plus quality only); AIQ is the "
            "area under the quality-cost hull over the single models' cost range. *Train-CV "
            "AIQ*: the same on train with each row predicted by the head fit without its fold "
            f"(the trainer's 5 folds); ◀ is its pick, {_label(aiq_pick)} (test AIQ "
            f"{_num(test_aiq[aiq_pick])}; best on test {_num(test_aiq[top])}, {_label(top)}; "
            "Spearman correlation of train-CV and test AIQ across the variants "
            + ("—" if r_aiq is None else f"{r_aiq:+.2f}")
            + ")."
        )
    chosen = variants[default]["test"]
    met = [
        f"{TITLES[k]} {_pct(chosen[k])} ({'met' if chosen[k] >= t else 'missed'}, target {_pct(t)})"
        for k, t in TARGETS.items()
    ]
    lines = [
        "## Generalisation: input views x pooled layers "
        "(`research/generalisation/views_layers.py`)",
        "",
        header(command_line()),
        f"Run time {seconds / 60:.1f} min ({out['encoded']} texts encoded in this run, the "
        "rest read from the `--cache` of earlier runs of the same graph). MiniLM int8, "
        "max_length 256."
        + (
            f" **Sampled: {args.limit} rows per task (RouterDC) and per domain and source "
            "(domains) (--limit)**."
            if args.limit
            else " All rows of every file."
        ),
        "",
        f"**Default (rule `{DEFAULT_RULE}`): {_label(default)}.** Its test figures: "
        + "; ".join(met)
        + ".",
        "",
        "Each variant is trained on each protocol's training rows (lam by grouped-CV squared "
        "error, as the trainer does) and tested on its test rows: RouterDC test_id / test_ood "
        "(mean over tasks), domains in-source (20% of rows by id hash) and cross-source "
        "(train on each domain's largest source, accuracy on the rows of its other sources), "
        "RouterBench test AIQ (below). "
        "The *default rule* column is the criterion that set the trainer's default "
        f"(`{DEFAULT_RULE}`: {RULES[DEFAULT_RULE][2]}), on training rows only: its mean over "
        "RouterDC train (leave-one-task-out) and the in-source training rows of the domains, "
        "relative to the plain router (`full`, layer 6); lower is better, ◀ is its pick. "
        "*Evaluable* rows: when a whole benchmark is held out, only the rows whose domain "
        "has another benchmark in training (no head can route the others). *Regret*: 1 - "
        "accuracy; for RouterDC the oracle's (best LLM per prompt) mean score minus the "
        "router's. The domain rows a rule sees include the cross-source test rows (the "
        "domains have no split of their own), never the in-source or RouterDC test rows.",
        "",
        aiq_text,
        "",
        markdown_table(
            [
                "view",
                "layers",
                f"default rule ({DEFAULT_RULE}, rel.)",
                "RouterBench AIQ (train CV)",
                "**RouterDC ID**",
                "**RouterDC OOD**",
                "**in-source acc.**",
                "**cross-source acc. (held-out sources)**",
                "**RouterBench AIQ (test)**",
            ],
            rows,
        ),
        "",
        "### What each selection rule picks (training rows only)",
        "",
        "Rules: the mean over RouterDC train and the domains' in-source training rows of a "
        "grouped-CV criterion relative to the plain router. Per protocol: one criterion on "
        "that protocol's own training rows (`cross_source/benchmark` cannot be computed: "
        "there every domain trains on one benchmark). *Rank corr.*: Spearman correlation, "
        "across the variants, between the criterion (lower is better, so negated) and "
        "cross-source test accuracy (for reading only: nothing is chosen by it); the RouterBench "
        "row ranks by train-CV AIQ, higher is better.",
        "",
        markdown_table(
            [
                "rule",
                "picks",
                "rank corr. with cross-source test",
                "RouterDC ID",
                "RouterDC OOD",
                "in-source",
                "cross-source",
                "RouterBench AIQ",
            ],
            rule_rows + proto_rows,
        ),
        "",
        "### Grouped-CV criteria of every variant (training rows only)",
        "",
        "Each cell: held-out squared error / held-out accuracy (RouterDC: mean score of the "
        "chosen LLM over tasks), each at its best lam. `subset`: grouped 5-fold over source "
        "subsets; `benchmark`: leave-one-benchmark-out; `task`: leave-one-task-out.",
        "",
        markdown_table(["view", "layers", *crit_keys], crit_rows),
        "",
        "Targets (int8): cross-source >= 85 with in-source >= 95, RouterDC ID >= 58.5 and "
        "OOD >= 46. Best of any variant on test (for reference only, not a choice): "
        + "; ".join(
            f"{TITLES[k]} {_pct(variants[v]['test'][k])} ({_label(v)})" for k, v in best.items()
        )
        + ".",
        "",
    ]
    return "\n".join(lines) + "\n"


RESULTS = Path(__file__).resolve().parent / "results.json"


def build_parser() -> argparse.ArgumentParser:
    """The command line (also the settings the report renders the committed results with)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding routerdc7/, domains/ and routerbench/ (default ../shared/data)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="keep N rows per task / per domain source (smoke tests)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep encoded features here (npz) to rerun faster"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON of the run")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="file to write the section into (default BENCHMARKS.md)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run every variant; write BENCHMARKS.md's generalisation section and the JSON."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="irde-generalisation-") as tmp:
        out = generalisation(args, Path(tmp))
    text = report_section(out, args, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section("generalisation", text, args.markdown)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(
            json.dumps(plain(json_ready(out)), indent=1, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

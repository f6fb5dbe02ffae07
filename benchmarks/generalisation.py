"""Generalisation part of the quality benchmark: input views x pooled layers, every protocol.

Each variant (an input view of :mod:`irde_onnx.views` and a set of pooled MiniLM layers) is
trained and tested on every protocol in one run: RouterDC ID/OOD (train grouped by task),
domains in-source (train grouped by source benchmark subset) and domains cross-source (train
on each domain's largest source, test on its others). Beside the test numbers, every variant
gets the criterion a user has *without* test data: the grouped cross-validation squared error
of the ridge head on the training rows (what ``RouterTrainer(view="auto", layers="auto")``
minimises), and the grouped-CV decision quality for reference. The variant a user would pick
is the one with the best criterion; the trainer's default is picked by the same rule over
both data sets (README, "How the defaults were chosen").

Features come from one graph pooling every candidate layer from one forward pass, and each
distinct prompt text (after its view) is encoded once and cached on disk by its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from heads import log, routing_utility
from results import Result, label_result, scored_metrics
from splits import Labelled, cross_source_split, in_source_split, load_scored, onehot, read_rows

from irde_onnx.export.selection import block_columns, fold_moments
from irde_onnx.ridge import choose_lam, group_fold_ids, solve
from irde_onnx.runtime.tokenize import prepare_text

VIEWS = ("full", "strip_options", "tail", "strip_options+tail")
LAYER_SETS: tuple[tuple[int, ...], ...] = ((6,), (6, 5))
UNION = (6, 5)
WIDTH = 384
MAX_LENGTH = 256


class TextFeatures:
    """Features of prompt texts by the sha256 of the text, kept in one npz (no pickle)."""

    def __init__(self, path: Path | None, router: Any) -> None:
        self.path = path
        self.router = router
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
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True)
                                     if k not in self.keys))
        if missing:
            start = time.perf_counter()
            log(f"{what}: encoding {len(missing)} new texts ({len(texts)} asked)")
            for i in range(0, len(missing), 1024):
                part = missing[i:i + 1024]
                x = self.router.features(part).astype(np.float32)
                for t in part:
                    self.keys[self.key(t)] = len(self.keys)
                self.rows.append(x)
                self.save()
                log(f"{what}: {i + len(part)}/{len(missing)} in "
                    f"{time.perf_counter() - start:.0f} s")
        x = self.matrix()
        return x[[self.keys[k] for k in keys]]


def viewed(texts: Sequence[str], view: str) -> list[str]:
    """The texts a router with ``view`` tokenizes (before truncation to tokens)."""
    return [prepare_text(t, MAX_LENGTH, view) for t in texts]


def probe_router(threads: int | None, work: Path) -> Any:
    """A MiniLM int8 router pooling layers 6 and 5 (view full): the features of every variant."""
    from irde_onnx.export import RouterTrainer

    texts = ["what is two plus two", "a contract clause", "solve for x", "the law of torts"]
    tr = RouterTrainer(encoder="minilm", precision="int8", threads=threads, progress=False,
                       lam=1.0, view="full", layers=UNION, validate=False)
    tr.fit(texts, ["math", "law", "math", "law"])
    return tr.save(work / "probe-6-5")


def grouped_criteria(x: np.ndarray, y: np.ndarray, fold: np.ndarray, kind: str,
                     tasks: Sequence[str] | None = None) -> dict[str, float]:
    """Grouped-CV squared error (lam chosen on the same folds) and decision quality."""
    lam, errors = choose_lam(fold_moments(x, y, fold))
    pred = np.zeros_like(y)
    total = fold_moments(x, y, np.zeros(len(x), np.int64))[0]
    for f, held in enumerate(fold_moments(x, y, fold)):
        rows = fold == f
        w, b = solve(total - held, lam)
        pred[rows] = x[rows] @ w + b
    if kind == "domain":
        quality = float(np.mean(pred.argmax(1) == y.argmax(1)))
    else:
        quality = routing_utility(pred, y, tasks)
    return {"cv_error": errors[lam], "cv_quality": quality, "lam": lam}


def _columns(layers: tuple[int, ...]) -> np.ndarray:
    return block_columns(UNION, layers, WIDTH)


def _name(view: str, layers: tuple[int, ...]) -> str:
    return f"view {view}, layers {','.join(map(str, layers))}"


def routerdc_variants(data: Path, limit: int | None, feats: TextFeatures) -> list[Result]:
    """RouterDC ID/OOD of every variant; criterion: leave-one-task-out CV on train."""
    folder = data / "routerdc7"
    train = load_scored(folder / "train.jsonl", limit=limit)
    splits = {s: load_scored(folder / f"{s}.jsonl", train.experts, limit)
              for s in ("test_id", "test_ood")}
    fold, method = group_fold_ids(train.tasks)
    out = []
    for view in VIEWS:
        f = {"train": feats.features(viewed(train.texts, view), f"dc-train {view}")}
        for s, split in splits.items():
            f[s] = feats.features(viewed(split.texts, view), f"dc-{s} {view}")
        for layers in LAYER_SETS:
            cols = _columns(layers)
            x = f["train"][:, cols].astype(np.float64)
            crit = grouped_criteria(x, train.y, fold, "score", train.tasks)
            coef, bias = solve(fold_moments(x, train.y, np.zeros(len(x), np.int64))[0],
                               crit["lam"])
            res = Result(_name(view, layers), "generalisation", cv=crit["cv_quality"],
                         note=f"lam {crit['lam']:.3g} ({method} over tasks)",
                         extra={"view": view, "layers": list(layers), **crit})
            for s, split in splits.items():
                res.metrics[s] = scored_metrics(f[s][:, cols] @ coef + bias, split)
            out.append(res)
    log("generalisation: RouterDC variants done")
    return out


def load_domain_rows(folder: Path, limit: int | None) -> tuple[Labelled, list[str]]:
    """Domain rows (duplicates dropped as splits.load_domains does) and each row's subset."""
    from splits import limit_rows, source_of

    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += limit_rows(read_rows(path), lambda r: f"{r['domain']}|{source_of(r)}", limit)
    seen: set[str] = set()
    kept = []
    for r in rows:
        if r["text"] not in seen:
            seen.add(r["text"])
            kept.append(r)
    data = Labelled([str(r["id"]) for r in kept], [r["text"] for r in kept],
                    [r["domain"] for r in kept], [source_of(r) for r in kept],
                    duplicates_dropped=len(rows) - len(kept))
    return data, [str(r["source"]) for r in kept]


def domain_variants(data_dir: Path, limit: int | None, feats: TextFeatures
                    ) -> dict[str, list[Any]]:
    """In-source and cross-source accuracy of every variant; criterion: CV grouped by subset."""
    data, subsets = load_domain_rows(data_dir / "domains", limit)
    classes = sorted(set(data.labels))
    subsets_arr = np.array(subsets)
    masks = {"in_source": (in_source_split(data), None)}
    test_cross, unseen, _ = cross_source_split(data)
    masks["cross_source"] = (test_cross, unseen)
    out: dict[str, list[Any]] = {"in_source": [], "cross_source": [], "all_rows": []}
    y_all = onehot(data.labels, classes)
    fold_all, _ = group_fold_ids(data.sources)  # leave-one-benchmark-out over every row
    for view in VIEWS:
        x_view = feats.features(viewed(data.texts, view), f"domains {view}")
        for layers in LAYER_SETS:
            x_all = x_view[:, _columns(layers)].astype(np.float64)
            crit_all = grouped_criteria(x_all, y_all, fold_all, "domain")
            out["all_rows"].append({"view": view, "layers": list(layers), **crit_all})
            for split, (test_mask, unseen_mask) in masks.items():
                train, test = data.take(~test_mask), data.take(test_mask)
                x, xt = x_all[~test_mask], x_all[test_mask]
                ytr = onehot(train.labels, classes)
                fold, method = group_fold_ids(subsets_arr[~test_mask])
                crit = grouped_criteria(x, ytr, fold, "domain")
                coef, bias = solve(fold_moments(x, ytr, np.zeros(len(x), np.int64))[0],
                                   crit["lam"])
                res = label_result(_name(view, layers), "generalisation", xt @ coef + bias,
                                   classes, test,
                                   None if unseen_mask is None else unseen_mask[test_mask],
                                   crit["cv_quality"],
                                   f"lam {crit['lam']:.3g} ({method} over source subsets)")
                res.extra = {"view": view, "layers": list(layers), **crit}  # type: ignore[attr-defined]
                out[split].append(res)
    log("generalisation: domain variants done")
    return out


def default_rule(routerdc: list[Result], all_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The trainer's default: lowest mean grouped-CV error relative to the plain router.

    Over RouterDC train (grouped by task) and every domain row (grouped by source
    benchmark); no test row is used.
    """
    base_dc = next(r.extra["cv_error"] for r in routerdc
                   if r.extra["view"] == "full" and r.extra["layers"] == [6])
    base_dom = next(r["cv_error"] for r in all_rows
                    if r["view"] == "full" and r["layers"] == [6])
    table = []
    for r in routerdc:
        dom = next(d for d in all_rows
                   if d["view"] == r.extra["view"] and d["layers"] == r.extra["layers"])
        rel = (r.extra["cv_error"] / base_dc + dom["cv_error"] / base_dom) / 2
        table.append({"view": r.extra["view"], "layers": r.extra["layers"],
                      "relative_cv_error": rel, "routerdc_cv_error": r.extra["cv_error"],
                      "domains_cv_error": dom["cv_error"]})
    chosen = min(table, key=lambda t: t["relative_cv_error"])
    return {"chosen": chosen, "table": table}


def generalisation(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every variant on every protocol, with its grouped-CV criterion."""
    from irde_onnx.runtime import Router

    router = Router.load(probe_router(args.threads, work), threads=args.threads)

    def cache(part: str) -> TextFeatures:
        # one file per data set, so two processes can fill them at the same time
        if args.cache is None:
            return TextFeatures(None, router)
        args.cache.mkdir(parents=True, exist_ok=True)
        name = f"text-features-{router.config.fingerprint[:16]}-{part}.npz"
        return TextFeatures(args.cache / name, router)

    out: dict[str, Any] = {}
    if args.part in ("all", "routerdc", "generalisation"):
        out["routerdc"] = routerdc_variants(args.data, args.limit, cache("routerdc"))
    if args.part in ("all", "domains", "generalisation"):
        out.update(domain_variants(args.data, args.limit, cache("domains")))
    if "routerdc" in out and "all_rows" in out:
        out["default"] = default_rule(out["routerdc"], out["all_rows"])
    return out


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def report_section(out: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    """The markdown section: one row per variant, every protocol, the criterion beside it."""
    from _report import command_line, header, markdown_table

    dc = {r.name: r for r in out.get("routerdc", [])}
    ins = {r.name: r for r in out.get("in_source", [])}
    cross = {r.name: r for r in out.get("cross_source", [])}
    names = list(dict.fromkeys([*dc, *ins]))
    default = out.get("default", {})
    rel = {(t["view"], tuple(t["layers"])): t["relative_cv_error"]
           for t in default.get("table", [])}
    picks = {}
    for title, table in (("routerdc", dc), ("in", ins), ("cross", cross)):
        if table:
            picks[title] = min(table.values(), key=lambda r: r.extra["cv_error"]).name
    rows = []
    for name in names:
        r, i, c = dc.get(name), ins.get(name), cross.get(name)
        extra = (r or i).extra
        key = (extra["view"], tuple(extra["layers"]))

        def mark(res: Any, title: str) -> str:
            return " ◀" if res is not None and picks.get(title) == res.name else ""

        rows.append([
            f"`{extra['view']}`", ",".join(map(str, extra["layers"])),
            f"{rel[key]:.4f}" if key in rel else "—",
            f"{r.extra['cv_error']:.4f}{mark(r, 'routerdc')}" if r else "—",
            f"**{_pct(r.metrics['test_id']['mean']['router'])}**" if r else "—",
            f"**{_pct(r.metrics['test_ood']['mean']['router'])}**" if r else "—",
            f"{i.extra['cv_error']:.4f}{mark(i, 'in')}" if i else "—",
            f"**{_pct(i.metrics['accuracy'])}**" if i else "—",
            f"{c.extra['cv_error']:.4f}{mark(c, 'cross')}" if c else "—",
            f"**{_pct((c.unseen or c.metrics)['accuracy'])}**" if c else "—",
        ])
    chosen = default.get("chosen")
    lines = [
        "## Generalisation: input views x pooled layers (`benchmarks/quality.py --part "
        "generalisation`)", "", header(command_line()),
        f"Run time {seconds / 60:.1f} min. MiniLM int8, one prompt per onnxruntime call, "
        "max_length 256."
        + (f" **Sampled: {args.limit} rows per task (RouterDC) and per domain and source "
           "(domains) (--limit)**." if args.limit else " All rows of every file."), "",
        "Each variant is trained on each protocol's training rows and tested on its test "
        "rows. The *grouped-CV error* columns are the selection criterion a user has "
        "without test data: the held-out squared error of the ridge head (lam chosen on the "
        "same folds), with RouterDC training rows grouped by task (leave-one-task-out) and "
        "domain training rows grouped by source subset (e.g. `mmlu/anatomy`, "
        "`legalbench/abercrombie`; grouped 5-fold). ◀ marks the variant the criterion "
        "picks on that protocol. *Default rule* is the trainer's: the mean over RouterDC "
        "train (leave-one-task-out) and all domain rows (leave-one-benchmark-out) of the "
        "grouped-CV error relative to `full`, layer 6 (lower is better); its best variant "
        "is the trainer's default (`irde_onnx/defaults.py`).", "",
        markdown_table(["view", "layers", "default rule (rel. CV error)",
                        "RouterDC grouped-CV error", "**RouterDC ID**", "**RouterDC OOD**",
                        "in-source grouped-CV error", "**in-source acc.**",
                        "cross-source grouped-CV error",
                        "**cross-source acc. (held-out sources)**"], rows), "",
    ]
    best = {}
    for title, table, get in (
            ("RouterDC ID", dc, lambda r: r.metrics["test_id"]["mean"]["router"]),
            ("RouterDC OOD", dc, lambda r: r.metrics["test_ood"]["mean"]["router"]),
            ("in-source", ins, lambda r: r.metrics["accuracy"]),
            ("cross-source", cross, lambda r: (r.unseen or r.metrics)["accuracy"])):
        if table:
            top = max(table.values(), key=get)
            best[title] = f"{_pct(get(top))} ({top.name})"
    if best:
        lines += ["Targets (int8): cross-source >= 85 with in-source >= 95, RouterDC ID >= "
                  "58.5 and OOD >= 46. Best of any variant on test in this run (for reference "
                  "only, not a choice): " + "; ".join(f"{k} {v}" for k, v in best.items())
                  + ".", ""]
    if chosen:
        lines += [f"Default rule picks view `{chosen['view']}`, layers "
                  f"{chosen['layers'] or 'last'} (relative CV error "
                  f"{chosen['relative_cv_error']:.4f}).", ""]
    return "\n".join(lines) + "\n"

"""Report of the quality benchmark: markdown tables, charts and a JSON-ready copy."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import command_line, header, markdown_table
from benchmarks.results import LabelResult, Result
from benchmarks.trained import is_pooled

# The data README's reference points (computed from the files; the run recomputes them).
README_REFERENCES = [
    ("RouterDC, published (paper)", 58.54, None),
    ("best single LLM (dolphin-2.9-llama3-8b), chosen on test", 54.56, 43.95),
    ("random router (expected)", 47.67, 38.02),
    ("each task's best LLM, chosen on test (needs the task label)", 58.70, 46.36),
    ("oracle (best LLM per prompt)", 77.52, 70.34),
]
TARGETS = {"id": 58.54, "ood": 43.95, "in_source": 0.97, "cross_source": 0.90}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def routerdc_table(part: dict[str, Any]) -> str:
    """The RouterDC table: every task and both means, in percent."""
    id_tasks, ood_tasks = part["tasks"]["test_id"], part["tasks"]["test_ood"]
    head = (
        ["router", "train CV"]
        + id_tasks
        + ["**ID mean** ± s.e."]
        + ood_tasks
        + ["**OOD mean** ± s.e.", "note"]
    )
    rows = []
    for r in part["results"]:
        cells = [r.name, _pct(r.cv)]
        for split, tasks in (("test_id", id_tasks), ("test_ood", ood_tasks)):
            m = r.metrics[split]
            cells += [_pct(m["tasks"][t]["router"]) for t in tasks]
            se = m["mean"].get("bootstrap_se")
            cells.append(
                f"**{_pct(m['mean']['router'])}**" + ("" if se is None else f" ± {100 * se:.2f}")
            )
        rows.append(cells + [r.note])
    refs = part["references"]
    oracle = ["oracle (best LLM per prompt), this run", "—"]
    per_task = ["each task's best LLM chosen on test, this run", "—"]
    for split, tasks in (("test_id", id_tasks), ("test_ood", ood_tasks)):
        m = part["results"][-1].metrics[split]
        oracle += [_pct(m["tasks"][t]["oracle"]) for t in tasks] + [_pct(refs[split]["oracle"])]
        per_task += [_pct(m["tasks"][t]["best_expert"]["score"]) for t in tasks] + [
            _pct(refs[split]["best_expert_per_task"])
        ]
    rows += [oracle + ["upper bound"], per_task + ["needs the task label; not a router"]]
    blank = ["—"] * len(id_tasks)
    blank_ood = ["—"] * len(ood_tasks)
    for name, id_mean, ood_mean in README_REFERENCES:
        rows.append(
            [
                f"*{name}* (fixed)",
                "—",
                *blank,
                f"{id_mean:.2f}",
                *blank_ood,
                "—" if ood_mean is None else f"{ood_mean:.2f}",
                "data README / paper",
            ]
        )
    return markdown_table(head, rows)


def chosen_table(part: dict[str, Any]) -> str:
    """How often each LLM is chosen on test_id + test_ood by the irde routers."""
    experts = part["experts"]
    rows = []
    for r in part["results"]:
        if r.kind != "irde":
            continue
        for split in ("test_id", "test_ood"):
            rows.append(
                [r.name, split] + [f"{100 * r.metrics[split]['chosen'][e]:.1f}" for e in experts]
            )
    return markdown_table(["router", "split"] + experts, rows)


def domain_table(part: dict[str, Any]) -> str:
    """Accuracy and macro-F1 on both domain splits."""
    ins, cross = part["in_source"], part["cross_source"]
    by_name = {r.name: r for r in cross["results"]}
    rows = []
    for r in ins["results"]:
        c = by_name.get(r.name) or next(
            (x for x in cross["results"] if x.name.split(" (")[0] == r.name.split(" (")[0]), None
        )
        cells = [r.name, _pct(r.cv), _pct(r.metrics["accuracy"]), _pct(r.metrics["macro_f1"])]
        if c is None:
            cells += ["—"] * 5
        else:
            u = c.unseen or {}
            cells += [
                _pct(c.cv),
                f"**{_pct(u.get('accuracy'))}**",
                _pct(u.get("macro_f1")),
                _pct(c.metrics["accuracy"]),
                _pct(c.metrics["macro_f1"]),
            ]
        rows.append(
            cells + [r.note if c is None or c.note == r.note else f"{r.note}; cross: {c.note}"]
        )
    return markdown_table(
        [
            "router",
            "in-source train CV acc",
            "**in-source accuracy**",
            "in-source macro-F1",
            "cross train CV acc",
            "**cross-source accuracy (held-out sources)**",
            "cross macro-F1 (held-out sources)",
            "cross accuracy (all test rows)",
            "cross macro-F1 (all test rows)",
            "note",
        ],
        rows,
    )


def recall_table(part: dict[str, Any], name: str) -> str:
    """Per-domain recall of one router on both splits."""
    ins = next(r for r in part["in_source"]["results"] if r.name == name)
    cross = next(r for r in part["cross_source"]["results"] if r.name == name)
    classes = part["in_source"]["classes"]
    rows = []
    for c in classes:
        u = (cross.unseen or {}).get("per_class", {}).get(c)
        i = ins.metrics["per_class"].get(c)
        rows.append(
            [
                c,
                i["support"] if i else 0,
                _pct(i["recall"]) if i else "—",
                part["cross_source"]["train_source"].get(c, "(in-source split)"),
                u["support"] if u else "—",
                _pct(u["recall"]) if u else "—",
            ]
        )
    return markdown_table(
        [
            "domain",
            "in-source test rows",
            "in-source recall",
            "cross: trained on",
            "cross: held-out rows",
            "cross: recall",
        ],
        rows,
    )


def targets_table(out: dict[str, Any], encoders: Sequence[str]) -> str:
    """The issue's quality targets for the minilm routers (defaults, and the train-CV pick)."""
    rows = []
    minilm = [e for e in encoders if is_pooled(e)]

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
                row(f"{label}: OOD mean > {TARGETS['ood']}", m_ood, 100 * m_ood > TARGETS["ood"])
        if "domains" in out:
            for r in out["domains"]["in_source"]["results"]:
                if r.name == f"irde {name}":
                    acc = r.metrics["accuracy"]
                    row(f"{r.name}: in-source accuracy >= 97%", acc, acc >= TARGETS["in_source"])
            for r in out["domains"]["cross_source"]["results"]:
                if r.name == f"irde {name}" and r.unseen:
                    acc = r.unseen["accuracy"]
                    row(
                        f"{r.name}: cross-source accuracy >= 90% (held-out sources)",
                        acc,
                        acc >= TARGETS["cross_source"],
                    )
    return markdown_table(["target", "measured", "status"], rows)


def draw_charts(out: dict[str, Any], folder: Path) -> list[Path]:
    """PNG charts: RouterDC means, RouterDC per task, domain accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if "routerdc" in out:
        part = out["routerdc"]
        shown = [
            r for r in part["results"] if r.kind in ("irde", "baseline") or r.extra.get("selected")
        ]
        names = [r.name for r in shown]
        fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(shown) + 1.8), sharey=True)
        refs = part["references"]
        for ax, split, target, title in (
            (axes[0], "test_id", TARGETS["id"], "in-distribution"),
            (axes[1], "test_ood", TARGETS["ood"], "out-of-distribution"),
        ):
            vals = [100 * r.metrics[split]["mean"]["router"] for r in shown]
            colors = [
                "tab:blue"
                if r.kind == "irde"
                else "tab:green"
                if r.kind == "variant"
                else "tab:gray"
                for r in shown
            ]
            ax.barh(range(len(shown)), vals, color=colors)
            for i, v in enumerate(vals):
                ax.text(v + 0.2, i, f"{v:.2f}", va="center", fontsize=8)
            ax.axvline(target, color="red", ls="--", lw=1, label=f"target {target:.2f}")
            ax.axvline(
                100 * refs[split]["oracle"],
                color="black",
                ls=":",
                lw=1,
                label=f"oracle {100 * refs[split]['oracle']:.2f}",
            )
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
            r for r in part["results"] if r.kind == "baseline" and "random" not in r.name
        ]
        fig, ax = plt.subplots(figsize=(13, 5))
        width = 0.8 / len(main_rows)
        for j, r in enumerate(main_rows):
            vals = [
                100
                * r.metrics["test_id" if t in part["tasks"]["test_id"] else "test_ood"]["tasks"][t][
                    "router"
                ]
                for t in tasks
            ]
            ax.bar(np.arange(len(tasks)) + j * width, vals, width, label=r.name)
        any_row = part["results"][-1]
        oracle = [
            100
            * any_row.metrics["test_id" if t in part["tasks"]["test_id"] else "test_ood"]["tasks"][
                t
            ]["oracle"]
            for t in tasks
        ]
        ax.scatter(
            np.arange(len(tasks)) + 0.4 - width / 2,
            oracle,
            marker="_",
            s=600,
            color="black",
            label="oracle",
        )
        ax.set_xticks(
            np.arange(len(tasks)) + 0.4 - width / 2,
            [t + (" (OOD)" if t in part["tasks"]["test_ood"] else "") for t in tasks],
            fontsize=8,
        )
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
        b = [
            100 * ((cross[n].unseen or cross[n].metrics)["accuracy"]) if n in cross else 0.0
            for n in names
        ]
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


def plain(obj: Any) -> Any:
    """JSON-ready copy of results (dataclasses to dicts, arrays dropped)."""
    if isinstance(obj, (Result, LabelResult)):
        d = {k: plain(v) for k, v in obj.__dict__.items() if k != "extra"}
        if isinstance(obj, Result):
            d["variant"] = {k: v for k, v in obj.extra.items() if not isinstance(v, np.ndarray)}
        return d
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def from_plain(obj: Any) -> Any:
    """The inverse of :func:`plain` for ``quality.json``: result rows back to dataclasses."""
    if isinstance(obj, dict) and {"name", "kind", "metrics", "cv", "note"} <= set(obj):
        fields = {k: obj[k] for k in ("name", "kind", "metrics", "cv", "note")}
        if "variant" in obj:
            return Result(**fields, extra=obj["variant"])
        return LabelResult(**fields, unseen=obj.get("unseen"))
    if isinstance(obj, dict):
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


def report(
    out: dict[str, Any], args: argparse.Namespace, seconds: float, charts: list[Path]
) -> str:
    """The markdown section of BENCHMARKS.md."""
    default = args.encoders[0]
    lines = [
        "## Routing quality (`benchmarks/quality.py`)",
        "",
        header(command_line()),
        f"Run time {seconds / 60:.1f} min. Threads: "
        f"{args.threads or 'onnxruntime default'}."
        + (
            f" **Sampled: {args.limit} rows per task/source (--limit)**."
            if args.limit
            else " All rows of every file."
        ),
        "",
        "Every choice (lam, k, C, targets, strategy) is made by 5-fold cross-validation "
        "on the training rows; test rows are only scored. The *train CV* column is that "
        "criterion (routing score or accuracy on held-out train folds).",
        "",
    ]
    if "routerdc" in out:
        part = out["routerdc"]
        n = part["n"]
        lines += [
            "### RouterDC protocol (`routerdc7/`)",
            "",
            f"Trained on train.jsonl ({n['train']} prompts, the 7 LLMs' scores as targets), "
            f"scored on test_id ({n['test_id']}) and test_ood ({n['test_ood']}): per task the "
            "mean score (%) of the LLM each router picks, and the plain mean over tasks. "
            "`irde ...` rows are RouterTrainer's defaults (lam by 5-fold CV on squared "
            "error). Baselines use the "
            f"`{args.baseline_features}` features of the same prompts. Random is the expected "
            "value of a uniform choice. Ties in a baseline's scores go to the LLM with the "
            "best mean train score.",
            "",
            routerdc_table(
                {**part, "results": [r for r in part["results"] if r.kind != "variant"]}
            ),
            "",
            "#### Candidate improvements of the head (chosen on train)",
            "",
            "Targets: the raw scores; each task's mean scores; those standardised across the "
            "7 LLMs within the task; the one-hot of the task's best LLM (a domain target); raw "
            "scores plus the task-standardised ones. Each with and without feature "
            "standardisation (foldable into the head: the router stays one graph). lam "
            "by routing CV for each. The row marked *selected* has the best train CV.",
            "",
            routerdc_table(
                {**part, "results": [r for r in part["results"] if r.kind == "variant"]}
            ).split("\n| oracle")[0],
            "",
            "How often each LLM is chosen (%):",
            "",
            chosen_table(part),
            "",
            "Checks in this run: "
            + "; ".join(
                f"{k}: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
                for k, v in part["checks"].items()
            )
            + ".",
            "",
        ]
    if "domains" in out:
        dom = out["domains"]
        cross = dom["cross_source"]
        lines += [
            "### Domain routing (`domains/`)",
            "",
            f"{dom['n']} prompts in 10 domains ({dom['duplicates_dropped']} exact duplicate "
            "texts dropped). *In-source*: test = rows whose sha256(id) mod 5 is 0 "
            f"({dom['in_source']['n_test']} test, {dom['in_source']['n_train']} train). "
            "*Cross-source*: each domain with several source benchmarks trains on its largest "
            "source and is tested on the others ("
            + ", ".join(f"{d}: {s}" for d, s in cross["train_source"].items())
            + "); single-source domains are split by id hash as above and stay in both sets "
            f"({cross['n_train']} train, {cross['n_test']} test, of which {cross['n_unseen']} "
            "from held-out sources; the headline column counts only those). minilm heads "
            "are fit with `irde_onnx.learning.moments` on the router's own features (what "
            "RouterTrainer "
            "computes; checked below), the static router with RouterTrainer.",
            "",
            domain_table(dom),
            "",
            f"Per-domain recall of `irde {default}`:",
            "",
            recall_table(dom, f"irde {default}")
            if any(r.name == f"irde {default}" for r in dom["in_source"]["results"])
            else "",
            "",
            "Checks in this run: "
            + "; ".join(
                f"{k}: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
                for k, v in dom["checks"].items()
            )
            + ".",
            "",
        ]
    lines += ["### Quality targets (minilm routers)", "", targets_table(out, args.encoders), ""]
    lines += [f"![{p.stem}](benchmarks/results/{p.name})" for p in charts]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items()) + "}"
    return str(v)

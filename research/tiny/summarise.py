"""Print the README's tables from results.json (``python -m research.tiny.summarise``)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def mb(x: int) -> str:
    return f"{x / 1e6:.2f}"


def main() -> None:
    r = json.loads((HERE / "results.json").read_text())["grids"]
    for name, g in r.items():
        print(f"\n### {name}: {g['n_train']} train / {g['n_test']} test rows; CV {g['cv']}\n")
        print("| N | unknown | L2 | k | precision | kept rows | MB | CV acc | CV sq. err | lam |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in g["stage1"] + g["stage2"]:
            print(
                f"| {row['N']} | {row['unknown']} | {row['normalize']} | {row['k']} | "
                f"{row['precision']} | {row['kept_rows']} | {mb(row['bytes'])} | "
                f"{pct(row['cv_accuracy'])} | {row['cv_sq_error']:.4f} | {row['lam']:.3g} |"
            )
        t, ts = g["test"], g["test_lam_T_by_shuffled_folds"]
        print(f"\nchosen {g['chosen']}")
        other = (
            [("other protocol's pick", g["test_of_other_protocols_pick"])]
            if ("test_of_other_protocols_pick" in g)
            else []
        )
        for label, x in (
            [("chosen, grouped folds", t), ("chosen, shuffled folds", ts)]
            + other
            + [(f"full table fp32 384, {k}", v) for k, v in g["full_table_fp32_384"].items()]
        ):
            print(
                f"- {label}: test {pct(x['accuracy_heldout'])} (all test rows "
                f"{pct(x['accuracy_all_test'])}), lam {x['lam']:.3g}, T {x['temperature']:.3f}, "
                f"ECE {x['ece_T']:.3f} (T=1: {x['ece_T1']:.3f}), {mb(x['bytes'])} MB"
            )
        for key in ("static", "static_lam_by_shuffled_folds"):
            s = g[key]
            print(
                f"- static ({s['folds']}, lam {s['lam']:.3g}): vote "
                f"{pct(s['vote']['accuracy_heldout'])}, mean {pct(s['mean']['accuracy_heldout'])}"
            )
        for key in ("route_time", "graph_check"):
            if key in g:
                print(f"- {key} {g[key]}")
        for label, a in g.get("added_expert", {}).items():
            print(f"\nadded expert ({label} {a.get('setting', '')}):\n")
            print("| domain | unknown share | recall kept | recall added | acc kept | acc added |")
            print("|---|---|---|---|---|---|")
            for d, v in a["per_domain"].items():
                print(
                    f"| {d} | {pct(v['unknown_share_added'])} | {pct(v['recall_kept'])} | "
                    f"{pct(v['recall_added'])} | {pct(v['accuracy_kept'])} | "
                    f"{pct(v['accuracy_added'])} |"
                )
            print(
                f"mean recall drop {pct(a['mean_recall_drop'])}, worst "
                f"{pct(a['worst_recall_drop'])}, mean accuracy drop {pct(a['mean_accuracy_drop'])}"
            )


if __name__ == "__main__":
    main()

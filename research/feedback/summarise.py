"""Print the markdown tables of README.md from results.json (no computation).

python research/feedback/summarise.py [--results research/feedback/results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ci(v: dict, scale: float = 100.0, sign: bool = False) -> str:
    f = "{:+.2f}" if sign else "{:.2f}"
    return f"{f.format(scale * v['mean'])} [{f.format(scale * v['ci95'][0])}, {f.format(scale * v['ci95'][1])}]"


def streams(r: dict, key: str) -> None:
    if key not in r:
        return
    s = r[key]
    print(
        f"\n#### {key} (batch {s['batch']}, lam rule {s.get('lam_rule', 'fixed')}, {s['seeds']} seeds, {s['seconds']:.0f} s)\n"
    )
    off = s["summary"]["offline"]
    rb = "utility" in off
    if rb:
        print(
            f"offline (all train rows, full information): utility {ci(off['utility'])}, quality {ci(off['quality'])}\n"
        )
        print(
            "| policy | utility after the stream | quality | delta utility vs offline (points) | ahead every seed |"
        )
        print("|---|---|---|---|---|")
    else:
        extra = (
            f", the start router without feedback {ci(off['start_router_last_half'])}"
            if "start_router_last_half" in off
            else ""
        )
        print(
            f"offline full-information router, last half: {ci(off['last_half'])}; oracle {ci(off['oracle_last_half'])}{extra}\n"
        )
        print(
            "| policy | last-half reward | delta vs offline (points) | ahead every seed | per-seed delta |"
        )
        print("|---|---|---|---|---|")
    for name, v in s["summary"].items():
        if name == "offline":
            continue
        if rb:
            print(
                f"| {name} | {ci(v['utility'])} | {ci(v['quality'])} | {ci(v['delta_utility_vs_offline'], sign=True)} | {v['ahead_on_every_seed']} |"
            )
        else:
            per = " ".join(f"{100 * x:+.2f}" for x in v["delta_vs_offline"]["per_seed"])
            om = f" (omega at the end: {v['omega_used_last']})" if "omega_used_last" in v else ""
            print(
                f"| {name}{om} | {ci(v['last_half'])} | {ci(v['delta_vs_offline'], sign=True)} | {v['ahead_on_every_seed']} | {per} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", type=Path, default=HERE / "results.json")
    r = json.loads(ap.parse_args().results.read_text())
    if "domains-cross-source" in r:
        d = r["domains-cross-source"]["summary"]
        print(
            "\n#### domains cross-source: accuracy (%) on the rest of the held-out-source prompts\n"
        )
        print("| rule | after 50 | after 200 | after 500 | after the first half |")
        print("|---|---|---|---|---|")
        print(f"| offline (no feedback) | {ci(d['offline'])} | | | |")
        for rule in ["omega=1.0", "omega=0.3", "omega=0.1", "omega=0.03", "omega=0.01", "preq"]:
            cells = [ci(d[f"{rule} after {m}"]) for m in ("50", "200", "500", "all first half")]
            print(f"| {rule} | " + " | ".join(cells) + " |")
    for key in sorted(k for k in r if k.startswith(("dc-", "routerbench"))):
        streams(r, key)
    for key in ("add_expert", "add_expert_lcb", "add_expert_kappa", "add_expert_run1_8rules"):
        if key not in r:
            continue
        print(f"\n#### {key}: worst loss (points, mean over seeds) over the 7 LLMs\n")
        print(
            "| rule | worst, n >= 50 | worst, all n | worst single seed, n >= 50 | dolphin-2.9 delta at n = 25/50/100/200/400 |"
        )
        print("|---|---|---|---|---|")
        for rule, v in r[key]["rules"].items():
            dd = v["dolphin-2.9_delta_by_n"]
            dol = " / ".join(f"{dd[str(n)]['mean']:+.2f}" for n in (25, 50, 100, 200, 400))
            print(
                f"| {rule} | {v['worst_mean_delta_n>=50']:+.2f} | {v['worst_mean_delta_all_n']:+.2f} | {v['worst_single_seed_n>=50']:+.2f} | {dol} |"
            )
    if "bonus_cost" in r:
        print("\n#### uncertainty output cost (ONNX, batch 1, 1 thread)\n")
        print("| bonus | float32 bytes | flops | p50 (ms) | share of route() at 64 / 16 tokens |")
        print("|---|---|---|---|---|")
        for k, v in r["bonus_cost"].items():
            print(
                f"| {k} | {v['bytes_float32'] / 1e6:.3f} MB | {v['flops'] / 1e6:.3f} M | {v['p50_ms_batch1_1thread']:.4f} | "
                f"{100 * v['share_of_route_64tok']:.1f}% / {100 * v['share_of_route_16tok']:.1f}% |"
            )


if __name__ == "__main__":
    main()

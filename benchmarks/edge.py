"""Edge figures: size on disk, peak RSS, cold start and per-route time of each demo router.

Routers: the demo routers of the JS tests (static fp16 vote, MiniLM fp32 with the view
``strip_options+tail`` and layers 6,5, MiniLM int8, tiny int8), built by
conformance/make_golden.py into js/test/routers when missing. A row is a name in ROUTERS (how
to get the router's folder), or ``--router NAME=PATH`` for a router already on disk: a new
encoder gets its row by name.

Each measurement runs in fresh processes with one intra-op thread, through the public runtime
(``irde_onnx.runtime.Router``):
  - size on disk: the files of the router folder;
  - cold start: from spawning ``python`` to the first ``Router.route([prompt])`` returned
    (interpreter start, imports, load, one 64-token prompt; the disk cache is warm), median
    of --cold fresh processes;
  - per route: p50 / p99 of ``Router.route([prompt])`` at batch 1 over --n prompts of 64
    tokens (real RouterDC prompts cut to exactly 64 tokens, [CLS] and [SEP] included, before
    the router's input view), after 10 warm-up calls;
  - peak RSS: VmHWM of that process after all its routes.
With --arm64 the same worker also runs on aarch64 under QEMU (the sysroot, wheels and cache
of .ci/arm64, which must have run first): its scores are compared with x86's on the same
prompts. That is a correctness check only: its times are emulation, not ARM speed.

    .venv/bin/python -m benchmarks.edge                  # x86, writes BENCHMARKS.md + JSON
    .venv/bin/python -m benchmarks.edge --arm64          # plus the emulated aarch64 check
    .venv/bin/python -m benchmarks.edge --quick --router toy=PATH --only toy --synthetic \\
        --md /tmp/edge.md --json /tmp/edge.json          # a smoke run (tests/test_bench_edge.py)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    ROOT,
    command_line,
    header,
    markdown_table,
    write_section,
)

LENGTH = 64  # tokens per timed prompt
WARMUP = 10
SECTION = "edge"
GOLDEN_ROUTERS = ROOT / "js" / "test" / "routers"
ARM64 = ROOT / "build" / "arm64"  # .ci/arm64's cache: sysroot, site-packages
ARM64_CPU = "neoverse-n1"
# prompts timed per router under emulation (QEMU runs float SIMD in software: fp32 MiniLM is
# about 400x slower than on x86, int8 about 150x)
ARM64_PROMPTS = {"static": 30, "fp32": 3, "int8": 10, "tiny": 30}
ARM64_PROMPTS_DEFAULT = 5
# sentences for --synthetic prompts (no ../shared/data): any tokenizer cuts them to 64 tokens
SYNTHETIC = [
    "Solve the equation 3x + 5 = 20 and explain every step of the integral.",
    "Which court hears an appeal of a contract dispute under the statute?",
    "Fix the bug in this python function that loops over a list and returns the sum.",
    "What is the first treatment for high blood pressure in an adult patient?",
]


def demo_router(name: str) -> Callable[[], Path]:
    """The folder of a demo router of conformance/make_golden.py (built when missing)."""

    def get() -> Path:
        folder = GOLDEN_ROUTERS / name
        if not (folder / "router.json").is_file():
            log(f"building the demo routers in {GOLDEN_ROUTERS} (conformance/make_golden.py)")
            subprocess.run(
                [sys.executable, str(ROOT / "conformance" / "make_golden.py"), "--check"],
                check=True,
            )
        return folder

    return get


# name -> (description, how to get its folder). A new router is one more entry.
ROUTERS: dict[str, tuple[str, Callable[[], Path]]] = {
    "static": ("static fp16, vote", demo_router("static")),
    "fp32": ("MiniLM fp32, layers 6,5, view strip_options+tail", demo_router("fp32")),
    "int8": ("MiniLM int8, last layer", demo_router("int8")),
    "tiny": ("tiny int8: kept table rows, k 256, mean", demo_router("tiny")),
}


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[edge {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """VmHWM of /proc/self/status, MiB (ru_maxrss would count the parent's memory at fork)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# -- the worker: a fresh process per measurement -----------------------------------------------
def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Import, load and route one prompt (the cold start); then time ``spec["prompts"]``."""
    t0 = time.monotonic()
    from irde_onnx.runtime import Router

    t_import = time.monotonic()
    router = Router.load(spec["router"], threads=1)
    t_load = time.monotonic()
    router.route([spec["first"]])
    t_first = time.monotonic()
    out: dict[str, Any] = {
        # CLOCK_MONOTONIC is system-wide: the parent subtracts its spawn time
        "first_route_at": t_first,
        "started_at": t0,
        "import_ms": (t_import - t0) * 1e3,
        "load_ms": (t_load - t_import) * 1e3,
        "first_route_ms": (t_first - t_load) * 1e3,
    }
    prompts = spec.get("prompts") or []
    if prompts:
        for text in (prompts * WARMUP)[: spec.get("warmup", WARMUP)]:
            router.route([text])
        times, scores = [], []
        for text in prompts:
            s = time.perf_counter()
            route = router.route([text], top_k=len(router.experts))[0]
            times.append((time.perf_counter() - s) * 1e3)
            scores.append([route.scores[e] for e in router.experts])
        out.update(times_ms=times, scores=scores, experts=router.experts)
    out["rss_mb"] = peak_rss_mb()
    return out


def spawn(
    spec: dict[str, Any], prefix: Sequence[str] = (), env: dict | None = None, cwd: Path = ROOT
) -> dict:
    """Run :func:`worker` in a fresh process (``prefix``: e.g. qemu); add the cold start.

    ``python -m benchmarks.edge`` imports from ``cwd`` first: the checkout on x86; for aarch64
    a folder with no packages, so ``irde_onnx`` comes from the wheel on its PYTHONPATH.
    """
    spec = {**spec, "router": str(Path(spec["router"]).resolve())}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh, ensure_ascii=True)
    try:
        python = spec.get("python", sys.executable)
        cmd = [*prefix, python, "-m", "benchmarks.edge", "--worker", fh.name]
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    finally:
        os.unlink(fh.name)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["cold_start_ms"] = (result["first_route_at"] - t0) * 1e3
    result["interpreter_ms"] = (result["started_at"] - t0) * 1e3
    return result


# -- prompts -------------------------------------------------------------------------------------
def prompts_of(tokenizer: Path, n: int, data: Path, synthetic: bool) -> list[str]:
    """``n`` prompts of LENGTH tokens for the router's tokenizer (real or --synthetic texts)."""
    from benchmarks.speed import exact_length_prompts, load_texts

    texts = SYNTHETIC if synthetic else load_texts(data, limit=max(4 * n, 400))
    return exact_length_prompts(texts, tokenizer, LENGTH, n)


def folder_mb(folder: Path) -> float:
    """Size of the files of a router folder, MiB."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation, as numpy's default)."""
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def measure(name: str, folder: Path, prompts: list[str], cold: int) -> dict[str, Any]:
    """One router on x86: ``cold`` fresh cold starts, the first of which also times."""
    runs = [spawn({"router": str(folder), "first": prompts[0], "prompts": prompts})]
    runs += [spawn({"router": str(folder), "first": prompts[0]}) for _ in range(cold - 1)]
    timed = runs[0]
    return {
        "router": name,
        "size_mb": folder_mb(folder),
        "stats_mb": (folder / "stats.npz").stat().st_size / 2**20
        if (folder / "stats.npz").is_file()
        else 0.0,
        "files": sorted(p.name for p in folder.iterdir() if p.is_file()),
        "cold_start_ms": statistics.median(r["cold_start_ms"] for r in runs),
        "cold_starts_ms": [r["cold_start_ms"] for r in runs],
        "interpreter_ms": statistics.median(r["interpreter_ms"] for r in runs),
        "import_ms": statistics.median(r["import_ms"] for r in runs),
        "load_ms": statistics.median(r["load_ms"] for r in runs),
        "first_route_ms": statistics.median(r["first_route_ms"] for r in runs),
        "rss_mb": timed["rss_mb"],
        "n": len(timed["times_ms"]),
        "p50_ms": percentile(timed["times_ms"], 50),
        "p99_ms": percentile(timed["times_ms"], 99),
        "experts": timed["experts"],
        "scores": timed["scores"],
    }


# -- aarch64 under QEMU (a correctness check) ----------------------------------------------------
def arm64_env() -> tuple[list[str], str, dict[str, str]]:
    """The qemu prefix, the arm64 Python and its environment, from .ci/arm64's cache."""
    sysroot = ARM64 / f"sysroot-{ARM64_CPU}"
    python = sysroot / "usr" / "bin" / "python3.11"
    site = [ARM64 / "site-irde", ARM64 / "site"]
    if not python.is_file() or not all(p.is_dir() for p in site):
        raise SystemExit(f"{sysroot} or {ARM64}/site* missing: run `bash .ci/arm64` first")
    env = {
        **os.environ,
        "QEMU_CPU": ARM64_CPU,
        # the wheel and its dependencies; the checkout last, for the benchmarks package only
        "PYTHONPATH": os.pathsep.join(map(str, [*site, ROOT])),
    }
    return ["qemu-aarch64-static", "-L", str(sysroot)], str(python), env


def measure_arm64(row: dict[str, Any], folder: Path, prompts: list[str]) -> dict[str, Any]:
    """The router on emulated aarch64: scores against x86's on the same prompts, and times."""
    prefix, python, env = arm64_env()
    n = ARM64_PROMPTS.get(row["router"], ARM64_PROMPTS_DEFAULT)
    spec = {
        "router": str(folder),
        "first": prompts[0],
        "prompts": prompts[:n],
        "warmup": 1,
        "python": python,
    }
    got = spawn(spec, prefix, env, cwd=ARM64)
    if got["experts"] != row["experts"]:
        raise RuntimeError(f"{row['router']}: other experts on aarch64")
    import numpy as np

    x86 = np.array(row["scores"][:n], dtype=np.float32)
    arm = np.array(got["scores"], dtype=np.float32)
    diff = float(np.abs(x86.astype(np.float64) - arm).max())
    same = bool((x86.argmax(axis=1) == arm.argmax(axis=1)).all())
    return {
        "router": row["router"],
        "cpu": ARM64_CPU,
        "n": n,
        "max_diff": diff,
        "same_decisions": same,
        "cold_start_s": got["cold_start_ms"] / 1e3,
        "p50_ms": percentile(got["times_ms"], 50),
        "rss_mb": got["rss_mb"],
    }


# -- report --------------------------------------------------------------------------------------
def mib(x: float) -> str:
    """MiB with one decimal, or three below 1 MiB."""
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def render(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of a run (``result`` as written to the JSON file)."""
    rows = result["x86"]
    text = [
        "## Edge figures (`benchmarks/edge.py`)",
        "",
        result["header"],
        f"Every figure from fresh processes with one intra-op thread, through "
        f"`irde_onnx.runtime.Router`. Cold start: from spawning `python` to the first "
        f"`Router.route([prompt])` returned (interpreter start, imports, load, one "
        f"{LENGTH}-token prompt; warm disk cache), median of {result['cold']} processes. "
        f"Per route: `Router.route([prompt])` at batch 1 over {rows[0]['n'] if rows else 0} "
        f"prompts of {LENGTH} tokens ({result['prompts']}, cut before the router's input "
        f"view, which can shorten them), after {WARMUP} warm-up calls. "
        f"Peak RSS: VmHWM of the timing process after all its routes. Size: every file of "
        f"the router folder; `stats.npz` (the training statistics, for adding and removing "
        f"experts) is read by `Router.load` but not needed to route.",
        "",
        f"Run time {result['seconds']:.0f} s; load average before {result['load'][0]:.2f}, "
        f"after {result['load'][1]:.2f} (1 min, on {os.cpu_count()} cores): other work on "
        f"the machine slows the times.",
        "",
        markdown_table(
            [
                "router",
                "size on disk (MiB)",
                "of which stats.npz (MiB)",
                "peak RSS (MiB)",
                "cold start (ms)",
                "of which interpreter / import / load / first route (ms)",
                f"route p50 / p99 at {LENGTH} tokens, 1 thread (ms)",
            ],
            [
                [
                    f"{r['router']} ({result['descriptions'].get(r['router'], 'given path')})",
                    mib(r["size_mb"]),
                    mib(r["stats_mb"]),
                    f"{r['rss_mb']:.0f}",
                    f"{r['cold_start_ms']:.0f}",
                    f"{r['interpreter_ms']:.0f} / {r['import_ms']:.0f} / {r['load_ms']:.0f} / "
                    f"{r['first_route_ms']:.1f}",
                    f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}",
                ]
                for r in rows
            ],
        ),
    ]
    arm = result.get("arm64") or []
    if arm:
        text += [
            "",
            f"aarch64 under QEMU ({result.get('qemu', 'qemu-aarch64-static')}, "
            f"`QEMU_CPU={ARM64_CPU}`, the sysroot and wheels of `.ci/arm64`): a correctness "
            "check only. **Its times are emulation, not ARM speed** (QEMU runs float SIMD in "
            "software, so the fp32 encoder is slowed far more than the int8 one). Scores are "
            "compared with x86's on the first prompts of the timing set.",
            "",
            markdown_table(
                [
                    "router",
                    "CPU (emulated)",
                    "prompts",
                    "max abs(score - x86)",
                    "same decisions",
                    "cold start, emulated (s)",
                    "route p50, emulated (ms)",
                ],
                [
                    [
                        a["router"],
                        a["cpu"],
                        a["n"],
                        f"{a['max_diff']:.2g}",
                        "yes" if a["same_decisions"] else "**no**",
                        f"{a['cold_start_s']:.1f}",
                        f"{a['p50_ms']:.0f}",
                    ]
                    for a in arm
                ],
            ),
        ]
    return "\n".join(text) + "\n"


def qemu_version() -> str:
    """qemu-aarch64-static's version line."""
    out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.returncode == 0 else "qemu-aarch64-static"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, write the JSON and the BENCHMARKS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="../shared/data")
    parser.add_argument("--n", type=int, default=200, help="timed prompts per router")
    parser.add_argument("--cold", type=int, default=5, help="cold starts per router")
    parser.add_argument(
        "--router", action="append", default=[], metavar="NAME=PATH", help="a router on disk"
    )
    parser.add_argument("--only", nargs="+", help="these rows only (names)")
    parser.add_argument("--arm64", action="store_true", help="also the emulated aarch64 check")
    parser.add_argument("--synthetic", action="store_true", help="built-in prompts, no data")
    parser.add_argument("--quick", action="store_true", help="a smoke run: --n 12 --cold 1")
    parser.add_argument("--json", type=Path, default=RESULTS / "edge.json")
    parser.add_argument("--md", type=Path, default=None, help="markdown file (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker.read_text(encoding="utf-8"))
        print(json.dumps(worker(spec)))
        return 0
    if args.quick:
        args.n, args.cold = 12, 1
    given = dict(item.split("=", 1) for item in args.router)
    names = args.only or [*ROUTERS, *(n for n in given if n not in ROUTERS)]
    descriptions = {n: d for n, (d, _) in ROUTERS.items()}
    result: dict[str, Any] = {
        "header": header(command_line()),
        "cold": args.cold,
        "prompts": "built-in sentences" if args.synthetic else "RouterDC test prompts",
        "descriptions": {n: descriptions.get(n, f"given: {given.get(n)}") for n in names},
        "x86": [],
        "arm64": [],
    }
    if args.arm64:
        result["qemu"] = qemu_version()
    started, load_before = time.monotonic(), os.getloadavg()[0]
    for name in names:
        if name in given:
            folder = Path(given[name])
        elif name in ROUTERS:
            folder = ROUTERS[name][1]()
        else:
            parser.error(f"unknown router {name}: one of {', '.join(ROUTERS)} or --router")
        prompts = prompts_of(folder / "tokenizer.json", args.n, args.data, args.synthetic)
        log(f"{name}: {args.cold} cold starts, {len(prompts)} timed prompts")
        row = measure(name, folder, prompts, args.cold)
        result["x86"].append(row)
        if args.arm64:
            log(f"{name}: aarch64 under QEMU ({ARM64_CPU})")
            result["arm64"].append(measure_arm64(row, folder, prompts))
    result["seconds"] = time.monotonic() - started
    result["load"] = [load_before, os.getloadavg()[0]]
    markdown = render(result)
    print(markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    slim = {**result, "x86": [{k: v for k, v in r.items() if k != "scores"} for r in result["x86"]]}
    args.json.write_text(json.dumps(slim, indent=2) + "\n", encoding="utf-8")
    write_section(SECTION, markdown, args.md)
    log(f"wrote {args.json} and the {SECTION} section of {args.md or 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

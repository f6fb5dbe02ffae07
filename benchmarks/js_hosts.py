"""Node.js and browser (wasm) hosts against the Python runtime, in one run.

Conformance: token ids of every prompt in ../shared/data/domains, and the scores and
decisions of a sample of them on the static, fp32 and int8 demo routers, with
onnxruntime-node and onnxruntime-web's wasm backend (run under Node; headless Chromium gives
the same numbers, see js/test/browser.test.mjs). Speed: p50/p99 latency of one prompt per
call at 16/64/256 tokens, load time and peak RSS, each engine in a fresh process with one
thread; installed size of the runtime dependencies of each host.

    .venv/bin/python -m benchmarks.js_hosts              # needs js/node_modules (npm ci)
    .venv/bin/python -m benchmarks.js_hosts --quick      # fewer prompts, a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
from benchmarks.speed import exact_length_prompts, load_texts, peak_rss_mb, venv_size

JS = ROOT / "js"
WORKER = Path(__file__).resolve().parent / "js_worker.mjs"
ROUTER_NAMES = ("static", "fp32", "int8")
LENGTHS = (16, 64, 256)
INT8_WASM_ATOL = 0.05  # the tolerance the JS tests state


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[js_hosts {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_routers(folder: Path) -> dict[str, Path]:
    """The three demo routers of the JS tests (built by conformance/make_golden.py when missing)."""
    if not all((folder / n / "router.json").is_file() for n in ROUTER_NAMES):
        log(f"building the demo routers in {folder}")
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "conformance" / "make_golden.py"),
                "--routers",
                str(folder),
                "--check",
            ],
            check=True,
        )
    return {n: folder / n for n in ROUTER_NAMES}


def node_job(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run the Node worker on ``spec`` in a fresh process."""
    file = work / "spec.json"
    file.write_text(json.dumps(spec), encoding="utf-8")
    out = subprocess.run(
        ["node", str(WORKER), str(file)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"},
    )
    return json.loads(out.stdout)


def python_job(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run :func:`python_worker` on ``spec`` in a fresh interpreter."""
    file = work / "spec.json"
    file.write_text(json.dumps(spec), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.js_hosts", "--worker", str(file)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def python_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The Python side of a latency job (same measurements as js_worker.mjs)."""
    t0 = time.perf_counter()
    from irde_onnx.runtime import Router

    t_load = time.perf_counter()
    router = Router.load(spec["router"], threads=spec["threads"])
    result: dict[str, Any] = {
        "import_ms": (t_load - t0) * 1e3,
        "load_ms": (time.perf_counter() - t_load) * 1e3,
    }
    t_first = time.perf_counter()
    router.route(["warm up"])
    result["first_route_ms"] = (time.perf_counter() - t_first) * 1e3
    result["latency"] = {}
    for length, texts in spec["prompts"].items():
        for t in texts[: spec["warmup"]]:
            router.route([t])
        times = []
        for t in texts:
            s = time.perf_counter()
            router.route([t])
            times.append(time.perf_counter() - s)
        result["latency"][length] = times
    result["rss_mb"] = peak_rss_mb()
    return result


def domain_texts(data: Path) -> list[str]:
    """Every prompt of ../shared/data/domains."""
    texts = []
    for file in sorted((data / "domains").glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def id_digest(ids: Sequence[int]) -> str:
    """The digest js_worker.mjs computes for one prompt's ids."""
    return hashlib.sha1(",".join(str(int(i)) for i in ids).encode()).hexdigest()


def conformance(
    routers: dict[str, Path], texts: list[str], sample: list[str], work: Path
) -> list[dict[str, Any]]:
    """Id mismatches over ``texts``; score differences and flips over ``sample``."""
    from irde_onnx.runtime import Router

    rows = []
    py_digests = None
    for name, path in routers.items():
        router = Router.load(path, threads=1)
        if py_digests is None:
            log(f"Python: tokenizing {len(texts)} prompts")
            t0 = time.perf_counter()
            py_digests = [id_digest(e) for e in router.tokenizer.encode(texts)]
            py_tok_s = time.perf_counter() - t0
        py = router.scores(sample)
        order = np.argsort(-py, axis=1, kind="stable")
        margin = py[np.arange(len(py)), order[:, 0]] - py[np.arange(len(py)), order[:, 1]]
        for backend in ("node", "wasm"):
            log(f"{name} on {backend}: {len(sample)} prompts")
            spec = {
                "mode": "conformance",
                "router": str(path),
                "backend": backend,
                "threads": 1,
                "texts": sample,
            }
            if backend == "node" and name == "static":
                spec["ids"] = texts
            got = node_job(spec, work)
            js = np.array(got["scores"], dtype=np.float64)
            js_choice = np.argmax(js, axis=1)  # first maximum, as Python's stable order
            flips = js_choice != order[:, 0]
            row = {
                "router": name,
                "backend": backend,
                "n": len(sample),
                "max_diff": float(np.abs(js - py).max()),
                "flips": int(flips.sum()),
                "flip_margins": [float(m) for m in margin[flips]],
            }
            if "id_digests" in got:
                row["id_prompts"] = len(texts)
                row["id_mismatches"] = int(
                    sum(a != b for a, b in zip(got["id_digests"], py_digests, strict=True))
                )
                row["tokenize_s_js"] = got["tokenize_s"]
                row["tokenize_s_py"] = py_tok_s
            rows.append(row)
    return rows


def code_point_sweep(router_dir: Path, work: Path) -> dict[str, Any]:
    """Ids of ``"a" + chr(cp) + "b"`` for every code point but surrogates, Python against JS.

    Returns how many code points get other ids, counted by Unicode general category.
    """
    import unicodedata

    from irde_onnx.runtime import Router

    points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    texts = [f"a{chr(cp)}b" for cp in points]
    log(f"every code point: {len(texts)} texts")
    router = Router.load(router_dir, threads=1)
    py = [id_digest(e) for e in router.tokenizer.encode(texts)]
    got = node_job(
        {
            "mode": "conformance",
            "router": str(router_dir),
            "backend": "node",
            "threads": 1,
            "texts": [],
            "ids": texts,
        },
        work,
    )
    differ = [cp for cp, a, b in zip(points, py, got["id_digests"], strict=True) if a != b]
    categories: dict[str, int] = {}
    for cp in differ:
        cat = unicodedata.category(chr(cp))
        categories[cat] = categories.get(cat, 0) + 1
    return {
        "n": len(points),
        "differ": len(differ),
        "categories": categories,
        "examples": [f"U+{cp:04X}" for cp in differ[:8]],
        "unicode_python": unicodedata.unidata_version,
    }


def dir_size(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def npm_install_size(work: Path) -> dict[str, Any]:
    """``npm ci --omit=dev`` of js/ into a temporary folder: the package's runtime dependencies."""
    target = work / "npm"
    target.mkdir()
    for name in ("package.json", "package-lock.json", ".npmrc"):
        shutil.copy(JS / name, target / name)
    t0 = time.perf_counter()
    subprocess.run(
        ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=target,
        check=True,
        capture_output=True,
        env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"},
    )
    seconds = time.perf_counter() - t0
    modules = target / "node_modules"
    ort_node = modules / "onnxruntime-node" / "bin"
    other_platforms = sum(dir_size(p) for p in ort_node.glob("napi-v*/*") if p.name != "linux")
    return {
        "bytes": dir_size(modules),
        "install_s": seconds,
        "ort_node_other_platforms": other_platforms,
        "ort_web": dir_size(modules / "onnxruntime-web"),
        "tokenizers": dir_size(modules / "@huggingface" / "tokenizers"),
        "browser_assets": sum(
            (modules / p).stat().st_size
            for p in (
                "onnxruntime-web/dist/ort.wasm.min.mjs",
                "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
                "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
                "@huggingface/tokenizers/dist/tokenizers.min.mjs",
            )
        ),
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def _ms(seconds: Sequence[float], q: float) -> str:
    return f"{np.percentile(np.asarray(seconds) * 1e3, q):.2f}"


def report(
    conf: list[dict[str, Any]],
    sweep: dict[str, Any],
    speed: dict[str, dict[str, Any]],
    sizes: dict[str, Any],
    args: argparse.Namespace,
    n_latency: int,
) -> str:
    """The BENCHMARKS.md section."""
    id_row = next(r for r in conf if "id_mismatches" in r)
    lines = [
        "## Node.js and browser hosts (`benchmarks/js_hosts.py`)",
        "",
        header(command_line()),
        "Node "
        + subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        + ", onnxruntime-node and onnxruntime-web 1.30.0, "
        "@huggingface/tokenizers 0.2.0 (js/package-lock.json). Routers: the demo routers of "
        "the JS tests (models/demo, lam 1.0). One thread everywhere; wasm runs onnxruntime-web "
        "under Node, whose numbers equal headless Chromium's (js/test/browser.test.mjs).",
        "",
        "### Same decisions as Python",
        "",
        f"Token ids: **{id_row['id_mismatches']} mismatches** over all {id_row['id_prompts']} "
        f"prompts of ../shared/data/domains (JS tokenizes them in {id_row['tokenize_s_js']:.1f} "
        f"s, Python in {id_row['tokenize_s_py']:.1f} s). Scores and decisions on "
        f"{conf[0]['n']} of those prompts (seed {args.seed}):",
        "",
        markdown_table(
            [
                "router",
                "host",
                "max abs score difference",
                "decision flips",
                "Python margin at the flips",
            ],
            [
                [
                    r["router"],
                    "onnxruntime-node" if r["backend"] == "node" else "onnxruntime-web (wasm)",
                    f"{r['max_diff']:.2e}",
                    f"{r['flips']} / {r['n']}",
                    ", ".join(f"{m:.4f}" for m in r["flip_margins"]) or "-",
                ]
                for r in conf
            ],
        ),
        "",
        f'Every code point (`"a" + chr(cp) + "b"`, {sweep["n"]} texts, surrogates '
        f"excluded): **{sweep['differ']}** get other ids in JS than in Python ("
        + ", ".join(
            f"{k}: {v}" for k, v in sorted(sweep["categories"].items(), key=lambda kv: -kv[1])
        )
        + f"; categories from Python's Unicode {sweep['unicode_python']}; e.g. "
        f"{', '.join(sweep['examples'])}). They are characters of recent Unicode versions or "
        "rare scripts, which the JS engine's Unicode tables (punctuation, marks that accent "
        "stripping removes) class otherwise than the Rust tokenizers library's older tables. "
        "No domain prompt above is affected.",
        "",
        f"int8 on wasm uses other int8 kernels (DynamicQuantizeLinear + MatMulInteger): the JS "
        f"tests allow {INT8_WASM_ATOL} and a flip only where Python's margin is below it; "
        "static and fp32 must agree within 1e-6 (scores and confidences) on every host.",
        "",
        f"### Latency, one prompt per call ({n_latency} prompts per length, ms)",
        "",
    ]
    head = (
        ["router", "host"]
        + [f"p50 / p99 @ {n}" for n in LENGTHS]
        + ["ready (ms)", "first route (ms)", "peak RSS (MiB)"]
    )
    rows = []
    for key, res in speed.items():
        router, host = key.split("|")
        rows.append(
            [router, host]
            + [
                f"{_ms(res['latency'][str(n)], 50)} / {_ms(res['latency'][str(n)], 99)}"
                for n in LENGTHS
            ]
            + [
                f"{res['import_ms'] + res['load_ms']:.0f}",
                f"{res['first_route_ms']:.0f}",
                f"{res['rss_mb']:.0f}",
            ]
        )

    lines += [markdown_table(head, rows), ""]
    lines += [
        "Ready: from the first line of a fresh process (importing the package and "
        "onnxruntime) until Router.load returns. First route: the first call after that. Peak "
        "RSS: VmHWM of the whole process after every length. Node's wasm rows run "
        "onnxruntime-web in Node with one thread (a page that is not cross-origin isolated "
        "gets one thread too).",
        "",
        "### Installed size",
        "",
        markdown_table(
            ["host", "what", "size (MiB)", "install (s)"],
            [
                [
                    "Node",
                    "`npm ci --omit=dev` of js/ (onnxruntime-node, onnxruntime-web, tokenizers)",
                    _mb(sizes["npm"]["bytes"]),
                    f"{sizes['npm']['install_s']:.0f}",
                ],
                [
                    "Node",
                    "the same without onnxruntime-node's macOS and Windows binaries",
                    _mb(sizes["npm"]["bytes"] - sizes["npm"]["ort_node_other_platforms"]),
                    "-",
                ],
                [
                    "browser",
                    "what the demo page downloads (ort wasm build + tokenizer)",
                    _mb(sizes["npm"]["browser_assets"]),
                    "-",
                ],
                [
                    "Python",
                    "runtime venv: `pip install irde-onnx` (onnxruntime, numpy, tokenizers, onnx)",
                    _mb(sizes["python"]["bytes"]),
                    f"{sizes['python']['install_s']:.0f}",
                ],
            ],
        ),
        "",
        "npm install times use the local npm cache; pip installs from the package index.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement, print the section and write it into BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--routers", type=Path, default=JS / "test" / "routers")
    parser.add_argument(
        "--sample", type=int, default=300, help="prompts whose scores are compared (default 300)"
    )
    parser.add_argument(
        "--latency-prompts",
        type=int,
        default=200,
        help="prompts per length in the latency runs (default 200)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="30 prompts everywhere")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(python_worker(json.loads(args.worker.read_text(encoding="utf-8")))))
        return 0
    if not (JS / "node_modules").is_dir():
        raise SystemExit("js/node_modules is missing: run (cd js && npm ci) first")
    if args.quick:
        args.sample, args.latency_prompts = 30, 30
    routers = ensure_routers(args.routers)
    texts = domain_texts(args.data)
    rng = np.random.default_rng(args.seed)
    sample = [texts[i] for i in rng.choice(len(texts), size=args.sample, replace=False)]
    with tempfile.TemporaryDirectory(prefix="irde-js-bench-") as tmp:
        work = Path(tmp)
        conf = conformance(routers, texts, sample, work)
        sweep = code_point_sweep(routers["static"], work)
        real = load_texts(args.data)
        prompts = {
            str(n): exact_length_prompts(
                real, routers["int8"] / "tokenizer.json", n, args.latency_prompts
            )
            for n in LENGTHS
        }
        speed: dict[str, dict[str, Any]] = {}
        for name in ("int8", "static"):
            for host, backend in (
                ("Python (onnxruntime)", None),
                ("Node (onnxruntime-node)", "node"),
                ("wasm (onnxruntime-web)", "wasm"),
            ):
                log(f"latency: {name} on {host}")
                spec = {
                    "mode": "latency",
                    "router": str(routers[name]),
                    "threads": 1,
                    "warmup": 10,
                    "prompts": prompts,
                    "backend": backend,
                }
                speed[f"{name}|{host}"] = (
                    python_job(spec, work) if backend is None else node_job(spec, work)
                )
        log("installed sizes (npm ci --omit=dev, and a fresh runtime venv)")
        sizes = {"npm": npm_install_size(work), "python": venv_size("runtime", work)}
    md = report(conf, sweep, speed, sizes, args, args.latency_prompts)
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "js_hosts.json").write_text(
        json.dumps(
            {
                "conformance": conf,
                "code_points": sweep,
                "sizes": sizes,
                "latency_ms": {
                    k: {
                        n: {
                            "p50": float(np.percentile(np.array(v["latency"][n]) * 1e3, 50)),
                            "p99": float(np.percentile(np.array(v["latency"][n]) * 1e3, 99)),
                        }
                        for n in v["latency"]
                    }
                    | {"load": v["load_ms"], "rss_mb": v["rss_mb"]}
                    for k, v in speed.items()
                },
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    if not args.no_write:
        write_section("js_hosts", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: add and remove an expert at run time against exporting the router again.

For the minilm (int8) and static routers: train on 4 domains of ../shared/data/domains,
then add a 5th domain expert from its prompts (encode + solve + swap), remove it (solve +
swap), and save; in the same run, export a 5-domain router from scratch, the alternative to
an add. Reports medians over repeats, the ratios, and whether the encoder file kept its
bytes. Writes benchmarks/results/experts.md and its section of BENCHMARKS.md.

    python -m benchmarks.experts [--data ../shared/data] [--per-domain 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)
from irde_onnx.export import RouterTrainer
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import DATA_FILE

BASE_DOMAINS = ("math", "law", "medicine", "chinese")
NEW_DOMAIN = "code"


def _rows(data: Path, domain: str, n: int) -> list[str]:
    with open(data / "domains" / f"{domain}.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    return [r["text"] for r in rows[:n]]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bench_encoder(
    encoder: str,
    base: dict[str, list[str]],
    new: list[str],
    repeats: int,
    threads: int | None,
    work: Path,
) -> dict[str, object]:
    """Time export from scratch, add, remove and save for one encoder."""
    texts = [t for d in base for t in base[d]]
    labels = [d for d in base for _ in base[d]]
    kw = {"encoder": encoder, "progress": False, "threads": threads}
    trainer = RouterTrainer(**kw).fit(texts, labels)  # lam chosen by CV once, then fixed
    lam = trainer.lam_
    path = trainer.save(work / f"{encoder}-4")

    start = time.perf_counter()
    scratch = RouterTrainer(**{**kw, "lam": lam}).fit(texts + new, labels + [NEW_DOMAIN] * len(new))
    scratch.save(work / f"{encoder}-5")
    export_s = time.perf_counter() - start

    router = RouterEditor.open(path, threads=threads)
    router.route(new[:4])  # warm up
    add_s, remove_s, encode_s = [], [], []
    ones = np.ones((len(new), 1))
    for _ in range(repeats):
        t0 = time.perf_counter()
        router.encode_rows(new).moments(ones)  # what an add encodes, timed on its own
        encode_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        router.add_expert(NEW_DOMAIN, new)
        add_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        router.remove_expert(NEW_DOMAIN)
        remove_s.append(time.perf_counter() - t0)
    add_swap = [max(0.0, a - e) for a, e in zip(add_s, encode_s, strict=True)]
    data_hash = _sha(path / DATA_FILE)
    router.add_expert(NEW_DOMAIN, new)
    t0 = time.perf_counter()
    router.save()
    save_s = time.perf_counter() - t0
    unchanged = _sha(path / DATA_FILE) == data_hash
    reloaded = Router.load(path)
    order = [scratch.experts_.index(e) for e in router.experts]
    # the same rule on the same rows: lam relative to the data with the 4-expert router's kappa
    ref = scratch.stats_.copy()
    ref.kappa = trainer.stats_.kappa
    w_ref, b_ref = ref.solve(lam, scratch.router_.embedding_table)
    exact = bool(
        np.allclose(router.head[0], w_ref[:, order], atol=1e-6)
        and np.allclose(router.head[1], b_ref[order], atol=1e-6)
    )
    med = statistics.median
    return {
        "encoder": f"{encoder} {trainer.router_.config.precision}",
        "export_s": export_s,
        "add_s": med(add_s),
        "add_solve_swap_s": med(add_swap),
        "remove_s": med(remove_s),
        "save_s": save_s,
        "encoder_bytes_unchanged": unchanged,
        "equals_scratch": exact,
        "experts_after_reload": reloaded.experts,
        "n_new": len(new),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-domain", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--encoders", nargs="+", default=["minilm", "static"])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    base = {d: _rows(args.data, d, args.per_domain) for d in BASE_DOMAINS}
    new = _rows(args.data, NEW_DOMAIN, args.per_domain)
    results = []
    with tempfile.TemporaryDirectory(prefix="irde-bench-") as tmp:
        for encoder in args.encoders:
            results.append(bench_encoder(encoder, base, new, args.repeats, args.threads, Path(tmp)))
    rows = [
        [
            r["encoder"],
            f"{r['export_s']:.2f}",
            f"{r['add_s'] * 1000:.0f}",
            f"{r['add_solve_swap_s'] * 1000:.0f}",
            f"{r['remove_s'] * 1000:.0f}",
            f"{r['save_s'] * 1000:.0f}",
            f"{r['export_s'] / r['add_s']:.0f}x",
            f"{r['export_s'] / r['remove_s']:.0f}x",
            "yes" if r["encoder_bytes_unchanged"] else "NO",
            "yes" if r["equals_scratch"] else "NO",
        ]
        for r in results
    ]
    table = markdown_table(
        [
            "router",
            "export 5 experts from scratch (s)",
            f"add expert: encode {args.per_domain} prompts + solve + swap (ms)",
            "of which solve + swap (ms; add minus encoding)",
            "remove: solve + swap (ms)",
            "save (ms)",
            "add vs export",
            "remove vs export",
            "encoder file bytes unchanged",
            "head equals scratch (atol 1e-6)",
        ],
        rows,
    )
    text = (
        "## Adding and removing experts (`benchmarks/experts.py`)\n\n"
        + header(command_line())
        + f"\nRouters trained on {', '.join(BASE_DOMAINS)} ({args.per_domain} prompts each, "
        f"from `domains/`); the expert `{NEW_DOMAIN}` is added from {args.per_domain} of its "
        f"prompts and removed again, {args.repeats} times (medians). The alternative to an add "
        "is exporting the 5-expert router from scratch with the same lam, timed in the same "
        "run. Threads: "
        + (str(args.threads) if args.threads else "onnxruntime default")
        + ".\n\n"
        + table
        + "\n"
    )
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "experts.md").write_text(text, encoding="utf-8")
        write_section("experts", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

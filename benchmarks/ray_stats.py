"""Training statistics on Ray: rows per second with 1 and 2 workers against one process.

Trains a MiniLM int8 router on a few prompts (for its graph), then computes the training
statistics of --rows prompts of ../shared/data/domains three ways in the same run: in this
process (the trainer's chunked loop), and with Ray actors on a local Ray instance with 1 and
2 workers (one onnxruntime session each, 1 thread). Ray's start-up (ray.init) is reported
apart; worker start-up (shipping the router's files, loading the session) is included in the
Ray figures. Checks that each Ray result equals the local one to 1e-9. Writes its section of
BENCHMARKS.md.

    python -m benchmarks.ray_stats [--data ../shared/data] [--rows 800]
"""

from __future__ import annotations

import argparse
import json
import os
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
from irde_onnx.learning.moments import fold_ids
from irde_onnx.learning.partial import PartialStats, StatsPlan, rows_statistics
from irde_onnx.runtime import Router

DOMAINS = ("math", "law", "medicine", "chinese", "code")


def _max_diff(a: PartialStats, b: PartialStats) -> float:
    pairs = list(zip(a.per_expert + a.folds, b.per_expert + b.folds, strict=True))
    return max(
        float(np.max(np.abs(getattr(x, f) - getattr(y, f))))
        for x, y in pairs
        for f in ("sum_x", "gram", "sum_xy", "sum_y")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import ray

    from irde_onnx.engines.ray import ray_statistics
    from irde_onnx.export import RouterTrainer

    per = args.rows // len(DOMAINS)
    texts, labels, seed_texts, seed_labels = [], [], [], []
    for d in DOMAINS:
        with open(args.data / "domains" / f"{d}.jsonl", encoding="utf-8") as fh:
            rows = [json.loads(line)["text"] for line in fh if line.strip()][: per + 10]
        texts += rows[10:]
        labels += [d] * (len(rows) - 10)
        seed_texts += rows[:10]  # the router's own training prompts, not benchmarked
        seed_labels += [d] * 10
    y = np.zeros((len(texts), len(DOMAINS)))
    y[np.arange(len(texts)), [DOMAINS.index(x) for x in labels]] = 1.0
    fold = fold_ids(len(texts), 5)
    results = []
    with tempfile.TemporaryDirectory(prefix="irde-ray-bench-") as tmp:
        trainer = RouterTrainer(encoder="minilm", lam=1.0, progress=False, threads=1)
        path = trainer.fit(seed_texts, seed_labels).save(Path(tmp) / "router")
        router = Router.load(path, threads=1)
        plan = StatsPlan.for_router(router, "domain", len(DOMAINS), 5)
        router.features(texts[:4])
        t0 = time.perf_counter()
        local = PartialStats.zeros(plan)
        for start in range(0, len(texts), 256):
            part = slice(start, start + 256)
            local = local + rows_statistics(router, plan, texts[part], y[part], fold[part])
        local_s = time.perf_counter() - t0
        results.append(
            [
                "one process (the trainer's loop)",
                "-",
                f"{local_s:.1f}",
                f"{len(texts) / local_s:.0f}",
                "-",
            ]
        )
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
        init_s = time.perf_counter() - t0
        try:
            for workers in (1, 2):
                t0 = time.perf_counter()
                remote = ray_statistics(path, plan, texts, y, fold, workers=workers, threads=1)
                seconds = time.perf_counter() - t0
                diff = _max_diff(remote, local)
                results.append(
                    [
                        "Ray, local instance (2 CPUs)",
                        workers,
                        f"{seconds:.1f}",
                        f"{len(texts) / seconds:.0f}",
                        f"{diff:.1e} ({'yes' if diff <= 1e-9 else 'NO'})",
                    ]
                )
                print(results[-1], flush=True)
        finally:
            ray.shutdown()
    table = markdown_table(
        [
            "engine",
            "workers",
            "time (s)",
            "rows/s",
            "largest absolute difference to one process (limit 1e-9)",
        ],
        [results[0]] + results[1:],
    )
    text = (
        "## Training statistics on Ray (`benchmarks/ray_stats.py`)\n\n"
        + header(command_line())
        + f"\n{len(texts)} prompts of {len(DOMAINS)} domains, MiniLM int8 features (one "
        "prompt per onnxruntime call, 1 thread per session), per-expert and 5 per-fold "
        f"statistics. `ray.init` of the local instance took {init_s:.1f} s (not included); "
        "the Ray times include starting the actors, shipping the router's files to them and "
        "loading their sessions. This machine has 2 cores shared with other work (load "
        f"average {os.getloadavg()[1]:.1f} over the last 5 minutes of the run).\n\n" + table + "\n"
    )
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ray_stats.md").write_text(text, encoding="utf-8")
        write_section("ray-stats", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Encode the evaluation prompts once with the product's default MiniLM router; cache outside the repo.

The router is RouterTrainer's defaults (minilm, int8, the default view and pooled layers),
fit on four toy prompts: only its encoder matters here, ``Router.features`` gives the
pooled features the head is solved on. Features are cached as one npz per dataset part,
named by the router's fingerprint, the part and the row cap, under ``--cache``
(default /work/cache/features). Data are read in place from ``--data``.

Row caps keep encoding to ~25 minutes on a shared 2-core machine: routerdc7 train and
test_ood in full, test_id capped at ``--dc-test-cap`` rows per task (id-hash order),
routerbench in full, domains capped at ``--domain-cap`` rows per (domain, source).

    python research/feedback/encode.py --help
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.splits import limit_rows, load_domain_records, read_rows

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DEFAULT_CACHE = Path("/work/cache/features")


def log(msg: str) -> None:
    print(f"[encode {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_router(cache: Path, threads: int | None):
    """Load (or build once) a router with RouterTrainer's default encoder settings."""
    from irde_onnx import Router

    folder = cache / "router-default"
    if not (folder / "router.json").is_file():
        from irde_onnx.export import RouterTrainer

        tr = RouterTrainer(progress=False, lam=1.0, validate=False, threads=threads)
        tr.fit(
            ["what is two plus two", "a contract clause", "solve for x", "the law of torts"],
            ["math", "law", "math", "law"],
        )
        tr.save(folder)
    return Router.load(folder, threads=threads)


def parts(data: Path, dc_test_cap: int, domain_cap: int) -> dict[str, list[dict]]:
    """The rows of each dataset part, in the order they are encoded."""
    dc = data / "routerdc7"
    rb = data / "routerbench"
    out = {
        "routerdc7-train": read_rows(dc / "train.jsonl"),
        "routerdc7-test_ood": read_rows(dc / "test_ood.jsonl"),
        f"routerdc7-test_id-cap{dc_test_cap}": limit_rows(
            read_rows(dc / "test_id.jsonl"), lambda r: r["task"], dc_test_cap
        ),
        "routerbench-train": read_rows(rb / "train.jsonl"),
        "routerbench-test": read_rows(rb / "test.jsonl"),
        f"domains-cap{domain_cap}": load_domain_records(data / "domains", domain_cap)[0],
    }
    return out


def cache_path(cache: Path, fingerprint: str, part: str) -> Path:
    return cache / f"{part}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}.npz"


def load_part(cache: Path, part: str) -> dict[str, np.ndarray]:
    """Cached features of a part: x (n, d) float32, ids, texts order as encoded."""
    fp = (cache / "router-default" / "fingerprint.txt").read_text()
    with np.load(cache_path(cache, fp, part), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--dc-test-cap", type=int, default=1000)
    ap.add_argument("--domain-cap", type=int, default=600)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    router = default_router(args.cache, args.threads)
    fp = router.config.fingerprint
    (args.cache / "router-default" / "fingerprint.txt").write_text(fp)
    log(f"router fingerprint {fp[:16]}, view {router.config.view}, dim {router.config.feature_dim}")
    for part, rows in parts(args.data, args.dc_test_cap, args.domain_cap).items():
        path = cache_path(args.cache, fp, part)
        if path.is_file():
            log(f"{part}: cached ({path})")
            continue
        start = time.perf_counter()
        texts = [r["text"] for r in rows]
        x = np.empty((len(texts), router.config.feature_dim), np.float32)
        for i in range(0, len(texts), 512):
            x[i : i + 512] = router.features(texts[i : i + 512], batch_size=32)
            log(
                f"{part}: {i + len(texts[i : i + 512])}/{len(texts)} in {time.perf_counter() - start:.0f} s"
            )
        ids = np.array([str(r["id"]) for r in rows], dtype=np.str_)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, ids=ids)
        tmp.replace(path)
        log(f"{part}: {len(texts)} rows in {time.perf_counter() - start:.0f} s -> {path}")


if __name__ == "__main__":
    main()

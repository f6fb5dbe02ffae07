"""Load test of `irde serve` on 127.0.0.1 against the in-process Python runtime.

Trains (or takes with --router) a MiniLM int8 router on 4 domains, starts `irde serve` in a
subprocess on 127.0.0.1, and runs a bounded async client (httpx) at 1, 8 and 32 concurrent
clients: each run stops after --requests requests or --max-seconds, whichever comes first.
Each level runs twice: steady, and with 20 expert changes (POST/DELETE /experts, each saved
and reloaded) during the run. The same prompts are routed in the same run by the in-process
runtime (Router.route from as many threads, with the same 20 changes made in-process).
Reports p50/p99 latency, throughput and failed requests; writes its section of BENCHMARKS.md.

    python -m benchmarks.serve_load [--data ../shared/data] [--requests 300] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from benchmarks.report import (
    DEFAULT_DATA,
    RESULTS,
    command_line,
    header,
    markdown_table,
    write_section,
)
from irde_onnx.runtime import RouterEditor

DOMAINS = ("math", "law", "medicine", "chinese")
EXTRA = "code"
LEVELS = (1, 8, 32)
CHANGES = 20
TOKEN = "bench-token"


def _rows(data: Path, domain: str) -> list[str]:
    with open(data / "domains" / f"{domain}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(latencies: list[float], wall: float, failed: int, changes: int) -> dict:
    lat = np.array(latencies) * 1000
    return {
        "n": len(latencies),
        "p50": float(np.percentile(lat, 50)) if len(lat) else 0.0,
        "p99": float(np.percentile(lat, 99)) if len(lat) else 0.0,
        "rps": len(latencies) / wall if wall else 0.0,
        "failed": failed,
        "changes": changes,
    }


async def _http_run(
    url: str,
    prompts: list[str],
    clients: int,
    requests: int,
    max_seconds: float,
    extra: list[str] | None,
) -> dict:
    """`clients` concurrent clients; with `extra`, 20 expert changes during the run."""
    latencies: list[float] = []
    failed = 0
    sent = 0
    changes = 0
    changing = extra is not None
    start = time.perf_counter()
    # idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s)
    limits = httpx.Limits(
        max_connections=clients + 1, max_keepalive_connections=clients + 1, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        def more() -> bool:
            if time.perf_counter() - start > max_seconds:
                return False
            return sent < requests or (changing and changes < CHANGES)

        async def worker() -> None:
            nonlocal sent, failed
            while more():
                text = prompts[sent % len(prompts)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    resp = await client.post("/route", json={"text": text})
                    ok = resp.status_code == 200
                    why = f"{resp.status_code}: {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    ok = False
                    why = f"{type(exc).__name__}: {exc}"
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    failed += 1
                    print("request failed:", why, file=sys.stderr)

        async def changer() -> None:
            nonlocal changes, failed
            auth = {"authorization": f"Bearer {TOKEN}"}
            while changes < CHANGES and time.perf_counter() - start < max_seconds:
                if changes % 2 == 0:
                    resp = await client.post(
                        "/experts",
                        headers=auth,
                        json={"name": EXTRA, "rows": [{"text": t} for t in extra]},
                    )
                else:
                    resp = await client.delete(f"/experts/{EXTRA}", headers=auth)
                if resp.status_code not in (200, 201):
                    failed += 1
                    print("change failed:", resp.text, file=sys.stderr)
                changes += 1
                await asyncio.sleep(0.05)

        tasks = [worker() for _ in range(clients)] + ([changer()] if changing else [])
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
        if changes % 2:  # leave the folder as it was for the next run
            await client.delete(f"/experts/{EXTRA}", headers={"authorization": f"Bearer {TOKEN}"})
    return _summary(latencies, wall, failed, changes)


def _local_run(
    router: RouterEditor,
    prompts: list[str],
    clients: int,
    requests: int,
    max_seconds: float,
    extra: list[str] | None,
) -> dict:
    """The same load on the in-process runtime: `clients` threads calling Router.route."""
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()
    counter = {"sent": 0, "changes": 0}
    start = time.perf_counter()
    changing = extra is not None

    def more() -> bool:
        if time.perf_counter() - start > max_seconds:
            return False
        return counter["sent"] < requests or (changing and counter["changes"] < CHANGES)

    def worker() -> None:
        nonlocal failed
        while more():
            with lock:
                i = counter["sent"]
                counter["sent"] += 1
            t0 = time.perf_counter()
            try:
                router.route([prompts[i % len(prompts)]])
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - counted as a failure
                with lock:
                    failed += 1

    def changer() -> None:
        while counter["changes"] < CHANGES and time.perf_counter() - start < max_seconds:
            if counter["changes"] % 2 == 0:
                router.add_expert(EXTRA, extra)
            else:
                router.remove_expert(EXTRA)
            counter["changes"] += 1
            time.sleep(0.05)

    with ThreadPoolExecutor(clients + 1) as pool:
        futures = [pool.submit(worker) for _ in range(clients)]
        if changing:
            futures.append(pool.submit(changer))
        for f in futures:
            f.result()
    wall = time.perf_counter() - start
    if counter["changes"] % 2:
        router.remove_expert(EXTRA)
    return _summary(latencies, wall, failed, counter["changes"])


def _start_server(router_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "IRDE_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irde_onnx",
            "serve",
            str(router_dir),
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--reload-interval",
            "0.5",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("irde serve exited")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("irde serve did not start within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--router",
        type=Path,
        default=None,
        help="a MiniLM router to serve (default: train one on 4 domains)",
    )
    parser.add_argument("--per-domain", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300, help="requests per run")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="time bound per run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads (server and in-process)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    texts = {d: _rows(args.data, d) for d in (*DOMAINS, EXTRA)}
    prompts = [t for d in DOMAINS for t in texts[d][args.per_domain : args.per_domain + 100]]
    np.random.default_rng(0).shuffle(prompts)
    extra = texts[EXTRA][:10]
    with tempfile.TemporaryDirectory(prefix="irde-load-") as tmp:
        router_dir = Path(tmp) / "router"
        if args.router is None:
            from irde_onnx.export import RouterTrainer

            train = [t for d in DOMAINS for t in texts[d][: args.per_domain]]
            labels = [d for d in DOMAINS for _ in range(args.per_domain)]
            RouterTrainer(encoder="minilm", progress=False).fit(train, labels).save(router_dir)
        else:
            import shutil

            shutil.copytree(args.router, router_dir)
        results: dict[tuple[str, int, bool], dict] = {}
        proc, url = _start_server(router_dir, args.threads)
        try:
            for _ in range(20):  # warm up
                httpx.post(f"{url}/route", json={"text": prompts[0]}, timeout=30)
            for clients in LEVELS:
                for changing in (False, True):
                    r = asyncio.run(
                        _http_run(
                            url,
                            prompts,
                            clients,
                            args.requests,
                            args.max_seconds,
                            extra if changing else None,
                        )
                    )
                    results[("irde serve (HTTP)", clients, changing)] = r
                    print("serve", clients, changing, r, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
        router = RouterEditor.open(router_dir, threads=args.threads)
        router.route(prompts[:20])
        for clients in LEVELS:
            for changing in (False, True):
                r = _local_run(
                    router,
                    prompts,
                    clients,
                    args.requests,
                    args.max_seconds,
                    extra if changing else None,
                )
                results[("in-process Router.route", clients, changing)] = r
                print("local", clients, changing, r, flush=True)
    rows = [
        [
            way,
            clients,
            f"{r['changes']}" if changing else "0",
            r["n"],
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['rps']:.0f}",
            r["failed"],
        ]
        for (way, clients, changing), r in results.items()
    ]
    table = markdown_table(
        [
            "runtime",
            "concurrent clients",
            "expert changes during the run",
            "requests",
            "p50 (ms)",
            "p99 (ms)",
            "throughput (req/s)",
            "failed",
        ],
        rows,
    )
    total_failed = sum(r["failed"] for r in results.values())
    short = [
        f"{way.split(' ')[0]} at {clients}"
        for (way, clients, changing), r in results.items()
        if changing and r["changes"] < CHANGES
    ]
    bound_note = (
        f" Runs that made fewer than {CHANGES} changes ({', '.join(short)}) hit the "
        "time bound first: a change (encoding the new expert's prompts, opening "
        "sessions) competes for the cores with the routing threads."
        if short
        else ""
    )
    text = (
        "## Serving under load (`benchmarks/serve_load.py`)\n\n"
        + header(command_line())
        + f"\nMiniLM int8 router ({len(DOMAINS)} domains), one prompt per request, "
        f"`irde serve` (1 worker, {args.threads} onnxruntime thread(s)) on 127.0.0.1 with an "
        "async httpx client in another process, against the in-process runtime "
        "(`Router.route` from as many threads) in the same run. Each run stops after "
        f"{args.requests} requests (runs with changes go on until the {CHANGES} changes are "
        f"done) or {args.max_seconds:g} s. An expert change through the server is a fresh "
        "load, add (10 prompts) or remove, save, swap, then the reload that notices the save; "
        "in-process "
        "it is `add_expert`/`remove_expert` without saving. Failed requests in all runs: "
        f"{total_failed}. Client and server share the machine's cores (load average "
        f"{os.getloadavg()[2]:.1f} over the last 15 minutes of the run).{bound_note}\n\n"
        + table
        + "\n"
    )
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "serve_load.md").write_text(text, encoding="utf-8")
        write_section("serve-load", text)
    return 0 if total_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the browser demo page downloads for a router: onnxruntime-web's wasm, the scripts and
the router's files, raw and gzipped, against the page-size target of issue 21 (6 MB).

Headless Chromium opens js/demo (built into demo/vendor/ by ``node demo/build.mjs``: the
wasm-only build of onnxruntime-web, ``ort-wasm-simd-threaded.wasm``, the smallest wasm file
onnxruntime-web ships) with each golden router (conformance/make_golden.py builds them into
js/test/routers when missing) and records every URL the page fetches until it is ready
(js/bench/page_bytes.mjs). Each file is counted raw and gzipped (zlib level 9, what a static
server with gzip sends). A fresh browser context per router: nothing comes from a cache.

    .venv/bin/python -m benchmarks.page_download              # writes BENCHMARKS.md + JSON
    .venv/bin/python -m benchmarks.page_download --routers tiny static --md /tmp/page.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.edge import GOLDEN_ROUTERS, demo_router
from benchmarks.report import RESULTS, ROOT, command_line, header, markdown_table, write_section

SECTION = "page"
TARGET_BYTES = 6_000_000
DEFAULT_ROUTERS = ["tiny", "static", "int8"]


def group(path: str) -> str:
    """Which part of the page a fetched path belongs to."""
    if path.endswith(".wasm"):
        return "wasm"
    if path.startswith("/router/"):
        name = path.rsplit("/", 1)[-1]
        if name.startswith("router.onnx"):
            return "graph"
        return {"stats.npz": "stats", "tokenizer.json": "tokenizer"}.get(name, "router.json")
    return "scripts"


GROUPS = ["wasm", "scripts", "graph", "tokenizer", "stats", "router.json"]


def measure(names: Sequence[str]) -> dict[str, Any]:
    """Run js/bench/page_bytes.mjs for ``names``; its JSON."""
    for name in names:
        demo_router(name)()  # built when missing
    out = subprocess.run(
        ["node", "bench/page_bytes.mjs", str(GOLDEN_ROUTERS), *names],
        cwd=ROOT / "js",
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"page_bytes.mjs failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mb(n: int) -> str:
    """Decimal megabytes, two places."""
    return f"{n / 1e6:.2f}"


def render(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section."""
    rows = []
    for name, page in result["pages"].items():
        by: dict[str, list[int]] = {g: [0, 0] for g in GROUPS}
        for f in page["files"]:
            by[group(f["path"])][0] += f["bytes"]
            by[group(f["path"])][1] += f["gzip"]
        raw = sum(v[0] for v in by.values())
        gz = sum(v[1] for v in by.values())
        raw_ns, gz_ns = raw - by["stats"][0], gz - by["stats"][1]

        def verdict(n: int) -> str:
            return "met" if n <= TARGET_BYTES else "**missed**"

        rows.append(
            [name]
            + [f"{mb(by[g][0])} / {mb(by[g][1])}" for g in GROUPS]
            + [
                f"{mb(raw)} / {mb(gz)} ({verdict(raw)} / {verdict(gz)})",
                f"{mb(raw_ns)} / {mb(gz_ns)} ({verdict(raw_ns)} / {verdict(gz_ns)})",
            ]
        )
    return (
        "\n".join(
            [
                "## Page download (`benchmarks/page_download.py`)",
                "",
                result["header"],
                "What the demo page (js/demo) downloads in headless Chromium until it is ready to "
                "route, per golden router (models/demo, 5 experts), in MB (10^6 bytes), raw / gzip "
                "(zlib level 9). wasm: `ort-wasm-simd-threaded.wasm`, the smallest wasm file "
                "onnxruntime-web ships (no reduced-operator build is made here); scripts: the "
                "page, onnxruntime-web's loader, the tokenizer library and irde's modules; graph: "
                "`router.onnx` + `router.onnx.data`; stats: `stats.npz`, which the page fetches "
                "to check its sha256 but routing does not need. Target (issue 21): the page of a "
                f"tiny router at most {TARGET_BYTES / 1e6:g} MB.",
                "",
                markdown_table(
                    ["router", *(f"{g} (MB)" for g in GROUPS), "total", "total without stats.npz"],
                    rows,
                ),
            ]
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", nargs="+", default=DEFAULT_ROUTERS, help="golden routers")
    parser.add_argument("--json", type=Path, default=RESULTS / "page_download.json")
    parser.add_argument("--md", type=Path, default=None, help="markdown file (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    result = {"header": header(command_line()), "pages": measure(args.routers)}
    markdown = render(result)
    print(markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_section(SECTION, markdown, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

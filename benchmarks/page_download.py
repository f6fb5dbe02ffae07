"""What the browser demo page downloads for a router: onnxruntime-web's wasm, the scripts and
the router's files, raw and gzipped, against the page-size target of issue 21 (6 MB).

Headless Chromium opens js/demo (built into demo/vendor/ by ``node demo/build.mjs``: the
wasm-only build of onnxruntime-web, ``ort-wasm-simd-threaded.wasm``, the smallest wasm file
onnxruntime-web ships) with each golden router (conformance/make_golden.py builds them into
js/test/routers when missing) and records every URL the page fetches until it is ready
(js/bench/page_bytes.mjs). Each file is counted raw, gzipped (zlib level 9, what a static
server with gzip sends) and brotli (quality 11). A fresh browser context per router: nothing
comes from a cache. ``--folders NAME=DIR`` adds router folders of any size, e.g. the tiny
routers ``benchmarks.tiny_quality --save-routers DIR`` keeps (trained on 7,484 prompts at the
default 5 MB budget and at the 2 MB page budget).

    .venv/bin/python -m benchmarks.tiny_quality --save-routers /tmp/tiny-routers
    .venv/bin/python -m benchmarks.page_download --folders \
        tiny-5MB=/tmp/tiny-routers/tiny-int8-grouped-CV \
        tiny-2MB=/tmp/tiny-routers/tiny-int8-2-MB-budget-grouped-CV
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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


def measure(names: Sequence[str], folders: dict[str, Path] | None = None) -> dict[str, Any]:
    """Run js/bench/page_bytes.mjs for the golden routers ``names`` and ``folders``; its JSON."""
    for name in names:
        demo_router(name)()  # built when missing
    folders = folders or {}
    with tempfile.TemporaryDirectory(prefix="irde-page-") as tmp:
        served = Path(tmp)  # one folder the demo server serves under /router/
        for name in names:
            (served / name).symlink_to(GOLDEN_ROUTERS / name, target_is_directory=True)
        for name, folder in folders.items():
            if not (folder / "router.json").is_file():
                raise SystemExit(f"--folders {name}={folder}: no router.json there")
            (served / name).symlink_to(folder.resolve(), target_is_directory=True)
        out = subprocess.run(
            ["node", "bench/page_bytes.mjs", str(served), *names, *folders],
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
        by: dict[str, list[int]] = {g: [0, 0, 0] for g in GROUPS}
        for f in page["files"]:
            part = by[group(f["path"])]
            part[0] += f["bytes"]
            part[1] += f["gzip"]
            part[2] += f.get("brotli", f["gzip"])
        total = [sum(v[i] for v in by.values()) for i in range(3)]

        def verdict(n: int) -> str:
            return "met" if n <= TARGET_BYTES else "**missed**"

        rows.append(
            [name]
            + [f"{mb(by[g][0])} / {mb(by[g][1])}" for g in GROUPS]
            + [" / ".join(f"{mb(n)} ({verdict(n)})" for n in total)]
        )
    return (
        "\n".join(
            [
                "## Page download (`benchmarks/page_download.py`)",
                "",
                result["header"],
                "What the demo page (js/demo) downloads in headless Chromium until it is ready to "
                "route, per router, in MB (10^6 bytes), raw / gzip (zlib level 9) per part, and "
                "raw / gzip / brotli (quality 11) in total. wasm: `ort-wasm-simd-threaded.wasm`, "
                "the smallest wasm file onnxruntime-web ships (no reduced-operator build is made "
                "here); scripts: the page, onnxruntime-web's loader, the tokenizer library and "
                "irde's modules; graph: `router.onnx` + `router.onnx.data`; stats: `stats.npz`, "
                "which `Router.fromUrl` no longer fetches (routing never reads it; "
                "`checkStatistics: true` fetches and checks it). tiny, static, int8: the golden "
                "routers (models/demo, 5 experts, 200 prompts); tiny-5MB and tiny-2MB: tiny "
                "routers trained on the 7,484 in-source training prompts of the domains at the "
                "default 5 MB budget and at `--max-bytes 2000000` (accuracy in the tiny section). "
                f"Target (issue 21): the page of a tiny router at most {TARGET_BYTES / 1e6:g} MB.",
                "",
                markdown_table(
                    ["router", *(f"{g} (MB)" for g in GROUPS), "total raw / gzip / brotli (MB)"],
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
    parser.add_argument(
        "--folders",
        nargs="*",
        default=[],
        metavar="NAME=DIR",
        help="more router folders to measure (e.g. tiny_quality --save-routers folders)",
    )
    args = parser.parse_args(argv)
    folders = {}
    for item in args.folders:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--folders takes NAME=DIR, got {item!r}")
        folders[name] = Path(folder)
    result = {"header": header(command_line()), "pages": measure(args.routers, folders)}
    markdown = render(result)
    print(markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_section(SECTION, markdown, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

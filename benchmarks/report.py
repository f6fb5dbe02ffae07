"""Shared helpers of the benchmark scripts: machine description and BENCHMARKS.md sections.

Also used by research/ (its scripts write sections of BENCHMARKS.md the same way).
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def machine() -> str:
    """One line: CPU model, cores, memory, OS, Python and key package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import numpy
    import onnxruntime

    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
        f"numpy {numpy.__version__}"
    )


def header(command: str) -> str:
    """Machine, date and the command that produced a section."""
    return (
        f"Machine: {machine()}  \nDate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"  \nCommand: `{command}`\n"
    )


def command_line() -> str:
    """The command as it was run from the repository root (``python -m benchmarks.speed ...``)."""
    script = Path(sys.argv[0]).resolve()
    try:
        module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
    except ValueError:
        return " ".join(["python", str(script), *sys.argv[1:]])
    return " ".join(["python", "-m", module, *sys.argv[1:]])


def write_section(name: str, markdown: str, path: Path | None = None) -> None:
    """Replace (or append) the section between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``.

    ``path`` defaults to BENCHMARKS.md at the repository root.
    """
    path = BENCHMARKS_MD if path is None else path
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def markdown_table(header_row: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header_row) + " |", "|" + "---|" * len(header_row)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

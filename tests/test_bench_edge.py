"""benchmarks/edge.py on the toy router: the whole script in quick mode, a few seconds."""

import json
import subprocess
import sys

from .conftest import ROOT


def test_quick_run_writes_the_table_and_the_json(toy_router_dir, tmp_path):
    md, out = tmp_path / "BENCHMARKS.md", tmp_path / "edge.json"
    md.write_text(
        "# Benchmarks\n\n<!-- begin edge -->\nstale figures\n<!-- end edge -->\n", encoding="utf-8"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.edge",
            "--quick",
            "--synthetic",
            "--router",
            f"toy={toy_router_dir}",
            "--only",
            "toy",
            "--md",
            str(md),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    (row,) = result["x86"]
    assert row["router"] == "toy" and row["n"] == 12
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["cold_start_ms"] > row["import_ms"] > 0 and row["rss_mb"] > 0
    assert row["size_mb"] > 0 and "stats.npz" in row["files"]
    text = md.read_text(encoding="utf-8")
    assert "stale figures" not in text and text.count("<!-- begin edge -->") == 1
    assert "| toy (given: " in text and "Edge figures" in run.stdout

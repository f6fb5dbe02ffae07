"""Smoke test of benchmarks/experts.py on a few prompts (the full run is by hand)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, shared_data_or_fail


def _load():
    path = ROOT / "benchmarks" / "experts.py"
    spec = importlib.util.spec_from_file_location("bench_experts", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_experts_benchmark_runs_and_reports(capsys):
    data = shared_data_or_fail("domains")
    bench = _load()
    assert (
        bench.main(
            [
                "--data",
                str(Path(data).parent),
                "--per-domain",
                "12",
                "--repeats",
                "1",
                "--encoders",
                "static",
                "--no-write",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| static"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-2:] == ["yes", "yes"]  # encoder bytes unchanged, head equals scratch
    assert float(cells[1]) > 0 and int(cells[4]) >= 0

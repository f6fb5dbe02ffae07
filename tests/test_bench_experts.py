"""Smoke test of benchmarks/experts.py on a few prompts (the full run is by hand)."""

import importlib
from pathlib import Path

import pytest

from .conftest import shared_data_or_fail


def _load():
    return importlib.import_module("benchmarks.experts")


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

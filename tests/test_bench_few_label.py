"""benchmarks/few_label_expert.py: BENCHMARKS.md's tables are what its committed results render."""

from __future__ import annotations

import json

from benchmarks.few_label_expert import report

from .conftest import ROOT
from .test_benchmark_figures import section, tables


def test_committed_tables_are_what_the_results_render_to():
    res = json.loads((ROOT / "benchmarks" / "results" / "few_label_expert.json").read_text())
    committed = tables(section("few-label-expert"))
    assert committed and committed == tables(report(res))
    gate = next(line for line in committed[0].splitlines() if line.startswith("| gate |"))
    assert "| met |" in gate  # the product gate never loses more than 0.2 points

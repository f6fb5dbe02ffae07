"""The trainer's defaults that were chosen by measurement, in one light module.

The rule (README, "How the defaults were chosen"): for each encoder measured, the default
input view and pooled layers are the candidate with the lowest grouped cross-validation
squared error (as the trainer's ``auto`` computes it) on training rows of ../shared/data,
averaged over two data sets relative to the plain router (view ``full``, last layer):
RouterDC train grouped by task (leave-one-task-out) and the domains' in-source training rows
grouped by source benchmark (leave-one-benchmark-out). No test row of those protocols is
used. ``python -m research.generalisation.views_layers`` (research/generalisation/) recomputes
the rule (its ``DEFAULT_RULE``) on the full data and prints its pick beside the other rules'.
"""

from __future__ import annotations

# measured for minilm (int8) by research/generalisation/views_layers.py (its results.json;
# BENCHMARKS.md, "Generalisation"); other encoders keep the text as it is until measured
MEASURED: dict[str, dict[str, object]] = {
    "minilm": {"view": "strip_options+tail", "layers": (6, 5)},
}
PLAIN_VIEW = "full"


def default_view(encoder: str) -> str:
    """The input view ``RouterTrainer`` and ``irde train`` use for ``encoder`` by default."""
    return str(MEASURED.get(encoder, {}).get("view", PLAIN_VIEW))


def default_layers(encoder: str) -> tuple[int, ...]:
    """The pooled layers used for ``encoder`` by default (empty: the last layer alone)."""
    return tuple(MEASURED.get(encoder, {}).get("layers", ()))  # type: ignore[arg-type]

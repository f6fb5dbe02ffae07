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


# the tiny encoder's table (issue 21 point 3), chosen by grouped CV on training rows of the
# domains' two protocols (research/tiny/README.md, results.json): the N frequent rows, the
# unknown row and L2 are within 1 CV point; the mean of the two protocols' stage-1 CV prefers
# no L2 (48.6 + 68.8 against 43.3 + 69.8: L2 helps cross-source by 1 point, costs 5 points
# leave-one-benchmark-out); with no L2, the in-source grouped CV's pick among graphs of at most
# 5,000,000 bytes is N 5000, the unknown row `mean`, PCA k 256, int8 (fp16 is within 0.1
# point). The kept rows grow with the training vocabulary, so a byte budget bounds them: the
# training tokens seen fewest times are dropped first (they read the shared unknown row).
TINY_FREQUENT_ROWS = 5000  # the first N ids of the tokenizer's vocabulary order, kept too
TINY_UNKNOWN = "mean"  # the shared row of tokens outside the kept rows: the dropped rows' mean
TINY_NORMALIZE = False  # L2-normalise the pooled features
TINY_DIM = 256  # PCA width k (fit on the training prompts' pooled fp32 features)
TINY_MAX_BYTES = 5_000_000  # router.onnx of a tiny router, whatever the training vocabulary

"""The trainer's defaults that were chosen by measurement, in one light module.

The rule (README, "How the defaults were chosen"): each default is the candidate with the
best grouped cross-validation criterion on the training rows of ../shared/data (domains
grouped by source benchmark, RouterDC rows grouped by task), never a test-set number.
``benchmarks/quality.py`` recomputes the criterion for every candidate in its
*generalisation* section, so a change of data or candidates shows there first.
"""

from __future__ import annotations

DEFAULT_VIEW = "full"
DEFAULT_LAYERS: tuple[int, ...] = ()

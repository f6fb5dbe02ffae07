"""Feedback rows: parsing and their exact fold into a router's statistics (issue 19).

Three row shapes, as JSON objects:

- ``{"text", "expert"}``: the right expert for the prompt (a router trained on domains). The
  row joins the pooled rows with a one-hot target, exactly as one more training row.
- ``{"text", "scores": {expert: score, ...}}``: scores for any subset of the experts.
- ``{"text", "expert", "outcome"}``: the expert that served the prompt and how well it did
  (bandit feedback): a score row for that one expert.

Each row changes only the statistics of the columns it informs. A score row for a subset of
pooled score columns first gives every pooled column its own copy of the rows it is fit on
(:meth:`RouterStats.to_own`, head unchanged), so the other columns keep their fit.

Every feedback row weighs ``traffic_weight`` training rows (default
:data:`DEFAULT_TRAFFIC_WEIGHT` = 10). With a ridge penalty ``lam`` this is the same head as the
research's rule "training rows weigh 0.1 once traffic exists" with penalty ``lam / 10``
(scaling every row weight and lam by one factor leaves ridge unchanged), while lam keeps the
scale it was chosen on. The weight is recorded in the statistics at the first feedback and
every later fold uses it, so the head always equals a fresh weighted ridge fit on the
training rows (weight 1) and every feedback row (weight ``traffic_weight``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.moments import Moments
from irde_onnx.learning.statistics import MAX_TARGET, EncodedRows, RouterStats

# The measurement: 200 labelled traffic prompts weighted 10x against the training
# rows route the held-out domain sources at 91.4% (equal weight: 84.1%); the research's
# omega = 0.1 (training rows at 0.1, traffic at 1) is the same head with lam / 10.
DEFAULT_TRAFFIC_WEIGHT = 10.0
ROW_KEYS = frozenset({"text", "expert", "scores", "outcome", "request_id"})


@dataclass(frozen=True)
class FeedbackRow:
    """One parsed feedback row: the prompt and a target per expert it informs.

    ``domain`` is True for a ``{"text", "expert"}`` row (one-hot over the pooled columns).
    """

    text: str
    targets: dict[str, float]
    domain: bool = False

    def to_json(self) -> dict[str, Any]:
        """The row as the journal stores it (one of the accepted shapes)."""
        if self.domain:
            return {"text": self.text, "expert": next(iter(self.targets))}
        return {"text": self.text, "scores": dict(self.targets)}


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or abs(v) > MAX_TARGET:
        raise InvalidInputError(f"{what} must be finite and at most {MAX_TARGET:g}, got {value!r}")
    return v


def parse_rows(
    rows: Iterable[Mapping[str, Any]],
    experts: Sequence[str],
    modes: Sequence[str],
    target: str,
    where: str = "row",
    labels: Sequence[str] | None = None,
) -> list[FeedbackRow]:
    """Check feedback rows against a router's experts; raise naming the row and the fix.

    Args:
        rows: JSON objects in one of the three shapes (module docstring).
        experts: the router's experts.
        modes: the experts' ``pooled``/``own`` modes.
        target: the router's training target, ``domain`` or ``score``.
        where: how rows are named in errors (``"row"`` gives "row 3").
        labels: per row, its name in errors instead (e.g. ``"file.jsonl:7"``).

    """
    names = list(experts)
    parsed: list[FeedbackRow] = []
    for i, row in enumerate(rows, 1):
        at = labels[i - 1] if labels is not None else f"{where} {i}"
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"{at}: a feedback row must be a JSON object, got {row!r}")
        extra = set(row) - ROW_KEYS
        if extra:
            raise InvalidInputError(
                f"{at}: unknown field(s) {sorted(extra)}; a feedback row is "
                '{"text", "expert"}, {"text", "scores": {...}} or {"text", "expert", "outcome"}'
            )
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f'{at}: "text" must be a non-empty string (the prompt)')

        def known(name: object, at: str = at) -> str:
            if not isinstance(name, str) or name not in names:
                raise InvalidInputError(
                    f"{at}: unknown expert {name!r}; the router's experts are {names} "
                    "(add the expert first with `irde experts add`)"
                )
            return name

        if "scores" in row:
            if "expert" in row or "outcome" in row:
                raise InvalidInputError(f'{at}: give "scores" or "expert"/"outcome", not both')
            scores = row["scores"]
            if not isinstance(scores, Mapping) or not scores:
                raise InvalidInputError(f'{at}: "scores" must be a non-empty {{expert: score}}')
            targets = {known(e): _number(s, f"{at}: the score of {e!r}") for e, s in scores.items()}
            if target != "score" and any(modes[names.index(e)] == "pooled" for e in targets):
                raise InvalidInputError(
                    f"{at}: this router was trained on domains; send "
                    '{"text", "expert"} naming the right expert instead of scores'
                )
            parsed.append(FeedbackRow(text, targets))
        elif "outcome" in row:
            name = known(row.get("expert"))
            if target != "score" and modes[names.index(name)] == "pooled":
                raise InvalidInputError(
                    f"{at}: this router was trained on domains; an outcome needs a router "
                    'trained on scores (send {"text", "expert"} with the right expert)'
                )
            parsed.append(FeedbackRow(text, {name: _number(row["outcome"], f"{at}: outcome")}))
        elif "expert" in row:
            name = known(row["expert"])
            if target == "score" or modes[names.index(name)] != "pooled":
                raise InvalidInputError(
                    f"{at}: expert {name!r} is fit on scores; send "
                    '{"text", "expert", "outcome"} or {"text", "scores": {...}} for it'
                )
            parsed.append(FeedbackRow(text, {name: 1.0}, domain=True))
        else:
            raise InvalidInputError(
                f'{at}: a feedback row needs "expert" (the right expert), "scores" or '
                '"expert" with "outcome"'
            )
    return parsed


def check_traffic_weight(weight: float | None, stats: RouterStats) -> float:
    """The weight to fold with: the one recorded, else ``weight``, else the default."""
    recorded = stats.traffic_weight
    if weight is None:
        return recorded or DEFAULT_TRAFFIC_WEIGHT
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise InvalidInputError(f"traffic_weight must be a number > 0, got {weight!r}")
    w = float(weight)
    if not (math.isfinite(w) and w > 0):
        raise InvalidInputError(f"traffic_weight must be a finite number > 0, got {weight!r}")
    if recorded and w != recorded:
        raise InvalidInputError(
            f"this router's feedback was folded with traffic weight {recorded:g}; later "
            "feedback must use the same weight to stay equal to one weighted fit (omit it, "
            f"or pass {recorded:g})"
        )
    return w


def check_half_life(half_life: float | None, stats: RouterStats) -> float:
    """The half-life to fold with (0: no forgetting); records it in ``stats`` the first time.

    Forgetting keeps the feedback rows' own moments beside the statistics (they decay, the
    training rows do not), so it must be chosen before the first feedback row.
    """
    recorded = stats.half_life
    if half_life is None:
        return recorded
    if isinstance(half_life, bool) or not isinstance(half_life, (int, float)):
        raise InvalidInputError(f"half_life must be a number of feedback rows, got {half_life!r}")
    h = float(half_life)
    if not (math.isfinite(h) and h > 0):
        raise InvalidInputError(f"half_life must be a finite number > 0 of rows, got {half_life!r}")
    if recorded:
        if h != recorded:
            raise InvalidInputError(
                f"this router forgets feedback with half-life {recorded:g} rows; later feedback "
                f"must use the same (omit it, or pass {recorded:g})"
            )
        return h
    if stats.traffic_weight:
        raise InvalidInputError(
            "this router's feedback so far was folded without forgetting, and its rows can no "
            "longer be told apart from the training rows; fold feedback without a half-life"
        )
    return h


def start_forgetting(stats: RouterStats, half_life: float) -> None:
    """Keep the feedback rows' own moments (none yet) from now on, decaying by ``half_life``."""
    traffic = RouterStats.empty(stats.dim, diagonal=stats.diagonal, fingerprint=stats.fingerprint)
    for name, mode in zip(stats.experts, stats.modes, strict=True):
        zero = Moments.zeros(stats.dim, 0, diagonal=stats.diagonal)
        traffic.append(name, mode, zero, np.zeros(stats.dim), 0.0, 0.0)
    stats.traffic, stats.half_life = traffic, half_life


def _decay(s: RouterStats, gamma: float) -> None:
    """Multiply the feedback rows' weights by ``gamma``: in their moments and in ``s``."""
    f = s.traffic
    assert f is not None
    a = 1.0 - gamma
    s.shared = s.shared - _scaled(f.shared, a)
    s.owned = [m - _scaled(fm, a) for m, fm in zip(s.owned, f.owned, strict=True)]
    s.sum_xy = s.sum_xy - a * f.sum_xy
    s.sum_y, s.sum_yy = s.sum_y - a * f.sum_y, s.sum_yy - a * f.sum_yy
    s.feedback_n = s.feedback_n - a * f.feedback_n
    f.shared = _scaled(f.shared, gamma)
    f.owned = [_scaled(m, gamma) for m in f.owned]
    f.sum_xy, f.sum_y, f.sum_yy = gamma * f.sum_xy, gamma * f.sum_y, gamma * f.sum_yy
    f.feedback_n = gamma * f.feedback_n


def _scaled(m: Moments, w: float) -> Moments:
    return Moments(m.n * w, m.sum_x * w, m.gram * w, m.sum_xy * w, m.sum_y * w, m.sum_yy * w)


def _add_rows(stats: RouterStats, k: int, rows: Moments) -> None:
    stats.owned[k] = stats.owned[k] + rows


def fold(
    stats: RouterStats,
    dense: RouterStats | None,
    rows: Sequence[FeedbackRow],
    encoded: EncodedRows,
    weight: float,
    table: np.ndarray | None,
    half_life: float = 0.0,
) -> None:
    """Fold parsed rows (encoded as ``encoded``) into ``stats`` and ``dense`` in place.

    ``dense`` is ``stats`` projected to feature space (static encoder), or None when
    ``stats`` is already dense. Each row weighs ``weight`` training rows. With ``half_life``
    (rows), the earlier feedback rows' weights are multiplied by ``0.5 ** (1 / half_life)``
    before each row is folded (research/feedback/exactness.py's rule); training rows stay.
    Rows are folded in one pass per group of columns they inform (one weighted product per
    group, not one outer product per row): the same sums, in another order.
    """
    if half_life:
        for s in (stats, dense):
            if s is not None and s.traffic is None:
                start_forgetting(s, half_life)
    gamma = 0.5 ** (1.0 / half_life) if half_life else 1.0
    partial = {e for r in rows if not r.domain for e in r.targets}
    for s in (stats, dense):
        if s is None:
            continue
        pooled = [e for e, m in zip(s.experts, s.modes, strict=True) if m == "pooled"]
        for r in rows:
            if not r.domain and set(r.targets) != set(pooled) and partial & set(pooled):
                s.to_own(pooled)
                break
    n_rows = len(rows)
    if not n_rows:
        return
    # Before each row the earlier feedback decays by gamma: over a batch of B rows that is
    # one decay by gamma**B, with row i (of B) weighing gamma**(B-1-i) (exact, one pass).
    row_w = weight * gamma ** np.arange(n_rows - 1, -1, -1, dtype=np.float64)
    for s in (stats, dense):
        if s is not None and s.traffic is not None:
            _decay(s, gamma**n_rows)
    for idx, y, key in _batches(stats, rows):
        m = _batch_moments(encoded, idx, y, row_w[idx])
        mp = m.project(table) if (dense is not None and table is not None) else m
        for s, mom in ((stats, m), (dense, mp)):
            if s is None:
                continue
            if s.traffic is not None:
                _add_batch(s.traffic, key, mom, len(idx))
            _add_batch(s, key, mom, len(idx))
    for s in (stats, dense):
        if s is not None:
            s.traffic_weight = weight


def _batches(
    s: RouterStats, rows: Sequence[FeedbackRow]
) -> list[tuple[np.ndarray, np.ndarray, tuple[str, list[int]]]]:
    """Rows grouped by the columns they inform: (row indices, targets (n, m), key).

    Keys: ``("domain", [k])`` one-hot rows of expert k; ``("shared", pooled columns)``
    score rows of every pooled column; ``("own", [k])`` score rows of own column k.
    """
    pooled = [k for k, m in enumerate(s.modes) if m == "pooled"]
    groups: dict[tuple[str, tuple[int, ...]], tuple[list[int], list[list[float]]]] = {}

    def put(kind: str, cols: list[int], i: int, y: list[float]) -> None:
        idx, ys = groups.setdefault((kind, tuple(cols)), ([], []))
        idx.append(i)
        ys.append(y)

    for i, r in enumerate(rows):
        ks = [s.experts.index(e) for e in r.targets]
        if r.domain:
            put("domain", ks, i, [1.0])
        elif all(s.modes[k] == "pooled" for k in ks):  # every pooled column scored
            put("shared", pooled, i, [r.targets[s.experts[k]] for k in pooled])
        else:
            for k in ks:
                put("own", [k], i, [r.targets[s.experts[k]]])
    return [
        (np.asarray(idx, dtype=np.int64), np.asarray(ys, dtype=np.float64), (kind, list(cols)))
        for (kind, cols), (idx, ys) in groups.items()
    ]


def _batch_moments(encoded: EncodedRows, idx: np.ndarray, y: np.ndarray, w: np.ndarray) -> Moments:
    """Weighted moments of the prompts ``idx`` with targets ``y``."""
    if encoded.features is not None:
        return Moments.from_rows(np.asarray(encoded.features)[idx], y, w)
    if np.all(w == w[0]):  # token counts take no per-row weights: one weight for all
        return _scaled(encoded.moments(y, idx), float(w[0]))
    total = None
    for j, i in enumerate(idx):  # forgetting on token counts: row by row
        m = _scaled(encoded.moments(y[j : j + 1], np.array([i])), float(w[j]))
        total = m if total is None else total + m
    assert total is not None
    return total


def _add_batch(s: RouterStats, key: tuple[str, list[int]], mom: Moments, count: int) -> None:
    """Add the weighted moments ``mom`` of ``count`` rows to the columns ``key`` names."""
    kind, cols = key
    rows = _rows(mom)
    if kind == "domain":
        _add_rows(s, cols[0], rows)
    elif kind == "shared":
        s.shared = s.shared + rows
    else:
        _add_rows(s, cols[0], rows)
    for j, k in enumerate(cols):
        s.sum_xy[k] += mom.sum_xy[:, j]
        s.sum_y[k] += mom.sum_y[j]
        s.sum_yy[k] += mom.sum_yy[j]
        s.feedback_rows[k] += count  # rows naming the expert
        if kind != "domain":
            s.feedback_n[k] += mom.n
    if kind == "domain":  # a pooled row: every pooled column is fit on it (target 0 or 1)
        for k, mode in enumerate(s.modes):
            if mode == "pooled":
                s.feedback_n[k] += mom.n


def _rows(m: Moments) -> Moments:
    d = m.n_features
    return Moments(m.n, m.sum_x, m.gram, np.zeros((d, 0)), np.zeros(0), np.zeros(0))

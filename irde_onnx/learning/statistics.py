"""Per-expert sufficient statistics of a router, stored in ``stats.npz`` (no pickle).

Rows (prompts, or tokens for the static encoder) belong either to the *shared* pool
(score-mode training prompts, owned by no expert) or to one expert (its domain texts, or the
validation prompts it was added with). Each expert's column has target cross-products over
the rows it is fit on:

- a ``pooled`` column is fit on the shared rows plus the rows of every pooled expert, so all
  pooled columns share one Gram matrix (IR3DE's one-hot domains; per-expert quality scores);
- an ``own`` column is fit on that expert's rows alone (an expert added with scores).

Removing a pooled expert removes its rows from the pool, which is exactly training without
it; adding one is exactly training with it. For the static encoder a row is a one-hot token
indicator, so the Gram matrices are token-count histograms over the vocabulary (diagonal),
projected through the embedding table when solving.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.learning.moments import Moments, data_scale, kappa_of, relative_lam, solve

STATS_NAME = "stats.npz"
# Statistics beyond this magnitude overflow float64 when squared or solved: refused.
MAX_STATISTIC = 1e150
_FEEDBACK_KEYS = ("feedback_n", "feedback_rows", "traffic_weight", "journal_seq")
_SHADOW_KEYS = ("features", "scores", "weights", "cost")  # per shadow expert k: shadow_{key}_{k}
_KEYS = (
    "shared_n",
    "shared_sum_x",
    "shared_gram",
    "n",
    "sum_x",
    "gram",
    "sum_xy",
    "sum_y",
    "sum_yy",
)


@dataclass
class ShadowRows:
    """The scored rows of a shadow expert (issue 19), kept to re-check its gate.

    A shadow expert's column is solved from its moments like any ``own`` column, but it
    does not route (it is not in ``router.json`` nor in the graph) until its gate
    (:mod:`irde_onnx.learning.gate`) passes; the gate needs each row, not only moments.

    Attributes:
        features: (n, d) float32, the rows' features (the graph's ``features`` output).
        scores: (n,) the expert's score on each row.
        weights: (n,) each row's weight in the column (1, or the traffic weight).
        cost: the expert's cost per prompt, kept for when it joins a router with costs.

    """

    features: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    cost: float | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def extend(self, features: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> ShadowRows:
        """These rows followed by more rows (a new object)."""
        return ShadowRows(
            np.concatenate([self.features, np.asarray(features, np.float32)]),
            np.concatenate([self.scores, np.asarray(scores, np.float64)]),
            np.concatenate([self.weights, np.asarray(weights, np.float64)]),
            self.cost,
        )

    def copy(self) -> ShadowRows:
        """A deep copy."""
        return ShadowRows(self.features.copy(), self.scores.copy(), self.weights.copy(), self.cost)


@dataclass
class RouterStats:
    """Float64 statistics: shared rows and, per expert, owned rows and column targets.

    Attributes:
        shared: moments of the shared rows (targets unused: m = 0).
        owned: per expert, moments of the rows it owns (targets unused: m = 0).
        sum_xy: per expert, ``sum x y_k`` over the rows its column is fit on, shape (E, D).
        sum_y: per expert, ``sum y_k``, shape (E,).
        sum_yy: per expert, ``sum y_k^2``, shape (E,).
        experts: expert names, in column order.
        modes: per expert, ``pooled`` or ``own``.
        fingerprint: identifies the features (encoder, tokenizer, precision, truncation).

    """

    shared: Moments
    owned: list[Moments]
    sum_xy: np.ndarray
    sum_y: np.ndarray
    sum_yy: np.ndarray
    experts: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    # Feedback bookkeeping (issue 19): per expert, the weight of feedback rows its column is
    # fit on (``n`` units, so comparable with :meth:`column_n`) and the number of feedback
    # rows naming it (label, score or outcome); the weight of a feedback row
    # against a training row (0: no feedback yet); the last journal entry folded in.
    feedback_n: np.ndarray = field(default_factory=lambda: np.zeros(0))
    feedback_rows: np.ndarray = field(default_factory=lambda: np.zeros(0))
    traffic_weight: float = 0.0
    journal_seq: int = 0
    # With forgetting (a half-life in feedback rows): the feedback rows' own moments, in the
    # same layout, so that they can decay while the training rows stay (None: no forgetting).
    half_life: float = 0.0
    traffic: RouterStats | None = None
    # Shadow experts (issue 19 point 4): columns solved and reported but not routing, by
    # name, with the rows their gate is re-checked on. Routing columns: :attr:`routing`.
    shadows: dict[str, ShadowRows] = field(default_factory=dict)
    # lam relative to the data (issue 19): each column's lam is
    # ``max(lam, kappa * trace(Sxx_e)/d)`` of its own moments (:func:`relative_lam`);
    # None: the router's lam for every column (statistics saved before kappa existed).
    kappa: float | None = None
    # per expert, the score its column predicts while it has no rows (a cold start);
    # NaN: no prior (such a column needs rows). None: no expert has one.
    prior: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.feedback_n) != len(self.owned):
            self.feedback_n = np.zeros(len(self.owned))
        if len(self.feedback_rows) != len(self.owned):
            self.feedback_rows = np.zeros(len(self.owned))
        if self.prior is not None:
            self.prior = np.asarray(self.prior, dtype=np.float64).reshape(-1)
            if len(self.prior) != len(self.owned):
                raise InvalidInputError(
                    f"{len(self.prior)} priors for {len(self.owned)} experts; give one each"
                )

    @property
    def routing(self) -> list[int]:
        """Indices of the columns that route (every column but the shadow experts')."""
        return [k for k, name in enumerate(self.experts) if name not in self.shadows]

    @property
    def routing_experts(self) -> list[str]:
        """The routing experts' names, in column order (``router.json``'s experts)."""
        return [self.experts[k] for k in self.routing]

    @property
    def routing_modes(self) -> list[str]:
        """The routing experts' modes, in column order."""
        return [self.modes[k] for k in self.routing]

    def promote(self, name: str) -> None:
        """Shadow expert ``name`` routes from now on: its column moves last, unchanged."""
        if name not in self.shadows:
            raise InvalidInputError(
                f"{name!r} is not a shadow expert (shadows: {list(self.shadows)})"
            )
        k = self.experts.index(name)
        self._reorder([i for i in range(self.n_experts) if i != k] + [k])
        del self.shadows[name]

    def _reorder(self, order: list[int]) -> None:
        self.owned = [self.owned[i] for i in order]
        self.experts = [self.experts[i] for i in order]
        self.modes = [self.modes[i] for i in order]
        self.sum_xy, self.sum_y, self.sum_yy = (
            self.sum_xy[order],
            self.sum_y[order],
            self.sum_yy[order],
        )
        self.feedback_n, self.feedback_rows = self.feedback_n[order], self.feedback_rows[order]
        if self.prior is not None:
            self.prior = self.prior[order]
        if self.traffic is not None:
            self.traffic._reorder(order)

    def column_n(self, k: int) -> float:
        """Total (weighted) row count expert ``k``'s column is fit on."""
        if self.modes[k] == "own":
            return float(self.owned[k].n)
        return float(
            self.shared.n
            + sum(m.n for m, o in zip(self.owned, self.modes, strict=True) if o == "pooled")
        )

    def to_own(self, names: list[str]) -> None:
        """Fit the pooled columns ``names`` on their own copy of the rows they are fit on.

        The head is unchanged (each column keeps the same rows and targets); afterwards a
        row can inform some of those columns and not the others (scores for a subset).
        Every pooled column is converted at once when one is, since the shared rows then
        belong to no remaining group.
        """
        pooled = [k for k, m in enumerate(self.modes) if m == "pooled"]
        if not pooled or not any(self.experts[k] in names for k in pooled):
            return
        if self.traffic is not None:
            self.traffic.to_own(names)
        rows = self.shared.copy()
        for k in pooled:
            rows = rows + self.owned[k]
        for k in pooled:
            self.owned[k] = _rows_only(rows)
            self.modes[k] = "own"
        self.shared = Moments.zeros(self.dim, 0, diagonal=self.diagonal)

    @classmethod
    def empty(cls, dim: int, *, diagonal: bool, fingerprint: str = "") -> RouterStats:
        """No rows and no experts, in a space of ``dim`` features (or tokens if diagonal)."""
        return cls(
            Moments.zeros(dim, 0, diagonal=diagonal),
            [],
            np.zeros((0, dim)),
            np.zeros(0),
            np.zeros(0),
            [],
            [],
            fingerprint,
        )

    @property
    def dim(self) -> int:
        """Feature (or vocabulary) dimension D."""
        return self.shared.n_features

    @property
    def diagonal(self) -> bool:
        """True for token-count statistics (static encoder)."""
        return self.shared.diagonal

    @property
    def n_experts(self) -> int:
        """Number of expert columns."""
        return len(self.owned)

    def append(
        self, name: str, mode: str, owned: Moments, sum_xy: np.ndarray, sum_y: float, sum_yy: float
    ) -> None:
        """Add an expert column with the rows it owns and its target sums."""
        if owned.n_features != self.dim or owned.diagonal != self.diagonal:
            raise InvalidInputError("statistics of another feature space cannot be combined")
        if name in self.experts:
            raise InvalidInputError(f"expert {name!r} already exists")
        if mode not in ("pooled", "own"):
            raise InvalidInputError(f"mode must be 'pooled' or 'own', got {mode!r}")
        self.experts.append(name)
        self.modes.append(mode)
        self.owned.append(_rows_only(owned))
        self.sum_xy = np.vstack([self.sum_xy, np.asarray(sum_xy, dtype=np.float64)[None, :]])
        self.sum_y = np.append(self.sum_y, float(sum_y))
        self.sum_yy = np.append(self.sum_yy, float(sum_yy))
        self.feedback_n = np.append(self.feedback_n, 0.0)
        self.feedback_rows = np.append(self.feedback_rows, 0.0)
        if self.prior is not None:  # an added expert comes with rows: no prior
            self.prior = np.append(self.prior, np.nan)
        if self.traffic is not None:  # a new column has no feedback rows yet
            zero = Moments.zeros(self.dim, 0, diagonal=self.diagonal)
            self.traffic.append(name, mode, zero, np.zeros(self.dim), 0.0, 0.0)

    def append_domain(self, name: str, rows: Moments) -> None:
        """Add a one-hot (domain) expert whose rows are summarised by ``rows``."""
        self.append(name, "pooled", rows, rows.sum_x, rows.n, rows.n)

    def remove(self, index: int) -> None:
        """Drop expert ``index``: its column and the rows it owns."""
        self.shadows.pop(self.experts[index], None)
        del self.owned[index]
        del self.experts[index]
        del self.modes[index]
        self.sum_xy = np.delete(self.sum_xy, index, axis=0)
        self.sum_y = np.delete(self.sum_y, index)
        self.sum_yy = np.delete(self.sum_yy, index)
        self.feedback_n = np.delete(self.feedback_n, index)
        self.feedback_rows = np.delete(self.feedback_rows, index)
        if self.prior is not None:
            self.prior = np.delete(self.prior, index)
        if self.traffic is not None:
            self.traffic.remove(index)

    def copy(self) -> RouterStats:
        """A deep copy."""
        return RouterStats(
            self.shared.copy(),
            [m.copy() for m in self.owned],
            self.sum_xy.copy(),
            self.sum_y.copy(),
            self.sum_yy.copy(),
            list(self.experts),
            list(self.modes),
            self.fingerprint,
            self.feedback_n.copy(),
            self.feedback_rows.copy(),
            self.traffic_weight,
            self.journal_seq,
            self.half_life,
            None if self.traffic is None else self.traffic.copy(),
            {name: rows.copy() for name, rows in self.shadows.items()},
            self.kappa,
            None if self.prior is None else self.prior.copy(),
        )

    def merge(self, other: RouterStats) -> RouterStats:
        """Statistics of the union of two disjoint row sets (shards) of the same features.

        Experts are matched by name; an expert present on one side only keeps its own rows
        and targets. Raises if the fingerprints differ (other encoder, tokenizer, precision
        or truncation), or if an expert fit on the shared rows has no targets for the other
        side's shared rows.
        """
        if other.fingerprint != self.fingerprint:
            raise InvalidInputError(
                "the statistics were computed with a different encoder, tokenizer, precision or "
                f"max_length (fingerprint {other.fingerprint or 'none'} vs "
                f"{self.fingerprint or 'none'}); compute them with the same router"
            )
        if (other.dim, other.diagonal) != (self.dim, self.diagonal):
            raise InvalidInputError(f"statistics differ in shape: {self.dim} vs {other.dim}")
        if self.shadows or other.shadows:
            raise InvalidInputError(
                "statistics with shadow experts cannot be merged: remove them (irde experts "
                "remove DIR NAME) or let them pass their gate first"
            )
        if self.traffic is not None or other.traffic is not None:
            raise InvalidInputError(
                "statistics with forgetting (a feedback half-life) cannot be merged: their "
                "feedback rows decay by their order, which two shards do not share"
            )
        weights = {s.traffic_weight for s in (self, other) if s.traffic_weight}
        if len(weights) > 1:
            raise InvalidInputError(
                f"the statistics folded feedback with different traffic weights {sorted(weights)}; "
                "merge statistics whose feedback weighs the same"
            )
        merged = RouterStats.empty(self.dim, diagonal=self.diagonal, fingerprint=self.fingerprint)
        merged.shared = self.shared + other.shared
        sides = ((self, other), (other, self))
        for name in self.experts + [e for e in other.experts if e not in self.experts]:
            parts = [s for s in (self, other) if name in s.experts]
            modes = {s.modes[s.experts.index(name)] for s in parts}
            if len(modes) > 1:
                raise InvalidInputError(f"expert {name!r} is pooled on one side, own on the other")
            mode = modes.pop()
            for have, lack in sides:
                if (
                    mode == "pooled"
                    and name in have.experts
                    and name not in lack.experts
                    and lack.shared.n > 0
                ):
                    raise InvalidInputError(
                        f"expert {name!r} has no scores for the other statistics' prompts; "
                        "score every prompt for every expert before merging"
                    )
            idx = [s.experts.index(name) for s in parts]
            owned = parts[0].owned[idx[0]]
            sxy, sy, syy = (
                parts[0].sum_xy[idx[0]],
                parts[0].sum_y[idx[0]],
                parts[0].sum_yy[idx[0]],
            )
            if len(parts) == 2:
                owned = owned + parts[1].owned[idx[1]]
                sxy = sxy + parts[1].sum_xy[idx[1]]
                sy, syy = sy + parts[1].sum_y[idx[1]], syy + parts[1].sum_yy[idx[1]]
            merged.append(name, mode, owned, sxy, sy, syy)
            for s in parts:
                j = s.experts.index(name)
                merged.feedback_n[-1] += s.feedback_n[j]
                merged.feedback_rows[-1] += s.feedback_rows[j]
        merged.traffic_weight = self.traffic_weight or other.traffic_weight
        merged.journal_seq = self.journal_seq
        # this router's kappa stays, or its fixed lam (None): lam then follows the merged
        # rows; a prior is kept for a column that still has no rows
        merged.kappa = self.kappa
        if self.prior is not None or other.prior is not None:
            merged.prior = np.array([_prior_of(name, self, other) for name in merged.experts])
        return merged

    def project(self, table: np.ndarray | None) -> RouterStats:
        """Token-count statistics mapped to feature space (a no-op for dense statistics)."""
        if table is None or not self.diagonal:
            return self
        dense = RouterStats.empty(
            int(np.shape(table)[1]), diagonal=False, fingerprint=self.fingerprint
        )
        dense.shared = self.shared.project(table)
        dense.owned = [m.project(table) for m in self.owned]
        dense.sum_xy = _project_rows(self.sum_xy, table)
        dense.sum_y, dense.sum_yy = self.sum_y.copy(), self.sum_yy.copy()
        dense.experts, dense.modes = list(self.experts), list(self.modes)
        dense.feedback_n, dense.feedback_rows = self.feedback_n.copy(), self.feedback_rows.copy()
        dense.traffic_weight, dense.journal_seq = self.traffic_weight, self.journal_seq
        dense.half_life = self.half_life
        dense.traffic = None if self.traffic is None else self.traffic.project(table)
        dense.shadows = {name: rows.copy() for name, rows in self.shadows.items()}
        dense.kappa = self.kappa
        dense.prior = None if self.prior is None else self.prior.copy()
        return dense

    def column_moments(self) -> list[tuple[list[int], Moments]]:
        """Group columns by the rows they are fit on: ``[(columns, moments), ...]``."""
        modes = self.modes
        if len(modes) != self.n_experts:
            raise InvalidInputError(f"{len(modes)} modes for {self.n_experts} experts")
        groups: list[tuple[list[int], Moments]] = []
        pooled = [k for k, m in enumerate(modes) if m == "pooled"]
        if pooled:
            rows = self.shared.copy()
            for k in pooled:
                rows = rows + self.owned[k]
            groups.append((pooled, self._with_targets(rows, pooled)))
        for k, mode in enumerate(modes):
            if mode == "own":
                groups.append(([k], self._with_targets(self.owned[k], [k])))
        return groups

    def _with_targets(self, rows: Moments, cols: list[int]) -> Moments:
        return Moments(
            rows.n,
            rows.sum_x,
            rows.gram,
            self.sum_xy[cols].T.copy(),
            self.sum_y[cols].copy(),
            self.sum_yy[cols].copy(),
        )

    def data_scale(self, table: np.ndarray | None = None) -> float:
        """The largest ``trace(Sxx)/d`` over the columns' rows (:func:`data_scale`); 0: none."""
        dense = self._dense_for(table)
        return max((data_scale(mom) for _, mom in dense.column_moments()), default=0.0)

    def set_kappa(self, lam: float, table: np.ndarray | None = None) -> float:
        """Record kappa so that no column's lam moves now: ``lam / data_scale``.

        Every column keeps ``lam`` until its rows grow past the largest column's today; with
        no rows, :data:`~irde_onnx.learning.moments.COLD_KAPPA`. Returns kappa.
        """
        self.kappa = kappa_of(lam, self.data_scale(table))
        return self.kappa

    def column_lams(self, lam: float, table: np.ndarray | None = None) -> np.ndarray:
        """Each expert's effective ridge penalty (:func:`relative_lam`), shape (E,)."""
        dense = self._dense_for(table)
        lams = np.full(self.n_experts, float(lam))
        for cols, mom in dense.column_moments():
            lams[cols] = relative_lam(mom, self.kappa, lam)
        return lams

    def _dense_for(self, table: np.ndarray | None) -> RouterStats:
        if self.diagonal and table is None:
            raise InvalidInputError("token-count statistics need the embedding table to solve")
        return self.project(table)

    def solve(self, lam: float, table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Solve the head: ``W`` (d, E) and ``b`` (E,).

        Each column's penalty is :func:`relative_lam` of its rows (``lam`` itself without
        kappa). A column with no rows predicts its prior (W = 0, b = prior).

        Args:
            lam: the router's ridge penalty (with kappa: the floor).
            table: embedding table (vocab, d) for token-count statistics.

        Raises:
            InvalidInputError: a column with no rows and no prior.

        """
        dense = self._dense_for(table)
        w = np.zeros((dense.dim, self.n_experts))
        b = np.zeros(self.n_experts)
        for cols, mom in dense.column_moments():
            if mom.n <= 0:
                prior = None if self.prior is None else self.prior[cols]
                if prior is None or not np.isfinite(prior).all():
                    names = [self.experts[k] for k in cols]
                    raise InvalidInputError(f"expert(s) {names} have no rows to be fit on")
                b[cols] = prior
                continue
            w[:, cols], b[cols] = solve(mom, relative_lam(mom, self.kappa, lam))
        return w, b

    def save(self, path: str | os.PathLike | IO[bytes]) -> None:
        """Write ``stats.npz`` (float64, compressed, no pickle) to a path or binary file."""
        arrays = self._arrays()
        if self.traffic is not None:  # forgetting: the feedback rows' own moments
            arrays["half_life"] = np.float64(self.half_life)
            for k, a in self.traffic._arrays().items():
                if k in _KEYS:
                    arrays[f"traffic_{k}"] = a
        if hasattr(path, "write"):
            np.savez_compressed(path, **arrays)
            return
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "shared_n": np.float64(self.shared.n),
            "shared_sum_x": self.shared.sum_x,
            "shared_gram": self.shared.gram,
            "n": np.array([m.n for m in self.owned], dtype=np.float64),
            "sum_x": _stack([m.sum_x for m in self.owned], (0, self.dim)),
            "gram": _stack([m.gram for m in self.owned], (0, *self.shared.gram.shape)),
            "sum_xy": self.sum_xy,
            "sum_y": self.sum_y,
            "sum_yy": self.sum_yy,
            "experts": np.array(self.experts, dtype=np.str_).reshape(-1),
            "modes": np.array(self.modes, dtype=np.str_).reshape(-1),
            "fingerprint": np.array(self.fingerprint, dtype=np.str_),
        }
        if self.kappa is not None:  # written only when set: older files read as before
            arrays["kappa"] = np.float64(self.kappa)
        if self.prior is not None:
            arrays["prior"] = np.asarray(self.prior, dtype=np.float64)
        if self.traffic_weight or self.journal_seq:  # written only once feedback was folded
            arrays["feedback_n"] = np.asarray(self.feedback_n, dtype=np.float64)
            arrays["feedback_rows"] = np.asarray(self.feedback_rows, dtype=np.float64)
            arrays["traffic_weight"] = np.float64(self.traffic_weight)
            arrays["journal_seq"] = np.int64(self.journal_seq)
        if self.shadows:  # written only when there are shadow experts: old files have none
            arrays["shadow"] = np.array([e in self.shadows for e in self.experts], dtype=bool)
            for k, name in enumerate(self.experts):
                if name in self.shadows:
                    rows = self.shadows[name]
                    arrays[f"shadow_features_{k}"] = np.asarray(rows.features, np.float32)
                    arrays[f"shadow_scores_{k}"] = np.asarray(rows.scores, np.float64)
                    arrays[f"shadow_weights_{k}"] = np.asarray(rows.weights, np.float64)
                    cost = np.nan if rows.cost is None else rows.cost
                    arrays[f"shadow_cost_{k}"] = np.float64(cost)
        return arrays

    def check_finite(self, source: str) -> None:
        """Raise :class:`InvalidInputError` if a statistic is NaN, infinite or overflowing."""
        parts = {
            "shared rows": (self.shared.n, self.shared.sum_x, self.shared.gram),
            "targets": (self.sum_xy, self.sum_y, self.sum_yy),
        }
        for k, m in enumerate(self.owned):
            parts[f"rows of expert {self.experts[k]!r}"] = (m.n, m.sum_x, m.gram)
        for what, arrays in parts.items():
            for arr in arrays:
                a = np.asarray(arr)
                if a.size and not (np.isfinite(a).all() and np.abs(a).max() <= MAX_STATISTIC):
                    raise InvalidInputError(
                        f"{source}: the statistics of the {what} hold NaN, infinite or "
                        f"overflowing values (beyond {MAX_STATISTIC:g}); they cannot be used"
                    )

    @classmethod
    def load(cls, path: str | os.PathLike | bytes, source: str | None = None) -> RouterStats:
        """Read ``stats.npz`` written by :meth:`save` (a path, or the file's bytes).

        Every array is checked: names, dtypes, shapes, and finite values. Raises
        :class:`RouterFormatError` naming ``source`` (default: the path).
        """
        if isinstance(path, bytes):
            where, handle = source or STATS_NAME, io.BytesIO(path)
        else:
            where, handle = source or str(path), Path(path)
        try:
            data = np.load(handle, allow_pickle=False)
            if not hasattr(data, "files"):
                raise RouterFormatError(f"{where} is one array, not a statistics archive")
            with data:
                missing = [
                    k for k in (*_KEYS, "experts", "modes", "fingerprint") if k not in data.files
                ]
                if missing:
                    raise RouterFormatError(
                        f"{where} lacks the array(s) {', '.join(missing)}: not statistics "
                        "written by this irde-onnx version; train the router again"
                    )
                arrays = {k: data[k] for k in _KEYS}
                names = {k: data[k] for k in ("experts", "modes", "fingerprint")}
                extra = {k: data[k] for k in _FEEDBACK_KEYS if k in data.files}
                lam_rule = {k: data[k] for k in ("kappa", "prior") if k in data.files}
                forget = (
                    {k: data[f"traffic_{k}"] for k in _KEYS if f"traffic_{k}" in data.files}
                    if "half_life" in data.files
                    else None
                )
                half_life = float(data["half_life"]) if forget is not None else 0.0
                shadow = {
                    k: data[k] for k in data.files if k == "shadow" or k.startswith("shadow_")
                }
        except RouterFormatError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise RouterFormatError(f"{where} is not a readable statistics file: {exc}") from exc
        stats = cls._from_arrays(arrays, names, where)
        stats._set_feedback(extra, where)
        stats._set_shadows(shadow, where)
        stats._set_lam_rule(lam_rule, where)
        if forget is not None:
            if set(forget) != set(_KEYS) or not (half_life > 0):
                raise RouterFormatError(
                    f"{where}: the feedback half-life's arrays are incomplete; the file is "
                    "damaged (copy the router again or retrain it)"
                )
            stats.traffic = cls._from_arrays(forget, names, f"{where} (feedback moments)")
            stats.half_life = half_life
        return stats

    def _set_shadows(self, arrays: dict[str, np.ndarray], where: str) -> None:
        if not arrays:
            return
        mask = arrays.get("shadow")
        if mask is None or mask.dtype != bool or mask.shape != (self.n_experts,):
            raise RouterFormatError(
                f"{where}: the shadow mask is missing or not {self.n_experts} booleans; the "
                "file is damaged (copy the router again or retrain it)"
            )
        for k in np.flatnonzero(mask):
            a = {key: arrays.get(f"shadow_{key}_{k}") for key in _SHADOW_KEYS}
            n = -1 if a["scores"] is None else len(a["scores"])
            shapes = {"features": (n, self.dim), "scores": (n,), "weights": (n,), "cost": ()}
            for key, shape in shapes.items():
                v = a[key]
                if v is None or v.shape != shape or v.dtype.kind != "f":
                    raise RouterFormatError(
                        f"{where}: shadow expert {self.experts[k]!r}'s array {key!r} is missing "
                        f"or not {shape} numbers; the file is damaged (copy the router again)"
                    )
                if key != "cost" and not np.isfinite(v).all():
                    raise RouterFormatError(
                        f"{where}: shadow expert {self.experts[k]!r}'s {key} hold NaN or "
                        "infinite values; the file is damaged (copy the router again)"
                    )
            if self.diagonal or self.modes[k] != "own" or n < 1 or (a["weights"] <= 0).any():
                raise RouterFormatError(
                    f"{where}: shadow expert {self.experts[k]!r} is not an own column with "
                    "rows of positive weight; the file is damaged (copy the router again)"
                )
            cost = float(a["cost"])
            self.shadows[self.experts[k]] = ShadowRows(
                a["features"], a["scores"], a["weights"], None if np.isnan(cost) else cost
            )

    def _set_lam_rule(self, arrays: dict[str, np.ndarray], where: str) -> None:
        kappa, prior = arrays.get("kappa"), arrays.get("prior")
        if kappa is not None:
            if (
                kappa.shape != ()
                or kappa.dtype.kind != "f"
                or not (np.isfinite(kappa) and kappa >= 0)
            ):
                raise RouterFormatError(
                    f"{where}: 'kappa' must be one finite number >= 0; the file is damaged "
                    "(copy the router again or retrain it)"
                )
            self.kappa = float(kappa)
        if prior is not None:
            if prior.shape != (self.n_experts,) or prior.dtype.kind != "f":
                raise RouterFormatError(
                    f"{where}: 'prior' must hold {self.n_experts} numbers, one per expert; the "
                    "file is damaged (copy the router again or retrain it)"
                )
            if np.isinf(prior).any() or (np.abs(np.nan_to_num(prior)) > MAX_STATISTIC).any():
                raise RouterFormatError(f"{where}: 'prior' holds infinite values")
            self.prior = prior.astype(np.float64)

    def _set_feedback(self, extra: dict[str, np.ndarray], where: str) -> None:
        if not extra:
            return
        shapes = {"feedback_n": (self.n_experts,), "feedback_rows": (self.n_experts,)}
        shapes.update(traffic_weight=(), journal_seq=())
        for k, shape in shapes.items():
            a = extra.get(k)
            if a is None or a.shape != shape or a.dtype.kind not in "fiu":
                raise RouterFormatError(
                    f"{where}: feedback array {k!r} is missing or not {shape} numbers; the file "
                    "is damaged (copy the router again or retrain it)"
                )
            if not np.isfinite(a).all() or (a < 0).any():
                raise RouterFormatError(f"{where}: feedback array {k!r} holds bad values")
        self.feedback_n = extra["feedback_n"].astype(np.float64)
        self.feedback_rows = extra["feedback_rows"].astype(np.float64)
        self.traffic_weight = float(extra["traffic_weight"])
        self.journal_seq = int(extra["journal_seq"])

    @classmethod
    def _from_arrays(
        cls, arrays: dict[str, np.ndarray], names: dict[str, np.ndarray], where: str
    ) -> RouterStats:
        def bad(why: str) -> RouterFormatError:
            return RouterFormatError(
                f"{where}: {why}; the file is damaged or not irde "
                "statistics (copy the router again or retrain it)"
            )

        for k, a in arrays.items():
            if a.dtype.kind not in "fiu":
                raise bad(f"array {k!r} holds {a.dtype}, not numbers")
        for k in ("experts", "modes"):
            if names[k].dtype.kind != "U" or names[k].ndim != 1:
                raise bad(f"array {k!r} must be a 1-d array of strings")
        if names["fingerprint"].dtype.kind != "U" or names["fingerprint"].ndim != 0:
            raise bad("array 'fingerprint' must be one string")
        shx = arrays["shared_sum_x"]
        if arrays["shared_n"].ndim != 0 or shx.ndim != 1:
            raise bad("shared_n must be a number and shared_sum_x a vector")
        dim = shx.shape[0]
        diagonal = arrays["shared_gram"].ndim == 1
        gram_shape = (dim,) if diagonal else (dim, dim)
        n_exp = names["experts"].shape[0]
        shapes = {
            "shared_gram": gram_shape,
            "n": (n_exp,),
            "sum_x": (n_exp, dim),
            "gram": (n_exp, *gram_shape),
            "sum_xy": (n_exp, dim),
            "sum_y": (n_exp,),
            "sum_yy": (n_exp,),
        }
        for k, shape in shapes.items():
            if arrays[k].shape != shape:
                raise bad(f"array {k!r} has shape {arrays[k].shape}, expected {shape}")
        if names["modes"].shape[0] != n_exp:
            raise bad("experts and modes differ in length")
        arrays = {k: a.astype(np.float64, copy=False) for k, a in arrays.items()}
        for k, a in arrays.items():
            if not np.isfinite(a).all() or (a.size and np.abs(a).max() > MAX_STATISTIC):
                raise RouterFormatError(
                    f"{where}: array {k!r} holds NaN, infinite or overflowing values; "
                    "statistics like these would route every prompt to one expert. Train the "
                    "router again or restore a good copy"
                )
        if (arrays["n"] < 0).any() or float(arrays["shared_n"]) < 0:
            raise bad("row counts are negative")
        experts = [str(x) for x in names["experts"]]
        modes = [str(x) for x in names["modes"]]
        shared = Moments(
            float(arrays["shared_n"]),
            arrays["shared_sum_x"],
            arrays["shared_gram"],
            np.zeros((dim, 0)),
            np.zeros(0),
            np.zeros(0),
        )
        owned = [
            Moments(float(n), sx, g, np.zeros((dim, 0)), np.zeros(0), np.zeros(0))
            for n, sx, g in zip(arrays["n"], arrays["sum_x"], arrays["gram"], strict=True)
        ]
        return cls(
            shared,
            owned,
            arrays["sum_xy"],
            arrays["sum_y"],
            arrays["sum_yy"],
            experts,
            modes,
            str(names["fingerprint"]),
        )


def _prior_of(name: str, *sides: RouterStats) -> float:
    """The prior of ``name`` on the first side that has one, else NaN."""
    for s in sides:
        if s.prior is not None and name in s.experts:
            p = float(s.prior[s.experts.index(name)])
            if np.isfinite(p):
                return p
    return float("nan")


def _rows_only(m: Moments) -> Moments:
    d = m.n_features
    return Moments(m.n, m.sum_x.copy(), m.gram.copy(), np.zeros((d, 0)), np.zeros(0), np.zeros(0))


def _project_rows(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``values @ table`` for (E, vocab) token sums, touching only the tokens used."""
    if values.shape[0] == 0:
        return np.zeros((0, np.shape(table)[1]))
    used = np.flatnonzero(np.any(values != 0, axis=0))
    return values[:, used] @ np.asarray(table[used], dtype=np.float64)


def _stack(arrays: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros(empty_shape)


def token_moments(ids: list[np.ndarray], y: np.ndarray, vocab_size: int) -> Moments:
    """Token-count moments: every token of text i is one row with target ``y[i]``.

    Args:
        ids: per text, the token ids that count (no padding or special tokens).
        y: targets, shape (n_texts, m).
        vocab_size: V.

    """
    y = np.asarray(y, dtype=np.float64)
    m = y.shape[1]
    mom = Moments.zeros(vocab_size, m, diagonal=True)
    if not ids:
        return mom
    lengths = np.array([len(a) for a in ids], dtype=np.int64)
    flat = (
        np.concatenate([np.asarray(a, dtype=np.int64) for a in ids])
        if lengths.sum()
        else np.zeros(0, dtype=np.int64)
    )
    row = np.repeat(np.arange(len(ids)), lengths)
    counts = np.bincount(flat, minlength=vocab_size).astype(np.float64)
    mom.n = float(lengths.sum())
    mom.sum_x = counts
    mom.gram = counts.copy()
    for j in range(m):
        mom.sum_xy[:, j] = np.bincount(flat, weights=y[row, j], minlength=vocab_size)
    mom.sum_y = lengths @ y
    mom.sum_yy = lengths @ (y * y)
    return mom


# Targets (scores) beyond this magnitude are refused: their squares and the head solved from
# them would overflow the float32 head of the graph. Real quality scores are far smaller.
MAX_TARGET = 1e12


def bad_target_row(y: np.ndarray) -> int | None:
    """Index of the first row of targets ``y`` that is NaN, infinite or beyond MAX_TARGET."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(y) | (np.abs(y) > MAX_TARGET)
    rows = np.flatnonzero(bad.reshape(len(y), -1).any(axis=1)) if len(y) else np.zeros(0, int)
    return int(rows[0]) if rows.size else None


@dataclass
class EncodedRows:
    """Prompts encoded once, ready to be summarised as rows of a router's statistics.

    Pooled encoders give one row of features per prompt (``features``, shape (n, d));
    the static encoder gives one row per content token (``token_ids``, one array per prompt),
    summarised as token-count histograms over a vocabulary of ``dim`` tokens.
    """

    features: np.ndarray | None
    token_ids: list[np.ndarray] | None
    dim: int

    def __len__(self) -> int:
        return len(self.features) if self.features is not None else len(self.token_ids or [])

    def moments(self, y: np.ndarray, rows: np.ndarray | None = None) -> Moments:
        """Moments of the prompts ``rows`` (default: all) with targets ``y`` (len(rows), m)."""
        y = np.asarray(y, dtype=np.float64)
        if rows is None:
            rows = np.arange(len(self))
        if self.features is not None:
            return Moments.from_rows(self.features[rows], y)
        ids = self.token_ids or []
        return token_moments([ids[i] for i in rows], y, self.dim)

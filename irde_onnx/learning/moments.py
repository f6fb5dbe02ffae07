"""Ridge regression on additive sufficient statistics (numpy, float64).

Rows are streamed into :class:`Moments` (count, feature sum, Gram matrix, feature-target
cross products, target sums); moments of disjoint row sets add up, so statistics computed in
batches, on shards or per expert combine exactly. :func:`solve` fits ``Y ~ X W + b`` with an
unpenalised intercept by centring the moments and solving ``(Sxx + lam I) W = Sxy`` with a
Cholesky factorisation. :func:`choose_lam` picks ``lam`` by k-fold cross-validation from
per-fold moments, so no row is encoded twice.

A Gram matrix may be kept as its diagonal (1-D array): the static encoder's rows are one-hot
token indicators, whose moments are token-count histograms (see :meth:`Moments.project`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irde_onnx.errors import InvalidInputError

__all__ = [
    "Moments",
    "solve",
    "choose_lam",
    "lam_grid",
    "data_scale",
    "relative_lam",
    "kappa_of",
    "COLD_KAPPA",
    "COLD_LAM",
    "fold_ids",
    "group_fold_ids",
    "sse",
    "MAX_LOGO_GROUPS",
]

# up to this many groups every group is held out on its own (leave-one-group-out); with
# more, groups are dealt into k folds (grouped k-fold), so the per-fold moments stay few
MAX_LOGO_GROUPS = 12


@dataclass
class Moments:
    """Sufficient statistics of a set of rows ``x`` (features) with targets ``y``.

    Attributes:
        n: number of rows (or total row weight).
        sum_x: ``sum x``, shape (d,).
        gram: ``sum x x^T``, shape (d, d); or its diagonal, shape (d,), for one-hot rows.
        sum_xy: ``sum x y^T``, shape (d, m).
        sum_y: ``sum y``, shape (m,).
        sum_yy: ``sum y*y`` per target, shape (m,) (for cross-validation errors).

    """

    n: float
    sum_x: np.ndarray
    gram: np.ndarray
    sum_xy: np.ndarray
    sum_y: np.ndarray
    sum_yy: np.ndarray

    @classmethod
    def zeros(cls, d: int, m: int, *, diagonal: bool = False) -> Moments:
        """Empty moments for ``d`` features and ``m`` targets."""
        gram = np.zeros(d) if diagonal else np.zeros((d, d))
        return cls(0.0, np.zeros(d), gram, np.zeros((d, m)), np.zeros(m), np.zeros(m))

    @classmethod
    def from_rows(cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> Moments:
        """Moments of dense rows ``x`` (n, d) with targets ``y`` (n, m).

        ``weights`` (n,) counts row i ``weights[i]`` times (sklearn's ``sample_weight``).
        """
        mom = cls.zeros(np.shape(x)[1], np.shape(y)[1])
        mom.update(x, y, weights)
        return mom

    @property
    def n_features(self) -> int:
        """Number of features d."""
        return int(self.sum_x.shape[0])

    @property
    def n_targets(self) -> int:
        """Number of targets m."""
        return int(self.sum_y.shape[0])

    @property
    def diagonal(self) -> bool:
        """True when the Gram matrix is stored as its diagonal (one-hot rows)."""
        return self.gram.ndim == 1

    def update(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add dense rows ``x`` (n, d) with targets ``y`` (n, m), accumulated in float64.

        ``weights`` (n,), non-negative, counts row i ``weights[i]`` times (default 1).
        """
        if self.diagonal:
            raise InvalidInputError("dense rows cannot be added to diagonal (token-count) moments")
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise InvalidInputError(
                f"rows must be x (n, d) and y (n, m) with the same n; got {x.shape} and {y.shape}"
            )
        if x.shape[1] != self.n_features or y.shape[1] != self.n_targets:
            raise InvalidInputError(
                f"expected {self.n_features} features and {self.n_targets} targets, "
                f"got {x.shape[1]} and {y.shape[1]}"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InvalidInputError("features and targets must be finite (no NaN or infinity)")
        if weights is None:
            self.n += float(x.shape[0])
            self.sum_x += x.sum(axis=0)
            self.gram += x.T @ x
            self.sum_xy += x.T @ y
            self.sum_y += y.sum(axis=0)
            self.sum_yy += np.einsum("ij,ij->j", y, y)
            return
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (x.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
            raise InvalidInputError(
                f"weights must be {x.shape[0]} finite numbers >= 0, one per row; got {w.shape}"
            )
        xw = x * w[:, None]
        self.n += float(w.sum())
        self.sum_x += w @ x
        self.gram += xw.T @ x
        self.sum_xy += xw.T @ y
        self.sum_y += w @ y
        self.sum_yy += w @ (y * y)

    def copy(self) -> Moments:
        """A deep copy."""
        return Moments(
            self.n,
            self.sum_x.copy(),
            self.gram.copy(),
            self.sum_xy.copy(),
            self.sum_y.copy(),
            self.sum_yy.copy(),
        )

    def _check_compatible(self, other: Moments) -> None:
        if (
            self.n_features != other.n_features
            or self.n_targets != other.n_targets
            or self.diagonal != other.diagonal
        ):
            raise InvalidInputError(
                "moments have different shapes: "
                f"d={self.n_features}/{other.n_features}, m={self.n_targets}/{other.n_targets}"
            )

    def __add__(self, other: Moments) -> Moments:
        self._check_compatible(other)
        return Moments(
            self.n + other.n,
            self.sum_x + other.sum_x,
            self.gram + other.gram,
            self.sum_xy + other.sum_xy,
            self.sum_y + other.sum_y,
            self.sum_yy + other.sum_yy,
        )

    def __sub__(self, other: Moments) -> Moments:
        self._check_compatible(other)
        return Moments(
            self.n - other.n,
            self.sum_x - other.sum_x,
            self.gram - other.gram,
            self.sum_xy - other.sum_xy,
            self.sum_y - other.sum_y,
            self.sum_yy - other.sum_yy,
        )

    def project(self, table: np.ndarray) -> Moments:
        """Map one-hot (token-count) moments to feature space: ``x = table[token]``.

        Args:
            table: embedding table, shape (vocab, d).

        Returns:
            Dense moments with d features.

        """
        if not self.diagonal:
            return self
        if np.shape(table)[0] != self.n_features:
            raise InvalidInputError(
                f"table has {np.shape(table)[0]} rows but the counts cover {self.n_features} tokens"
            )
        # only tokens that occur matter; convert just their rows to float64
        used = np.flatnonzero(self.gram)
        rows = np.asarray(table[used], dtype=np.float64)
        return Moments(
            self.n,
            rows.T @ self.sum_x[used],
            (rows * self.gram[used, None]).T @ rows,
            rows.T @ self.sum_xy[used],
            self.sum_y.copy(),
            self.sum_yy.copy(),
        )

    def centred(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centred scatter matrices and means: ``(Sxx, Sxy, mean_x, mean_y)``."""
        if self.diagonal:
            raise InvalidInputError("project token-count moments to feature space first")
        if self.n <= 0:
            raise InvalidInputError("no rows: cannot fit a ridge head on empty statistics")
        mean_x = self.sum_x / self.n
        mean_y = self.sum_y / self.n
        sxx = self.gram - self.n * np.outer(mean_x, mean_x)
        sxy = self.sum_xy - self.n * np.outer(mean_x, mean_y)
        return sxx, sxy, mean_x, mean_y


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise InvalidInputError(f"lam must be a finite number >= 0, got {lam}")
    return lam


def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        low = np.linalg.cholesky(a)
    except np.linalg.LinAlgError as exc:
        raise InvalidInputError(
            "the regularised Gram matrix is not positive definite; use a larger lam"
        ) from exc
    return np.linalg.solve(low.T, np.linalg.solve(low, b))


def solve(moments: Moments, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge solution with an unpenalised intercept.

    Minimises ``||Y - X W - 1 b^T||^2 + lam ||W||^2`` (sklearn's ``Ridge(alpha=lam)``).

    Args:
        moments: dense moments of the training rows.
        lam: ridge penalty, >= 0.

    Returns:
        ``(W, b)`` with shapes (d, m) and (m,).

    """
    lam = _check_lam(lam)
    sxx, sxy, mean_x, mean_y = moments.centred()
    w = _cholesky_solve(sxx + lam * np.eye(sxx.shape[0]), sxy)
    b = mean_y - mean_x @ w
    return w, b


# kappa of a router with no rows at all: the place in :func:`lam_grid` that 5-fold CV picks
# on all routerdc7 train rows (research/feedback, "The lam finding": lam 33 = 3.16 x scale)
COLD_KAPPA = 3.16
# lam of a router with no rows (the floor of the relative rule): what 5-fold CV picks on 100
# routerdc7 train rows of MiniLM features (research/feedback). Without a floor, a column's
# first row would be fit with a penalty near 0 (and its uncertainty width would be ~1e3).
COLD_LAM = 1.7
# A column's scatter counts as at least this share of its uncentred trace: one row (or
# identical rows) has none, and the rounding left in ``gram - n m m^T`` must not be fit.
_MIN_SCATTER_SHARE = 1e-6
_MIN_SCALE = 1e-12


def data_scale(moments: Moments) -> float:
    """``trace(Sxx)/d`` of dense ``moments``: the centred scatter per feature (0 with no rows).

    The unit of :func:`lam_grid`; it grows with the (weighted) row count. It is at least
    ``1e-6`` of the uncentred ``trace(sum x x^T)/d``, so that a column of one row (no
    scatter) still gets a penalty above the rounding of its centred moments.
    """
    if moments.diagonal:
        raise InvalidInputError("project token-count moments to feature space first")
    if moments.n <= 0:
        return 0.0
    mean_x = moments.sum_x / moments.n
    raw = float(np.trace(moments.gram))
    trace = raw - moments.n * float(mean_x @ mean_x)
    return max(trace, _MIN_SCATTER_SHARE * raw, 0.0) / moments.n_features


def relative_lam(moments: Moments, kappa: float | None, floor: float) -> float:
    """A column's ridge penalty: ``max(floor, kappa * trace(Sxx)/d)`` of its own moments.

    ``kappa`` is lam in units of :func:`data_scale` (its place in :func:`lam_grid`), so the
    penalty follows the rows a column is fit on (their count, traffic weight and forgetting)
    and the solve stays exact: the penalty is a function of the same moments. ``floor`` (the
    router's lam) keeps a column fit on few rows at the penalty it was given. ``kappa`` None:
    ``floor`` (a fixed lam).

    Args:
        moments: the dense (weighted) moments the column is fit on.
        kappa: the router's kappa, or None.
        floor: the router's lam, >= 0.

    """
    floor = _check_lam(floor)
    if kappa is None:
        return floor
    return max(floor, float(kappa) * max(data_scale(moments), _MIN_SCALE))


def kappa_of(lam: float, scale: float) -> float:
    """The kappa that puts ``lam`` at ``scale`` (:func:`data_scale`): ``lam / scale``.

    Rounded down if needed so that ``kappa * scale <= lam`` exactly: the rows that set it
    keep ``lam`` to the last bit. :data:`COLD_KAPPA` when there are no rows (``scale`` 0).
    """
    lam = _check_lam(lam)
    if not scale > 0:
        return COLD_KAPPA
    kappa = lam / scale
    while kappa > 0 and kappa * scale > lam:
        kappa = float(np.nextafter(kappa, 0.0))
    return kappa


def fold_ids(n: int, k: int = 5, seed: int = 0) -> np.ndarray:
    """The cross-validation fold of each of ``n`` rows: a seeded permutation, round robin.

    Folds differ in size by at most one row; with fewer rows than ``k`` there are ``n`` folds.
    """
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % max(1, min(k, n))
    return fold


def group_fold_ids(groups: Sequence[object], k: int = 5) -> tuple[np.ndarray, str]:
    """The cross-validation fold of each row when rows of one group must stay together.

    With at most ``max(k, MAX_LOGO_GROUPS)`` groups, each group is its own fold
    (leave-one-group-out). With more, groups are dealt into ``k`` folds, largest group first,
    each to the fold with the fewest rows so far (ties: the lower fold); groups of equal size
    are taken in sorted order of their names, so the assignment is deterministic.

    Args:
        groups: the group of each row (any values with a string form).
        k: folds of grouped k-fold.

    Returns:
        ``(fold, method)``: the fold of each row (n,), and ``"leave-one-group-out"`` or
        ``"grouped k-fold"``.

    Raises:
        InvalidInputError: fewer than 2 groups.

    """
    names = [str(g) for g in groups]
    unique, inverse, counts = np.unique(
        np.array(names, dtype=object).astype(str), return_inverse=True, return_counts=True
    )
    if len(unique) < 2:
        raise InvalidInputError(
            f"grouped cross-validation needs at least 2 groups; the rows have "
            f"{len(unique)} ({list(unique)[:3]}); choose another group field"
        )
    if len(unique) <= max(k, MAX_LOGO_GROUPS):
        return inverse.astype(np.int64), "leave-one-group-out"
    order = np.lexsort((unique, -counts))  # largest first, then by name
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for g in order:
        f = int(np.argmin(sizes))
        fold_of_group[g] = f
        sizes[f] += counts[g]
    return fold_of_group[inverse], "grouped k-fold"


def sse(moments: Moments, w: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared errors of ``(W, b)`` on the rows summarised by dense ``moments``."""
    m = moments
    quad = np.einsum("ij,ij->j", w, m.gram @ w)
    per_target = (
        m.sum_yy
        - 2.0 * np.einsum("ij,ij->j", w, m.sum_xy)
        - 2.0 * b * m.sum_y
        + quad
        + 2.0 * b * (m.sum_x @ w)
        + m.n * b * b
    )
    return float(per_target.sum())


def lam_grid(moments: Moments, num: int = 13) -> np.ndarray:
    """Candidate penalties scaled to the data: ``trace(Sxx)/d * 10^[-5..1]``."""
    sxx, _, _, _ = moments.centred()
    scale = max(float(np.trace(sxx)) / sxx.shape[0], 1e-12)
    return scale * np.logspace(-5.0, 1.0, num)


def choose_lam(
    folds: Sequence[Moments], grid: Sequence[float] | None = None
) -> tuple[float, dict[float, float]]:
    """Pick ``lam`` by k-fold cross-validation on per-fold dense moments.

    Each fold is held out in turn; the head is solved on the sum of the other folds and
    scored by its squared error on the held-out fold, computed from moments alone.

    Args:
        folds: dense moments of k >= 2 disjoint folds.
        grid: candidate penalties; by default :func:`lam_grid` of the pooled moments.

    Returns:
        The penalty with the lowest mean held-out error, and the error of every candidate.

    """
    folds = [f for f in folds if f.n > 0]
    if len(folds) < 2:
        raise InvalidInputError("lam='auto' needs at least 2 non-empty folds; give more rows")
    total = folds[0].copy()
    for f in folds[1:]:
        total = total + f
    candidates = lam_grid(total) if grid is None else np.asarray(grid, dtype=np.float64)
    for lam in candidates:
        _check_lam(float(lam))
    errors = {float(lam): 0.0 for lam in candidates}
    for f in folds:
        # one eigendecomposition per fold serves every candidate:
        # (Sxx + lam I)^-1 Sxy = V diag(1 / (e + lam)) V^T Sxy
        sxx, sxy, mean_x, mean_y = (total - f).centred()
        e, v = np.linalg.eigh(sxx)
        vt_sxy = v.T @ sxy
        for lam in candidates:
            denom = np.maximum(e, 0.0) + lam
            if denom.min() <= 1e-12 * max(1.0, float(e.max())):
                raise InvalidInputError(
                    "the regularised Gram matrix is not positive definite; use a larger lam"
                )
            w = v @ (vt_sxy / denom[:, None])
            errors[float(lam)] += sse(f, w, mean_y - mean_x @ w)
    errors = {lam: err / total.n for lam, err in errors.items()}
    best = min(errors, key=errors.__getitem__)
    return best, errors

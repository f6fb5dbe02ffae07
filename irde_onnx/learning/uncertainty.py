"""The uncertainty of each expert's predicted quality: a LinUCB width in a PCA subspace.

A pure function of the router's dense statistics (issue 19, point 3; the design of
research/feedback, ``SubspaceWidth``: as good as full LinUCB on routerdc7, at a fraction of its
bytes and time):

* basis: ``P`` (d, k), the top-k eigenvectors of the centred covariance of every row the
  columns are fit on (each column group's rows once: the pooled rows, then each ``own``
  column's rows), and ``mu`` (d,), their mean. A prompt's features ``f`` map to
  ``z = [P^T (f - mu), 1]`` (k + 1);
* per expert ``e``: ``A_e`` = the moments of the rows its column is fit on, projected into
  z-space (``sum w z z^T``, weights as in the statistics) ``+ lam_e I``; its width at ``f`` is
  ``sqrt(z^T A_e^-1 z)``. It shrinks as rows like the prompt accumulate for that column.

The graph stores, per expert, the factor ``L_e`` (lower triangular, ``A_e^-1 = L_e^T L_e``),
so that the width is the norm ``||L_e z||``: :meth:`SubspaceWidth.graph_arrays` gives the
float32 initializers (see :func:`irde_onnx.graph.build.add_uncertainty`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.moments import Moments
from irde_onnx.learning.statistics import RouterStats

# k of the subspace (research/feedback: k = 32 matched full LinUCB on routerdc7)
UNCERTAINTY_RANK = 32
# the graph output: float32 (batch, n_experts), in expert order, beside ``scores``
UNCERTAINTY_OUTPUT = "uncertainty"
# A_e gets at least this share of its mean diagonal as ridge, so that a column with lam 0
# and fewer rows than k + 1 still has an inverse (a router with lam > 0 never reaches it)
MIN_RIDGE = 1e-9

__all__ = [
    "UNCERTAINTY_RANK",
    "UNCERTAINTY_OUTPUT",
    "SubspaceWidth",
    "subspace_width",
    "uncertainty_floats",
]


def uncertainty_floats(feature_dim: int, n_experts: int, rank: int = UNCERTAINTY_RANK) -> int:
    """Float32 values the graph stores for the output: ``mu``, ``P``, the factors, offsets."""
    k = min(rank, feature_dim)
    return feature_dim * (k + 1) + n_experts * (k + 1) * (k + 1)


@dataclass(frozen=True)
class SubspaceWidth:
    """The subspace and the per-expert factors of the width (float64).

    Attributes:
        mu: the mean of the rows, shape (d,).
        basis: ``P``, orthonormal columns, shape (d, k).
        factors: ``L_e`` per expert, lower triangular, shape (E, k + 1, k + 1), with
            ``A_e^-1 = L_e^T L_e``.

    """

    mu: np.ndarray
    basis: np.ndarray
    factors: np.ndarray

    @property
    def rank(self) -> int:
        """k, the dimension of the subspace."""
        return int(self.basis.shape[1])

    @property
    def n_experts(self) -> int:
        """E, the number of expert columns."""
        return int(self.factors.shape[0])

    def z(self, features: np.ndarray) -> np.ndarray:
        """``[P^T (f - mu), 1]`` for each row of ``features`` (n, d): shape (n, k + 1)."""
        f = np.asarray(features, np.float64)
        return np.hstack([(f - self.mu) @ self.basis, np.ones((len(f), 1))])

    def width(self, features: np.ndarray) -> np.ndarray:
        """``sqrt(z^T A_e^-1 z)`` per row and expert, shape (n, E), in float64."""
        lz = np.einsum("eij,nj->nei", self.factors, self.z(features))
        return np.sqrt(np.einsum("nei,nei->ne", lz, lz))

    def graph_arrays(self) -> dict[str, np.ndarray]:
        """The float32 arrays the graph computes the width from.

        ``mu`` (d,), ``basis`` (d, k), ``factors`` (k, E (k+1)) and ``offset`` (E (k+1),):
        block ``e`` of ``(f - mu) @ basis @ factors + offset`` is ``L_e z``.
        """
        k, e = self.rank, self.n_experts
        # L_e z = L_e[:, :k] zc + L_e[:, k]: block e of the columns is L_e[:, :k]^T
        factors = self.factors[:, :, :k].transpose(2, 0, 1).reshape(k, e * (k + 1))
        offset = self.factors[:, :, k].reshape(e * (k + 1))
        return {
            "mu": np.ascontiguousarray(self.mu, np.float32),
            "basis": np.ascontiguousarray(self.basis, np.float32),
            "factors": np.ascontiguousarray(factors, np.float32),
            "offset": np.ascontiguousarray(offset, np.float32),
        }


def _basis(total: Moments, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = total.n_features
    if total.n <= 0:  # no rows yet (a cold start): any orthonormal basis serves
        return np.zeros(d), np.eye(d)[:, :k]
    sxx, _, mean_x, _ = total.centred()
    values, vectors = np.linalg.eigh((sxx + sxx.T) / 2.0)
    basis = vectors[:, ::-1][:, :k].copy()  # largest first
    # a fixed sign per vector (the width does not depend on it; the graph bytes then do not
    # depend on the LAPACK build either)
    flip = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(k)])
    basis *= np.where(flip == 0, 1.0, flip)
    return mean_x, basis


def _z_gram(rows: Moments, mu: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``sum w z z^T`` over ``rows`` for ``z = [P^T (x - mu), 1]``: shape (k + 1, k + 1)."""
    k = basis.shape[1]
    s = rows.sum_x - rows.n * mu  # sum (x - mu)
    centred = rows.gram - np.outer(rows.sum_x, mu) - np.outer(mu, rows.sum_x)
    centred += rows.n * np.outer(mu, mu)  # sum (x - mu)(x - mu)^T
    out = np.empty((k + 1, k + 1))
    out[:k, :k] = basis.T @ centred @ basis
    out[:k, k] = out[k, :k] = basis.T @ s
    out[k, k] = rows.n
    return out


def subspace_width(
    stats: RouterStats, lam: float | Sequence[float] | np.ndarray, rank: int = UNCERTAINTY_RANK
) -> SubspaceWidth:
    """The width's subspace and factors from dense statistics (a pure function of them).

    Args:
        stats: the router's statistics in feature space (static: projected).
        lam: the ridge penalty of every column, or one per expert.
        rank: k, the subspace dimension (at most the feature dimension).

    Raises:
        InvalidInputError: token-count statistics (project them first), a bad ``lam``.

    """
    if stats.diagonal:
        raise InvalidInputError("project token-count statistics to feature space first")
    d, n_exp = stats.dim, stats.n_experts
    lams = np.broadcast_to(np.asarray(lam, np.float64), (n_exp,)).copy()
    if not (np.isfinite(lams).all() and (lams >= 0).all()):
        raise InvalidInputError(f"lam must be finite numbers >= 0, got {lam}")
    k = min(int(rank), d)
    groups = stats.column_moments()  # the rows of each column group, once
    total = Moments.zeros(d, 0)
    for _, mom in groups:
        total.n += mom.n
        total.sum_x = total.sum_x + mom.sum_x
        total.gram = total.gram + mom.gram
    mu, basis = _basis(total, k)
    factors = np.zeros((n_exp, k + 1, k + 1))
    eye = np.eye(k + 1)
    for cols, mom in groups:
        gram = _z_gram(mom, mu, basis)
        for c in cols:
            ridge = max(float(lams[c]), MIN_RIDGE * max(1.0, float(np.trace(gram)) / (k + 1)))
            low = np.linalg.cholesky(gram + ridge * eye)  # A = C C^T, A^-1 = C^-T C^-1
            factors[c] = np.linalg.solve(low, eye)  # L = C^-1
    return SubspaceWidth(mu, basis, factors)

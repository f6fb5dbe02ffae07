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

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.ridge import Moments, solve

_KEYS = ("shared_n", "shared_sum_x", "shared_gram", "n", "sum_x", "gram", "sum_xy", "sum_y",
         "sum_yy")


@dataclass
class RouterStats:
    """Float64 statistics: shared rows and, per expert, owned rows and column targets.

    Attributes:
        shared: moments of the shared rows (targets unused: m = 0).
        owned: per expert, moments of the rows it owns (targets unused: m = 0).
        sum_xy: per expert, ``sum x y_k`` over the rows its column is fit on, shape (E, D).
        sum_y: per expert, ``sum y_k``, shape (E,).
        sum_yy: per expert, ``sum y_k^2``, shape (E,).

    """

    shared: Moments
    owned: list[Moments]
    sum_xy: np.ndarray
    sum_y: np.ndarray
    sum_yy: np.ndarray

    @classmethod
    def empty(cls, dim: int, *, diagonal: bool) -> RouterStats:
        """No rows and no experts, in a space of ``dim`` features (or tokens if diagonal)."""
        return cls(Moments.zeros(dim, 0, diagonal=diagonal), [], np.zeros((0, dim)),
                   np.zeros(0), np.zeros(0))

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

    def append(self, owned: Moments, sum_xy: np.ndarray, sum_y: float, sum_yy: float) -> None:
        """Add an expert column with the rows it owns and its target sums."""
        if owned.n_features != self.dim or owned.diagonal != self.diagonal:
            raise InvalidInputError("statistics of another feature space cannot be combined")
        self.owned.append(_rows_only(owned))
        self.sum_xy = np.vstack([self.sum_xy, np.asarray(sum_xy, dtype=np.float64)[None, :]])
        self.sum_y = np.append(self.sum_y, float(sum_y))
        self.sum_yy = np.append(self.sum_yy, float(sum_yy))

    def append_domain(self, rows: Moments) -> None:
        """Add a one-hot (domain) expert whose rows are summarised by ``rows``."""
        self.append(rows, rows.sum_x, rows.n, rows.n)

    def remove(self, index: int) -> None:
        """Drop expert ``index``: its column and the rows it owns."""
        del self.owned[index]
        self.sum_xy = np.delete(self.sum_xy, index, axis=0)
        self.sum_y = np.delete(self.sum_y, index)
        self.sum_yy = np.delete(self.sum_yy, index)

    def copy(self) -> RouterStats:
        """A deep copy."""
        return RouterStats(self.shared.copy(), [m.copy() for m in self.owned],
                           self.sum_xy.copy(), self.sum_y.copy(), self.sum_yy.copy())

    def merge(self, other: RouterStats) -> RouterStats:
        """Statistics of the union of two disjoint row sets with the same experts."""
        if (other.dim, other.diagonal, other.n_experts) != (self.dim, self.diagonal,
                                                           self.n_experts):
            raise InvalidInputError(
                "statistics differ in shape: "
                f"{self.n_experts} experts x {self.dim} vs {other.n_experts} x {other.dim}"
            )
        return RouterStats(
            self.shared + other.shared,
            [a + b for a, b in zip(self.owned, other.owned, strict=True)],
            self.sum_xy + other.sum_xy,
            self.sum_y + other.sum_y,
            self.sum_yy + other.sum_yy,
        )

    def column_moments(self, modes: list[str] | tuple[str, ...]) -> list[tuple[list[int], Moments]]:
        """Group columns by the rows they are fit on: ``[(columns, moments), ...]``."""
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
        return Moments(rows.n, rows.sum_x, rows.gram, self.sum_xy[cols].T.copy(),
                       self.sum_y[cols].copy(), self.sum_yy[cols].copy())

    def solve(self, modes: list[str] | tuple[str, ...], lam: float,
              table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Solve the head: ``W`` (d, E) and ``b`` (E,).

        Args:
            modes: per expert, ``pooled`` or ``own``.
            lam: ridge penalty.
            table: embedding table (vocab, d) for token-count statistics.

        """
        if self.diagonal and table is None:
            raise InvalidInputError("token-count statistics need the embedding table to solve")
        d = self.dim if table is None else int(np.shape(table)[1])
        w = np.zeros((d, self.n_experts))
        b = np.zeros(self.n_experts)
        for cols, mom in self.column_moments(modes):
            if mom.n <= 0:
                raise InvalidInputError("an expert column has no rows to be fit on")
            mom = mom.project(table) if table is not None else mom
            w[:, cols], b[cols] = solve(mom, lam)
        return w, b

    def save(self, path: str | os.PathLike) -> None:
        """Write ``stats.npz`` (float64, compressed, no pickle)."""
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
        }
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RouterStats:
        """Read ``stats.npz`` written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in _KEYS}
        except KeyError as exc:
            raise RouterFormatError(f"{path} lacks the array {exc}") from exc
        except (OSError, ValueError) as exc:
            raise RouterFormatError(f"{path} is not a readable statistics file: {exc}") from exc
        dim = arrays["shared_sum_x"].shape[0]
        diagonal = arrays["shared_gram"].ndim == 1
        shared = Moments(float(arrays["shared_n"]), arrays["shared_sum_x"], arrays["shared_gram"],
                         np.zeros((dim, 0)), np.zeros(0), np.zeros(0))
        owned = [
            Moments(float(n), sx, g, np.zeros((dim, 0)), np.zeros(0), np.zeros(0))
            for n, sx, g in zip(arrays["n"], arrays["sum_x"], arrays["gram"], strict=True)
        ]
        stats = cls(shared, owned, arrays["sum_xy"], arrays["sum_y"], arrays["sum_yy"])
        if stats.sum_xy.shape != (len(owned), dim) or stats.diagonal != diagonal:
            raise RouterFormatError(f"{path}: arrays have inconsistent shapes")
        return stats


def _rows_only(m: Moments) -> Moments:
    d = m.n_features
    return Moments(m.n, m.sum_x.copy(), m.gram.copy(), np.zeros((d, 0)), np.zeros(0), np.zeros(0))


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
    flat = np.concatenate([np.asarray(a, dtype=np.int64) for a in ids]) if lengths.sum() else \
        np.zeros(0, dtype=np.int64)
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

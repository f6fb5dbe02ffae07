"""Exploration where feedback is collected: epsilon-greedy or an uncertainty bonus (issue 19).

A router's policy is greedy: it picks the expert of highest utility (see
:mod:`irde_onnx.decision.policy`). A feedback loop that only ever sees the greedy pick never
learns how the other experts do on the prompts it sends elsewhere. Exploration sometimes
serves another expert, so that bandit feedback (``{"text", "expert", "outcome"}``) reaches
every column. It is made where feedback is collected (:class:`~irde_onnx.runtime.live.
LiveRouter` in Python, ``irde serve --explore`` in the server), never inside a
:class:`~irde_onnx.runtime.router.Router`, which stays read-only and deterministic. It is
off by default: the research (``research/feedback``) found greedy best or tied on every
stream measured, so exploration is a setting for cold experts, not a default.

Modes (:meth:`Exploration.parse` reads them from the command line):

* ``off``: the greedy choice, always.
* ``eps:R`` (``0 <= R <= 1``): with probability ``R`` a prompt goes to one of the *other*
  experts, uniformly (each with probability ``R / (E - 1)``); otherwise to the greedy pick.
  So ``R`` is exactly the share of prompts served by a non-greedy expert. (The research's
  streams drew among all E experts, greedy included: its ``eps:R`` is this ``eps:R(E-1)/E``.)
* ``bonus:A`` (``A >= 0``): the expert maximising ``utility + A * uncertainty``, where
  ``uncertainty`` is the router's per-expert uncertainty of its predicted quality (the graph
  output ``uncertainty``; a router without it cannot use this mode). Deterministic: no
  random draw. The greedy pick is kept on ties.

Neither mode explores a prompt the policy sent to its fallback expert (its confidence was
below ``min_confidence``): the operator asked for unsure prompts to go there, and
exploration does not override that.

Draws come from one :class:`numpy.random.Generator` per :class:`Explorer`, seeded: the same
seed and the same sequence of calls (batch sizes) give the same choices. Without a seed, one
is drawn from the OS and kept in :attr:`Explorer.seed`, so that a run can be logged and
replayed.
"""

from __future__ import annotations

import math
import secrets
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from irde_onnx.decision.policy import inverse_wtp, quality
from irde_onnx.errors import InvalidInputError

Mode = Literal["off", "epsilon", "bonus"]
MODES: tuple[str, ...] = ("off", "eps:RATE", "bonus:ALPHA")
_OFF = ("off", "none", "greedy")


@dataclass(frozen=True)
class Exploration:
    """An exploration setting: the mode, its parameter and the seed of its draws.

    Attributes:
        mode: ``"off"`` (greedy), ``"epsilon"`` or ``"bonus"``.
        rate: epsilon: the probability in [0, 1] that a prompt is served by another expert.
        alpha: bonus: the weight (>= 0) of the per-expert uncertainty added to the utility.
        seed: the seed of the random draws (epsilon), or None (one is drawn from the OS).

    """

    mode: Mode = "off"
    rate: float = 0.0
    alpha: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("off", "epsilon", "bonus"):
            raise InvalidInputError(
                f"exploration mode must be 'off', 'epsilon' or 'bonus', got {self.mode!r}"
            )
        if self.mode == "epsilon":
            _check_number(self.rate, "the epsilon rate", 0.0, 1.0)
        if self.mode == "bonus":
            _check_number(self.alpha, "the bonus weight alpha", 0.0, math.inf)
        if self.seed is not None and (type(self.seed) is not int or self.seed < 0):
            raise InvalidInputError(
                f"the exploration seed must be an integer >= 0 or None, got {self.seed!r}"
            )

    @classmethod
    def parse(cls, text: str | None, seed: int | None = None) -> Exploration:
        """Read ``off``, ``eps:R`` (also ``epsilon:R``) or ``bonus:A``; None means off.

        Raises:
            InvalidInputError: another form, or a number out of range; the message names
                the forms accepted.

        """
        if text is None:
            return cls(seed=seed)
        if not isinstance(text, str):
            raise InvalidInputError(
                f"exploration must be a string such as 'eps:0.05', got {text!r}"
            )
        spec = text.strip().lower()
        if spec in _OFF:
            return cls(seed=seed)
        kind, sep, value = spec.partition(":")
        forms = "'off', 'eps:RATE' (0 <= RATE <= 1) or 'bonus:ALPHA' (ALPHA >= 0)"
        if kind not in ("eps", "epsilon", "bonus") or not sep:
            raise InvalidInputError(f"exploration {text!r} is not {forms}, e.g. 'eps:0.05'")
        try:
            number = float(value)
        except ValueError:
            raise InvalidInputError(
                f"exploration {text!r}: {value!r} is not a number; give {forms}"
            ) from None
        if kind == "bonus":
            return cls("bonus", alpha=number, seed=seed)
        return cls("epsilon", rate=number, seed=seed)

    @property
    def enabled(self) -> bool:
        """False for ``off``: every prompt goes to the greedy pick."""
        return self.mode != "off"

    @property
    def needs_uncertainty(self) -> bool:
        """True for the bonus mode: the router must have the ``uncertainty`` output."""
        return self.mode == "bonus"

    def __str__(self) -> str:
        """The command-line form: ``off``, ``eps:R`` or ``bonus:A``."""
        if self.mode == "epsilon":
            return f"eps:{float(self.rate)!r}"  # repr: parse() reads back the same number
        if self.mode == "bonus":
            return f"bonus:{float(self.alpha)!r}"
        return "off"


def _check_number(value: object, what: str, low: float, high: float) -> None:
    ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
    if not ok:
        span = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise InvalidInputError(f"{what} must be a finite number {span}, got {value!r}")


def utility(
    scores: np.ndarray,
    target: str,
    *,
    costs: np.ndarray | None = None,
    wtp: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """The per-expert utility the policy maximises, (n, E) float32.

    ``quality(scores) - costs / wtp`` (quality alone without costs or wtp), computed as
    :func:`irde_onnx.decision.policy.decide` computes it, so its argmax is the policy's pick
    before the fallback rule.
    """
    u = quality(scores, target, temperature)
    if costs is not None and wtp is not None:
        u = u - np.asarray(costs, np.float32) * np.float32(inverse_wtp(wtp))
    return u


class Explorer:
    """An :class:`Exploration` setting with its random generator: makes the choices.

    Thread-safe: draws are taken under a lock, so concurrent calls never share a draw, and
    calls made one after another are reproducible from :attr:`seed`.

    Args:
        setting: the exploration setting (or its command-line form).
        stream: a second seed component (e.g. a worker's number), so that processes started
            with one seed draw different sequences; 0 gives ``numpy.random.default_rng(seed)``.

    """

    def __init__(self, setting: Exploration | str | None = None, stream: int = 0) -> None:
        if not isinstance(setting, Exploration):
            setting = Exploration.parse(setting)
        if type(stream) is not int or stream < 0:
            raise InvalidInputError(f"stream must be an integer >= 0, got {stream!r}")
        seed = setting.seed
        if seed is None and setting.mode == "epsilon":
            seed = secrets.randbits(63)  # kept, so that the run can be logged and replayed
        self.setting = setting
        self.seed: int | None = seed
        self.stream = stream
        sequence = np.random.SeedSequence(seed, spawn_key=(stream,) if stream else ())
        self._rng = np.random.Generator(np.random.PCG64(sequence))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Explorer({str(self.setting)!r}, seed={self.seed}, stream={self.stream})"

    def choose(
        self,
        utility: np.ndarray,
        uncertainty: np.ndarray | None,
        greedy: np.ndarray,
        abstained: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The served expert of each prompt and whether it was explored.

        Args:
            utility: (n, E) the utility the policy maximises (:func:`utility`).
            uncertainty: (n, E) the router's per-expert uncertainty (bonus mode; else unused).
            greedy: (n,) the policy's choice (column indices), fallback included.
            abstained: (n,) True where the policy sent the prompt to its fallback: never
                explored. None: no prompt abstained.

        Returns:
            ``(choice int64 (n,), explored bool (n,))``; ``explored`` is exactly
            ``choice != greedy``.

        """
        u = np.asarray(utility, np.float32)
        g = np.asarray(greedy, np.int64).reshape(-1)
        if u.ndim != 2 or len(g) != len(u):
            raise InvalidInputError(
                f"utility must be (n, E) and greedy (n,), got {u.shape} and {g.shape}"
            )
        n, n_experts = u.shape
        if n and (g.min() < 0 or g.max() >= n_experts):
            raise InvalidInputError(f"greedy choices must be column indices below {n_experts}")
        keep = np.zeros(n, bool) if abstained is None else np.asarray(abstained, bool).reshape(-1)
        if len(keep) != n:
            raise InvalidInputError(f"abstained must have {n} entries, got {len(keep)}")
        mode = self.setting.mode
        if mode == "epsilon":
            with self._lock:  # every call draws 2n numbers, whatever it explores
                flips = self._rng.random(n)
                others = self._rng.integers(0, max(n_experts - 1, 1), n)
            explore = (flips < self.setting.rate) & ~keep & (n_experts > 1)
            # the k-th other expert: skip over the greedy column
            alternative = others + (others >= g)
            choice = np.where(explore, alternative, g)
        elif mode == "bonus":
            if uncertainty is None:
                raise InvalidInputError(
                    "the bonus exploration needs the router's uncertainty output; use "
                    "eps:RATE with a router that has none"
                )
            unc = np.asarray(uncertainty, np.float32)
            if unc.shape != u.shape:
                raise InvalidInputError(
                    f"uncertainty must have the shape of utility {u.shape}, got {unc.shape}"
                )
            if not np.isfinite(unc).all():
                raise InvalidInputError("the router's uncertainty is not finite")
            total = u + np.float32(self.setting.alpha) * unc
            best = np.argmax(total, axis=1)
            rows = np.arange(n)
            # the greedy pick stays unless another expert's total is strictly higher
            better = total[rows, best] > total[rows, g]
            choice = np.where(better & ~keep, best, g)
        else:
            choice = g.copy()
        choice = choice.astype(np.int64)
        return choice, choice != g


__all__ = ["MODES", "Exploration", "Explorer", "utility"]

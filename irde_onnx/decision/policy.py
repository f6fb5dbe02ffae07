"""The decision rule: calibrated confidence, abstaining to a fallback, and cost-aware choice.

The rule, computed by the graph (outputs ``choice`` and ``confidence``) and by
:func:`decide` (its numpy reference, also what ``Router.route(..., wtp=)`` runs):

* predicted quality ``q``: score routers (per-expert quality targets): the ``scores`` as they
  are (the per-expert affine calibration is folded into ``head.W``/``head.b``); domain
  routers: ``softmax(scores / temperature)``, the probability of each domain.
* utility ``u = q - cost / wtp`` (``wtp``: willingness to pay, in cost units per unit of
  quality; no ``wtp`` or no costs: ``u = q``); the pick is ``argmax u`` (first of ties).
* ``confidence`` = the pick's ``q`` (clipped to [0, 1] for score routers).
* ``choice`` = the fallback expert when ``confidence < min_confidence``, else the pick.

Everything here is numpy: the runtime imports it without the ``onnx`` package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from irde_onnx.arguments import check_wtp
from irde_onnx.errors import InvalidInputError


class _Unset:
    """The default of arguments whose None means "clear": the argument was not given."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"  # what help() shows as the default


UNSET: Any = _Unset()

POLICY_COSTS = "policy.costs"
POLICY_INV_WTP = "policy.inv_wtp"
POLICY_INV_TEMPERATURE = "policy.inv_temperature"
POLICY_MIN_CONFIDENCE = "policy.min_confidence"
POLICY_FALLBACK = "policy.fallback"


@dataclass(frozen=True)
class Policy:
    """The decision settings a router stores in ``router.json`` under ``policy``.

    Every field has a default meaning "not set", so routers written before the policy existed
    load unchanged.

    Attributes:
        costs: cost of one prompt per expert (e.g. USD), or None (quality only).
        wtp: the default willingness to pay (cost units per unit of quality), or None.
        min_confidence: below this confidence the prompt goes to ``fallback`` (0: never).
        fallback: the expert that takes prompts the router is unsure of, or None.
        temperature: domain routers: the softmax temperature of the confidence.
        calibration: score routers: per expert ``[scale, offset]`` applied to its raw column
            (folded into the head), or None.

    """

    costs: dict[str, float] | None = None
    wtp: float | None = None
    min_confidence: float = 0.0
    fallback: str | None = None
    temperature: float = 1.0
    calibration: dict[str, list[float]] | None = field(default=None)

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (only the fields that are set)."""
        out: dict[str, Any] = {}
        if self.costs is not None:
            out["costs"] = dict(self.costs)
        if self.wtp is not None:
            out["wtp"] = self.wtp
        if self.min_confidence:
            out["min_confidence"] = self.min_confidence
        if self.fallback is not None:
            out["fallback"] = self.fallback
        if self.temperature != 1.0:
            out["temperature"] = self.temperature
        if self.calibration is not None:
            out["calibration"] = {k: list(v) for k, v in self.calibration.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "policy") -> Policy:
        """Parse the ``policy`` object of ``router.json``; raises InvalidInputError."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{source} must be a JSON object")
        unknown = set(data) - {
            "costs",
            "wtp",
            "min_confidence",
            "fallback",
            "temperature",
            "calibration",
        }
        if unknown:
            raise InvalidInputError(f"{source} has unknown field(s) {sorted(unknown)}")
        costs = data.get("costs")
        if costs is not None:
            costs = check_costs(costs, source=f"{source}.costs")
        calibration = data.get("calibration")
        if calibration is not None:
            if not isinstance(calibration, Mapping) or not all(
                isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)
                for v in calibration.values()
            ):
                raise InvalidInputError(
                    f"{source}.calibration must map expert names to [scale, offset]"
                )
            calibration = {str(k): [float(v[0]), float(v[1])] for k, v in calibration.items()}
        fallback = data.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            raise InvalidInputError(f"{source}.fallback must be an expert name")
        return cls(
            costs=costs,
            wtp=check_wtp(data.get("wtp"), f"{source}.wtp"),
            min_confidence=check_min_confidence(
                data.get("min_confidence", 0.0), f"{source}.min_confidence"
            ),
            fallback=fallback,
            temperature=_positive(data.get("temperature", 1.0), f"{source}.temperature"),
            calibration=calibration,
        )

    # -- consistency with the experts -------------------------------------------------------
    def check(self, experts: Sequence[str], source: str = "policy") -> None:
        """Raise InvalidInputError when the settings do not fit ``experts``."""
        if self.costs is not None and set(self.costs) != set(experts):
            missing = sorted(set(experts) - set(self.costs))
            extra = sorted(set(self.costs) - set(experts))
            raise InvalidInputError(
                f"{source}.costs must name every expert once: missing {missing}, unknown {extra}"
            )
        if self.fallback is not None and self.fallback not in experts:
            raise InvalidInputError(
                f"{source}.fallback {self.fallback!r} is not an expert ({list(experts)})"
            )
        if self.min_confidence > 0 and self.fallback is None:
            raise InvalidInputError(
                f"{source}.min_confidence needs a fallback expert to send unsure prompts to"
            )
        if self.calibration is not None and not set(self.calibration) <= set(experts):
            raise InvalidInputError(
                f"{source}.calibration names experts the router does not have: "
                f"{sorted(set(self.calibration) - set(experts))}"
            )

    def without_expert(self, name: str, fallback: str | None = None) -> Policy:
        """The policy after removing ``name``; refuses to drop the fallback silently."""
        new_fallback = self.fallback
        if self.fallback == name:
            if fallback is None:
                raise InvalidInputError(
                    f"{name!r} is the router's fallback expert; name a new fallback "
                    "(remove_expert(name, fallback=...), or --fallback) or clear it with "
                    "set_policy(fallback=None, min_confidence=0) first"
                )
            new_fallback = fallback
        costs = None if self.costs is None else {k: v for k, v in self.costs.items() if k != name}
        calibration = (
            None
            if self.calibration is None
            else {k: v for k, v in self.calibration.items() if k != name}
        )
        return replace(self, costs=costs, fallback=new_fallback, calibration=calibration)

    def with_expert(self, name: str, cost: float | None) -> Policy:
        """The policy after adding ``name``; a router with costs needs the new expert's cost."""
        if self.costs is None:
            if cost is not None:
                raise InvalidInputError(
                    f"the router has no costs, so {name!r} cannot get one alone; give every "
                    "expert a cost with set_costs() (or irde policy DIR --costs FILE) first"
                )
            return self
        if cost is None:
            raise InvalidInputError(
                f"the router routes by cost: give the cost of {name!r} (cost=..., or --cost)"
            )
        return replace(self, costs={**self.costs, name: check_cost(cost, name)})

    # -- graph values -----------------------------------------------------------------------
    def cost_vector(self, experts: Sequence[str]) -> np.ndarray:
        """Costs in column order (zeros when the router has none)."""
        if self.costs is None:
            return np.zeros(len(experts))
        return np.array([self.costs[e] for e in experts], dtype=np.float64)

    def calibrate_head(
        self, w: np.ndarray, b: np.ndarray, experts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fold the per-expert affine calibration into the head: ``W a``, ``b a + c``."""
        if not self.calibration:
            return w, b
        scale = np.array([self.calibration.get(e, [1.0, 0.0])[0] for e in experts])
        offset = np.array([self.calibration.get(e, [1.0, 0.0])[1] for e in experts])
        return np.asarray(w) * scale, np.asarray(b) * scale + offset

    def initializers(self, experts: Sequence[str], target: str) -> dict[str, np.ndarray]:
        """The graph's policy initializers for these settings (see :mod:`policy_graph`).

        Only domain routers' graphs have the temperature.
        """
        fallback = list(experts).index(self.fallback) if self.fallback is not None else 0
        out = {
            POLICY_COSTS: self.cost_vector(experts).astype(np.float32),
            POLICY_INV_WTP: np.array([inverse_wtp(self.wtp)], np.float32),
            POLICY_MIN_CONFIDENCE: np.array([self.min_confidence], np.float32),
            POLICY_FALLBACK: np.array([fallback], np.int64),
        }
        if target == "domain":
            out[POLICY_INV_TEMPERATURE] = np.array([1.0 / self.temperature], np.float32)
        return out


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _positive(value: object, what: str) -> float:
    if not _is_number(value) or float(value) <= 0:
        raise InvalidInputError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def check_min_confidence(value: object, what: str = "min_confidence") -> float:
    """A confidence threshold in [0, 1]."""
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_cost(value: object, name: str) -> float:
    """One expert's cost: a finite number >= 0."""
    if not _is_number(value) or float(value) < 0:
        raise InvalidInputError(f"the cost of {name!r} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_costs(costs: object, source: str = "costs") -> dict[str, float]:
    """``{expert: cost}`` with every cost a finite number >= 0."""
    if not isinstance(costs, Mapping) or not costs:
        raise InvalidInputError(f"{source} must be a non-empty object {{expert: cost}}")
    return {str(k): check_cost(v, str(k)) for k, v in costs.items()}


def inverse_wtp(wtp: float | None) -> float:
    """1 / wtp, or 0 for "no knob" (quality only)."""
    return 0.0 if wtp is None else 1.0 / wtp


# -- the rule, in numpy -------------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def quality(scores: np.ndarray, target: str, temperature: float = 1.0) -> np.ndarray:
    """Predicted quality of each expert from the graph's ``scores`` (see the module doc)."""
    s = np.asarray(scores, dtype=np.float32)
    if target == "domain":
        return softmax(s * np.float32(1.0 / temperature)).astype(np.float32)
    return s


def decide(
    scores: np.ndarray,
    target: str,
    *,
    costs: np.ndarray | None = None,
    wtp: float | None = None,
    temperature: float = 1.0,
    min_confidence: float = 0.0,
    fallback: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The decision rule on ``scores`` (n, E): ``(choice int64 (n,), confidence (n,))``.

    Computed in float32 like the graph, so that it reproduces the graph's ``choice``.
    """
    q = quality(scores, target, temperature)
    u = q
    if costs is not None and wtp is not None:
        u = q - np.asarray(costs, np.float32) * np.float32(inverse_wtp(wtp))
    pick = np.argmax(u, axis=1).astype(np.int64)
    conf = q[np.arange(len(q)), pick]
    if target != "domain":
        conf = np.clip(conf, 0.0, 1.0)
    if fallback is not None and min_confidence > 0:
        pick = np.where(conf < np.float32(min_confidence), np.int64(fallback), pick)
    return pick, conf.astype(np.float32)


# -- calibration --------------------------------------------------------------------------------
def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature minimising the mean negative log-likelihood of ``labels``.

    ``scores`` (n, K) are out-of-fold raw scores, ``labels`` (n,) column indices. A golden
    section search over log T in [1e-3, 1e2] (the NLL is unimodal in T for fixed scores).
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.int64)

    def nll(log_t: float) -> float:
        z = s / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    lo, hi = math.log(1e-3), math.log(1e2)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(math.exp((lo + hi) / 2))


def fit_affine(pred: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """Per column the least-squares ``y ~ scale * pred + offset`` (out-of-fold predictions).

    A column whose predictions do not vary keeps scale 1 and gets the mean residual.
    """
    p = np.asarray(pred, np.float64)
    t = np.asarray(y, np.float64)
    out = []
    for k in range(p.shape[1]):
        pk, tk = p[:, k], t[:, k]
        var = float(np.var(pk))
        if var <= 1e-12:
            out.append([1.0, float(np.mean(tk - pk))])
            continue
        scale = float(np.mean((pk - pk.mean()) * (tk - tk.mean())) / var)
        out.append([scale, float(tk.mean() - scale * pk.mean())])
    return out

"""Checks of the arguments every host takes: ``texts``, ``top_k`` and ``wtp``.

One place for the Python API (:meth:`irde_onnx.runtime.Router.route`), the server
(``POST /route``) and the command line (``irde route``): each host passes the name its
users know the argument by (``top_k``, ``"top_k"``, ``--top-k``) and gets the same check
and the same wording. A leaf module (it imports only :mod:`irde_onnx.errors`), so the
runtime, the decision layer, the server and the CLI can all import it without a cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set

from irde_onnx.errors import InvalidInputError


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)`` (a string as it is) cut to ``limit`` characters for an error message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    """Return ``texts`` as a list, or raise if it is not a sequence of strings."""
    if isinstance(texts, str):
        raise InvalidInputError(
            f"{name} must be a list of strings, not one string: wrap it in [...]"
        )
    if isinstance(texts, (Mapping, Set, bytes, bytearray)):
        raise InvalidInputError(
            f"{name} must be a list of strings, not a {type(texts).__name__} (its order or "
            "items would be guessed)"
        )
    try:
        out = list(texts)
    except TypeError as exc:
        raise InvalidInputError(
            f"{name} must be a list of strings, got {type(texts).__name__}"
        ) from exc
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(f"{name}[{i}] is {type(t).__name__}, not a string")
    return out


def check_top_k(value: object, n_experts: int, name: str = "top_k") -> int:
    """How many experts to rank: an int (not a bool) in ``1..n_experts``."""
    if type(value) is not int or value < 1:
        raise InvalidInputError(
            f"{name} must be an integer in 1..{n_experts}, got {shorten(value)}"
        )
    if value > n_experts:
        raise InvalidInputError(f"{name} {shorten(value)} exceeds the {n_experts} experts")
    return value


def check_wtp(value: object, name: str = "wtp") -> float | None:
    """A willingness to pay: None (quality only) or a finite number > 0."""
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)

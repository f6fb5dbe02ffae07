r"""Input views: named text normalisations applied to a prompt before it is tokenized.

A router is trained and run on the same view of each prompt; the view's name is stored in
``router.json`` (``view``) and in the graph's metadata (``irde.view``), and every host applies
it identically, before the text rule of :func:`irde_onnx.runtime.tokenize.prepare_text`
(unpaired surrogates to U+FFFD, then the cut to ``max_length * 32`` code points).

Every view is a pure, deterministic function of the text (a Python ``str``, i.e. code points)
and ``max_length``. The rules are written with explicit character sets, not regex classes
such as ``\s`` or ``\d`` whose meaning differs between Python and JavaScript, so a host in
another language can implement them from this docstring alone; ``conformance/views.json``
holds (view, max_length, input, output) cases every host must reproduce.

Views:

``full``
    The text as it is (the default, and the view of every router trained before views).

``strip_options``
    Drop the multiple-choice option lines at the end of a prompt: real traffic rarely lists
    options, and benchmarks list them in their own style. Lines are split on ``"\n"``.
    From the last line upwards: skip *cue* lines (blank, or an answer cue such as
    ``Answer:`` / ``答案：``); then count *option* lines (a letter A-J, optionally after
    ``(``, followed by one of ``. ) : 、 ． ） ：``). With at least 2 option lines and a
    non-blank line above them, the result is the text above the options with trailing
    ``" \t\r\n"`` removed; otherwise the text is unchanged.

``tail``
    Keep the end of a long prompt (the question after a shared few-shot preamble). A text of
    more than ``max_length * TAIL_CHARS_PER_TOKEN`` code points is cut to its last that many
    code points; if the kept part holds a ``"\n"``, it starts after the first one (no partial
    first line).

``head_tail``
    Keep the first ``max_length * TAIL_CHARS_PER_TOKEN // 4`` code points, a ``"\n"``, and
    the ``tail`` of the rest within the remaining ``3/4`` of the budget (same partial-line
    rule). Texts within the budget are unchanged.

Views compose with ``+``, applied left to right: ``strip_options+tail``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from irde_onnx.errors import InvalidInputError

__all__ = ["VIEWS", "DEFAULT_VIEW", "AUTO_VIEWS", "apply_view", "check_view", "view_names"]

DEFAULT_VIEW = "full"
# code points kept per token of max_length by ``tail``: English text averages ~4 code points a
# token, so the kept tail nearly always fits max_length tokens (the tokenizer then cuts the
# end, the part ``tail`` is meant to keep, only for unusually dense text)
TAIL_CHARS_PER_TOKEN = 3
MIN_OPTION_LINES = 2

# ASCII space and tab only: the same in every regex engine
BLANK_LINE = re.compile(r"[ \t\r]*")
ANSWER_CUE = re.compile(r"[ \t]*(?:Answer|ANSWER|answer|答案)[ \t]*[:：]?[ \t\r]*")
OPTION_LINE = re.compile(r"[ \t]*[(（]?[A-J][.):、．）：]")
TRAILING_SPACE = " \t\r\n"


def _full(text: str, max_length: int) -> str:
    del max_length
    return text


def _strip_options(text: str, max_length: int) -> str:
    del max_length
    lines = text.split("\n")
    end = len(lines)
    while end > 0 and (
        BLANK_LINE.fullmatch(lines[end - 1]) or ANSWER_CUE.fullmatch(lines[end - 1])
    ):
        end -= 1
    start = end
    while start > 0 and OPTION_LINE.match(lines[start - 1]):
        start -= 1
    if end - start < MIN_OPTION_LINES:
        return text
    if not any(not BLANK_LINE.fullmatch(line) for line in lines[:start]):
        return text  # nothing but options: keep them
    return "\n".join(lines[:start]).rstrip(TRAILING_SPACE)


def _tail_within(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    kept = text[len(text) - budget :]
    newline = kept.find("\n")
    return kept[newline + 1 :] if newline >= 0 else kept


def _tail(text: str, max_length: int) -> str:
    return _tail_within(text, max_length * TAIL_CHARS_PER_TOKEN)


def _head_tail(text: str, max_length: int) -> str:
    budget = max_length * TAIL_CHARS_PER_TOKEN
    if len(text) <= budget:
        return text
    head = budget // 4
    return text[:head] + "\n" + _tail_within(text[head:], budget - head)


VIEWS: dict[str, Callable[[str, int], str]] = {
    "full": _full,
    "strip_options": _strip_options,
    "tail": _tail,
    "head_tail": _head_tail,
}
# the candidates ``view="auto"`` compares by cross-validation
AUTO_VIEWS = ("full", "strip_options", "tail", "strip_options+tail")


def view_names() -> list[str]:
    """The single views, in registry order (compose them with ``+``)."""
    return list(VIEWS)


def check_view(view: object) -> str:
    """Return ``view`` if it names a view or a ``+`` composition of views, else raise."""
    if not isinstance(view, str) or not view:
        raise InvalidInputError(f"view must be a non-empty string, got {view!r}")
    parts = view.split("+")
    unknown = [p for p in parts if p not in VIEWS]
    if unknown:
        raise InvalidInputError(
            f"unknown view {unknown[0]!r} in {view!r}; choose one of {view_names()} "
            "(or several joined by '+')"
        )
    return view


def apply_view(view: str, text: str, max_length: int) -> str:
    """The text a router with ``view`` tokenizes (before the surrogate and length rule)."""
    if view == DEFAULT_VIEW:
        return text
    for part in view.split("+"):
        text = VIEWS[part](text, max_length)
    return text

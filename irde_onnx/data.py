"""Reading JSON-lines data: training rows, prompts to route, evaluation rows."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from irde_onnx.errors import InvalidInputError
from irde_onnx.learning.statistics import MAX_TARGET
from irde_onnx.store.config import expert_name_problem

STDIN = "-"


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", row)`` for each non-blank line; every row must be an object.

    ``path`` ``-`` reads standard input. Lines must be UTF-8 JSON objects.
    """
    if str(path) == STDIN:
        yield from _rows(sys.stdin.buffer, "<stdin>")
        return
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    with open(path, "rb") as fh:
        yield from _rows(fh, str(path))


def _rows(fh: IO[bytes], name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, raw in enumerate(fh, 1):
        where = f"{name}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{where}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
            ) from exc
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not valid JSON ({exc.msg})") from exc
        except RecursionError as exc:
            raise InvalidInputError(f"{where}: JSON nested too deeply") from exc
        if not isinstance(row, dict):
            raise InvalidInputError(f"{where}: each line must be a JSON object")
        yield where, row


def _text(where: str, row: dict[str, Any]) -> str:
    text = row.get("text")
    if not isinstance(text, str):
        raise InvalidInputError(f'{where}: the row needs a string "text" field')
    return text


@dataclass
class TrainingSet:
    """Texts with either one label each (domain mode) or per-expert scores (score mode)."""

    texts: list[str]
    labels: list[str] | None
    scores: np.ndarray | None
    experts: list[str]
    rows: list[dict[str, Any]]

    def groups(self, field: str) -> list[str]:
        """The value of ``field`` in every row, as strings (the rows' cross-validation groups).

        Raises:
            InvalidInputError: a row lacks the field, or holds a list or object there.

        """
        out = []
        for i, row in enumerate(self.rows):
            value = row.get(field)
            if value is None or isinstance(value, (list, dict)):
                raise InvalidInputError(
                    f'row {i + 1} has no "{field}" field (a string or number) to group by; '
                    "every row needs one with --group-field"
                )
            out.append(str(value))
        return out


def load_training_set(
    paths: Sequence[str | os.PathLike], label_field: str = "expert"
) -> TrainingSet:
    """Read rows ``{"text", label_field}`` or ``{"text", "scores": {expert: value}}``.

    All rows of all files must be of one kind; score rows must name the same experts.
    """
    texts: list[str] = []
    labels: list[str] = []
    score_rows: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    experts: list[str] | None = None
    kind: str | None = None
    for path in paths:
        for where, row in read_jsonl(path):
            text = _text(where, row)
            if label_field in row:
                row_kind = "domain"
            elif "scores" in row:
                row_kind = "score"
            else:
                raise InvalidInputError(
                    f'{where}: the row has neither "{label_field}" nor "scores"; '
                    "rename the label field with --label-field"
                )
            if kind is None:
                kind = row_kind
            elif kind != row_kind:
                raise InvalidInputError(f"{where}: mixes labelled rows and scored rows")
            if row_kind == "domain":
                label = row[label_field]
                problem = expert_name_problem(label)
                if problem:
                    raise InvalidInputError(f'{where}: "{label_field}" {label!r:.60} {problem}')
                labels.append(label)
            else:
                scores = row["scores"]
                if not isinstance(scores, dict) or not scores:
                    raise InvalidInputError(
                        f'{where}: "scores" must be an object {{expert: value}}'
                    )
                if experts is None:
                    experts = list(scores)
                    for name in experts:
                        problem = expert_name_problem(name)
                        if problem:
                            raise InvalidInputError(f"{where}: expert name {name!r} {problem}")
                if set(scores) != set(experts):
                    raise InvalidInputError(
                        f"{where}: scores name {sorted(scores)}, earlier rows {sorted(experts)}"
                    )
                values = {}
                for name, value in scores.items():
                    if (
                        isinstance(value, bool)
                        or not isinstance(value, (int, float))
                        or not np.isfinite(value)
                        or abs(value) > MAX_TARGET
                    ):
                        raise InvalidInputError(
                            f"{where}: score of {name!r} is not a finite number of magnitude "
                            f"at most {MAX_TARGET:g}"
                        )
                    values[name] = float(value)
                score_rows.append(values)
            texts.append(text)
            rows.append(row)
    if not texts:
        raise InvalidInputError(f"no rows in {', '.join(str(p) for p in paths)}")
    if kind == "domain":
        return TrainingSet(texts, labels, None, sorted(set(labels)), rows)
    names = experts or []
    y = np.array([[r[e] for e in names] for r in score_rows])
    return TrainingSet(texts, None, y, names, rows)


def load_prompts(path: str | os.PathLike) -> tuple[list[str], list[dict[str, Any]]]:
    """Texts and rows of a ``{"text": ...}`` JSON-lines file."""
    rows, texts = [], []
    for where, row in read_jsonl(path):
        texts.append(_text(where, row))
        rows.append(row)
    return texts, rows


def expert_rows(
    rows: Iterable[tuple[str, Any]], source: str = "the data"
) -> tuple[list[str], list[float] | None]:
    """Texts (and scores) of a new expert from rows ``{"text"}`` or ``{"text", "score"}``.

    Args:
        rows: ``(where, row)`` pairs, as :func:`read_jsonl` yields them; ``where`` names the
            row in error messages.
        source: what the rows came from, for the message when there are none.

    Returns:
        The texts, and the scores (None when the rows have no ``"score"``: domain prompts).

    """
    texts: list[str] = []
    scores: list[float] = []
    scored: bool | None = None
    for where, row in rows:
        if not isinstance(row, dict):
            raise InvalidInputError(f'{where}: each row must be an object {{"text": ...}}')
        text = _text(where, row)
        if scored is None:
            scored = "score" in row
        elif scored != ("score" in row):
            raise InvalidInputError(f'{where}: either every row has a "score" or none has')
        if scored:
            value = row["score"]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or abs(value) > MAX_TARGET
            ):
                raise InvalidInputError(
                    f'{where}: "score" must be a finite number of magnitude at most {MAX_TARGET:g}'
                )
            scores.append(float(value))
        texts.append(text)
    if not texts:
        raise InvalidInputError(f"no rows in {source}")
    return texts, (scores if scored else None)

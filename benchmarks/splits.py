"""Evaluation data of the quality benchmark: RouterDC rows, domain rows, and their splits.

Every split is deterministic (sha256 of a row id), so runs and machines agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def id_hash(text: str) -> int:
    """A stable integer hash of a row id (sha256)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def limit_rows(
    rows: list[dict[str, Any]], key: Callable[[dict], str], limit: int | None
) -> list[dict[str, Any]]:
    """The first ``limit`` rows of each group in id-hash order (all rows, file order if None)."""
    if limit is None:
        return rows
    kept: dict[str, int] = {}
    out = []
    for r in sorted(rows, key=lambda r: id_hash(str(r["id"]))):
        g = key(r)
        if kept.get(g, 0) < limit:
            kept[g] = kept.get(g, 0) + 1
            out.append(r)
    return out


@dataclass
class Scored:
    """Prompts with per-LLM scores (RouterDC rows)."""

    texts: list[str]
    tasks: list[str]
    y: np.ndarray  # (n, E)
    experts: list[str]


def load_scored(
    path: Path, experts: Sequence[str] | None = None, limit: int | None = None
) -> Scored:
    """RouterDC rows of ``path`` (``limit`` rows per task, for smoke tests)."""
    rows = limit_rows(read_rows(path), lambda r: r["task"], limit)
    names = list(experts) if experts is not None else list(rows[0]["scores"])
    y = np.array([[float(r["scores"][e]) for e in names] for r in rows])
    return Scored([r["text"] for r in rows], [r["task"] for r in rows], y, names)


def task_mean_table(split: Scored) -> np.ndarray:
    """Mean score of each LLM on each task, shape (n_tasks, E)."""
    tasks = np.asarray(split.tasks)
    return np.array([split.y[tasks == t].mean(axis=0) for t in dict.fromkeys(split.tasks)])


@dataclass
class Labelled:
    """Prompts labelled by domain, with their source benchmark."""

    ids: list[str]
    texts: list[str]
    labels: list[str]
    sources: list[str]
    duplicates_dropped: int = 0

    def take(self, mask: np.ndarray) -> Labelled:
        """The rows where ``mask`` is True."""
        idx = np.flatnonzero(mask)
        return Labelled(
            [self.ids[i] for i in idx],
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.sources[i] for i in idx],
        )


def source_of(row: dict[str, Any]) -> str:
    """The benchmark of a row: ``mmlu/anatomy`` -> ``mmlu``, ``gsm8k/train`` -> ``gsm8k``."""
    return str(row["source"]).split("/", 1)[0]


def load_domain_records(folder: Path, limit: int | None = None) -> tuple[list[dict], int]:
    """Every ``domains/*.jsonl`` row, exact duplicate texts kept once (first seen); and how
    many duplicates were dropped."""
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += limit_rows(read_rows(path), lambda r: f"{r['domain']}|{source_of(r)}", limit)
    seen: set[str] = set()
    kept = []
    for r in rows:
        if r["text"] not in seen:
            seen.add(r["text"])
            kept.append(r)
    return kept, len(rows) - len(kept)


def labelled_domains(kept: list[dict], dropped: int = 0) -> Labelled:
    """Domain rows (from :func:`load_domain_records`) as labelled prompts."""
    return Labelled(
        [str(r["id"]) for r in kept],
        [r["text"] for r in kept],
        [r["domain"] for r in kept],
        [source_of(r) for r in kept],
        duplicates_dropped=dropped,
    )


def load_domains(folder: Path, limit: int | None = None) -> Labelled:
    """Every ``domains/*.jsonl`` row; exact duplicate texts are kept once (first seen)."""
    return labelled_domains(*load_domain_records(folder, limit))


def onehot(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """One-hot targets (n, K) in ``classes`` order."""
    index = {c: k for k, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)))
    y[np.arange(len(labels)), [index[x] for x in labels]] = 1.0
    return y


def in_source_split(data: Labelled, test_fraction: int = 5) -> np.ndarray:
    """Test mask: sha256(id) mod ``test_fraction`` == 0 (20% of rows by default)."""
    return np.array([id_hash(i) % test_fraction == 0 for i in data.ids])


def cross_source_split(data: Labelled) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Train on the largest source of each multi-source domain, test on its other sources.

    Domains with one source are split in-source (by id hash), so that every domain is both
    trained and tested. Returns (test mask, mask of test rows from unseen sources, the
    training source of each multi-source domain).
    """
    labels = np.array(data.labels)
    sources = np.array(data.sources)
    in_test = in_source_split(data)
    test = np.zeros(len(labels), bool)
    unseen = np.zeros(len(labels), bool)
    train_source: dict[str, str] = {}
    for d in sorted(set(data.labels)):
        rows = labels == d
        names, counts = np.unique(sources[rows], return_counts=True)
        if len(names) == 1:
            test |= rows & in_test
            continue
        best = names[np.lexsort((names, -counts))[0]]  # most rows, then name
        train_source[d] = str(best)
        held = rows & (sources != best)
        test |= held
        unseen |= held
    return test, unseen, train_source

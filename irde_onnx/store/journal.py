"""The feedback journal: ``feedback.jsonl``, append-only, beside the committed generation.

Each line is one accepted feedback row, ``{"seq": n, "weight": w, "row": {...}}``, written and
fsync'd before the server answers 2xx, so accepted feedback survives a kill -9. ``seq``
counts up from the statistics' ``journal_seq`` (the last entry a save folded into
``stats.npz``). A load replays the entries after ``journal_seq``; a save folds them into the
new generation's statistics and then drops the folded entries (a crash in between leaves
entries the statistics already hold, which the next load skips by their ``seq``).

The journal is not part of a generation: ``router.json`` does not name it and its bytes are
not hashed; hosts that do not replay it (the npm package) route with the last saved head.
A final line without its newline is a write a crash interrupted before any answer: ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from irde_onnx.errors import RouterFormatError
from irde_onnx.store.folder import fsync_dir

JOURNAL_FILE = "feedback.jsonl"


def journal_path(root: Path) -> Path:
    """Where a router folder keeps its feedback journal."""
    return Path(root) / JOURNAL_FILE


def journal_size(root: Path) -> int:
    """Bytes in the journal (0 when there is none): a replica compares it to notice growth."""
    try:
        return (Path(root) / JOURNAL_FILE).stat().st_size
    except FileNotFoundError:
        return 0


def read_journal(root: Path, after: int = 0) -> tuple[list[tuple[int, float, dict, float]], int]:
    """Entries ``(seq, weight, row, half_life)`` with ``seq > after``, and the bytes read.

    Only complete lines are read (a torn last line is left out of the entries and the size).

    Raises:
        RouterFormatError: a complete line is not a journal entry (names the line and the fix).

    """
    path = Path(root) / JOURNAL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1  # a torn last line was never acknowledged
    entries: list[tuple[int, float, dict, float]] = []
    for i, line in enumerate(data[:end].splitlines(), 1):
        try:
            entry = json.loads(line)
            seq, weight, row = int(entry["seq"]), float(entry["weight"]), entry["row"]
            half_life = float(entry.get("half_life", 0.0))
            if not isinstance(row, dict) or weight <= 0 or half_life < 0:
                raise ValueError("bad row or weight")
        except (ValueError, KeyError, TypeError) as exc:
            raise RouterFormatError(
                f"{path} line {i} is not a feedback journal entry ({exc}); fix or remove that "
                "line (the rows after it are kept), or remove the file to drop unsaved feedback"
            ) from exc
        if seq > after:
            entries.append((seq, weight, row, half_life))
    return entries, end


def append_journal(
    root: Path, rows: list[dict[str, Any]], first_seq: int, weight: float, half_life: float = 0.0
) -> int:
    """Append rows as entries ``first_seq, first_seq + 1, ...`` and fsync; return the size.

    ``half_life`` (0: none) is recorded with each entry so that a replay forgets alike.

    Call while holding the folder's lock, so that sequence numbers are not interleaved.
    """
    path = Path(root) / JOURNAL_FILE
    lines = b"".join(
        json.dumps(
            {"seq": first_seq + i, "weight": weight, "row": row}
            | ({"half_life": half_life} if half_life else {}),
            ensure_ascii=False,
        ).encode("utf-8")
        + b"\n"  # JSON escapes newlines inside strings: one entry, one line
        for i, row in enumerate(rows)
    )
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines)
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if new:
        fsync_dir(Path(root))
    return size


def drop_folded(root: Path, upto: int) -> int:
    """Remove entries with ``seq <= upto`` (folded by a committed save); return the new size.

    The kept entries are written to a temporary and renamed over the journal (atomic), or the
    journal is removed when none is kept. Call while holding the folder's lock.
    """
    from irde_onnx.store.folder import write_temporary  # folder imports nothing from here

    root = Path(root)
    path = root / JOURNAL_FILE
    if not path.exists():
        return 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    keep = [line + b"\n" for line in data[:end].splitlines() if int(json.loads(line)["seq"]) > upto]
    if not keep:
        path.unlink()
        fsync_dir(root)
        return 0
    tmp = write_temporary(root, JOURNAL_FILE, b"".join(keep))
    os.replace(tmp, path)
    fsync_dir(root)
    return path.stat().st_size

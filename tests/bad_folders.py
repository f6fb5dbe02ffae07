"""The conformance fixtures of broken router folders (``conformance/bad_folders``), applied.

``prepare(case, scratch)`` copies the good folder and applies a case's steps (see
``conformance/make_bad_folders.py``); the runtime tests and ``benchmarks/reliability.py``
use it. The Node tests apply the same steps in ``js/test/bad_folders.test.mjs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "bad_folders"
RECORD = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
CASES = [c for c in RECORD["cases"] if "python" in c.get("hosts", ["python"])]
FIXED = {"config": "router.json", "data": "router.onnx.data", "tokenizer": "tokenizer.json"}


def _file(root: Path, role: str) -> Path:
    if role in FIXED:
        return root / FIXED[role]
    return root / json.loads((root / "router.json").read_text())["files"][role]["name"]


def _edit(root: Path, edit) -> None:  # noqa: ANN001
    path = root / "router.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _walk(data: dict, dotted: str) -> tuple[dict, str]:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    return data, last


def apply_step(root: Path, outside: Path, step: dict) -> None:
    """One step of a case (see conformance/make_bad_folders.py)."""
    if "flip" in step:
        path = _file(root, step["flip"])
        data = bytearray(path.read_bytes())
        data[step["at"]] ^= 1
        path.write_bytes(bytes(data))
    elif "replace_text" in step:
        path = _file(root, step["replace_text"])
        text = path.read_text(encoding="utf-8")
        assert step["old"] in text
        path.write_text(text.replace(step["old"], step["new"], 1), encoding="utf-8")
    elif "set" in step:

        def set_field(data: dict) -> None:
            parent, key = _walk(data, step["set"])
            parent[key] = step["value"]

        _edit(root, set_field)
    elif "delete" in step:

        def delete_field(data: dict) -> None:
            parent, key = _walk(data, step["delete"])
            del parent[key]

        _edit(root, delete_field)
    elif "put" in step:
        shutil.copyfile(FIXTURES / step["from"], _file(root, step["put"]))
    elif "rehash" in step:
        sha = hashlib.sha256(_file(root, step["rehash"]).read_bytes()).hexdigest()
        _edit(root, lambda data: data["files"][step["rehash"]].update(sha256=sha))
    elif "symlink_outside" in step or "symlink_inside" in step:
        path = _file(root, step.get("symlink_outside") or step["symlink_inside"])
        target = outside / path.name if "symlink_outside" in step else root / f".real.{path.name}"
        os.replace(path, target)
        path.symlink_to(target)
    elif "remove" in step:
        _file(root, step["remove"]).unlink()
    elif "symlink_lock" in step:
        (root / ".irde.lock").unlink(missing_ok=True)
        (root / ".irde.lock").symlink_to(outside / "precious.txt")
    else:
        raise AssertionError(f"unknown step {step}")


def prepare(case: dict, scratch: Path) -> tuple[Path, Path]:
    """``(root, outside)``: a broken copy of the good folder, and a folder beside it holding
    ``precious.txt`` (where the cases' symlinks point)."""
    root = Path(shutil.copytree(FIXTURES / "good", scratch / "router"))
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious\n")
    for step in case["steps"]:
        apply_step(root, outside, step)
    return root, outside

"""The catalogue of bad inputs (issue 7): each ends in one documented error, nothing changed.

Shared by tests/test_bad_inputs.py and benchmarks/reliability.py. A case breaks a copy of a
static router (or uses it as it is), then calls the API (must raise ``error``) and the CLI
(must exit 2 with exactly one line on stderr and no traceback).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irde_onnx.cli import main
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.folder import LOCK_FILE

NEVER_REWRITTEN = ("tokenizer.json", "router.onnx.data")


def linked_copy(src: Path, dst: Path) -> Path:
    """Copy a router folder; files irde never rewrites are hard links (fast, same bytes).

    Enough to load and route; onnx refuses hard-linked external data, so a copy that must
    read the static table (add_expert) needs real copies.
    """
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name in NEVER_REWRITTEN:
            os.link(p, dst / p.name)
        elif p.is_file():
            shutil.copyfile(p, dst / p.name)
    (dst / LOCK_FILE).touch()
    return dst


def folder_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file of a folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


@dataclass
class Ctx:
    """What a case works on: a router folder and a scratch folder for its input files."""

    root: Path
    tmp: Path
    _router: RouterEditor | None = None

    @property
    def router(self) -> RouterEditor:
        """An editor of the folder: it routes as its router and takes the changes."""
        if self._router is None:
            self._router = RouterEditor.open(self.root)
        return self._router

    def use_router(self, router: RouterEditor) -> None:
        """Run the API cases on ``router``, loaded once, instead of loading the folder."""
        self._router = router

    def file(self, name: str, data: str | bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return str(path)


@dataclass(frozen=True)
class Case:
    """One bad input: how to break the router (optional), the API call, the CLI call."""

    name: str
    error: type[BaseException] | None  # what the API raises (None: no API form)
    api: Callable[[Ctx], object] | None = None
    argv: Callable[[Ctx], list[str]] | None = None
    breaks: Callable[[Path], None] | None = None
    says: str = ""  # the error message (API) and the stderr line (CLI) contain this


def _edit_config(**changes: object) -> Callable[[Path], None]:
    def breaks(root: Path) -> None:
        data = json.loads((root / "router.json").read_text(encoding="utf-8"))
        data.update(changes)
        _replace(root / "router.json", json.dumps(data).encode())

    return breaks


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # never write through a hard link
    path.write_bytes(data)


def _stats_name(root: Path) -> str:
    data = json.loads((root / "router.json").read_text(encoding="utf-8"))
    return data["files"]["stats"]["name"] if "files" in data else "stats.npz"


def _graph_name(root: Path) -> str:
    data = json.loads((root / "router.json").read_text(encoding="utf-8"))
    return data["files"]["graph"]["name"] if "files" in data else "router.onnx"


def _without_hashes(root: Path) -> None:
    """Record the sha256 of the files as they are now, so the content checks decide."""
    data = json.loads((root / "router.json").read_text(encoding="utf-8"))
    for entry in data.get("files", {}).values():
        entry["sha256"] = hashlib.sha256((root / entry["name"]).read_bytes()).hexdigest()
    _replace(root / "router.json", json.dumps(data).encode())


def _stats_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _break_stats(make: Callable[[dict[str, np.ndarray]], bytes]) -> Callable[[Path], None]:
    """Replace the statistics (and drop the recorded hashes, so the content check decides)."""

    def breaks(root: Path) -> None:
        path = root / _stats_name(root)
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        _replace(path, make(arrays))
        _without_hashes(root)

    return breaks


def _nan_stats(arrays: dict[str, np.ndarray]) -> bytes:
    arrays["shared_sum_x"] = arrays["shared_sum_x"].copy()
    arrays["shared_sum_x"][3] = np.nan
    return _stats_bytes(**arrays)


def _wrong_shape(arrays: dict[str, np.ndarray]) -> bytes:
    arrays["sum_xy"] = arrays["sum_xy"][:, :10]
    return _stats_bytes(**arrays)


def nan_stats_file(ctx: Ctx) -> str:
    """A stats.npz of the router's own shape holding one NaN (for merge)."""
    root = ctx.root
    with np.load(root / _stats_name(root), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return ctx.file("nan-stats.npz", _nan_stats(arrays))


def _fewer_experts(root: Path) -> None:
    """router.json lists one expert fewer than the graph scores (and than the stats)."""
    data = json.loads((root / "router.json").read_text(encoding="utf-8"))
    data["experts"] = data["experts"][:-1]
    data["expert_modes"] = data["expert_modes"][:-1]
    _replace(root / "router.json", json.dumps(data).encode())


def _graph_changed(root: Path) -> None:
    path = root / _graph_name(root)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    _replace(path, bytes(data))


def _nan_head(root: Path) -> None:
    from irde_onnx.store.graph_file import load_graph_proto, read_head, replace_head

    path = root / _graph_name(root)
    w, b = read_head(path)
    w = w.copy()
    w[0, 0] = np.nan
    model = load_graph_proto(path)
    replace_head(model, w, b)
    _replace(path, model.SerializeToString())
    _without_hashes(root)


def _trainer():  # noqa: ANN202
    from irde_onnx.export import RouterTrainer

    return RouterTrainer(encoder="static", lam=1.0, progress=False)


def _route(**kwargs: object) -> Callable[[Ctx], object]:
    return lambda c: c.router.route(**{"texts": ["What is 2 + 2?"], **kwargs})


def _add(name: object, texts: object = ("a prompt",), scores: object = None):  # noqa: ANN202
    return lambda c: c.router.add_expert(name, texts, scores)


def _npy(value: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def _pickled(arrays: dict[str, np.ndarray]) -> bytes:
    """Every array present, but the expert names are a pickled object array."""
    arrays["experts"] = np.array([{"evil": 1}] * len(arrays["experts"]), dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _route_argv(*more: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["route", str(c.root), "hello", *more]


SCORES_1E300 = (
    '{"text": "a", "scores": {"x": 1e300, "y": 0}}\n{"text": "b", "scores": {"x": 0, "y": 1}}\n'
)

CASES: list[Case] = [
    # prompts and arguments
    Case(
        "batch_size '2'",
        InvalidInputError,
        _route(batch_size="2"),
        _route_argv("--batch-size", "2x"),
        says="batch",
    ),
    Case("batch_size True", InvalidInputError, _route(batch_size=True)),
    Case(
        "batch_size 0",
        InvalidInputError,
        _route(batch_size=0),
        _route_argv("--batch-size", "0"),
        says="batch",
    ),
    Case(
        "top_k '2'", InvalidInputError, _route(top_k="2"), _route_argv("--top-k", "two"), says="top"
    ),
    Case("top_k True", InvalidInputError, _route(top_k=True)),
    Case(
        "top_k too large",
        InvalidInputError,
        _route(top_k=99),
        _route_argv("--top-k", "99"),
        says="top",
    ),
    Case("texts a dict", InvalidInputError, lambda c: c.router.route({"a": 1})),
    Case("texts a set", InvalidInputError, lambda c: c.router.route({"a", "b"})),
    Case("texts one string", InvalidInputError, lambda c: c.router.route("hello")),
    Case("texts with a number", InvalidInputError, lambda c: c.router.route(["a", 3])),
    Case(
        "--input invalid UTF-8",
        None,
        argv=lambda c: [
            "route",
            str(c.root),
            "--input",
            c.file("bad.jsonl", b'{"text": "\xff"}\n'),
        ],
    ),
    Case(
        "--input JSON nested 100k deep",
        None,
        argv=lambda c: [
            "route",
            str(c.root),
            "--input",
            c.file("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n"),
        ],
    ),
    Case(
        "--input row without text",
        None,
        argv=lambda c: ["route", str(c.root), "--input", c.file("t.jsonl", '{"x": 1}\n')],
    ),
    Case(
        "--input missing",
        None,
        argv=lambda c: ["route", str(c.root), "--input", str(c.tmp / "missing.jsonl")],
    ),
    # expert changes
    Case("scores as strings", InvalidInputError, _add("new", ["a", "b"], ["1", "2"])),
    Case(
        "scores 1e200",
        InvalidInputError,
        _add("new", ["a", "b"], [1e200, 0.5]),
        lambda c: [
            "experts",
            "add",
            str(c.root),
            "new",
            "--data",
            c.file("s.jsonl", '{"text": "a", "score": 1e200}\n'),
        ],
    ),
    Case(
        "scores NaN",
        InvalidInputError,
        _add("new", ["a", "b"], [float("nan"), 0.5]),
        lambda c: [
            "experts",
            "add",
            str(c.root),
            "new",
            "--data",
            c.file("s.jsonl", '{"text": "a", "score": NaN}\n'),
        ],
    ),
    Case("scores count", InvalidInputError, _add("new", ["a", "b"], [0.5])),
    Case(
        "expert name with NUL",
        InvalidInputError,
        _add("a\x00b"),
        lambda c: [
            "experts",
            "add",
            str(c.root),
            "a\x00b",
            "--data",
            c.file("d.jsonl", '{"text": "a"}\n'),
        ],
    ),
    Case(
        "expert name with newline",
        InvalidInputError,
        _add("a\nb"),
        lambda c: [
            "experts",
            "add",
            str(c.root),
            "a\nb",
            "--data",
            c.file("d.jsonl", '{"text": "a"}\n'),
        ],
    ),
    Case(
        "expert name empty",
        InvalidInputError,
        _add(" "),
        lambda c: [
            "experts",
            "add",
            str(c.root),
            " ",
            "--data",
            c.file("d.jsonl", '{"text": "a"}\n'),
        ],
    ),
    Case("expert name not a string", InvalidInputError, _add(5)),
    Case(
        "expert exists",
        InvalidInputError,
        _add("law"),
        lambda c: [
            "experts",
            "add",
            str(c.root),
            "law",
            "--data",
            c.file("d.jsonl", '{"text": "a"}\n'),
        ],
    ),
    Case(
        "remove unknown expert",
        InvalidInputError,
        lambda c: c.router.remove_expert("nobody"),
        lambda c: ["experts", "remove", str(c.root), "nobody"],
    ),
    Case(
        "merge NaN statistics",
        RouterFormatError,
        lambda c: c.router.merge_stats(nan_stats_file(c)),
        lambda c: ["stats", "merge", str(c.root), nan_stats_file(c)],
    ),
    Case(
        "save to .",
        InvalidInputError,
        lambda c: c.router.save(".", overwrite=True),
        lambda c: ["experts", "remove", str(c.root), "law", "--out", "."],
    ),
    # training input (refused before any training work)
    Case(
        "train scores 1e300",
        InvalidInputError,
        lambda c: _trainer().fit(["a", "b"], scores=[[1e300, 0.0], [0.0, 1.0]], experts=["x", "y"]),
        lambda c: [
            "train",
            "--data",
            c.file("s.jsonl", SCORES_1E300),
            "--out",
            str(c.tmp / "new"),
            "--encoder",
            "static",
        ],
    ),
    Case(
        "train label with control char",
        None,
        argv=lambda c: [
            "train",
            "--data",
            c.file("l.jsonl", '{"text": "a", "expert": "x\\u0007"}\n'),
            "--out",
            str(c.tmp / "new"),
            "--encoder",
            "static",
        ],
    ),
    Case(
        "train --out .",
        None,
        argv=lambda c: [
            "train",
            "--data",
            c.file("l.jsonl", '{"text": "a", "expert": "x"}\n'),
            "--out",
            ".",
            "--force",
        ],
    ),
    Case(
        "train --force over other files",
        None,
        argv=lambda c: [
            "train",
            "--data",
            c.file("l.jsonl", '{"text": "a", "expert": "x"}\n'),
            "--out",
            str(c.root.parent),
            "--force",
        ],
    ),
    Case(
        "demo --out a non-empty folder",
        None,
        argv=lambda c: ["demo", "--out", str(c.root), "--encoder", "static"],
    ),
    # damaged router folders (refused at load, not at first use)
    Case(
        "router.json experts: 5", RouterFormatError, breaks=_edit_config(experts=5), says="experts"
    ),
    Case(
        "router.json max_length '256'",
        RouterFormatError,
        breaks=_edit_config(max_length="256"),
        says="max_length",
    ),
    Case(
        "router.json format_version true",
        RouterFormatError,
        breaks=_edit_config(format_version=True),
        says="format_version",
    ),
    Case("router.json lam 'abc'", RouterFormatError, breaks=_edit_config(lam="abc"), says="lam"),
    Case(
        "router.json expert name with NUL",
        RouterFormatError,
        breaks=_edit_config(experts=["chinese", "code", "law", "math", "med\x00"]),
    ),
    Case(
        "router.json files outside the folder",
        RouterFormatError,
        breaks=_edit_config(
            files={"graph": {"name": "../router.onnx"}, "stats": {"name": "stats.npz"}}
        ),
    ),
    Case(
        "router.json not UTF-8",
        RouterFormatError,
        breaks=lambda r: _replace(r / "router.json", b'{"experts": "\xff\xfe"}'),
    ),
    Case(
        "router.json nested 100k deep",
        RouterFormatError,
        breaks=lambda r: _replace(r / "router.json", b"[" * 100_000 + b"]" * 100_000),
    ),
    Case("experts fewer than the graph", RouterFormatError, breaks=_fewer_experts, says="experts"),
    Case(
        "graph bytes differ from the recorded sha256",
        RouterFormatError,
        breaks=_graph_changed,
        says="sha256",
    ),
    Case("graph head holds NaN", RouterFormatError, breaks=_nan_head, says="NaN"),
    Case(
        "stats.npz garbage",
        RouterFormatError,
        breaks=_break_stats(lambda a: b"PK\x03\x04 not a zip at all"),
    ),
    Case(
        "stats.npz 0-d array",
        RouterFormatError,
        breaks=_break_stats(lambda a: _npy(np.float64(1.0))),
    ),
    Case(
        "stats.npz wrong shape", RouterFormatError, breaks=_break_stats(_wrong_shape), says="shape"
    ),
    Case("stats.npz holds NaN", RouterFormatError, breaks=_break_stats(_nan_stats), says="NaN"),
    Case(
        "stats.npz holds a pickle", RouterFormatError, breaks=_break_stats(_pickled), says="pickle"
    ),
]


def prepare(case: Case, good: Path, scratch: Path) -> Ctx:
    """The folder a case runs on: ``good`` itself, or a broken copy of it in ``scratch``."""
    scratch.mkdir(parents=True, exist_ok=True)
    if case.breaks is None:
        return Ctx(good, scratch)
    root = linked_copy(good, scratch / "router")
    case.breaks(root)
    return Ctx(root, scratch)


def run_api(case: Case, ctx: Ctx) -> str:
    """Run the API form; return the error type's name (raise if it was not ``case.error``)."""
    call = case.api if case.api is not None else (lambda c: Router.load(c.root))
    try:
        call(ctx)
    except BaseException as exc:  # noqa: BLE001 - classified below
        if case.error is not None and isinstance(exc, case.error) and case.says in str(exc):
            return type(exc).__name__
        raise AssertionError(
            f"{case.name}: expected {case.error}, got {type(exc).__name__}: {exc}\n"
            + traceback.format_exc()
        ) from exc
    raise AssertionError(f"{case.name}: no error raised")


def run_cli(case: Case, ctx: Ctx) -> tuple[int, str]:
    """Run the CLI form in-process; return (exit code, stderr)."""
    argv = case.argv(ctx) if case.argv is not None else ["route", str(ctx.root), "What is 2 + 2?"]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()

"""The router directory: file names and ``router.json``, parsed into a frozen dataclass."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from irde_onnx.encoders import ENCODERS
from irde_onnx.errors import RouterFormatError

FORMAT_VERSION = 1
GRAPH_FILE = "router.onnx"
DATA_FILE = "router.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "router.json"
STATS_FILE = "stats.npz"
REQUIRED_FILES = (GRAPH_FILE, DATA_FILE, TOKENIZER_FILE, CONFIG_FILE, STATS_FILE)

HEAD_W = "head.W"
HEAD_B = "head.b"
STATIC_TABLE = "static.table"
STATIC_TOKEN_MASK = "static.token_mask"

TARGETS = ("domain", "score")
EXPERT_MODES = ("pooled", "own")


@dataclass(frozen=True)
class RouterConfig:
    """Contents of ``router.json``.

    Attributes:
        experts: expert names in the column order of the head.
        expert_modes: per expert, ``pooled`` (its column is fit on the shared rows) or
            ``own`` (fit on its own validation rows only; added with scores).
        encoder: ``minilm`` (pooled sentence features) or ``static`` (token embeddings).
        precision: ``int8``/``fp32`` for minilm, ``fp16``/``fp32`` for the static table.
        strategy: how token scores are pooled (static) or ``mean`` pooling (minilm).
        top_k_tokens: k of the ``entropy_top_k`` strategy.
        target: ``domain`` (one-hot labels) or ``score`` (per-expert quality scores).
        lam: the ridge penalty used for every column.
        max_length: tokens kept per prompt (longer prompts are truncated).
        feature_dim: d, the width of the head's input.
        fingerprint: identifies the encoder, tokenizer and precision that made the statistics.
        package_version: irde-onnx version that wrote the router.
        format_version: layout version of the directory.
        extra: free-form metadata (training summary, lam search).

    """

    experts: tuple[str, ...]
    expert_modes: tuple[str, ...]
    encoder: str
    precision: str
    strategy: str
    target: str
    lam: float
    max_length: int
    feature_dim: int
    fingerprint: str
    package_version: str
    top_k_tokens: int = 10
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pooled(self) -> bool:
        """True when the graph has a ``features`` output (sentence-level encoder)."""
        return ENCODERS[self.encoder].pooled

    def with_experts(self, experts: list[str], modes: list[str]) -> RouterConfig:
        """A copy with another expert list."""
        return replace(self, experts=tuple(experts), expert_modes=tuple(modes))

    def to_json(self) -> str:
        """Serialise to JSON text."""
        data = asdict(self)
        data["experts"] = list(self.experts)
        data["expert_modes"] = list(self.expert_modes)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = CONFIG_FILE) -> RouterConfig:
        """Parse ``router.json`` text; refuses unknown format versions."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RouterFormatError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RouterFormatError(f"{source} must hold a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise RouterFormatError(
                f"{source} has format_version {version!r}; this irde-onnx reads version "
                f"{FORMAT_VERSION}. Upgrade irde-onnx or train the router again."
            )
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in data and f.name not in (
            "top_k_tokens", "extra", "format_version")]
        if missing:
            raise RouterFormatError(f"{source} lacks the field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["experts"] = tuple(kwargs["experts"])
        kwargs["expert_modes"] = tuple(kwargs["expert_modes"])
        cfg = cls(**kwargs)
        cfg.check(source)
        return cfg

    def check(self, source: str = CONFIG_FILE) -> None:
        """Raise :class:`RouterFormatError` if the fields are inconsistent."""
        spec = ENCODERS.get(self.encoder)
        if spec is None:
            raise RouterFormatError(
                f"{source}: unknown encoder {self.encoder!r}; this irde-onnx knows "
                f"{sorted(ENCODERS)}. Upgrade irde-onnx or train the router again.")
        if self.precision not in spec.precisions:
            raise RouterFormatError(
                f"{source}: unknown precision {self.precision!r} for the {spec.name} encoder; "
                f"known: {spec.precisions}")
        if self.strategy not in spec.strategies:
            raise RouterFormatError(
                f"{source}: unknown strategy {self.strategy!r} for the {spec.name} encoder; "
                f"known: {spec.strategies}")
        if self.target not in TARGETS:
            raise RouterFormatError(
                f"{source}: unknown target {self.target!r}; known: {TARGETS}")
        if not self.experts or len(self.experts) != len(self.expert_modes):
            raise RouterFormatError(
                f"{source}: experts and expert_modes must be non-empty and match")
        if len(set(self.experts)) != len(self.experts):
            raise RouterFormatError(f"{source}: duplicate expert names")
        if any(m not in EXPERT_MODES for m in self.expert_modes):
            raise RouterFormatError(f"{source}: expert_modes must be in {EXPERT_MODES}")


def check_router_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it holds every file of a router, else raise."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"router directory not found: {root}")
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(
                f"{root / name} is missing: {root} is not a complete irde router "
                f"(it needs {', '.join(REQUIRED_FILES)})"
            )
    return root


def read_config(path: str | os.PathLike) -> RouterConfig:
    """Read ``router.json`` of a router directory."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: not an irde router directory")
    return RouterConfig.from_json(file.read_text(encoding="utf-8"), str(file))


def write_files_atomically(root: Path, files: dict[str, bytes]) -> None:
    """Write every file to a temporary name first, then rename them into place.

    Nothing is replaced until every file is written, so a failure leaves the old files.
    """
    temps: dict[str, Path] = {}
    try:
        for name, data in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=root)
            temps[name] = Path(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
        for name, tmp in temps.items():
            os.replace(tmp, root / name)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it over ``target``."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fingerprint(root: str | os.PathLike, encoder: str, precision: str, max_length: int) -> str:
    """Identify what statistics depend on: encoder weights, tokenizer, precision, truncation.

    Statistics with equal fingerprints were computed by the same features and can be merged.
    """
    import hashlib

    root = Path(root)
    digest = hashlib.sha256(f"{encoder}|{precision}|{max_length}|".encode())
    for name in (TOKENIZER_FILE, DATA_FILE):
        with open(root / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]

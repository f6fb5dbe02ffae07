"""The router directory: file names and ``router.json``, parsed into a frozen dataclass."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from irde_onnx.decision.policy import Policy
from irde_onnx.encoders import ENCODERS
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.views import DEFAULT_VIEW, check_view

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
GRAPH_FILE = "router.onnx"
DATA_FILE = "router.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "router.json"
STATS_FILE = "stats.npz"
# The files router.json records with their sha256 (``files``), by format_version: version 2
# records the graph and the statistics, version 3 every file a load reads. Version 1 records
# none (router.onnx and stats.npz, unverified).
FILE_ROLES = {2: ("graph", "stats"), 3: ("graph", "stats", "data", "tokenizer")}
# the roles whose file names are fixed (the encoder's weights and the tokenizer)
FIXED_ROLE_NAMES = {"data": DATA_FILE, "tokenizer": TOKENIZER_FILE}
REQUIRED_FILES = (GRAPH_FILE, DATA_FILE, TOKENIZER_FILE, CONFIG_FILE, STATS_FILE)
# files every router folder holds under these fixed names (the graph and statistics are named
# by router.json from format_version 2 on; version 1 means GRAPH_FILE and STATS_FILE)
FIXED_FILES = (CONFIG_FILE, TOKENIZER_FILE, DATA_FILE)
MAX_NAME_LENGTH = 200
# a generation file name: plain, no folder part, not hidden, not one of the fixed files
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

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
        format_version: layout version of the directory (1, 2 or 3; saves write 3).
        extra: free-form metadata (training summary, lam search).
        files: ``{role: {"name", "sha256"}}`` for the roles of :data:`FILE_ROLES`: the files
            of this generation with their sha256 (version 3: graph, stats, data, tokenizer;
            version 2: graph and stats); empty (version 1) means ``router.onnx`` and
            ``stats.npz``, unverified.
        policy: the decision settings (costs, default willingness to pay, confidence
            threshold and fallback, calibration; see :class:`irde_onnx.decision.policy.Policy`);
            empty means none of them.
        view: the input view applied to every prompt before tokenizing
            (:mod:`irde_onnx.views`; ``full``, the text as it is, by default).
        layers: pooled encoders: the encoder layers whose mean-pooled, L2-normalised
            hidden states are concatenated into the features, e.g. ``(6, 5)``; empty means
            the last layer alone (every router trained before this field).
        selection: how the trainer made its choices (lam, view, layers, strategy):
            ``{"method": "k-fold" | "leave-one-group-out" | "grouped k-fold", ...}``.

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
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    view: str = DEFAULT_VIEW
    layers: tuple[int, ...] = ()
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def pooled(self) -> bool:
        """True when the graph has a ``features`` output (sentence-level encoder)."""
        return ENCODERS[self.encoder].pooled

    @property
    def graph_file(self) -> str:
        """File name of this generation's graph (``router.onnx`` unless router.json names one)."""
        return self.files["graph"]["name"] if self.files else GRAPH_FILE

    @property
    def stats_file(self) -> str:
        """File name of this generation's statistics (``stats.npz`` unless named)."""
        return self.files["stats"]["name"] if self.files else STATS_FILE

    def file_hash(self, role: str) -> str | None:
        """The sha256 router.json records for ``role`` (graph, stats, data, tokenizer), if any."""
        entry = self.files.get(role)
        return entry["sha256"] if entry else None

    def verified_files(self) -> dict[str, tuple[str, str | None]]:
        """``{role: (file name, recorded sha256 or None)}`` of every file a load reads.

        Version 3 records a sha256 for each; version 2 for the graph and statistics only;
        version 1 for none.
        """
        return {
            "graph": (self.graph_file, self.file_hash("graph")),
            "stats": (self.stats_file, self.file_hash("stats")),
            "data": (DATA_FILE, self.file_hash("data")),
            "tokenizer": (TOKENIZER_FILE, self.file_hash("tokenizer")),
        }

    def with_experts(self, experts: list[str], modes: list[str]) -> RouterConfig:
        """A copy with another expert list."""
        return replace(self, experts=tuple(experts), expert_modes=tuple(modes))

    def with_files(self, files: dict[str, tuple[str, str]]) -> RouterConfig:
        """A copy of the current format_version naming every file with its sha256.

        ``files``: ``{role: (name, sha256)}`` for each role of ``FILE_ROLES[FORMAT_VERSION]``.
        """
        roles = FILE_ROLES[FORMAT_VERSION]
        if set(files) != set(roles):
            raise ValueError(f"with_files needs the roles {roles}, got {sorted(files)}")
        return replace(
            self,
            format_version=FORMAT_VERSION,
            files={role: {"name": files[role][0], "sha256": files[role][1]} for role in roles},
        )

    def to_json(self) -> str:
        """Serialise to JSON text."""
        data = asdict(self)
        data["experts"] = list(self.experts)
        data["expert_modes"] = list(self.expert_modes)
        data["layers"] = list(self.layers)
        if not self.files:
            del data["files"]
        if not self.policy:
            del data["policy"]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = CONFIG_FILE) -> RouterConfig:
        """Parse ``router.json`` text (or UTF-8 bytes); refuses unknown versions and bad types."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RouterFormatError(f"{source} is not UTF-8 text: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RouterFormatError(f"{source} is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise RouterFormatError(f"{source} is nested too deeply to be a router.json") from exc
        if not isinstance(data, dict):
            raise RouterFormatError(f"{source} must hold a JSON object")
        version = data.get("format_version")
        if type(version) is not int or version not in READABLE_VERSIONS:
            raise RouterFormatError(
                f"{source} has format_version {version!r}; this irde-onnx reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}. Upgrade irde-onnx or train the "
                "router again."
            )
        known = {f.name for f in fields(cls)}
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in data
            and f.name
            not in ("top_k_tokens", "extra", "format_version", "files", "policy", *OPTIONAL_FIELDS)
        ]
        if missing:
            raise RouterFormatError(f"{source} lacks the field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        _check_types(kwargs, source)
        _check_files(data.get("files"), version, source)
        kwargs["experts"] = tuple(kwargs["experts"])
        kwargs["expert_modes"] = tuple(kwargs["expert_modes"])
        if "layers" in kwargs:
            kwargs["layers"] = tuple(kwargs["layers"])
        kwargs["lam"] = float(kwargs["lam"])
        cfg = cls(**kwargs)
        cfg.check(source)
        return cfg

    def check(self, source: str = CONFIG_FILE) -> None:
        """Raise :class:`RouterFormatError` if the fields are inconsistent."""
        spec = ENCODERS.get(self.encoder)
        if spec is None:
            raise RouterFormatError(
                f"{source}: unknown encoder {self.encoder!r}; this irde-onnx knows "
                f"{sorted(ENCODERS)}. Upgrade irde-onnx or train the router again."
            )
        if self.precision not in spec.precisions:
            raise RouterFormatError(
                f"{source}: unknown precision {self.precision!r} for the {spec.name} encoder; "
                f"known: {spec.precisions}"
            )
        if self.strategy not in spec.strategies:
            raise RouterFormatError(
                f"{source}: unknown strategy {self.strategy!r} for the {spec.name} encoder; "
                f"known: {spec.strategies}"
            )
        if self.target not in TARGETS:
            raise RouterFormatError(f"{source}: unknown target {self.target!r}; known: {TARGETS}")
        if not self.experts or len(self.experts) != len(self.expert_modes):
            raise RouterFormatError(
                f"{source}: experts and expert_modes must be non-empty and match"
            )
        if len(set(self.experts)) != len(self.experts):
            raise RouterFormatError(f"{source}: duplicate expert names")
        for name in self.experts:
            problem = expert_name_problem(name)
            if problem:
                raise RouterFormatError(f"{source}: expert name {name!r} {problem}")
        if any(m not in EXPERT_MODES for m in self.expert_modes):
            raise RouterFormatError(f"{source}: expert_modes must be in {EXPERT_MODES}")
        try:
            check_view(self.view)
        except InvalidInputError as exc:
            raise RouterFormatError(
                f"{source}: {exc}; upgrade irde-onnx or train the router again"
            ) from None
        problem = layers_problem(self.encoder, self.layers)
        if problem:
            raise RouterFormatError(f"{source}: {problem}")
        if self.layers and self.feature_dim != spec.feature_dim * len(self.layers):
            raise RouterFormatError(
                f"{source}: feature_dim {self.feature_dim} does not match "
                f"{len(self.layers)} pooled layers of {spec.feature_dim}"
            )
        _check_policy(self, source)


def _check_policy(config: RouterConfig, source: str) -> None:
    """Raise :class:`RouterFormatError` when the ``policy`` object does not fit the experts."""
    try:
        Policy.from_dict(config.policy, f"{source}: policy").check(
            config.experts, f"{source}: policy"
        )
    except InvalidInputError as exc:
        raise RouterFormatError(str(exc)) from exc


# router.json fields added after format_version 2 was fixed; each has a default, so routers
# written before them load unchanged
OPTIONAL_FIELDS = ("view", "layers", "selection")


def layers_problem(encoder: str, layers: tuple[int, ...]) -> str | None:
    """Why ``layers`` cannot be pooled by ``encoder``, or None if they can.

    Layers are numbered 1..n (n: the encoder's last layer), distinct, at least one.
    """
    if not layers:
        return None
    spec = ENCODERS[encoder]
    if not spec.pooled or not spec.layers:
        return f"the {encoder} encoder has no layers to pool; leave layers empty"
    if len(set(layers)) != len(layers) or any(
        type(k) is not int or not 1 <= k <= spec.layers for k in layers
    ):
        return (
            f"layers {list(layers)} must be distinct layer numbers in 1..{spec.layers} of "
            f"the {encoder} encoder"
        )
    return None


def check_router_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it holds the fixed files of a router, else raise.

    The graph and statistics files are named by ``router.json`` and checked when it is read.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"router directory not found: {root}")
    for name in FIXED_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(
                f"{root / name} is missing: {root} is not a complete irde router "
                f"(it needs {', '.join(FIXED_FILES)} and the graph and statistics it names)"
            )
    return root


def read_config(path: str | os.PathLike) -> RouterConfig:
    """Read ``router.json`` of a router directory."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: not an irde router directory")
    return RouterConfig.from_json(file.read_bytes(), str(file))


def expert_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an expert, or None if it can.

    An expert name is a string of 1 to ``MAX_NAME_LENGTH`` characters, without leading or
    trailing white space, and without control characters (NUL, newlines, tabs, ...), unpaired
    surrogates or line/paragraph separators. It is written in router.json, stats.npz and the
    graph's metadata, and must read back identically from each.
    """
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name or name != name.strip():
        return "must be non-empty without leading or trailing white space"
    if len(name) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return f"contains the control character U+{ord(ch):04X}"
    return None


def _check_types(data: dict[str, Any], source: str) -> None:
    """Raise :class:`RouterFormatError` naming the first field of ``router.json`` of a bad type."""

    def fail(name: str, want: str) -> RouterFormatError:
        return RouterFormatError(f"{source}: field {name!r} must be {want}, got {data[name]!r:.60}")

    def is_int(v: object) -> bool:
        return type(v) is int

    for name in ("experts", "expert_modes"):
        v = data[name]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise fail(name, "a list of strings")
    for name in ("encoder", "precision", "strategy", "target", "fingerprint", "package_version"):
        if not isinstance(data[name], str):
            raise fail(name, "a string")
    lam = data["lam"]
    if not (is_int(lam) or type(lam) is float) or not math.isfinite(lam) or lam < 0:
        raise fail("lam", "a finite number >= 0")
    if not is_int(data["max_length"]) or not 2 <= data["max_length"] <= 1_000_000:
        raise fail("max_length", "an integer in 2..1000000")
    if not is_int(data["feature_dim"]) or data["feature_dim"] < 1:
        raise fail("feature_dim", "an integer >= 1")
    if "top_k_tokens" in data and (not is_int(data["top_k_tokens"]) or data["top_k_tokens"] < 1):
        raise fail("top_k_tokens", "an integer >= 1")
    if "extra" in data and not isinstance(data["extra"], dict):
        raise fail("extra", "an object")
    if "policy" in data and not isinstance(data["policy"], dict):
        raise fail("policy", "an object")
    if "selection" in data and not isinstance(data["selection"], dict):
        raise fail("selection", "an object")
    if "view" in data and not isinstance(data["view"], str):
        raise fail("view", "a string")
    if "layers" in data and (
        not isinstance(data["layers"], list) or not all(is_int(k) for k in data["layers"])
    ):
        raise fail("layers", "a list of layer numbers")


def _check_files(files: object, version: int, source: str) -> None:
    """Raise :class:`RouterFormatError` unless ``files`` names what ``version`` requires.

    Version 3: exactly graph, stats, data and tokenizer, each a plain file name of the folder
    with its sha256 (data and tokenizer under their fixed names). Version 2: graph and stats
    with their sha256, which every version 2 save wrote. Version 1: no ``files``.
    """
    if version not in FILE_ROLES:
        if files is not None:
            raise RouterFormatError(
                f"{source}: format_version {version} has no 'files'; remove it or set the "
                f"format_version the files were written with"
            )
        return
    roles = FILE_ROLES[version]
    want = "{" + ", ".join(f'"{r}": {{"name", "sha256"}}' for r in roles) + "}"
    if not isinstance(files, dict) or set(files) != set(roles):
        raise RouterFormatError(
            f"{source}: format_version {version} needs the field 'files' = {want}, got "
            f"{files!r:.80}; the folder is incomplete or was edited by hand: copy it again"
        )
    for role in roles:
        entry = files[role]
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RouterFormatError(f"{source}: files.{role} must be {{'name', 'sha256'}}")
        name = entry["name"]
        fixed = FIXED_ROLE_NAMES.get(role)
        if fixed is not None and name != fixed:
            raise RouterFormatError(f"{source}: files.{role}.name must be {fixed!r}")
        if fixed is None and (not FILE_NAME_PATTERN.fullmatch(name) or name in FIXED_FILES):
            raise RouterFormatError(
                f"{source}: files.{role}.name {name!r} is not a plain file name of the "
                "router folder"
            )
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not SHA256_PATTERN.fullmatch(sha):
            raise RouterFormatError(
                f"{source}: files.{role}.sha256 must be the file's sha256 (64 lower-case hex "
                f"digits), got {sha!r:.80}; a format_version {version} router.json records "
                "one for each file: copy the router folder again from a good copy"
            )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(
    root: str | os.PathLike | tuple[bytes, bytes],
    encoder: str,
    precision: str,
    max_length: int,
    view: str = DEFAULT_VIEW,
    layers: tuple[int, ...] = (),
) -> str:
    """Identify what statistics depend on: encoder, tokenizer, precision, truncation, view.

    ``root``: the router folder, or the bytes of its ``(tokenizer.json, router.onnx.data)``.
    The input view and the pooled layers count only when they are not the defaults.
    Statistics with equal fingerprints were computed by the same features and can be merged.
    A router with the default view and layers keeps the fingerprint it had before views and
    layers existed, so its statistics still merge with older shards.
    """
    digest = hashlib.sha256(f"{encoder}|{precision}|{max_length}|".encode())
    if view != DEFAULT_VIEW or layers:
        digest.update(f"view={view}|layers={','.join(map(str, layers))}|".encode())
    if isinstance(root, tuple):
        for data in root:
            digest.update(data)
        return digest.hexdigest()[:32]
    for name in (TOKENIZER_FILE, DATA_FILE):
        with open(Path(root) / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]

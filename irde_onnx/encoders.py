"""The registry of encoders a router can be built on: one entry per encoder.

Each entry says what the encoder needs (its export function, behind the ``export`` extra),
its feature size, its precisions and strategies (the first is the default), how training
rows become statistics, and its help text. The router config, the trainer, the command line
and the benchmarks read this table; adding an encoder is one entry here plus its export
function. Light: importing this module imports nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from irde_onnx.defaults import TINY_DIM, TINY_MAX_BYTES
from irde_onnx.errors import InvalidInputError

FEATURE_ROWS = "feature_rows"
TOKEN_COUNTS = "token_counts"


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder of the registry.

    Attributes:
        name: the name used in ``router.json``, ``--encoder`` and ``RouterTrainer``.
        help: one line for ``--help`` and the README.
        feature_dim: d, the width of the head's input.
        precisions: precisions of the shipped graph; the first is the default.
        strategies: how the graph turns features into scores; the first is the default.
        statistics: ``feature_rows``: each prompt is one row of pooled features (the graph
            has a ``features`` output); ``token_counts``: each content token is one row,
            kept as token-count histograms and projected through the embedding table.
        build: ``"module:function"`` of the export function (needs the ``export`` extra);
            see :func:`irde_onnx.export.minilm.build_minilm` for its signature.
        layers: pooled encoders: the number of layers whose hidden states can be pooled
            (the last one by default); 0 when there are none to choose.
        token_weights: weights the encoder holds per vocabulary entry (its embedding row);
            None: the router's ``feature_dim`` + 1 (a static table row and its token mask).
        fixed_weights: weights the encoder holds beside the per-token ones (its layers).
            With ``token_weights`` they bound the bytes a graph of this encoder may declare
            (:mod:`irde_onnx.graph.rules`), counted at 4 bytes a weight (fp32, the widest
            precision).

    """

    name: str
    help: str
    feature_dim: int
    precisions: tuple[str, ...]
    strategies: tuple[str, ...]
    statistics: str
    build: str
    layers: int = 0
    token_weights: int | None = None
    fixed_weights: int = 0

    @property
    def pooled(self) -> bool:
        """True when the graph has a ``features`` output (one feature row per prompt)."""
        return self.statistics == FEATURE_ROWS

    @property
    def default_precision(self) -> str:
        """The precision used when none is given."""
        return self.precisions[0]

    @property
    def default_strategy(self) -> str:
        """The strategy used when none is given."""
        return self.strategies[0]

    def check(self, precision: str | None, strategy: str | None) -> tuple[str, str]:
        """Resolve defaults; raise :class:`InvalidInputError` naming the valid choices."""
        precision = precision or self.default_precision
        if precision not in self.precisions:
            raise InvalidInputError(
                f"precision {precision!r} is not available for the {self.name} encoder; "
                f"choose one of {self.precisions}"
            )
        strategy = strategy or self.default_strategy
        if strategy not in self.strategies:
            raise InvalidInputError(
                f"strategy {strategy!r} is not available for the {self.name} encoder; "
                f"choose one of {self.strategies}"
            )
        return precision, strategy

    def builder(self) -> Any:  # noqa: ANN401 - a callable defined by the export extra
        """The export function (imports the ``export`` extra)."""
        module, _, function = self.build.partition(":")
        return getattr(import_module(module), function)


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            name="minilm",
            help="all-MiniLM-L6-v2, mean-pooled and L2-normalised sentence features (default)",
            feature_dim=384,
            precisions=("int8", "fp32"),
            strategies=("mean",),
            statistics=FEATURE_ROWS,
            build="irde_onnx.export.minilm:build_minilm",
            layers=6,
            # BERT-L6-H384: 384 per word embedding; position and type embeddings, the
            # embedding LayerNorm and 6 layers: 10,844,928 (the fp32 encoder: 90,261,504 bytes)
            token_weights=384,
            fixed_weights=10_844_928,
        ),
        EncoderSpec(
            name="static",
            help="the paper's token-level router on MiniLM's word-embedding table",
            feature_dim=384,
            precisions=("fp16", "fp32"),
            strategies=("vote", "mean", "entropy_top_k"),
            statistics=TOKEN_COUNTS,
            build="irde_onnx.export.minilm:build_static",
        ),
        EncoderSpec(
            name="tiny",
            help="MiniLM's word-embedding table cut to the training vocabulary (<= 5 MB), "
            "mean-pooled",
            feature_dim=TINY_DIM,
            precisions=("int8", "fp16"),
            strategies=("mean",),
            statistics=FEATURE_ROWS,
            build="irde_onnx.export.tiny:build_tiny",
            # the table, its id map and scales fit a byte budget whatever the vocabulary
            # (irde_onnx.defaults.TINY_MAX_BYTES): counted as fixed weights of 4 bytes
            token_weights=0,
            fixed_weights=TINY_MAX_BYTES // 4,
        ),
    )
}
DEFAULT_ENCODER = "minilm"


def get_encoder(name: str) -> EncoderSpec:
    """The registry entry of ``name``; raises :class:`InvalidInputError` listing the known ones."""
    try:
        return ENCODERS[name]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}"
        ) from None


def all_precisions() -> list[str]:
    """Every precision of any encoder, in registry order (for ``--precision`` choices)."""
    return list(dict.fromkeys(p for spec in ENCODERS.values() for p in spec.precisions))


def all_strategies() -> list[str]:
    """Every strategy of any encoder, in registry order (for ``--strategy`` choices)."""
    return list(dict.fromkeys(s for spec in ENCODERS.values() for s in spec.strategies))


def variants() -> dict[str, tuple[str, str]]:
    """Every encoder and precision under one name, e.g. ``minilm-int8``, for benchmarks."""
    return {
        f"{spec.name}-{p}": (spec.name, p) for spec in ENCODERS.values() for p in spec.precisions
    }


def precision_help() -> str:
    """``minilm: int8 (default) or fp32; static: ...`` for ``--precision``."""
    return "; ".join(
        f"{spec.name}: {spec.precisions[0]} (default)"
        + "".join(f" or {p}" for p in spec.precisions[1:])
        for spec in ENCODERS.values()
    )

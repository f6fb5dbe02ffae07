"""Shared by the ``irde`` subcommands: one-line usage errors, value types, common options."""

from __future__ import annotations

import argparse
from typing import NoReturn

from irde_onnx.errors import IrdeError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see prog --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def lam_value(text: str) -> float | str:
    """A ridge penalty >= 0, or ``auto`` (argparse ``type``)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def layers_value(text: str) -> tuple[int, ...] | str:
    """Layer numbers ``6,5`` (last first is usual), or ``auto`` (argparse ``type``)."""
    if text == "auto":
        return text
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of layer numbers (e.g. 6,5) or 'auto'"
        ) from None
    if not layers or min(layers) < 1 or len(set(layers)) != len(layers):
        raise argparse.ArgumentTypeError(f"{text!r}: layers must be distinct numbers >= 1")
    return layers


def view_value(text: str) -> str:
    """An input view (``strip_options``, ``strip_options+tail``) or ``auto``."""
    if text == "auto":
        return text
    from irde_onnx.errors import InvalidInputError
    from irde_onnx.views import check_view

    try:
        return check_view(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


FORMATTER = argparse.RawDescriptionHelpFormatter  # every subcommand: epilogs keep their lines


class UsageError(IrdeError):
    """A command line that parsed but cannot run: ``irde CMD: error: ...``, exit 2."""


def threads_argument(p: argparse.ArgumentParser, help: str | None = None) -> None:  # noqa: A002
    """``--threads``: onnxruntime intra-op threads."""
    p.add_argument("--threads", type=positive_int, default=None, help=help)


def encoder_arguments(p: argparse.ArgumentParser) -> None:
    """``--encoder`` and ``--precision``, with choices and help from the encoder registry."""
    from irde_onnx.encoders import DEFAULT_ENCODER, ENCODERS, all_precisions, precision_help

    p.add_argument(
        "--encoder",
        choices=list(ENCODERS),
        default=DEFAULT_ENCODER,
        help="; ".join(f"{s.name}: {s.help}" for s in ENCODERS.values()),
    )
    p.add_argument("--precision", choices=all_precisions(), default=None, help=precision_help())


def engine_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address`` and ``--workers``: where training rows are encoded."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where prompts are encoded: this process (default) or Ray workers "
        "(needs irde-onnx[distributed])",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address (e.g. auto or ray://head:10001; default: start "
        "a local Ray instance)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="Ray workers, one partition of the rows each (default: the CPUs)",
    )

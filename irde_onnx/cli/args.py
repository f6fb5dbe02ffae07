"""Argument parsing shared by the ``irde`` subcommands: one-line usage errors, value types."""

from __future__ import annotations

import argparse
from typing import NoReturn


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

"""Exception types. Every error a user can cause is an :class:`IrdeError`."""

from __future__ import annotations


class IrdeError(Exception):
    """Base class of the errors that a user's input or files can cause."""


class InvalidInputError(IrdeError, ValueError):
    """An argument or a data row is not valid; the message names the fix."""


class RouterFormatError(IrdeError, ValueError):
    """A router directory is incomplete, corrupt or of an unknown format version."""


class ExportValidationError(IrdeError):
    """An exported ONNX graph does not reproduce its reference within tolerance."""


class MissingExtraError(IrdeError, ImportError):
    """An optional dependency group is not installed."""


class RouterChangedError(IrdeError):
    """The router folder was changed by another process since this router was loaded."""


class RouterBusyError(IrdeError):
    """Another process holds the router folder's lock for longer than the timeout."""

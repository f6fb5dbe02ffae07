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


class RouterFileError(IrdeError, OSError):
    """A file of a router folder cannot be read or written; the message names path and fix.

    Causes: no permission (a read-only folder), a full disk, a symlink loop, or a lock path
    that is not a regular file.

    It is an :class:`OSError` too, so code written for the operating system's errors keeps
    catching it; ``errno`` and ``filename`` are those of the underlying error, when there is one.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0])

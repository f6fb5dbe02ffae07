"""Start-up checks of ``irde serve`` that need no serve extra (kept apart from the app).

A server with expert changes enabled (its admin token set) saves every change into the
router folder. When the process cannot write there (a container's user, uid 10001, and a
host folder owned by another uid; a read-only mount), every ``POST /experts`` would fail with
500 after the server had looked healthy; the server refuses to start instead.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from irde_onnx.errors import RouterFileError
from irde_onnx.store.folder import LOCK_FILE, probe_writable


def _uid() -> str:
    return f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"


def check_changes_can_be_saved(router: str | os.PathLike, token_env: str) -> None:
    """Refuse to serve with changes enabled when the router folder cannot be written.

    Writes and removes a temporary file in the folder (as a save does) and opens the lock
    file for writing if it exists. Does nothing when ``token_env`` is unset or empty
    (changes disabled: a read-only folder serves fine).

    Raises:
        RouterFileError: the folder or its lock file cannot be written by this process; the
            message names the uid and the fixes.

    """
    if not os.environ.get(token_env):
        return
    root = Path(router)
    if not root.is_dir():
        return  # loading the router names what is missing
    fix = (
        f'make it writable by {_uid()} (in a container: docker run --user "$(id -u):$(id -g)" '
        f"..., or chown -R 10001 on the host folder), or unset {token_env} to serve it "
        "read-only (expert changes disabled)"
    )
    try:
        probe_writable(root)
    except PermissionError as exc:
        what = exc.filename if str(exc.filename).endswith(LOCK_FILE) else f"the folder {root}"
        raise RouterFileError(
            f"{token_env} enables expert changes, but {what} cannot be written "
            f"by {_uid()} ({exc.strerror}): {fix}",
            exc.errno,
            exc.filename,
        ) from exc
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise  # a missing folder and the like: the router load names them
        raise RouterFileError(
            f"{token_env} enables expert changes, but {root} is on a read-only file system: "
            f"mount it read-write, or unset {token_env} to serve it read-only "
            "(expert changes disabled)",
            exc.errno,
            str(root),
        ) from exc

"""irde serve refuses to start with expert changes enabled on a folder it cannot write."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from irde_onnx.errors import RouterFileError
from irde_onnx.serve.checks import check_changes_can_be_saved

from .conftest import ROOT
from .process_helpers import without_checkout


def test_a_writable_folder_or_changes_disabled_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("IRDE_TOKEN", "secret")
    check_changes_can_be_saved(tmp_path, "IRDE_TOKEN")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    monkeypatch.delenv("IRDE_TOKEN")
    check_changes_can_be_saved(tmp_path / "missing", "IRDE_TOKEN")  # the load reports it


def test_changes_disabled_never_write(tmp_path, monkeypatch):
    monkeypatch.delenv("IRDE_TOKEN", raising=False)
    monkeypatch.setattr(tempfile, "mkstemp", lambda **_: pytest.fail("wrote a file"))
    check_changes_can_be_saved(tmp_path, "IRDE_TOKEN")


def test_a_lock_file_of_another_user_is_refused(tmp_path, monkeypatch):
    (tmp_path / ".irde.lock").write_text("")
    monkeypatch.setenv("IRDE_TOKEN", "secret")
    real_open = open

    def deny(path, *args, **kwargs):
        if str(path).endswith(".irde.lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(RouterFileError, match=r"\.irde\.lock cannot be written by uid \d+"):
        check_changes_can_be_saved(tmp_path, "IRDE_TOKEN")


def test_irde_serve_refuses_a_folder_it_cannot_write():
    # the container's case: uid 10001 and a host folder of uid 1000. Root writes anywhere, so
    # as root the server runs as nobody (setpriv); otherwise a folder without write permission.
    as_user: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop privileges")
        as_user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="irde-ro-"))
    try:
        folder.chmod(0o555)
        env = without_checkout() | {"PYTHONPATH": str(ROOT), "IRDE_TOKEN": "secret"}
        argv = [sys.executable, "-m", "irde_onnx.cli", "serve", str(folder), "--port", "0"]
        out = subprocess.run(
            as_user + argv, capture_output=True, text=True, timeout=120, env=env, cwd="/"
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("irde serve: error: IRDE_TOKEN enables expert changes"), (
            out.stderr
        )
        assert "cannot be written by uid" in out.stderr and "--user" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)

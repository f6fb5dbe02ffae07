"""The folder's files against the operating system: the lock path, read-only folders, full disks.

Tests run as root, whom ``chmod`` does not stop: a read-only folder and a full disk are
simulated by making the lock or the first write raise the operating system's error.
"""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from irde_onnx.cli import main
from irde_onnx.errors import RouterFileError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store import folder

ROWS = '{"text": "the patient heart"}\n{"text": "a dose"}\n'


def _hashes(root):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.iterdir()
        if p.name != folder.LOCK_FILE
    }


def _one_line_exit_2(capsys, argv, *words):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def precious(tmp_path):
    path = tmp_path / "precious.txt"
    path.write_text("do not truncate me\n")
    return path


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo", "dangling symlink"])
def test_a_lock_path_that_is_not_a_file_is_refused_and_never_opened(
    toy_router, precious, tmp_path, capsys, kind
):
    lock = toy_router / folder.LOCK_FILE
    lock.unlink(missing_ok=True)
    if kind == "symlink":
        lock.symlink_to(precious)
    elif kind == "dangling symlink":
        lock.symlink_to(tmp_path / "created-by-irde")
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    before = _hashes(toy_router)
    with pytest.raises(RouterFileError, match=r"\.irde\.lock is a .*remove it") as info:
        Router.load(toy_router)
    assert isinstance(info.value, OSError)
    rows = tmp_path / "med.jsonl"
    rows.write_text(ROWS)
    argv = ["experts", "add", str(toy_router), "medicine", "--data", str(rows), "--quiet"]
    _one_line_exit_2(capsys, argv, str(lock), "remove it")
    _one_line_exit_2(capsys, ["route", str(toy_router), "hi"], str(lock))
    assert precious.read_text() == "do not truncate me\n"
    assert not (tmp_path / "created-by-irde").exists()
    assert _hashes(toy_router) == before


def test_a_lock_replaced_by_a_symlink_after_load_is_refused_at_the_change(toy_router, precious):
    router = RouterEditor.open(toy_router)
    lock = toy_router / folder.LOCK_FILE
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    with pytest.raises(RouterFileError, match="symlink"):
        router.add_expert("medicine", ["the patient heart"])
    assert precious.read_text() == "do not truncate me\n"
    assert router.experts == ["code", "law", "math"]


class _ReadOnlyLock(folder.FileLock):
    def acquire(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise PermissionError(errno.EACCES, "Permission denied", self.lock_file)


def test_a_read_only_folder_is_one_error_naming_the_lock(toy_router, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(folder, "FileLock", _ReadOnlyLock)
    before = _hashes(toy_router)
    router = RouterEditor.open(toy_router)  # loading needs no lock: a read-only folder routes
    assert router.route(["solve the equation"])[0].expert == "math"
    with pytest.raises(RouterFileError, match="Permission denied .EACCES.*writable") as info:
        router.add_expert("medicine", ["the patient heart"])
    assert info.value.errno == errno.EACCES and str(toy_router / ".irde.lock") in str(info.value)
    rows = tmp_path / "med.jsonl"
    rows.write_text(ROWS)
    argv = ["experts", "add", str(toy_router), "medicine", "--data", str(rows), "--quiet"]
    _one_line_exit_2(capsys, argv, str(toy_router / ".irde.lock"), "Permission denied")
    assert _hashes(toy_router) == before


def _disk_full(root, name, data):
    raise OSError(errno.ENOSPC, "No space left on device", str(root / f".{name}.x.tmp"))


def test_a_full_disk_at_save_is_one_error_and_the_router_is_unchanged(
    toy_router, tmp_path, capsys, monkeypatch
):
    before = _hashes(toy_router)
    monkeypatch.setattr(folder, "write_temporary", _disk_full)
    router = RouterEditor.open(toy_router)
    router.add_expert("medicine", ["the patient heart"])
    with pytest.raises(RouterFileError, match="No space left on device .ENOSPC.*disk is full"):
        router.save()
    rows = tmp_path / "med.jsonl"
    rows.write_text(ROWS)
    argv = ["experts", "add", str(toy_router), "medicine", "--data", str(rows), "--quiet"]
    _one_line_exit_2(capsys, argv, str(toy_router), "No space left on device")
    assert _hashes(toy_router) == before
    monkeypatch.undo()
    assert Router.load(toy_router).experts == ["code", "law", "math"]


def test_any_os_error_of_the_cli_is_one_line(toy_router, capsys, monkeypatch):
    def loop(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ELOOP, "Too many levels of symbolic links", "/x/router.json")

    monkeypatch.setattr(Router, "load", loop)
    _one_line_exit_2(capsys, ["route", str(toy_router), "hi"], "/x/router.json", "ELOOP")

"""Several processes and Router objects on one router folder: no change is ever lost."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from irde_onnx.errors import RouterChangedError
from irde_onnx.runtime import LiveRouter, Router, RouterEditor
from irde_onnx.store.config import CONFIG_FILE, DATA_FILE, GRAPH_FILE, STATS_FILE, TOKENIZER_FILE
from irde_onnx.store.folder import LOCK_FILE


@pytest.fixture
def copy(static_router_dir, tmp_path):
    return shutil.copytree(static_router_dir, tmp_path / "router")


def test_two_processes_changing_experts_keep_both_changes(copy, tmp_path, demo_train):
    rows = tmp_path / "alpha.jsonl"
    rows.write_text("".join(json.dumps({"text": t}) + "\n" for t in demo_train[0][:6]))
    commands = [
        ["experts", "add", str(copy), "alpha", "--data", str(rows), "--quiet"],
        ["experts", "remove", str(copy), "law"],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "irde_onnx", *argv],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for argv in commands
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    experts = Router.load(copy).experts
    assert "alpha" in experts and "law" not in experts  # neither change lost
    assert experts == ["chinese", "code", "math", "medicine", "alpha"]


def test_a_stale_router_never_overwrites_a_newer_save(copy):
    first, second = RouterEditor.open(copy), RouterEditor.open(copy)
    second.remove_expert("law")
    second.save()
    assert first.changed_on_disk() and not second.changed_on_disk()
    first.remove_expert("code")  # re-reads the folder under the lock first: law is gone too
    assert first.experts == ["chinese", "math", "medicine"]
    first.save()
    assert Router.load(copy).experts == ["chinese", "math", "medicine"]
    second.remove_expert("math")  # unsaved change, then another process saves
    RouterEditor.open(copy).save()  # a no-op save still commits a generation (same files)
    third = RouterEditor.open(copy)
    third.remove_expert("chinese")
    third.save()
    with pytest.raises(RouterChangedError, match="unsaved changes"):
        second.save()
    assert Router.load(copy).experts == ["math", "medicine"]
    second = RouterEditor.open(copy)  # a new editor: the unsaved change is dropped
    assert second.experts == ["math", "medicine"] and not second.changed_on_disk()


def test_lock_makes_a_change_and_its_save_one_step(copy):
    router = RouterEditor.open(copy)
    with router.lock():
        router.remove_expert("law")
        code = (
            "import sys; from filelock import Timeout\n"
            "from irde_onnx.store.folder import folder_lock\n"
            f"lock = folder_lock({str(copy)!r}, timeout=0.2)\n"
            "try:\n    lock.acquire()\nexcept Timeout:\n    sys.exit(7)\n"
        )
        # only the lock's own timeout means "held"; any other error exits 1 with a traceback
        held = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert held.returncode == 7, held.stderr
        router.save()
    assert Router.load(copy).experts == ["chinese", "code", "math", "medicine"]


def test_version_1_folders_load_and_save_as_version_3(copy):
    cfg = json.loads((copy / CONFIG_FILE).read_text())
    cfg["format_version"] = 1
    cfg.pop("files")
    (copy / CONFIG_FILE).write_text(json.dumps(cfg))
    router = RouterEditor.open(copy)
    assert router.config.graph_file == GRAPH_FILE and router.config.format_version == 1
    before = router.scores(["Solve 3x + 5 = 20"])
    (copy / "notes.txt").write_text("mine")  # not the router's: never removed
    router.save()
    cfg = json.loads((copy / CONFIG_FILE).read_text())
    assert cfg["format_version"] == 3
    assert set(cfg["files"]) == {"graph", "stats", "data", "tokenizer"}
    names = {cfg["files"]["graph"]["name"], cfg["files"]["stats"]["name"]}
    assert sorted(os.listdir(copy)) == sorted(
        {LOCK_FILE, CONFIG_FILE, TOKENIZER_FILE, DATA_FILE, "notes.txt", *names}
    )
    assert (Router.load(copy).scores(["Solve 3x + 5 = 20"]) == before).all()


def test_load_removes_stale_files_only(copy):
    Router.load(copy)
    junk = [
        ".router.json.abc123.tmp",
        ".stats.npz.xyz",
        "router.0123456789abcdef.onnx",
        "stats.0123456789abcdef.npz",
    ]
    for name in junk:
        (copy / name).write_bytes(b"partial")
    (copy / "README.txt").write_text("keep")
    cfg = Router.load(copy).config
    assert sorted(os.listdir(copy)) == sorted(
        {
            LOCK_FILE,
            CONFIG_FILE,
            TOKENIZER_FILE,
            DATA_FILE,
            "README.txt",
            cfg.graph_file,
            cfg.stats_file,
        }
    )
    assert cfg.stats_file == STATS_FILE  # a freshly trained router keeps the plain names


# a second process: not in tests/runtime, which also runs under QEMU (no binfmt to exec it)
def test_a_change_waits_for_the_folder_lock(toy_router):
    """A change holds `.irde.lock` from read to save: it waits while
    another process holds it, then applies its change on top of that process's save."""
    live = LiveRouter(toy_router)
    code = (
        "import sys, time\nfrom irde_onnx.runtime import RouterEditor\n"
        "r = RouterEditor.open(sys.argv[1])\nwith r.lock():\n"
        "    print('locked', flush=True)\n"
        "    r.add_expert('medicine', ['the patient dose', 'a heart symptom'])\n"
        "    time.sleep(1.0)\n    r.save()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(toy_router)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline().strip() == "locked"
        start = time.monotonic()
        router = live.change(lambda r: r.remove_expert("law"))
        waited = time.monotonic() - start
    finally:
        other.wait(timeout=60)
    assert other.returncode == 0
    assert waited > 0.5  # it waited for the other process's save
    assert router.experts == ["code", "math", "medicine"]  # both changes, none lost
    assert live.router is router
    assert Router.load(toy_router).experts == ["code", "math", "medicine"]

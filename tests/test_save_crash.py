"""kill -9 during save(): the folder always loads as the old or the new router, never a mix."""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from irde_onnx.config import CONFIG_FILE, DATA_FILE, TOKENIZER_FILE
from irde_onnx.folder import LOCK_FILE, SAVE_STEPS
from irde_onnx.runtime import Router
from tests.crash_helper import PROBES

ROOT = Path(__file__).resolve().parents[1]
RANDOM_RUNS = 20


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _restore(pristine: Path, target: Path) -> None:
    """Put the old router back; the encoder files are never rewritten, so they stay."""
    for p in target.iterdir():
        if p.name not in (TOKENIZER_FILE, DATA_FILE):
            p.unlink()
    for p in pristine.iterdir():
        if p.name not in (TOKENIZER_FILE, DATA_FILE):
            shutil.copyfile(p, target / p.name)


class Saver:
    """The crash helper process: a changed router that saves in place in a forked child."""

    def __init__(self, target: Path, expert: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_helper", str(target), expert], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.new_scores = np.array(json.loads(self.proc.stdout.readline()))

    def run(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _check(target: Path, old: tuple[list[str], np.ndarray], new: tuple[list[str], np.ndarray]):
    """Load the folder: old or new router, as a whole; return which."""
    router = Router.load(target)  # never an error
    scores = router.scores(PROBES)
    which = "new" if router.experts == new[0] else "old"
    experts, expected = new if which == "new" else old
    assert router.experts == experts
    np.testing.assert_allclose(scores, expected, atol=1e-4)  # graph and config of one save
    np.testing.assert_array_equal(router.stats.experts, experts)  # and its statistics
    # the load removed temporaries and the files of other generations
    cfg = router.config
    assert sorted(os.listdir(target)) == sorted(
        {CONFIG_FILE, TOKENIZER_FILE, DATA_FILE, LOCK_FILE, cfg.graph_file, cfg.stats_file})
    return which


@pytest.fixture(scope="module")
def crash_setup(static_router_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    pristine = _copy(static_router_dir, base / "pristine")
    old_router = Router.load(pristine)
    old = (old_router.experts, old_router.scores(PROBES))
    target = _copy(pristine, base / "target")
    saver = Saver(target, "law")
    new = ([e for e in old[0] if e != "law"], saver.new_scores)
    yield pristine, target, saver, old, new
    saver.close()


def test_kill_at_each_save_step(crash_setup):
    pristine, target, saver, old, new = crash_setup
    seen = {}
    for step in SAVE_STEPS:
        _restore(pristine, target)
        assert saver.run(f"step {step}") == "killed"
        seen[step] = _check(target, old, new)
    # killed before router.json is replaced: the old router; after: the new one
    assert seen == {"graph": "old", "stats": "old", "manifest": "old", "commit": "old",
                    "cleanup": "new"}
    _restore(pristine, target)
    assert saver.run("step none") == "exit 0"  # an uninterrupted save
    assert _check(target, old, new) == "new"


def test_kill_at_random_times(crash_setup):
    pristine, target, saver, old, new = crash_setup
    _restore(pristine, target)
    start = time.perf_counter()
    assert saver.run("step none") == "exit 0"
    duration = time.perf_counter() - start
    rng = random.Random(7)
    outcomes = []
    for _ in range(RANDOM_RUNS):
        _restore(pristine, target)
        status = saver.run(f"after {rng.uniform(0, 1.2 * duration):.4f}")
        outcomes.append((status, _check(target, old, new)))
    killed = [which for status, which in outcomes if status == "killed"]
    assert len(killed) >= RANDOM_RUNS // 2, outcomes  # most kills land inside the save
    assert all(which == "new" for status, which in outcomes if status == "exit 0")

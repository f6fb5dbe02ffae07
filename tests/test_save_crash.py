"""kill -9 during save(): the folder always loads as the old or the new router, never a mix."""

import random
import statistics
import time

import pytest

from irde_onnx.runtime import Router
from irde_onnx.store.folder import SAVE_STEPS
from tests.crash_helper import PROBES, Saver, check_folder, copy_router, restore

RANDOM_RUNS = 20


@pytest.fixture(scope="module")
def crash_setup(static_router_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    pristine = copy_router(static_router_dir, base / "pristine")
    old_router = Router.load(pristine)
    old = (old_router.experts, old_router.scores(PROBES))
    target = copy_router(pristine, base / "target")
    saver = Saver(target, "law")
    new = ([e for e in old[0] if e != "law"], saver.new_scores)
    yield pristine, target, saver, old, new
    saver.close()


def test_kill_at_each_save_step(crash_setup):
    pristine, target, saver, old, new = crash_setup
    seen = {}
    for step in SAVE_STEPS:
        restore(pristine, target)
        assert saver.run(f"step {step}") == "killed"
        seen[step] = check_folder(target, old, new)
    # killed before router.json is replaced: the old router; after: the new one
    assert seen == {
        "graph": "old",
        "stats": "old",
        "manifest": "old",
        "commit": "old",
        "cleanup": "new",
    }
    restore(pristine, target)
    assert saver.run("step none") == "exit 0"  # an uninterrupted save
    assert check_folder(target, old, new) == "new"


def test_kill_at_random_times(crash_setup):
    pristine, target, saver, old, new = crash_setup
    # one save's time, as the median of a few: a single run on a busy machine may be an outlier
    durations = []
    for _ in range(3):
        restore(pristine, target)
        start = time.perf_counter()
        assert saver.run("step none") == "exit 0"
        durations.append(time.perf_counter() - start)
    duration = statistics.median(durations)
    rng = random.Random(7)
    outcomes = []
    for _ in range(RANDOM_RUNS):
        restore(pristine, target)
        status = saver.run(f"after {rng.uniform(0, 1.2 * duration):.4f}")
        outcomes.append((status, check_folder(target, old, new)))
    killed = [which for status, which in outcomes if status == "killed"]
    assert len(killed) >= RANDOM_RUNS // 2, outcomes  # most kills land inside the save
    assert all(which == "new" for status, which in outcomes if status == "exit 0")

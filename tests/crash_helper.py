"""The crash tests' child process (run as a module), and the parent's side of it.

Usage: ``python -m tests.crash_helper ROUTER EXPERT``. Loads ROUTER, removes EXPERT in memory
(the "new" router, unsaved), prints the new scores of the probe prompts as one JSON line,
then for each stdin line forks a child that saves in place:

- ``step NAME``: the child kills itself (SIGKILL) at save step NAME (see SAVE_STEPS);
- ``after SECONDS``: this process kills the child SECONDS after forking it.

and prints the child's wait status (``killed`` or ``exit N``) as one line.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import CONFIG_FILE, DATA_FILE, TOKENIZER_FILE
from irde_onnx.store.folder import LOCK_FILE, set_save_hook

ROOT = Path(__file__).resolve().parents[1]

PROBES = ["Solve 3x + 5 = 20", "Write a SQL query", "What is a tort?", "发烧怎么办"]


def copy_router(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def restore(pristine: Path, target: Path) -> None:
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
            [sys.executable, "-m", "tests.crash_helper", str(target), expert],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.new_scores = np.array(json.loads(self.proc.stdout.readline()))

    def run(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


Snapshot = tuple[list[str], np.ndarray]  # experts, scores of PROBES


def check_folder(target: Path, old: Snapshot, new: Snapshot) -> str:
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
        {CONFIG_FILE, TOKENIZER_FILE, DATA_FILE, LOCK_FILE, cfg.graph_file, cfg.stats_file}
    )
    return which


def _kill_at(step: str):  # noqa: ANN202
    def hook(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main() -> None:
    root, expert = sys.argv[1], sys.argv[2]
    router = RouterEditor.open(root)
    router.remove_expert(expert)
    print(json.dumps(router.scores(PROBES).tolist()), flush=True)
    for line in sys.stdin:
        cmd, arg = line.split()
        pid = os.fork()
        if pid == 0:  # the saver
            if cmd == "step":
                set_save_hook(_kill_at(arg))
            try:
                router.save()
            except BaseException as exc:  # noqa: BLE001 - reported as an exit code
                print(f"save failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                os._exit(3)
            os._exit(0)
        if cmd == "after":
            time.sleep(float(arg))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print("killed" if killed else f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()

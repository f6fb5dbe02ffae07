"""Child process of the crash tests: holds a changed router, forks a saver per command.

Usage: ``python -m tests.crash_helper ROUTER EXPERT``. Loads ROUTER, removes EXPERT in memory
(the "new" router, unsaved), prints the new scores of the probe prompts as one JSON line,
then for each stdin line forks a child that saves in place:

- ``step NAME``: the child kills itself (SIGKILL) at save step NAME (see SAVE_STEPS);
- ``after SECONDS``: this process kills the child SECONDS after forking it.

and prints the child's wait status (``killed`` or ``exit N``) as one line.
"""

import json
import os
import signal
import sys
import time

from irde_onnx.folder import set_save_hook
from irde_onnx.runtime import Router

PROBES = ["Solve 3x + 5 = 20", "Write a SQL query", "What is a tort?", "发烧怎么办"]


def _kill_at(step: str):  # noqa: ANN202
    def hook(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def main() -> None:
    root, expert = sys.argv[1], sys.argv[2]
    router = Router.load(root)
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

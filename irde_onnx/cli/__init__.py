"""The ``irde`` command line: the top-level parser, dispatch and error handling.

Each command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
options and errors shared by several commands are in :mod:`irde_onnx.cli.args`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from irde_onnx.cli import demo, experts, feedback, info, policy, route, serve, stats, train
from irde_onnx.cli import eval as evaluate
from irde_onnx.cli.args import FORMATTER, Parser
from irde_onnx.errors import IrdeError

MAIN_EXAMPLES = """\
examples:
  irde demo                                   # train and run the bundled example router
  irde train --data law.jsonl --data math.jsonl --label-field domain --out my-router
  irde route my-router "What is the integral of sin(x)?"
  irde info my-router
  irde eval my-router --data test.jsonl --label-field domain
  irde experts add my-router chemistry --data chemistry.jsonl
  irde stats merge router-a router-b --out router-ab
  irde policy my-router --costs costs.json --wtp 0.002 --min-confidence 0.5 --fallback gpt-4
"""

# in the order of ``irde --help``
COMMANDS = {
    "train": train,
    "route": route,
    "experts": experts,
    "stats": stats,
    "feedback": feedback,
    "eval": evaluate,
    "policy": policy,
    "serve": serve,
    "info": info,
    "demo": demo,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``irde``."""
    parser = Parser(
        prog="irde",
        description="IR3DE prompt router exported as one ONNX graph.",
        epilog=MAIN_EXAMPLES,
        formatter_class=FORMATTER,
    )
    from irde_onnx._version import __version__

    parser.add_argument("--version", action="version", version=f"irde-onnx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def _stdout_closed() -> int:
    """The reader of standard output left: exit quietly, as a Unix tool killed by SIGPIPE.

    Python's recipe (the signal module's "Note on SIGPIPE"): point standard output at
    /dev/null, so flushing it at exit cannot raise again and print a traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # 141, the shell's status for a process ended by SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``irde``; returns the exit code (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = COMMANDS[args.command].run(args)
        sys.stdout.flush()  # a reader that left (`irde info r | head`) shows here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except (IrdeError, FileNotFoundError, FileExistsError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"irde {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, a full disk, a symlink loop: path and cause, no traceback
        from irde_onnx.store.folder import os_error_message

        print(f"irde {args.command}: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

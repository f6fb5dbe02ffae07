"""Write (or check) every file of conformance/: what each host must do alike, from Python.

One entry point for the generators beside it, each a module with a ``run(..., check)``:

=================  ==============================================  =========================
name               writes                                          from
=================  ==============================================  =========================
``spec``           ``spec.json`` and ``js/src/spec.js``            make_spec.py
``router_json``    ``router_json_cases.json``                      make_spec.py
``policy``         ``policy_cases.json``                           make_spec.py
``views``          ``views.json``                                  make_views.py
``bad_folders``    ``bad_folders/``                                make_bad_folders.py
``golden``         ``golden.json`` (and the routers, when missing)  make_golden.py
=================  ==============================================  =========================

From the repository root::

    python -m conformance.generate --check                     # CI: exit 1 if any is stale
    python -m conformance.generate --only views --only spec    # write these again
    python -m conformance.generate --only golden --routers js/test/routers --check

A file is written again only after a deliberate change of what it pins (say why in the
commit); never to make a test pass. ``golden`` builds the demo routers into ``--routers``
when they are missing and reads prompts from ``--data`` (../shared/data).
"""

from __future__ import annotations

import argparse
import sys
import time

from conformance import make_bad_folders, make_golden, make_spec, make_views

NAMES = ("spec", "router_json", "policy", "views", "bad_folders", "golden")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen generators (all by default) in NAMES order; 1 if any check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"only this output (repeatable): {', '.join(NAMES)}",
    )
    make_golden.add_arguments(parser)
    args = parser.parse_args(argv)
    chosen = [n for n in NAMES if not args.only or n in args.only]
    failed = []
    for name in chosen:
        start = time.perf_counter()
        if name == "golden":
            code = make_golden.run(args.check, routers=args.routers, data=args.data)
        elif name == "views":
            code = make_views.run(args.check)
        elif name == "bad_folders":
            code = make_bad_folders.run(args.check)
        else:
            code = make_spec.run(name, args.check)
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", file=sys.stderr)
        if code:
            failed.append(name)
    if failed:
        print(f"stale: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

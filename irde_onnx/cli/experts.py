"""``irde experts``: list, add, promote or remove experts in place (the head is re-solved)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from irde_onnx.cli.args import FORMATTER, Parser, engine_arguments

EXPERTS_EXAMPLES = """\
examples:
  irde experts list my-router
  # rows {"text": ...}: prompts of the new expert's domain
  irde experts add my-router chemistry --data chemistry.jsonl
  # rows {"text": ..., "score": 0.8}: the new expert's quality on validation prompts;
  # with fewer than 1000 rows it routes only once its gate passes, else it is a shadow
  irde experts add my-router new-llm --data new-llm-scores.jsonl
  irde experts add my-router new-llm --data new-llm-scores.jsonl --no-gate   # routes at once
  irde experts promote my-router new-llm     # a shadow routes now, gate or not
  irde experts remove my-router law
"""


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``experts`` subcommand (list, add, remove) to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "experts",
        help="list, add, promote or remove experts without retraining",
        formatter_class=FORMATTER,
        epilog=EXPERTS_EXAMPLES,
        description="Change the experts of a router in place: the ridge head is "
        "re-solved from the statistics; the encoder is untouched.",
    )
    esub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = esub.add_parser(
        "list",
        help="experts in column order, then shadow experts with their gate",
        formatter_class=FORMATTER,
        epilog="examples:\n  irde experts list my-router\n",
    )
    q.add_argument("router", metavar="DIR")
    q = esub.add_parser(
        "add",
        help="add an expert from its prompts",
        formatter_class=FORMATTER,
        epilog=EXPERTS_EXAMPLES,
    )
    q.add_argument("router", metavar="DIR")
    q.add_argument("name", metavar="NAME")
    q.add_argument(
        "--data",
        required=True,
        metavar="FILE.jsonl",
        help='rows {"text"} (domain prompts) or {"text", "score"} (scored prompts)',
    )
    q.add_argument("--out", metavar="DIR", help="write the changed router here instead")
    q.add_argument("--quiet", action="store_true", help="no progress")
    engine_arguments(q)
    q.add_argument(
        "--cost",
        type=float,
        default=None,
        help="the new expert's cost per prompt (required when the router has costs)",
    )
    q.add_argument(
        "--gate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="scored rows: route only once the new column's leave-one-out routing gain minus "
        "2 standard errors is > 0, else keep it as a shadow expert (re-checked at each save); "
        "default: gate when the expert has fewer than 1000 rows and fewer than the router's "
        "columns; --no-gate: it routes at once",
    )
    q = esub.add_parser(
        "promote",
        help="let a shadow expert route now, whatever its gate says",
        formatter_class=FORMATTER,
        epilog="examples:\n  irde experts promote my-router new-llm\n",
    )
    q.add_argument("router", metavar="DIR")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--out", metavar="DIR", help="write the changed router here instead")
    q = esub.add_parser(
        "remove",
        help="remove an expert",
        formatter_class=FORMATTER,
        epilog="examples:\n  irde experts remove my-router law\n",
    )
    q.add_argument("router", metavar="DIR")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--out", metavar="DIR", help="write the changed router here instead")
    q.add_argument(
        "--fallback",
        metavar="NAME",
        default=None,
        help="the new fallback expert when removing the current one",
    )


def _expert_rows(path: str) -> tuple[list[str], list[float] | None]:
    from irde_onnx.data import expert_rows, read_jsonl

    return expert_rows(read_jsonl(path), path)


def run(args: argparse.Namespace) -> int:
    """List the experts, or add or remove one under the folder's lock and save."""
    from irde_onnx.errors import InvalidInputError
    from irde_onnx.runtime import RouterEditor
    from irde_onnx.store.folder import check_output_folder

    router = RouterEditor.open(args.router)
    if args.action == "list":
        cfg = router.config
        for column, (name, mode) in enumerate(zip(cfg.experts, cfg.expert_modes, strict=True)):
            print(json.dumps({"column": column, "name": name, "mode": mode}, ensure_ascii=False))
        for name, result in router.shadow_gates().items():  # solved, not routing yet
            line = {"column": None, "name": name, "mode": "own", "shadow": True}
            line.update(rows=len(router.stats.shadows[name]), gate=result.to_dict())
            print(json.dumps(line, ensure_ascii=False))
        return 0
    if args.action == "add":
        texts, scores = _expert_rows(args.data)
    if args.out and Path(args.out).resolve() != Path(args.router).resolve():
        check_output_folder(args.out, force=False)  # before the change, not after
    # the folder's lock is held from reading the router to committing the change
    result = None
    with router.lock():
        if args.action == "add":
            if args.engine == "ray" and router.gated(args.gate, scores is not None, len(texts)):
                raise InvalidInputError(
                    "--engine ray does not return the rows' features, which the gate of a "
                    "scored expert needs; pass --no-gate, or use --engine local"
                )
            if args.engine == "ray":
                from irde_onnx.engines.ray import ray_add_expert

                ray_add_expert(
                    router,
                    args.name,
                    texts,
                    scores,
                    address=args.address,
                    workers=args.workers,
                    progress=not args.quiet,
                    cost=args.cost,
                )
            else:
                result = router.add_expert(
                    args.name,
                    texts,
                    scores,
                    cost=args.cost,
                    progress=not args.quiet,
                    gate=args.gate,
                )
        elif args.action == "promote":
            router.promote_expert(args.name)
        else:
            router.remove_expert(args.name, fallback=args.fallback)
        out = router.save(args.out)
    line: dict[str, Any] = {"router": str(out), "experts": router.experts}
    if router.shadow_experts or result is not None:
        line["shadow_experts"] = router.shadow_experts
    if result is not None:
        line["gate"] = result.to_dict()
    print(json.dumps(line, ensure_ascii=False))
    return 0

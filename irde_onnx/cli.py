"""The ``irde`` command line: train, route, info, demo."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from irde_onnx import cli_eval
from irde_onnx.cli_args import Parser, lam_value, layers_value, positive_int, view_value
from irde_onnx.encoders import (
    DEFAULT_ENCODER,
    ENCODERS,
    all_precisions,
    all_strategies,
    precision_help,
)
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
"""
TRAIN_EXAMPLES = """\
examples:
  # rows {"text": ..., "expert": ...}: one expert per text (IR3DE domains)
  irde train --data train.jsonl --out router
  # rows {"text": ..., "domain": ...} from several files, the paper's static router
  irde train --data math.jsonl --data law.jsonl --label-field domain \\
      --encoder static --strategy vote --out router-static
  # rows {"text": ..., "scores": {"model-a": 0.7, "model-b": 0.2}}: real LLM quality
  irde train --data routerdc7/train.jsonl --precision fp32 --lam auto --out router-scores
  # choices by leave-one-source-out cross-validation: carry over to unseen sources
  irde train --data domains.jsonl --label-field domain --group-field source \
      --view auto --layers auto --out router-grouped
"""
ROUTE_EXAMPLES = """\
examples:
  irde route router "Solve 3x + 5 = 20" "Write a SQL query that counts users"
  irde route router --input prompts.jsonl --top-k 2 > routes.jsonl
  cat prompts.jsonl | irde route router --input -
"""
EXPERTS_EXAMPLES = """\
examples:
  irde experts list my-router
  # rows {"text": ...}: prompts of the new expert's domain
  irde experts add my-router chemistry --data chemistry.jsonl
  # rows {"text": ..., "score": 0.8}: the new expert's quality on validation prompts
  irde experts add my-router new-llm --data new-llm-scores.jsonl
  irde experts remove my-router law
"""
STATS_EXAMPLES = """\
examples:
  # routers trained with the same encoder on two shards of the data
  irde train --data shard-a.jsonl --out router-a
  irde train --data shard-b.jsonl --out router-b
  irde stats merge router-a router-b --out router-ab
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``irde``."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="irde", description="IR3DE prompt router exported as one ONNX graph.",
                     epilog=MAIN_EXAMPLES, formatter_class=fmt)
    from irde_onnx._version import __version__

    parser.add_argument("--version", action="version", version=f"irde-onnx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a router and export it", epilog=TRAIN_EXAMPLES,
                       formatter_class=fmt, description="Train a router and export it.")
    p.add_argument("--data", action="append", required=True, metavar="FILE.jsonl",
                   help="training rows (repeat for several files)")
    p.add_argument("--out", required=True, metavar="DIR", help="router directory to write")
    _encoder_arguments(p)
    p.add_argument("--strategy", choices=[*all_strategies(), "auto"], default=None,
                   help="how the graph turns features into scores; " + "; ".join(
                       f"{s.name}: {' or '.join(s.strategies)}" for s in ENCODERS.values())
                   + " (the first is the default); auto: strategy and k by cross-validation")
    p.add_argument("--top-k-tokens", type=positive_int, default=10,
                   help="k of entropy_top_k (default 10)")
    p.add_argument("--lam", type=lam_value, default="auto",
                   help="ridge penalty, or 'auto' for k-fold cross-validation (default)")
    p.add_argument("--label-field", default="expert", help='label field (default "expert")')
    _selection_arguments(p)
    p.add_argument("--max-length", type=positive_int, default=256, help="tokens kept per prompt")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("route", help="route prompts with a router", epilog=ROUTE_EXAMPLES,
                       formatter_class=fmt, description="Route prompts; one JSON line each.")
    p.add_argument("router", metavar="DIR")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--input", metavar="FILE.jsonl", help='rows {"text": ...}; - for stdin')
    p.add_argument("--top-k", type=positive_int, default=1, help="rank the k best experts")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="prompts per onnxruntime call (default 1 for int8 routers, else 32)")

    p = sub.add_parser("experts", help="list, add or remove experts without retraining",
                       formatter_class=fmt, epilog=EXPERTS_EXAMPLES,
                       description="Change the experts of a router in place: the ridge head is "
                                   "re-solved from the statistics; the encoder is untouched.")
    esub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = esub.add_parser("list", help="experts in column order", formatter_class=fmt,
                        epilog="examples:\n  irde experts list my-router\n")
    q.add_argument("router", metavar="DIR")
    q = esub.add_parser("add", help="add an expert from its prompts", formatter_class=fmt,
                        epilog=EXPERTS_EXAMPLES)
    q.add_argument("router", metavar="DIR")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--data", required=True, metavar="FILE.jsonl",
                   help='rows {"text"} (domain prompts) or {"text", "score"} (scored prompts)')
    q.add_argument("--out", metavar="DIR", help="write the changed router here instead")
    q.add_argument("--quiet", action="store_true", help="no progress")
    q = esub.add_parser("remove", help="remove an expert", formatter_class=fmt,
                        epilog="examples:\n  irde experts remove my-router law\n")
    q.add_argument("router", metavar="DIR")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--out", metavar="DIR", help="write the changed router here instead")

    p = sub.add_parser("stats", help="combine statistics computed elsewhere", formatter_class=fmt,
                       description="Merge the statistics of routers trained on other shards "
                                   "with the same encoder, then re-solve the head.",
                       epilog=STATS_EXAMPLES)
    ssub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = ssub.add_parser("merge", help="merge other shards' statistics into a router",
                        formatter_class=fmt, epilog=STATS_EXAMPLES)
    q.add_argument("router", metavar="DIR")
    q.add_argument("others", nargs="+", metavar="OTHER",
                   help="router directories or stats.npz files of the other shards")
    q.add_argument("--out", metavar="DIR", help="write the merged router here instead")

    cli_eval.add_parser(sub)

    p = sub.add_parser("info", help="describe a router", formatter_class=fmt,
                       description="Experts, encoder, precision, sizes and format version.",
                       epilog="examples:\n  irde info my-router\n")
    p.add_argument("router", metavar="DIR")

    p = sub.add_parser("demo", help="train and run a router on the bundled examples",
                       formatter_class=fmt,
                       description="Train a router on the example prompts shipped in models/demo "
                                   "(no network), export it and route held-out prompts.",
                       epilog="examples:\n  irde demo\n  irde demo --encoder static --out demo\n")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="keep the router here (default: a temporary directory)")
    _encoder_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="replace the router in a non-empty --out directory")
    return parser


def _selection_arguments(p: argparse.ArgumentParser) -> None:
    """``--group-field``, ``--view`` and ``--layers`` of ``irde train``."""
    from irde_onnx.defaults import MEASURED
    from irde_onnx.views import view_names

    measured = "; ".join(f"{enc}: view {d['view']}, layers {','.join(map(str, d['layers']))}"
                         for enc, d in MEASURED.items())

    p.add_argument("--group-field", default=None, metavar="FIELD",
                   help="a field of the rows (e.g. source) whose groups stay together in "
                        "cross-validation: every auto choice is made by leave-one-group-out "
                        "(or grouped k-fold with many groups); default: k-fold on rows")
    p.add_argument("--view", type=view_value, default=None,
                   help=f"input view applied before tokenizing: {', '.join(view_names())}, "
                        "several joined by '+', or auto (default: measured per encoder, "
                        f"{measured}; else full)")
    p.add_argument("--layers", type=layers_value, default=None,
                   help="minilm: layers pooled and concatenated, e.g. 6,5 or 6 (the last "
                        "alone), or auto (default: measured, see --view)")


def _encoder_arguments(p: argparse.ArgumentParser) -> None:
    """``--encoder`` and ``--precision``, with choices and help from the encoder registry."""
    p.add_argument("--encoder", choices=list(ENCODERS), default=DEFAULT_ENCODER,
                   help="; ".join(f"{s.name}: {s.help}" for s in ENCODERS.values()))
    p.add_argument("--precision", choices=all_precisions(), default=None, help=precision_help())


def _cmd_train(args: argparse.Namespace) -> int:
    from irde_onnx.data import load_training_set
    from irde_onnx.export import RouterTrainer
    from irde_onnx.folder import check_output_folder

    out = check_output_folder(args.out, args.force)  # before the long work
    data = load_training_set(args.data, args.label_field)
    groups = data.groups(args.group_field) if args.group_field else None
    trainer = RouterTrainer(encoder=args.encoder, precision=args.precision,
                            strategy=args.strategy, top_k_tokens=args.top_k_tokens,
                            lam=args.lam, max_length=args.max_length, threads=args.threads,
                            progress=not args.quiet, view=args.view, layers=args.layers)
    if data.labels is not None:
        trainer.fit(data.texts, data.labels, groups=groups, group_name=args.group_field)
    else:
        trainer.fit(data.texts, scores=data.scores, experts=data.experts, groups=groups,
                    group_name=args.group_field)
    trainer.save(out, overwrite=args.force)
    cfg = trainer.router_.config
    print(json.dumps({"router": str(out), "experts": list(cfg.experts), "target": cfg.target,
                      "encoder": cfg.encoder, "precision": cfg.precision, "lam": cfg.lam,
                      "view": cfg.view, "layers": list(cfg.layers), "strategy": cfg.strategy,
                      "selection": cfg.selection.get("method"),
                      "n_texts": len(data.texts)}, ensure_ascii=False))
    return 0


def _cmd_route(args: argparse.Namespace) -> int:
    from irde_onnx.data import load_prompts
    from irde_onnx.runtime import Router

    texts: list[str] = list(args.texts)
    rows: list[dict] = [{} for _ in texts]
    if args.input:
        more, more_rows = load_prompts(args.input)
        texts += more
        rows += more_rows
    if not texts:
        raise _UsageError("no prompts: give TEXT arguments or --input FILE.jsonl")
    router = Router.load(args.router, threads=args.threads)
    if args.top_k > len(router.experts):
        raise _UsageError(f"--top-k {args.top_k} exceeds the {len(router.experts)} experts")
    routes = router.route(texts, top_k=args.top_k, batch_size=args.batch_size)
    out = sys.stdout
    for row, r in zip(rows, routes, strict=True):
        record = r.to_dict()
        if "id" in row:
            record = {"id": row["id"], **record}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def router_info(path: str | Path) -> dict:
    """What ``irde info`` prints."""
    from irde_onnx.config import FIXED_FILES, check_router_dir, read_config

    root = check_router_dir(path)
    cfg = read_config(root)
    names = (*FIXED_FILES, cfg.graph_file, cfg.stats_file)
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root / missing[0]} is missing: the router is incomplete")
    sizes = {name: (root / name).stat().st_size for name in names}
    return {
        "router": str(root),
        "experts": list(cfg.experts),
        "expert_modes": list(cfg.expert_modes),
        "encoder": cfg.encoder,
        "precision": cfg.precision,
        "strategy": cfg.strategy,
        "target": cfg.target,
        "lam": cfg.lam,
        "max_length": cfg.max_length,
        "view": cfg.view,
        "layers": list(cfg.layers),
        "feature_dim": cfg.feature_dim,
        "selection": cfg.selection,
        "format_version": cfg.format_version,
        "package_version": cfg.package_version,
        "fingerprint": cfg.fingerprint,
        "file_bytes": sizes,
        "total_bytes": sum(sizes.values()),
    }


def _cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(router_info(args.router), indent=2, ensure_ascii=False))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from irde_onnx.demo import run_demo

    return run_demo(out=args.out, encoder=args.encoder, precision=args.precision,
                    force=args.force)


def _expert_rows(path: str) -> tuple[list[str], list[float] | None]:
    from irde_onnx.data import read_jsonl
    from irde_onnx.stats import MAX_TARGET

    texts: list[str] = []
    scores: list[float] = []
    scored: bool | None = None
    for where, row in read_jsonl(path):
        text = row.get("text")
        if not isinstance(text, str):
            raise _UsageError(f'{where}: the row needs a string "text" field')
        if scored is None:
            scored = "score" in row
        elif scored != ("score" in row):
            raise _UsageError(f'{where}: either every row has a "score" or none has')
        if scored:
            value = row["score"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or abs(value) > MAX_TARGET:
                raise _UsageError(
                    f'{where}: "score" must be a finite number of magnitude at most '
                    f'{MAX_TARGET:g}')
            scores.append(float(value))
        texts.append(text)
    if not texts:
        raise _UsageError(f"no rows in {path}")
    return texts, (scores if scored else None)


def _cmd_experts(args: argparse.Namespace) -> int:
    from irde_onnx.folder import check_output_folder
    from irde_onnx.runtime import Router

    router = Router.load(args.router)
    if args.action == "list":
        cfg = router.config
        for column, (name, mode) in enumerate(zip(cfg.experts, cfg.expert_modes, strict=True)):
            print(json.dumps({"column": column, "name": name, "mode": mode}, ensure_ascii=False))
        return 0
    if args.action == "add":
        texts, scores = _expert_rows(args.data)
    if args.out:
        check_output_folder(args.out, force=False)  # before the change, not after
    # the folder's lock is held from reading the router to committing the change
    with router.lock():
        if args.action == "add":
            router.add_expert(args.name, texts, scores, progress=not args.quiet)
        else:
            router.remove_expert(args.name)
        out = router.save(args.out)
    print(json.dumps({"router": str(out), "experts": router.experts}, ensure_ascii=False))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from irde_onnx.folder import check_output_folder
    from irde_onnx.runtime import Router

    if args.out:
        check_output_folder(args.out, force=False)
    router = Router.load(args.router)
    with router.lock():
        for other in args.others:
            router.merge_stats(other)
        out = router.save(args.out)
    stats = router.stats
    print(json.dumps({"router": str(out), "experts": router.experts,
                      "rows": float(stats.shared.n + sum(m.n for m in stats.owned))},
                     ensure_ascii=False))
    return 0


class _UsageError(IrdeError):
    pass


def _cmd_eval(args: argparse.Namespace) -> int:
    return cli_eval.run(args)


COMMANDS = {"train": _cmd_train, "route": _cmd_route, "info": _cmd_info, "demo": _cmd_demo,
            "experts": _cmd_experts, "stats": _cmd_stats, "eval": _cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``irde``; returns the exit code (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (IrdeError, FileNotFoundError, FileExistsError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"irde {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irde: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

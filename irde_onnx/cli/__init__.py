"""The ``irde`` command line: train, route, info, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from irde_onnx.cli import eval as cli_eval
from irde_onnx.cli import policy as cli_policy
from irde_onnx.cli.args import Parser, lam_value, layers_value, positive_int, view_value
from irde_onnx.decision.policy import UNSET
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
  irde policy my-router --costs costs.json --wtp 0.002 --min-confidence 0.5 --fallback gpt-4
"""
TRAIN_EXAMPLES = """\
examples:
  # rows {"text": ..., "expert": ...}: one expert per text (IR3DE domains)
  irde train --data train.jsonl --out router
  # rows {"text": ..., "domain": ...} from several files, the paper's static router
  irde train --data math.jsonl --data law.jsonl --label-field domain \\
      --encoder static --strategy vote --out router-static
  # statistics computed by Ray workers (irde-onnx[distributed]); the head is solved once
  irde train --data big.jsonl --out router --engine ray --address auto
  # rows {"text": ..., "scores": {"model-a": 0.7, "model-b": 0.2}}: real LLM quality
  irde train --data routerdc7/train.jsonl --precision fp32 --lam auto --out router-scores
  # rows with "costs" {model: USD}: the mean cost per model is stored for cost-aware routing
  irde train --data routerbench/train.jsonl --wtp 0.002 --out router-cost
  # choices by leave-one-source-out cross-validation: carry over to unseen sources
  irde train --data domains.jsonl --label-field domain --group-field source \\
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
SERVE_EXAMPLES = """\
examples:
  irde serve my-router                              # http://127.0.0.1:8000
  IRDE_TOKEN=secret irde serve my-router --port 9000 --workers 2
  curl -s localhost:8000/route -d '{"text": "Solve 3x + 5 = 20", "top_k": 2}'
  irde serve my-router --backends backends.json     # OpenAI-compatible gateway
  IRDE_CLIENT_TOKEN=key irde serve my-router --host 0.0.0.0 --backends backends.json
"""
STATS_EXAMPLES = """\
examples:
  # routers trained with the same encoder on two shards of the data
  irde train --data shard-a.jsonl --out router-a
  irde train --data shard-b.jsonl --out router-b
  irde stats merge router-a router-b --out router-ab
"""


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    """``--engine``, ``--address`` and ``--workers``: where training rows are encoded."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where prompts are encoded: this process (default) or Ray workers "
        "(needs irde-onnx[distributed])",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address (e.g. auto or ray://head:10001; default: start "
        "a local Ray instance)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="Ray workers, one partition of the rows each (default: the CPUs)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``irde``."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="irde",
        description="IR3DE prompt router exported as one ONNX graph.",
        epilog=MAIN_EXAMPLES,
        formatter_class=fmt,
    )
    from irde_onnx._version import __version__

    parser.add_argument("--version", action="version", version=f"irde-onnx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser(
        "train",
        help="train a router and export it",
        epilog=TRAIN_EXAMPLES,
        formatter_class=fmt,
        description="Train a router and export it.",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="FILE.jsonl",
        help="training rows (repeat for several files)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="router directory to write")
    _encoder_arguments(p)
    p.add_argument(
        "--strategy",
        choices=[*all_strategies(), "auto"],
        default=None,
        help="how the graph turns features into scores; "
        + "; ".join(f"{s.name}: {' or '.join(s.strategies)}" for s in ENCODERS.values())
        + " (the first is the default); auto: strategy and k by cross-validation",
    )
    p.add_argument(
        "--top-k-tokens", type=positive_int, default=10, help="k of entropy_top_k (default 10)"
    )
    p.add_argument(
        "--lam",
        type=lam_value,
        default="auto",
        help="ridge penalty, or 'auto' for k-fold cross-validation (default)",
    )
    p.add_argument("--label-field", default="expert", help='label field (default "expert")')
    _selection_arguments(p)
    p.add_argument("--max-length", type=positive_int, default=256, help="tokens kept per prompt")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine_arguments(p)
    p.add_argument(
        "--costs",
        metavar="FILE.json",
        help='{expert: cost per prompt} (default: the mean of the rows\' "costs" '
        "when every row has them)",
    )
    p.add_argument(
        "--wtp",
        type=cli_policy.optional_number,
        default=None,
        help="default willingness to pay (cost units per unit of quality) "
        "for the graph's choice; default: quality only",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="do not fit the confidence calibration on the training folds",
    )

    p = sub.add_parser(
        "route",
        help="route prompts with a router",
        epilog=ROUTE_EXAMPLES,
        formatter_class=fmt,
        description="Route prompts; one JSON line each.",
    )
    p.add_argument("router", metavar="DIR")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--input", metavar="FILE.jsonl", help='rows {"text": ...}; - for stdin')
    p.add_argument("--top-k", type=positive_int, default=1, help="rank the k best experts")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="prompts per onnxruntime call (default 1 for int8 routers, else 32)",
    )
    p.add_argument(
        "--wtp",
        type=cli_policy.optional_number,
        default=UNSET,
        help="willingness to pay for these prompts, overriding the router's "
        "default ('none': quality only); needs a router with costs",
    )

    p = sub.add_parser(
        "experts",
        help="list, add or remove experts without retraining",
        formatter_class=fmt,
        epilog=EXPERTS_EXAMPLES,
        description="Change the experts of a router in place: the ridge head is "
        "re-solved from the statistics; the encoder is untouched.",
    )
    esub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = esub.add_parser(
        "list",
        help="experts in column order",
        formatter_class=fmt,
        epilog="examples:\n  irde experts list my-router\n",
    )
    q.add_argument("router", metavar="DIR")
    q = esub.add_parser(
        "add", help="add an expert from its prompts", formatter_class=fmt, epilog=EXPERTS_EXAMPLES
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
    _engine_arguments(q)
    q.add_argument(
        "--cost",
        type=float,
        default=None,
        help="the new expert's cost per prompt (required when the router has costs)",
    )
    q = esub.add_parser(
        "remove",
        help="remove an expert",
        formatter_class=fmt,
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

    p = sub.add_parser(
        "stats",
        help="combine statistics computed elsewhere",
        formatter_class=fmt,
        description="Merge the statistics of routers trained on other shards "
        "with the same encoder, then re-solve the head.",
        epilog=STATS_EXAMPLES,
    )
    ssub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = ssub.add_parser(
        "merge",
        help="merge other shards' statistics into a router",
        formatter_class=fmt,
        epilog=STATS_EXAMPLES,
    )
    q.add_argument("router", metavar="DIR")
    q.add_argument(
        "others",
        nargs="+",
        metavar="OTHER",
        help="router directories or stats.npz files of the other shards",
    )
    q.add_argument("--out", metavar="DIR", help="write the merged router here instead")

    cli_eval.add_parser(sub)
    cli_policy.add_parser(sub)

    p = sub.add_parser(
        "serve",
        help="serve a router over HTTP (needs irde-onnx[serve])",
        formatter_class=fmt,
        epilog=SERVE_EXAMPLES,
        description="Serve a router over HTTP: POST /route, GET/POST /experts, "
        "DELETE /experts/NAME, GET /healthz, GET /metrics, and with "
        "--backends an OpenAI-compatible POST /v1/chat/completions and GET /v1/models. "
        "The folder is reloaded when another process saves it. Beyond loopback, /route and "
        "/v1/* need client keys (IRDE_CLIENT_TOKEN, --client-keys) or --allow-anonymous.",
    )
    p.add_argument("router", metavar="DIR")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 means all)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="onnxruntime intra-op threads per worker"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes (default 1); each loads the router",
    )
    p.add_argument(
        "--backends",
        metavar="FILE.json",
        default=None,
        help="expert -> OpenAI-compatible backend; enables /v1/chat/completions",
    )
    p.add_argument(
        "--token-env",
        default="IRDE_TOKEN",
        metavar="VAR",
        help="environment variable with the bearer token for expert changes "
        "(default IRDE_TOKEN; unset: changes are disabled)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=1 << 20,
        help="largest request body (default 1 MiB)",
    )
    p.add_argument(
        "--chat-max-body-bytes",
        type=positive_int,
        default=20 << 20,
        metavar="BYTES",
        help="largest POST /v1/chat/completions body (default 20 MiB: images in base64)",
    )
    p.add_argument(
        "--max-texts",
        type=positive_int,
        default=256,
        help="most texts per POST /route (default 256)",
    )
    p.add_argument(
        "--client-token-env",
        default=None,
        metavar="VAR",
        help="environment variable with a client key that /route and /v1/* require as "
        "Authorization: Bearer <key> (default IRDE_CLIENT_TOKEN, when set)",
    )
    p.add_argument(
        "--client-keys",
        default=None,
        metavar="FILE",
        help="file of client keys, one per line (# comments), accepted beside the variable's",
    )
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve /route and /v1/* without client keys on a --host other than loopback",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages of ORIGIN (scheme://host[:port], or *) call /route and /v1/* "
        "from a browser; repeatable (default: none)",
    )
    p.add_argument(
        "--reload-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often router.json is checked for changes (default 1; 0: never)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request headers are not complete this long after it "
        "opened or after its previous response (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="close a connection whose request body is not complete this long after its "
        "headers, however it trickles (default 30)",
    )
    p.add_argument(
        "--keep-alive",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="close a connection idle this long between requests (default 5)",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=512,
        metavar="N",
        help="open connections per worker; more get 503 and are closed (default 512)",
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )

    p = sub.add_parser(
        "info",
        help="describe a router",
        formatter_class=fmt,
        description="Experts, encoder, precision, sizes and format version.",
        epilog="examples:\n  irde info my-router\n",
    )
    p.add_argument("router", metavar="DIR")

    p = sub.add_parser(
        "demo",
        help="train and run a router on the bundled examples",
        formatter_class=fmt,
        description="Train a router on the example prompts shipped in models/demo "
        "(no network), export it and route held-out prompts.",
        epilog="examples:\n  irde demo\n  irde demo --encoder static --out demo\n",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="keep the router here (default: a temporary directory)",
    )
    _encoder_arguments(p)
    p.add_argument(
        "--force", action="store_true", help="replace the router in a non-empty --out directory"
    )
    return parser


def _selection_arguments(p: argparse.ArgumentParser) -> None:
    """``--group-field``, ``--view`` and ``--layers`` of ``irde train``."""
    from irde_onnx.defaults import MEASURED
    from irde_onnx.views import view_names

    measured = "; ".join(
        f"{enc}: view {d['view']}, layers {','.join(map(str, d['layers']))}"
        for enc, d in MEASURED.items()
    )

    p.add_argument(
        "--group-field",
        default=None,
        metavar="FIELD",
        help="a field of the rows (e.g. source) whose groups stay together in "
        "cross-validation: every auto choice is made by leave-one-group-out "
        "(or grouped k-fold with many groups); default: k-fold on rows",
    )
    p.add_argument(
        "--view",
        type=view_value,
        default=None,
        help=f"input view applied before tokenizing: {', '.join(view_names())}, "
        "several joined by '+', or auto (default: measured per encoder, "
        f"{measured}; else full)",
    )
    p.add_argument(
        "--layers",
        type=layers_value,
        default=None,
        help="minilm: layers pooled and concatenated, e.g. 6,5 or 6 (the last "
        "alone), or auto (default: measured, see --view)",
    )


def _encoder_arguments(p: argparse.ArgumentParser) -> None:
    """``--encoder`` and ``--precision``, with choices and help from the encoder registry."""
    p.add_argument(
        "--encoder",
        choices=list(ENCODERS),
        default=DEFAULT_ENCODER,
        help="; ".join(f"{s.name}: {s.help}" for s in ENCODERS.values()),
    )
    p.add_argument("--precision", choices=all_precisions(), default=None, help=precision_help())


def _cmd_train(args: argparse.Namespace) -> int:
    from irde_onnx.data import load_training_set
    from irde_onnx.export import RouterTrainer
    from irde_onnx.store.folder import check_output_folder

    out = check_output_folder(args.out, args.force)  # before the long work
    data = load_training_set(args.data, args.label_field)
    costs = (
        cli_policy.read_costs(args.costs)
        if args.costs
        else cli_policy.mean_costs(data.rows, data.experts)
    )
    if args.wtp is not None and costs is None:
        raise _UsageError('--wtp needs costs: give --costs FILE.json or rows with "costs"')
    groups = data.groups(args.group_field) if args.group_field else None
    trainer = RouterTrainer(
        encoder=args.encoder,
        precision=args.precision,
        strategy=args.strategy,
        top_k_tokens=args.top_k_tokens,
        lam=args.lam,
        max_length=args.max_length,
        threads=args.threads,
        progress=not args.quiet,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        calibrate=not args.no_calibration,
        view=args.view,
        layers=args.layers,
    )
    if args.engine == "ray":
        from irde_onnx.engines.ray import require_ray

        require_ray()  # before the export, so a missing extra fails at once
    # --wtp joins the policy the trainer validates: no second session for it
    wtp = UNSET if args.wtp is None else args.wtp
    if data.labels is not None:
        trainer.fit(
            data.texts,
            data.labels,
            costs=costs,
            groups=groups,
            group_name=args.group_field,
            wtp=wtp,
        )
    else:
        trainer.fit(
            data.texts,
            scores=data.scores,
            experts=data.experts,
            costs=costs,
            groups=groups,
            group_name=args.group_field,
            wtp=wtp,
        )
    trainer.save(out, overwrite=args.force)
    cfg = trainer.router_.config
    print(
        json.dumps(
            {
                "router": str(out),
                "experts": list(cfg.experts),
                "target": cfg.target,
                "encoder": cfg.encoder,
                "precision": cfg.precision,
                "lam": cfg.lam,
                "view": cfg.view,
                "layers": list(cfg.layers),
                "strategy": cfg.strategy,
                "selection": cfg.selection.get("method"),
                "n_texts": len(data.texts),
                "policy": cfg.policy,
            },
            ensure_ascii=False,
        )
    )
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
    if args.wtp is UNSET:
        routes = router.route(texts, top_k=args.top_k, batch_size=args.batch_size)
    else:
        routes = router.route(texts, top_k=args.top_k, batch_size=args.batch_size, wtp=args.wtp)
    out = sys.stdout
    for row, r in zip(rows, routes, strict=True):
        record = r.to_dict()
        if "id" in row:
            record = {"id": row["id"], **record}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def router_info(path: str | Path) -> dict:
    """What ``irde info`` prints."""
    from irde_onnx.store.config import FIXED_FILES, check_router_dir, read_config

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
        "policy": cfg.policy,
        "file_bytes": sizes,
        "total_bytes": sum(sizes.values()),
    }


def _cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(router_info(args.router), indent=2, ensure_ascii=False))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from irde_onnx.cli.demo import run_demo

    return run_demo(out=args.out, encoder=args.encoder, precision=args.precision, force=args.force)


def _expert_rows(path: str) -> tuple[list[str], list[float] | None]:
    from irde_onnx.data import expert_rows, read_jsonl

    return expert_rows(read_jsonl(path), path)


def _cmd_experts(args: argparse.Namespace) -> int:
    from irde_onnx.runtime import RouterEditor
    from irde_onnx.store.folder import check_output_folder

    router = RouterEditor.open(args.router)
    if args.action == "list":
        cfg = router.config
        for column, (name, mode) in enumerate(zip(cfg.experts, cfg.expert_modes, strict=True)):
            print(json.dumps({"column": column, "name": name, "mode": mode}, ensure_ascii=False))
        return 0
    if args.action == "add":
        texts, scores = _expert_rows(args.data)
    if args.out and Path(args.out).resolve() != Path(args.router).resolve():
        check_output_folder(args.out, force=False)  # before the change, not after
    # the folder's lock is held from reading the router to committing the change
    with router.lock():
        if args.action == "add":
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
                router.add_expert(args.name, texts, scores, cost=args.cost, progress=not args.quiet)
        else:
            router.remove_expert(args.name, fallback=args.fallback)
        out = router.save(args.out)
    print(json.dumps({"router": str(out), "experts": router.experts}, ensure_ascii=False))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from irde_onnx.runtime import RouterEditor
    from irde_onnx.store.folder import check_output_folder

    if args.out and Path(args.out).resolve() != Path(args.router).resolve():
        check_output_folder(args.out, force=False)  # before the merge, not after
    router = RouterEditor.open(args.router)
    with router.lock():
        for other in args.others:
            router.merge_stats(other)
        out = router.save(args.out)
    stats = router.stats
    print(
        json.dumps(
            {
                "router": str(out),
                "experts": router.experts,
                "rows": float(stats.shared.n + sum(m.n for m in stats.owned)),
            },
            ensure_ascii=False,
        )
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from irde_onnx.serve import ServeSettings

    if not 0 <= args.port <= 65535:
        raise _UsageError(f"--port {args.port} is not a TCP port (0..65535)")
    if args.reload_interval < 0:
        raise _UsageError("--reload-interval must be >= 0")
    for flag in ("keep_alive", "header_timeout", "body_timeout"):
        if not getattr(args, flag) > 0:  # also refuses nan
            raise _UsageError(f"--{flag.replace('_', '-')} must be a number of seconds > 0")
    settings = ServeSettings(
        router=str(args.router),
        threads=args.threads,
        max_body_bytes=args.max_body_bytes,
        max_texts=args.max_texts,
        token_env=args.token_env,
        reload_interval=args.reload_interval,
        backends=args.backends,
        chat_max_body_bytes=args.chat_max_body_bytes,
        client_keys=args.client_keys,
        cors_origins=list(args.cors_origin),
    )
    from irde_onnx.serve.auth import exposure_problem, is_loopback, load_client_keys
    from irde_onnx.serve.edge import cors_origin_problem

    if args.client_token_env is not None:
        settings.client_token_env = args.client_token_env
    keys = load_client_keys(
        settings.client_token_env, settings.client_keys, args.client_token_env is not None
    )
    problem = exposure_problem(args.host, keys, args.allow_anonymous)
    problem = problem or next(filter(None, map(cors_origin_problem, settings.cors_origins)), None)
    if problem:
        raise _UsageError(problem)
    from irde_onnx.serve.checks import check_changes_can_be_saved
    from irde_onnx.serve.runner import RunOptions, serve

    check_changes_can_be_saved(args.router, args.token_env)  # before a 500 at the first change
    options = RunOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        keep_alive=args.keep_alive,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
    )
    if not is_loopback(args.host):
        guard = f"{len(keys)} client key(s)" if keys else "no client key (--allow-anonymous)"
        print(
            f"irde serve: listening on {args.host}, reachable from other machines; {guard}",
            file=sys.stderr,
        )
    serve(settings, options)  # loads the router and backends: errors before listening
    return 0


class _UsageError(IrdeError):
    pass


def _cmd_eval(args: argparse.Namespace) -> int:
    return cli_eval.run(args)


def _cmd_policy(args: argparse.Namespace) -> int:
    return cli_policy.run(args)


COMMANDS = {
    "train": _cmd_train,
    "route": _cmd_route,
    "info": _cmd_info,
    "demo": _cmd_demo,
    "experts": _cmd_experts,
    "stats": _cmd_stats,
    "eval": _cmd_eval,
    "serve": _cmd_serve,
    "policy": _cmd_policy,
}


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
        code = COMMANDS[args.command](args)
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

"""``irde serve``: the HTTP server's command line (needs irde-onnx[serve] to run)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from irde_onnx.cli.args import FORMATTER, UsageError, positive_int, threads_argument

SERVE_EXAMPLES = """\
examples:
  irde serve my-router                              # http://127.0.0.1:8000
  IRDE_TOKEN=secret irde serve my-router --port 9000 --workers 2
  curl -s localhost:8000/route -d '{"text": "Solve 3x + 5 = 20", "top_k": 2}'
  irde serve my-router --backends backends.json     # OpenAI-compatible gateway
  IRDE_CLIENT_TOKEN=key irde serve my-router --host 0.0.0.0 --backends backends.json
  IRDE_TOKEN=secret irde serve my-router --explore eps:0.05 --explore-seed 7
"""


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``serve`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="serve a router over HTTP (needs irde-onnx[serve])",
        formatter_class=FORMATTER,
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
    threads_argument(p, help="onnxruntime intra-op threads per worker")
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
        "--explore",
        default="off",
        metavar="MODE",
        help="explore routed requests for the feedback loop: eps:RATE (another expert than "
        "the router's pick with probability RATE), bonus:ALPHA (the best utility + ALPHA x "
        "the router's uncertainty; needs a router with that output) or off (default)",
    )
    p.add_argument(
        "--explore-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the exploration's draws (default: drawn, and logged at start-up)",
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


def run(args: argparse.Namespace) -> int:
    """Check the options, then serve until interrupted (errors before listening)."""
    from irde_onnx.serve import ServeSettings

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port (0..65535)")
    if args.reload_interval < 0:
        raise UsageError("--reload-interval must be >= 0")
    for flag in ("keep_alive", "header_timeout", "body_timeout"):
        if not getattr(args, flag) > 0:  # also refuses nan
            raise UsageError(f"--{flag.replace('_', '-')} must be a number of seconds > 0")
    from irde_onnx.decision.explore import Exploration
    from irde_onnx.errors import InvalidInputError

    try:
        exploration = Exploration.parse(args.explore, args.explore_seed)
    except InvalidInputError as exc:
        raise UsageError(f"--explore / --explore-seed: {exc}") from None
    if args.explore_seed is not None and exploration.mode != "epsilon":
        raise UsageError("--explore-seed seeds the draws of --explore eps:RATE; give that too")
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
        explore=str(exploration),
        explore_seed=exploration.seed,
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
        raise UsageError(problem)
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

"""``irde train``: train a router on JSONL rows and export it to a folder."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from irde_onnx.cli import policy as cli_policy
from irde_onnx.cli.args import (
    FORMATTER,
    UsageError,
    encoder_arguments,
    engine_arguments,
    lam_value,
    layers_value,
    positive_int,
    threads_argument,
    view_value,
)

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
  # a cold start: no rows, named experts predicting a prior (or picked by cost) until
  # `irde feedback` folds rows
  irde train --experts gpt-4o,llama-3,mistral --prior 0.5 --costs costs.json --out router-cold
"""


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``train`` subcommand to ``irde``'s subparsers."""
    from irde_onnx.encoders import ENCODERS, all_strategies

    p = subparsers.add_parser(
        "train",
        help="train a router and export it",
        epilog=TRAIN_EXAMPLES,
        formatter_class=FORMATTER,
        description="Train a router and export it.",
    )
    rows = p.add_mutually_exclusive_group(required=True)
    rows.add_argument(
        "--data",
        action="append",
        metavar="FILE.jsonl",
        help="training rows (repeat for several files); or --experts for a cold start",
    )
    rows.add_argument(
        "--experts",
        type=expert_names,
        default=None,
        metavar="A,B,...",
        help="a cold start instead of --data: a router of these score experts fit on no "
        "rows, each predicting --prior (with costs: picked by cost) until feedback arrives",
    )
    p.add_argument(
        "--prior",
        type=prior_value,
        default=None,
        metavar="SCORE",
        help="with --experts: every expert's predicted quality before feedback (default 0.5)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="router directory to write")
    encoder_arguments(p)
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
    p.add_argument(
        "--max-bytes",
        type=positive_int,
        default=None,
        metavar="N",
        help="tiny only: the graph's byte budget (default 5000000; e.g. 2000000 keeps a "
        "browser page under 6 MB gzip, see BENCHMARKS.md)",
    )
    threads_argument(p)
    p.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    engine_arguments(p)
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


def expert_names(text: str) -> list[str]:
    """``a,b,c``: distinct non-empty names (argparse ``type``)."""
    names = [part.strip() for part in text.split(",")]
    if any(not name for name in names):
        raise argparse.ArgumentTypeError(f"{text!r} holds an empty expert name; give a,b,c")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise argparse.ArgumentTypeError(f"{text!r} names {dupes} twice; give each expert once")
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: a router needs at least 2 experts")
    return names


def prior_value(text: str) -> float:
    """A finite number (argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


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


def run(args: argparse.Namespace) -> int:
    """Train, export and print one JSON line describing the router."""
    from irde_onnx.data import load_training_set
    from irde_onnx.decision.policy import UNSET
    from irde_onnx.store.folder import check_output_folder

    if args.experts is not None:
        return _cold_start(args)
    if args.prior is not None:
        raise UsageError("--prior goes with --experts (a cold start); --data rows set the fit")
    out = check_output_folder(args.out, args.force)  # before the long work
    data = load_training_set(args.data, args.label_field)
    costs = (
        cli_policy.read_costs(args.costs)
        if args.costs
        else cli_policy.mean_costs(data.rows, data.experts)
    )
    if args.wtp is not None and costs is None:
        raise UsageError('--wtp needs costs: give --costs FILE.json or rows with "costs"')
    groups = data.groups(args.group_field) if args.group_field else None
    trainer = _trainer(args)
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
    _print_router(trainer, out, len(data.texts))
    return 0


def _trainer(args: argparse.Namespace) -> Any:
    from irde_onnx.export import RouterTrainer

    return RouterTrainer(
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
        max_bytes=args.max_bytes,
    )


def _cold_start(args: argparse.Namespace) -> int:
    """``--experts``: a router of named score experts fit on no rows (a prior each)."""
    from irde_onnx.decision.policy import UNSET
    from irde_onnx.export.trainer import DEFAULT_PRIOR
    from irde_onnx.store.folder import check_output_folder

    if args.group_field or args.label_field != "expert":
        raise UsageError("--group-field and --label-field read --data rows; a cold start has none")
    out = check_output_folder(args.out, args.force)
    costs = cli_policy.read_costs(args.costs) if args.costs else None
    if args.wtp is not None and costs is None:
        raise UsageError("--wtp needs costs: give --costs FILE.json")
    trainer = _trainer(args)
    trainer.fit_prior(
        args.experts,
        DEFAULT_PRIOR if args.prior is None else args.prior,
        costs=costs,
        wtp=UNSET if args.wtp is None else args.wtp,
    )
    trainer.save(out, overwrite=args.force)
    _print_router(trainer, out, 0)
    return 0


def _print_router(trainer: Any, out: Any, n_texts: int) -> None:
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
                "n_texts": n_texts,
                "policy": cfg.policy,
            },
            ensure_ascii=False,
        )
    )

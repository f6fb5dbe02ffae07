"""``irde demo``: train a router on the bundled example prompts and route held-out ones."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from irde_onnx.cli.args import FORMATTER, encoder_arguments
from irde_onnx.data import load_training_set


def add_parser(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the ``demo`` subcommand to ``irde``'s subparsers."""
    p = subparsers.add_parser(
        "demo",
        help="train and run a router on the bundled examples",
        formatter_class=FORMATTER,
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
    encoder_arguments(p)
    p.add_argument(
        "--force", action="store_true", help="replace the router in a non-empty --out directory"
    )


def run(args: argparse.Namespace) -> int:
    """Run :func:`run_demo` with the command line's options."""
    return run_demo(out=args.out, encoder=args.encoder, precision=args.precision, force=args.force)


def demo_data_dir() -> Path:
    """The example prompts: inside the installed package, or ``models/demo`` of a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "demo_data", package.parent / "models" / "demo"):
        if (candidate / "train.jsonl").is_file():
            return candidate
    raise FileNotFoundError(
        "the demo prompts (models/demo/train.jsonl) are not installed; reinstall irde-onnx"
    )


def run_demo(
    out: str | None = None,
    encoder: str = "minilm",
    precision: str | None = None,
    force: bool = False,
) -> int:
    """Train on ``train.jsonl``, save, reload with the runtime and route ``samples.jsonl``.

    ``out`` must be a new or empty folder, or (with ``force``) hold a router to replace.
    """
    from irde_onnx.export import RouterTrainer
    from irde_onnx.runtime import Router
    from irde_onnx.store.folder import check_output_folder

    if out is not None:
        check_output_folder(out, force)  # before training, like irde train

    data_dir = demo_data_dir()
    train = load_training_set([data_dir / "train.jsonl"])
    samples = load_training_set([data_dir / "samples.jsonl"])
    print(
        f"training a {encoder} router on {len(train.texts)} example prompts "
        f"({', '.join(train.experts)}) from {data_dir}"
    )
    start = time.perf_counter()
    trainer = RouterTrainer(encoder=encoder, precision=precision).fit(train.texts, train.labels)
    cfg = trainer.router_.config
    print(
        f"trained and exported in {time.perf_counter() - start:.1f} s: "
        f"{cfg.encoder} {cfg.precision}, lam={cfg.lam:.4g}, validated against "
        f"{trainer.validation_.reference if trainer.validation_ else 'nothing'}"
    )
    with tempfile.TemporaryDirectory(prefix="irde-demo-") as tmp:
        target = Path(out) if out else Path(tmp) / "router"
        trainer.save(target, overwrite=force)
        router = Router.load(target)  # the light runtime, as a deployment would load it
        routes = router.route(samples.texts)
        width = max(len(e) for e in router.experts)
        right = 0
        print(f"\nrouting {len(samples.texts)} held-out prompts with {target}:")
        for text, want, r in zip(samples.texts, samples.labels or [], routes, strict=True):
            ok = r.expert == want
            right += ok
            short = text.replace("\n", " ")
            short = short if len(short) <= 60 else short[:57] + "..."
            print(
                f"  {'ok ' if ok else 'MISS'} {r.expert:<{width}}  {r.scores[r.expert]:+.3f}  "
                f"{short}"
            )
        print(f"\n{right}/{len(routes)} routed to the expected expert")
        if out:
            print(f'router kept in {target}; try: irde route {target} "your prompt"')
        else:
            print("pass --out DIR to keep the router")
    return 0

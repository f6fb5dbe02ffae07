"""A pooled toy router (the tiny encoder's graph on the toy vocabulary), scored experts.

The toy router of ``tests/toy.py`` is static (token counts); shadow experts and their gate
need per-prompt features, so these tests build the tiny encoder's graph (a masked mean of
table rows, L2-normalised) over the same 40-word vocabulary, with numpy and onnx only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from irde_onnx._version import __version__
from irde_onnx.graph.build import tiny_router
from irde_onnx.learning.moments import Moments
from irde_onnx.learning.statistics import RouterStats
from irde_onnx.runtime import RouterEditor
from irde_onnx.store.config import RouterConfig
from irde_onnx.store.folder import write_router
from irde_onnx.store.graph_file import new_generation
from tests.toy import MAX_LENGTH, SPECIALS, VOCAB, WORDS, toy_tokenizer

DIM = 8
LAM = 0.5
MATH = {"solve", "integral", "equation", "prime", "number", "sum", "derivative", "matrix"}


def prompts(n: int, seed: int, words: list[str] | None = None) -> list[str]:
    """``n`` random prompts of 2-6 toy words (of ``words``, default all)."""
    rng = np.random.default_rng(seed)
    words = WORDS if words is None else words
    return [" ".join(rng.choice(words, size=int(rng.integers(2, 7)))) for _ in range(n)]


def split_prompts(n: int, seed: int) -> list[str]:
    """``n`` prompts, alternately of math words only and of the other words only."""
    math = prompts(n, seed, sorted(MATH))
    other = prompts(n, seed + 1, [w for w in WORDS if w not in MATH])
    return [math[i] if i % 2 == 0 else other[i] for i in range(n)]


def math_share(texts: list[str]) -> np.ndarray:
    """The share of math words in each prompt: what the new expert is good at."""
    return np.array([np.mean([w in MATH for w in t.split()]) for t in texts])


def build_pooled_router(root: Path, seed: int = 0) -> Path:
    """A score router of experts ``a``, ``b`` (middling everywhere) on 200 prompts."""
    rng = np.random.default_rng(seed)
    rows = len(VOCAB) + 2  # every token its own row, then the unknown and ignored rows
    table = rng.normal(size=(rows, DIM)).astype(np.float32)
    table[-1] = 0.0
    id_map = np.arange(len(VOCAB), dtype=np.int16)
    id_map[[VOCAB.index(s) for s in SPECIALS]] = rows - 1
    weight = np.ones(rows, np.uint8)
    weight[-1] = 0
    names = ["a", "b"]
    config = RouterConfig(
        experts=tuple(names),
        expert_modes=("pooled",) * 2,
        encoder="tiny",
        precision="fp16",
        strategy="mean",
        target="score",
        lam=LAM,
        max_length=MAX_LENGTH,
        feature_dim=DIM,
        fingerprint="",
        package_version=__version__,
    )
    stats = RouterStats.empty(DIM, diagonal=False)
    for name in names:  # a placeholder the editor replaces below
        stats.append(name, "pooled", Moments.zeros(DIM, 0), np.zeros(DIM), 0.0, 0.0)
    stats.shared = Moments.from_rows(np.eye(DIM), np.zeros((DIM, 0)))
    model = tiny_router(table.astype(np.float16), id_map, np.zeros((DIM, 2)), np.zeros(2), weight)
    write_router(Path(root), new_generation(model, config, toy_tokenizer(), stats))
    editor = RouterEditor.open(root)
    texts = prompts(200, seed)
    x = editor.features(texts)
    y = np.column_stack([0.5 + 0.05 * rng.normal(size=200), 0.45 + 0.05 * rng.normal(size=200)])
    real = RouterStats.empty(DIM, diagonal=False)
    real.shared = Moments.from_rows(x, np.zeros((200, 0)))
    mom = Moments.from_rows(x, y)
    for k, name in enumerate(names):
        real.append(
            name, "pooled", Moments.zeros(DIM, 0), mom.sum_xy[:, k], mom.sum_y[k], mom.sum_yy[k]
        )
    editor.set_statistics(real)
    editor.save()
    return Path(root)

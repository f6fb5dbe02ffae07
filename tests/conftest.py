"""Shared fixtures: tiny data, a toy router, and real routers built once per test session.

Layers: ``tests/runtime/`` needs only the base install (numpy, onnx, onnxruntime, tokenizers)
and uses the toy router of ``tests/toy.py``; the other tests need the export extra. Tests
that build a MiniLM router or read ``../shared/data`` are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo"
SHARED_DATA = Path(os.environ.get("IRDE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def read_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="session")
def demo_train() -> tuple[list[str], list[str]]:
    rows = read_rows(DEMO / "train.jsonl")
    return [r["text"] for r in rows], [r["expert"] for r in rows]


@pytest.fixture(scope="session")
def demo_samples() -> tuple[list[str], list[str]]:
    rows = read_rows(DEMO / "samples.jsonl")
    return [r["text"] for r in rows], [r["expert"] for r in rows]


@pytest.fixture(scope="session")
def toy_router_dir(tmp_path_factory) -> Path:
    """A toy router (3 experts, 40-word vocabulary), built in milliseconds without torch."""
    from .toy import build_toy_router

    return build_toy_router(tmp_path_factory.mktemp("toy") / "router")


@pytest.fixture
def toy_router(toy_router_dir, tmp_path) -> Path:
    """A private copy of the toy router, free to change."""
    return Path(shutil.copytree(toy_router_dir, tmp_path / "toy"))


@pytest.fixture(scope="session")
def static_trainer(demo_train):
    from irde_onnx.export import RouterTrainer

    texts, labels = demo_train
    return RouterTrainer(encoder="static", lam=1.0, progress=False).fit(texts, labels)


@pytest.fixture(scope="session")
def static_router_dir(static_trainer, tmp_path_factory) -> Path:
    return static_trainer.save(tmp_path_factory.mktemp("static") / "router")


@pytest.fixture(scope="session")
def minilm_trainer(demo_train):
    """The real MiniLM int8 router (export + quantise + fit), built once per session."""
    from irde_onnx.export import RouterTrainer

    texts, labels = demo_train
    return RouterTrainer(encoder="minilm", progress=False).fit(texts, labels)


@pytest.fixture(scope="session")
def minilm_router_dir(minilm_trainer, tmp_path_factory) -> Path:
    return minilm_trainer.save(tmp_path_factory.mktemp("minilm") / "router")


MINILM_FIXTURES = {"minilm_trainer", "minilm_router_dir"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a real MiniLM router fixture."""
    for item in items:
        if MINILM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def shared_data_or_fail(*parts: str) -> Path:
    """A path under ../shared/data; in CI a missing file fails instead of skipping.

    Tests that call it are marked ``slow``.
    """
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with ../shared beside the checkout")
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

"""Shared fixtures: tiny data, and real routers built once per test session."""

from __future__ import annotations

import json
import os
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


def shared_data_or_fail(*parts: str) -> Path:
    """A path under ../shared/data; in CI a missing file fails instead of skipping."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with ../shared beside the checkout")
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

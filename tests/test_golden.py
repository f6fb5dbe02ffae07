"""Golden values: token ids and scores of the exported demo routers, committed in
tests/golden/exports.json, so that an export that changes silently fails here.

Regenerate on purpose (and say why in the commit) with
``IRDE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py``.
"""

import json
import os

import numpy as np
import pytest

from irde_onnx.runtime import Router

from .conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "exports.json"
PROBES = [
    "What is the derivative of x^3 + 2x with respect to x?",
    "Write a Python function that reverses a linked list.",
    "Is a verbal agreement to sell land enforceable?",
    "请介绍一下唐朝的历史和文化。",
    "A 54-year-old man presents with crushing chest pain.",
    "",
]
# Scores are float32 from onnxruntime, stored rounded to 7 decimals. The static graph is
# plain fp32 arithmetic; the int8 MiniLM graph goes through onnxruntime's quantised kernels,
# which make_golden.py holds to 1e-6 across hosts: 1e-5 leaves room for another CPU's
# kernels, and a silent change of the export (a re-quantisation moves scores by ~1e-2) fails.
SCORE_ATOL = {"static": 1e-6, "minilm": 1e-5}


def dump(data):
    """JSON with one line per probe, so that a change shows as a readable diff."""

    def row(value):
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for name, entry in data.items():
        fields = []
        for key, value in entry.items():
            if isinstance(value, list) and value and isinstance(value[0], (list, str)):
                inner = ",\n".join(f"   {row(v)}" for v in value)
                fields.append(f"  {row(key)}: [\n{inner}\n  ]")
            else:
                fields.append(f"  {row(key)}: {row(value)}")
        parts.append(f" {row(name)}: {{\n" + ",\n".join(fields) + "\n }")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _snapshot(router_dir):
    router = Router.load(router_dir, threads=1)
    return {
        "experts": router.experts,
        "lam": router.config.lam,
        "ids": [ids.tolist() for ids in router.tokenizer.encode(PROBES)],
        "scores": router.scores(PROBES).astype(float).round(7).tolist(),
    }


def _check(name, router_dir):
    got = _snapshot(router_dir)
    if os.environ.get("IRDE_UPDATE_GOLDEN"):
        data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        data[name] = {"probes": PROBES, **got}
        GOLDEN.write_text(dump(data), encoding="utf-8")
        pytest.skip(f"wrote the golden values of {name}")
    want = json.loads(GOLDEN.read_text())[name]
    assert want["probes"] == PROBES
    assert got["experts"] == want["experts"]
    assert got["ids"] == want["ids"], "the shipped tokenizer changed"
    assert got["lam"] == pytest.approx(want["lam"], rel=1e-9)
    diff = np.abs(np.array(got["scores"]) - np.array(want["scores"])).max()
    print(f"{name}: max |score - golden| = {diff:.2e}")
    np.testing.assert_allclose(got["scores"], want["scores"], atol=SCORE_ATOL[name], rtol=0)
    assert np.argmax(got["scores"], 1).tolist() == np.argmax(want["scores"], 1).tolist()


def test_static_export_matches_the_golden_values(static_router_dir):
    _check("static", static_router_dir)


def test_minilm_export_matches_the_golden_values(minilm_router_dir):
    _check("minilm", minilm_router_dir)

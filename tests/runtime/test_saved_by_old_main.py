"""Routers saved by main before the redesign (42d092b) load and route as that code did.

``tests/fixtures/saved_by_42d092b/`` holds two toy routers written by that commit's code
(``trained``: as built, no policy nodes; ``changed``: an expert added, costs, a policy and a
save in place, so a second generation) and the routes it gave (``expected.json``). They are
never written again: they pin that the redesign reads what the old code wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from irde_onnx import Router, RouterEditor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "saved_by_42d092b"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(params=sorted(EXPECTED["routers"]))
def old_router(request, tmp_path) -> tuple[str, Path]:
    """A copy of one old router (a load may clean up files; the fixture stays as written)."""
    target = tmp_path / request.param
    shutil.copytree(FIXTURES / request.param, target)
    return request.param, target


def test_an_old_router_routes_as_the_old_code_did(old_router):
    name, path = old_router
    want = EXPECTED["routers"][name]
    router = Router.load(path)
    assert router.experts == want["experts"]
    got = [r.to_dict() for r in router.route(EXPECTED["prompts"], top_k=2)]
    for g, w in zip(got, want["routes"], strict=True):
        assert g["expert"] == w["expert"] and g["top"] == w["top"]
        assert g["scores"].keys() == w["scores"].keys()
        np.testing.assert_allclose(
            list(g["scores"].values()), list(w["scores"].values()), atol=1e-6
        )
        np.testing.assert_allclose(g["confidence"], w["confidence"], atol=1e-6)
    if want["quality_only"] is not None:
        assert [r.expert for r in router.route(EXPECTED["prompts"], wtp=None)] == want[
            "quality_only"
        ]


def test_an_old_router_takes_a_change_and_saves(old_router):
    _, path = old_router
    editor = RouterEditor.open(path)
    cost = 1.0 if editor.policy.costs is not None else None
    editor.add_expert("biology", ["cell gene protein", "enzyme membrane cell"], cost=cost)
    editor.save()
    again = Router.load(path)
    assert again.experts[-1] == "biology"
    texts = ["cell gene protein", "solve the integral"]
    np.testing.assert_allclose(again.scores(texts), editor.router.scores(texts), atol=1e-6)

"""The conformance fixtures of broken router folders (``conformance/bad_folders``) in Python.

The Node tests (``js/test/bad_folders.test.mjs``) run the same cases; both must raise the
same error type, and neither may change a file outside the folder.
"""

from __future__ import annotations

import pytest

from irde_onnx import errors
from irde_onnx.encoders import ENCODERS
from irde_onnx.graph.rules import ALLOWED_OPS, SIZE_INPUTS, SLACK_BYTES
from irde_onnx.runtime import Router

from ..bad_folders import RECORD, prepare

CASES = [c for c in RECORD["cases"] if "python" in c.get("hosts", ["python"])]


def test_the_rules_in_the_fixtures_are_this_package_s():
    rules = RECORD["rules"]
    assert rules["allowed_ops"] == {k: sorted(v) for k, v in ALLOWED_OPS.items()}
    assert rules["size_inputs"] == {k: list(v) for k, v in SIZE_INPUTS.items()}
    assert rules["slack_bytes"] == SLACK_BYTES
    assert rules["encoders"] == {
        name: {"token_weights": s.token_weights, "fixed_weights": s.fixed_weights}
        for name, s in ENCODERS.items()
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_broken_folder_is_refused_with_its_error_type(case, tmp_path):
    root, outside = prepare(case, tmp_path)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    if case["error"] is None:
        router = Router.load(root)
        assert router.route(["solve the equation"])[0].expert == "math"
    else:
        with pytest.raises(getattr(errors, case["error"], None) or FileNotFoundError) as info:
            Router.load(root)
        assert type(info.value).__name__ == case["error"], info.value
        assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before

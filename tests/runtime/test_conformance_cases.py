"""The router.json and policy check cases of ``conformance/`` in Python.

``conformance/router_json_cases.json`` and ``policy_cases.json`` (written by
``conformance/generate.py`` from these very checks) pin each case's error type and message;
the Node tests (``js/test/checks.test.mjs``) run the same cases. Here a case fails when the
Python checks changed without the files being written again on purpose.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from irde_onnx.decision.policy import Policy
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.store.config import RouterConfig

CONFORMANCE = Path(__file__).resolve().parents[2] / "conformance"
ROUTER_JSON = json.loads((CONFORMANCE / "router_json_cases.json").read_text(encoding="utf-8"))
POLICIES = json.loads((CONFORMANCE / "policy_cases.json").read_text(encoding="utf-8"))


def _same(run, want: dict, compare: str | None = None):
    """Run; assert the error type and message (or no error) are ``want``'s; the result."""
    try:
        result = run()
    except (InvalidInputError, RouterFormatError) as exc:
        assert type(exc).__name__ == want["error"], str(exc)
        if compare == "prefix":
            assert str(exc).startswith(want["message"])
        else:
            assert str(exc) == want["message"]
        return None
    assert want["error"] is None, f"no error; want {want['error']}: {want['message']}"
    return result


@pytest.mark.parametrize("case", ROUTER_JSON["cases"], ids=lambda c: c["name"])
def test_router_json_case(case):
    config = _same(
        lambda: RouterConfig.from_json(case["text"], ROUTER_JSON["source"]),
        case,
        case.get("compare"),
    )
    if config is not None:
        got = {"view": config.view, "layers": list(config.layers), "policy": config.policy}
        assert got == case["result"]


@pytest.mark.parametrize("case", POLICIES["cases"], ids=lambda c: c["name"])
def test_policy_case(case):
    policy = _same(lambda: Policy.from_dict(case["policy"], "policy"), case["parse"])
    if policy is not None:
        assert dataclasses.asdict(policy) == case["parse"]["result"]
        _same(lambda: policy.check(POLICIES["experts"], "policy"), case["check"])


def test_the_cases_cover_every_error_type_and_a_js_difference_is_never_python_s():
    errors = {c["error"] for c in ROUTER_JSON["cases"]}
    assert errors == {None, "RouterFormatError"}
    assert {c["parse"]["error"] for c in POLICIES["cases"]} == {None, "InvalidInputError"}
    for case in ROUTER_JSON["cases"]:
        if "js" in case:
            assert case["js"]["message"] != case["message"], case["name"]

"""examples/python-inprocess runs as its README says (Node and browser recipes: js/test)."""

from __future__ import annotations

import json
import subprocess
import sys

from irde_onnx import Router

from .conftest import ROOT

APP = ROOT / "examples" / "python-inprocess" / "app.py"
PROMPTS = ["solve the integral", "appeal to the court", "python function bug", "", "日本語"]


def test_python_inprocess_app_routes_as_the_router_does(toy_router_dir):
    want = Router.load(toy_router_dir).route(PROMPTS)
    by_args = subprocess.run(
        [sys.executable, str(APP), str(toy_router_dir), *PROMPTS],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    by_stdin = subprocess.run(
        [sys.executable, str(APP), str(toy_router_dir)],
        input="\n".join(PROMPTS[:3]) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for out, prompts in ((by_args, PROMPTS), (by_stdin, PROMPTS[:3])):
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r.pop("prompt") for r in rows] == prompts
        assert rows == json.loads(json.dumps([r.to_dict() for r in want[: len(prompts)]]))


def test_python_inprocess_app_names_a_missing_router(tmp_path):
    out = subprocess.run(
        [sys.executable, str(APP), str(tmp_path / "nope"), "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert (
        out.stderr.startswith("app.py: cannot load the router:") and "Traceback" not in out.stderr
    )

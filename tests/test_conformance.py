"""Every generated file of ``conformance/`` that is quick to compute is current.

``conformance/generate.py --check`` (run by ``.ci/run``) checks them all, ``golden.json``
with its routers included; this test keeps the quick ones (the shared tables in
``conformance/spec.json`` and the npm package's ``js/src/spec.js``, the check cases, the
views) in the pytest run, so that a change of the Python source they come from fails here
until they are written again.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from .conftest import ROOT


def _load(name: str):
    return importlib.import_module(f"conformance.{name}")


def test_spec_and_check_cases_are_current():
    make_spec = _load("make_spec")
    for name in ("spec", "router_json", "policy"):
        for path, text in make_spec.outputs(name).items():
            assert path.read_text(encoding="utf-8") == text, (
                f"{path.relative_to(ROOT)} is stale: run conformance/generate.py --only {name}"
            )


def test_generate_check_runs_the_quick_generators():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.generate",
            "--check",
            "--only",
            "spec",
            "--only",
            "views",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "spec: up to date" in out.stdout
    assert "views.json matches" in out.stdout

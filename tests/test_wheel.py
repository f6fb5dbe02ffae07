"""The container's install, without a container: build the wheel, install it with the serve
extra into a fresh venv (not editable, as the Dockerfile's ``pip install ".[serve]"``), and
run the Dockerfile's ENTRYPOINT on 127.0.0.1 with a router folder.

tests/test_docker.py runs the image itself where a docker engine runs; this test runs
everywhere (it needs the package index for the wheel's dependencies, as CI's install does).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile

import httpx
import pytest

from irde_onnx.runtime import Router

from .conftest import ROOT
from .process_helpers import server_process, without_checkout
from .serve_helpers import free_port

pytestmark = pytest.mark.slow  # a wheel build and a venv install: about a minute

PROMPTS = ["Solve 3x + 5 = 20", "Draft a non-disclosure agreement", "请介绍一下唐朝的历史"]


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT (exec form)."""
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found, "the Dockerfile has no ENTRYPOINT in exec form"
    return json.loads(found.group(1))


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kwargs)
    assert out.returncode == 0, f"{argv}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_wheel_with_the_serve_extra_runs_the_containers_command(static_router_dir, tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("irde_onnx-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # the demo prompts ride along (pyproject's force-include), the tests and benchmarks do not
    for name in ("train.jsonl", "samples.jsonl"):
        assert f"irde_onnx/demo_data/{name}" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "js/"))]

    venv = tmp_path / "venv"
    env = without_checkout()
    run([sys.executable, "-m", "venv", str(venv)], env=env)
    python, irde = venv / "bin" / "python", venv / "bin" / "irde"
    run([str(python), "-m", "pip", "install", "-q", f"{wheel}[serve]"], env=env, cwd=tmp_path)
    probe = run(
        [
            str(python),
            "-c",
            "import importlib.util as u, json, irde_onnx, irde_onnx.serve\n"
            "from irde_onnx.demo import demo_data_dir\n"
            "print(json.dumps([irde_onnx.__file__, str(demo_data_dir()),"
            " [u.find_spec(m) is None for m in ('torch', 'ray', 'optimum')]]))",
        ],
        env=env,
        cwd=tmp_path,
    )
    module, demo_data, absent = json.loads(probe.stdout)
    site = str(venv / "lib")
    assert module.startswith(site), f"imported {module}, not the installed wheel"
    assert demo_data.startswith(site) and demo_data.endswith("irde_onnx/demo_data")
    assert absent == [True, True, True]  # the runtime and serve extra only

    # the container's command, with the volume, interface and port of this machine
    router_dir = shutil.copytree(static_router_dir, tmp_path / "router")
    port = free_port()
    replace = {"/router": str(router_dir), "0.0.0.0": "127.0.0.1", "8000": str(port)}
    argv = [replace.get(a, a) for a in entrypoint()]
    assert argv[0] == "irde" and str(router_dir) in argv and "127.0.0.1" in argv
    argv[0] = str(irde)
    url = f"http://127.0.0.1:{port}"
    with server_process(argv, url, tmp_path / "serve.log", env=env, timeout=120):
        got = httpx.post(f"{url}/route", json={"texts": PROMPTS, "top_k": 2}, timeout=30)
        assert got.status_code == 200, got.text
        want = Router.load(router_dir).route(PROMPTS, top_k=2)
        assert got.json() == json.loads(json.dumps([r.to_dict() for r in want]))

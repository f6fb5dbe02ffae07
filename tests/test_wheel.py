"""The packages as published, and the container's install without a container.

``python -m build`` writes the sdist and builds the wheel from it (so the sdist is complete);
both pass ``twine check --strict``, the sdist holds only what a user needs and the metadata
names the license, URLs and versions. The wheel is installed with the serve extra into a
fresh venv (not editable, as the Dockerfile's ``pip install ".[serve]"``), and the
Dockerfile's ENTRYPOINT runs on 127.0.0.1 with a router folder.

tests/test_docker.py runs the image itself where a docker engine runs; this test runs
everywhere (it needs the package index for the wheel's dependencies, as CI's install does).
"""

from __future__ import annotations

import email
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

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


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """The sdist and the wheel ``python -m build`` builds from it (CI's release build)."""
    import build  # noqa: F401  (the dev extra's; a missing one is a broken install, not a skip)

    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    (sdist,) = out.glob("irde_onnx-*.tar.gz")
    (wheel,) = out.glob("irde_onnx-*.whl")
    return sdist, wheel


def test_sdist_and_wheel_pass_twine_and_carry_what_users_need(dists):
    import twine  # noqa: F401  (the dev extra's)

    sdist, wheel = dists
    run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)])

    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    tops = {n.split("/")[0] for n in names} - {".gitignore"}  # hatchling always adds it
    assert tops == {"irde_onnx", "models", "README.md", "LICENSE", "pyproject.toml", "PKG-INFO"}
    assert "models/demo/train.jsonl" in names and "irde_onnx/py.typed" in names
    assert not [n for n in names if n.endswith((".png", ".pyc")) or "golden" in n], names

    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist())
        meta = email.message_from_bytes(zf.read(meta_name))
    # `pip show` before pip 25.1 reads License (License-Expression shows there as empty)
    assert meta["License"] == "Apache-2.0"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert meta["Requires-Python"] == ">=3.10"
    versions = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.search(r":: 3\.\d+$", c)]
    assert versions == ["3.10", "3.11", "3.12", "3.13"]
    for wanted in ("Development Status", "Operating System", "Intended Audience", "Typing"):
        assert any(c.startswith(wanted) for c in classifiers), wanted


def test_the_wheel_with_the_serve_extra_runs_the_containers_command(
    dists, static_router_dir, tmp_path
):
    wheel = dists[1]
    names = zipfile.ZipFile(wheel).namelist()
    # the demo prompts ride along (pyproject's force-include), the tests and benchmarks do not
    for name in ("train.jsonl", "samples.jsonl"):
        assert f"irde_onnx/demo_data/{name}" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "research/", "js/"))]

    venv = tmp_path / "venv"
    env = without_checkout()
    run([sys.executable, "-m", "venv", str(venv)], env=env)
    python, irde = venv / "bin" / "python", venv / "bin" / "irde"
    # as the Dockerfile installs: every package at the version of docker/constraints.txt
    constraints = ROOT / "docker" / "constraints.txt"
    install = [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), f"{wheel}[serve]"]
    run(install, env=env, cwd=tmp_path)
    frozen = run([str(python), "-m", "pip", "freeze", "--exclude", "irde-onnx"], env=env).stdout
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in constraints.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    unpinned = [
        line
        for line in frozen.splitlines()
        if line.split("==")[0].lower().replace("_", "-") not in pinned
    ]
    assert not unpinned, (
        f"installed but not in {constraints}: {unpinned}; regenerate it (its header)"
    )
    probe = run(
        [
            str(python),
            "-c",
            "import importlib.util as u, json, irde_onnx, irde_onnx.serve\n"
            "from irde_onnx.cli.demo import demo_data_dir\n"
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

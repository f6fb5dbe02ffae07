"""The runtime stays light; the export extra fails with an actionable message."""

import os
import re
import subprocess
import sys

import pytest

from irde_onnx import __version__

from .conftest import ROOT

HEAVY = ("torch", "transformers", "optimum", "sklearn", "onnx")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_without_heavy_packages():
    code = (
        "import sys\n"
        "import irde_onnx\n"
        "from irde_onnx import Router\n"
        "from irde_onnx.runtime import Router, Route\n"
        "import irde_onnx.cli, irde_onnx.data, irde_onnx.learning.statistics\n"
        "import irde_onnx.evaluation.routing, irde_onnx.cli.eval\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_runtime_works_when_heavy_packages_cannot_be_imported(static_router_dir):
    # a None entry in sys.modules makes `import torch` raise ImportError
    code = (
        "import sys\n"
        f"for m in {HEAVY!r}: sys.modules[m] = None\n"
        "from irde_onnx import Router\n"
        f"r = Router.load({str(static_router_dir)!r})\n"
        "print(r.route(['What is 2 + 2?'])[0].expert in r.experts)\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_export_without_its_extra_names_the_install_command():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "try:\n"
        "    import irde_onnx.export\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MissingExtraError")
    assert 'pip install "irde-onnx[export]"' in out.stdout


def test_cli_train_without_extra_exits_2(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "expert": "x"}\n{"text": "b", "expert": "y"}\n')
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from irde_onnx.cli import main\n"
        f"sys.exit(main(['train', '--data', {str(data)!r}, '--out', {str(tmp_path / 'r')!r}]))\n"
    )
    out = _run(code)
    assert out.returncode == 2
    assert "irde-onnx[export]" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_router_opens_with_the_class_docstring_and_readable_defaults():
    code = (
        "import pydoc\n"
        "from irde_onnx import Router\n"
        "print(pydoc.render_doc(Router, renderer=pydoc.plaintext))\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("class Router"))
    assert lines[at + 1].strip(" |").startswith("A loaded router."), lines[at : at + 3]
    assert "object at 0x" not in out.stdout
    assert "wtp: 'float | None' = UNSET" in out.stdout


def test_router_is_not_built_by_calling_the_class():
    from irde_onnx import Router

    with pytest.raises(TypeError, match=r"Router\.load\(path\)"):
        Router()


def test_a_closed_stdout_ends_irde_quietly(toy_router_dir):
    # `irde info r | head` after head left: no traceback, no message, the SIGPIPE status
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "irde_onnx.cli", "info", str(toy_router_dir)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert out.stderr == ""
    assert out.returncode == 141


def test_no_telemetry_warning_when_home_is_not_writable(tmp_path):
    # onnxruntime's telemetry keeps a device id under ~/.cache; a HOME inside a regular file
    # cannot be created even by root, as a container user without a home
    (tmp_path / "file").write_text("")
    # onnxruntime also turns its telemetry off where CI is set, so CI would only see a skip
    unset = ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY", "CI")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["HOME"] = str(tmp_path / "file" / "home")

    def stderr_of(code: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
        )
        assert out.returncode == 0, out.stderr
        return out.stderr

    if "telemetry" not in stderr_of("import onnxruntime"):
        pytest.skip("this onnxruntime build does not warn about telemetry")
    assert stderr_of("import irde_onnx.runtime.session") == ""
    assert stderr_of("from irde_onnx import Router") == ""
    # a choice the user made is kept
    env["ORT_DISABLE_TELEMETRY"] = "0"
    assert "telemetry" in stderr_of("from irde_onnx import Router")


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_image_pins_its_base_and_packages_and_is_labelled():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    text = _dockerfile()
    # an exact Python release (3.11.14), optionally @sha256:..., never a moving 3.11-slim
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    # every package the image installs at an exact version, the build backend included
    assert "PIP_CONSTRAINT=/src/docker/constraints.txt pip install" in text
    assert "COPY docker/constraints.txt" in text
    pins = (ROOT / "docker" / "constraints.txt").read_text()
    for name in ("onnxruntime", "numpy", "tokenizers", "starlette", "uvicorn", "hatchling"):
        assert re.search(rf"^{name}==\S+$", pins, re.M), name
    labels = dict(re.findall(r"(org\.opencontainers\.image\.\w+(?:\.\w+)?)=\"([^\"]*)\"", text))
    for key in ("title", "description", "version", "licenses", "source", "base.name"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert re.search(rf"^ARG VERSION={re.escape(__version__)}$", text, re.M)
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert labels["org.opencontainers.image.source"] == urls["Source"]
    assert all(url.startswith(urls["Source"]) for url in urls.values())

"""The runtime stays light; the export extra fails with an actionable message."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "optimum", "sklearn", "onnx")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_without_heavy_packages():
    code = (
        "import sys\n"
        "import irde_onnx\n"
        "from irde_onnx import Router\n"
        "from irde_onnx.runtime import Router, Route\n"
        "import irde_onnx.cli, irde_onnx.data, irde_onnx.stats\n"
        "import irde_onnx.evaluate, irde_onnx.cli_eval\n"
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

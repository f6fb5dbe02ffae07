"""The serve and distributed extras stay out of the runtime, and fail with the install line."""

import subprocess
import sys

SERVE_AND_RAY = ("ray", "starlette", "uvicorn", "httpx", "prometheus_client", "openai")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_and_cli_do_not_import_the_extras():
    code = (
        "import sys\nimport irde_onnx, irde_onnx.cli, irde_onnx.learning.partial\n"
        "from irde_onnx import Router\n"
        f"print(sorted(m for m in {SERVE_AND_RAY!r} if m in sys.modules))\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_without_its_extra_names_the_install_command(static_router_dir):
    code = (
        "import sys\nsys.modules['uvicorn'] = None\nfrom irde_onnx.cli import main\n"
        f"sys.exit(main(['serve', {str(static_router_dir)!r}]))\n"
    )
    out = _run(code)
    assert out.returncode == 2
    assert 'pip install "irde-onnx[serve]"' in out.stderr
    assert "Traceback" not in out.stderr


def test_ray_engine_without_its_extra_names_the_install_command(static_router_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n')
    code = (
        "import sys\nsys.modules['ray'] = None\nfrom irde_onnx.cli import main\n"
        f"sys.exit(main(['experts', 'add', {str(static_router_dir)!r}, 'x', '--data', "
        f"{str(data)!r}, '--engine', 'ray']))\n"
    )
    out = _run(code)
    assert out.returncode == 2
    assert 'pip install "irde-onnx[distributed]"' in out.stderr
    assert "Traceback" not in out.stderr

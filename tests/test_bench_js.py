"""benchmarks/js_hosts.py: the Python side of its measurements (the Node side runs in js/)."""

import hashlib
import importlib.util
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.fixture(scope="module")
def js_hosts():
    path = ROOT / "benchmarks" / "js_hosts.py"
    spec = importlib.util.spec_from_file_location("bench_js_hosts", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_id_digest_is_what_the_node_worker_computes(js_hosts):
    ids = [101, 7592, 2088, 102]
    assert js_hosts.id_digest(ids) == hashlib.sha1(b"101,7592,2088,102").hexdigest()
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    node = subprocess.run(
        ["node", "-e", "const c=require('node:crypto');"
         "process.stdout.write(c.createHash('sha1').update([101,7592,2088,102].join(',')).digest('hex'))"],
        capture_output=True, text=True, check=True)
    assert node.stdout == js_hosts.id_digest(ids)


def test_python_worker_times_every_prompt(js_hosts, static_router_dir):
    spec = {"router": str(static_router_dir), "threads": 1, "warmup": 1,
            "prompts": {"16": ["Solve 3x + 5 = 20", "What is a tort?"]}}
    got = js_hosts.python_worker(spec)
    assert len(got["latency"]["16"]) == 2
    assert all(t > 0 for t in got["latency"]["16"])
    assert got["load_ms"] > 0 and got["rss_mb"] > 0

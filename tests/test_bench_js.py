"""benchmarks/js_hosts.py: the Python side of its measurements (the Node side runs in js/)."""

import hashlib
import importlib
import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="module")
def js_hosts():
    return importlib.import_module("benchmarks.js_hosts")


def test_id_digest_is_what_the_node_worker_computes(js_hosts):
    ids = [101, 7592, 2088, 102]
    assert js_hosts.id_digest(ids) == hashlib.sha1(b"101,7592,2088,102").hexdigest()
    if shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: CI needs it (see .ci/run)")
        pytest.skip("node is not installed")
    node = subprocess.run(
        [
            "node",
            "-e",
            "const c=require('node:crypto');"
            "process.stdout.write(c.createHash('sha1').update([101,7592,2088,102].join(',')).digest('hex'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert node.stdout == js_hosts.id_digest(ids)


def test_python_worker_times_every_prompt(js_hosts, static_router_dir):
    spec = {
        "router": str(static_router_dir),
        "threads": 1,
        "warmup": 1,
        "prompts": {"16": ["Solve 3x + 5 = 20", "What is a tort?"]},
    }
    got = js_hosts.python_worker(spec)
    assert len(got["latency"]["16"]) == 2
    assert all(t > 0 for t in got["latency"]["16"])
    assert got["load_ms"] > 0 and got["rss_mb"] > 0


def test_report_holds_every_figure(js_hosts):
    import argparse

    conf = [
        {
            "router": "int8",
            "backend": "wasm",
            "n": 3,
            "max_diff": 0.03,
            "flips": 1,
            "flip_margins": [0.01],
        },
        {
            "router": "static",
            "backend": "node",
            "n": 3,
            "max_diff": 0.0,
            "flips": 0,
            "flip_margins": [],
            "id_mismatches": 0,
            "id_prompts": 5,
            "tokenize_s_js": 1.0,
            "tokenize_s_py": 2.0,
        },
    ]
    sweep = {
        "n": 10,
        "differ": 2,
        "categories": {"Mn": 2},
        "examples": ["U+0300"],
        "unicode_python": "14.0.0",
    }
    lat = {"16": [0.001, 0.002], "64": [0.004], "256": [0.008]}
    speed = {
        "int8|Python (onnxruntime)": {
            "latency": lat,
            "load_ms": 1,
            "import_ms": 2,
            "first_route_ms": 3,
            "rss_mb": 4,
        }
    }
    sizes = {
        "npm": {
            "bytes": 2**20,
            "install_s": 1,
            "ort_node_other_platforms": 0,
            "browser_assets": 2**20,
        },
        "python": {"bytes": 2**21, "install_s": 3},
    }
    md = js_hosts.report(conf, sweep, speed, sizes, argparse.Namespace(seed=0), 2)
    assert "**0 mismatches** over all 5 prompts" in md
    assert "| int8 | onnxruntime-web (wasm) | 3.00e-02 | 1 / 3 | 0.0100 |" in md
    assert "**2** get other ids" in md
    assert (
        "| int8 | Python (onnxruntime) | 1.50 / 1.99 | 4.00 / 4.00 | 8.00 / 8.00 | 3 | 3 | 4 |"
    ) in md

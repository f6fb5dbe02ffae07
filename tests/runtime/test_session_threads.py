"""Default intra-op threads follow the cgroup's CPU limit (a container's --cpus)."""

from __future__ import annotations

import os

import pytest

from irde_onnx.runtime import session
from irde_onnx.runtime.session import cgroup_cpu_limit, default_threads, session_options


def write(root, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # v2: --cpus 1.5
        ({"cpu.max": "max 100000\n"}, None),  # v2: no limit
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1: none
        ({"cpu.max": "garbage"}, None),
        ({}, None),  # no cgroup files (macOS, Windows)
    ],
)
def test_cgroup_cpu_limit_reads_v1_and_v2(tmp_path, files, limit):
    for name, text in files.items():
        write(tmp_path, name, text)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_default_threads_round_down_and_never_exceed_the_cores(tmp_path):
    cores = len(os.sched_getaffinity(0))
    write(tmp_path, "cpu.max", "50000 100000")
    assert default_threads(tmp_path) == 1  # half a CPU: one thread
    write(tmp_path, "cpu.max", f"{(cores + 8) * 100000} 100000")
    assert default_threads(tmp_path) == cores
    write(tmp_path, "cpu.max", "max 100000")
    assert default_threads(tmp_path) is None


def test_a_session_without_threads_takes_the_cgroup_limit(tmp_path, monkeypatch):
    write(tmp_path, "cpu.max", "100000 100000")  # --cpus 1
    monkeypatch.setattr(session, "CGROUP_ROOT", tmp_path)
    assert session_options(None).intra_op_num_threads == 1
    if len(os.sched_getaffinity(0)) >= 2:
        assert session_options(2).intra_op_num_threads == 2  # given threads win
    write(tmp_path, "cpu.max", "max 100000")
    assert session_options(None).intra_op_num_threads == 0  # 0: onnxruntime decides

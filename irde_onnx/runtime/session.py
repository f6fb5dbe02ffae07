"""onnxruntime sessions: options, providers and the head override.

The runtime imports onnxruntime here only (``router.py`` takes ``ort`` from this module), so
the telemetry check below runs before onnxruntime starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

# onnxruntime's own opt-out: no telemetry, device id or offline cache (read at its import)
TELEMETRY_OPT_OUT = "ORT_DISABLE_TELEMETRY"


def telemetry_cache_writable(env: Mapping[str, str]) -> bool:
    """True when onnxruntime can keep its telemetry device id where it looks for it.

    onnxruntime (1.2x and later on Linux and macOS) keeps it in
    ``$XDG_CACHE_HOME`` (else ``$HOME/.cache``) ``/Microsoft/DeveloperTools/.onnxruntime``.
    """
    base = env.get("XDG_CACHE_HOME") or (
        os.path.join(env["HOME"], ".cache") if env.get("HOME") else ""
    )
    if not base:
        return False
    path = Path(base, "Microsoft", "DeveloperTools", ".onnxruntime")
    while True:  # the first existing folder on the way must be writable
        try:
            is_dir = path.is_dir()
            if is_dir or path.exists():
                return is_dir and os.access(path, os.W_OK | os.X_OK)
        except OSError:  # a folder on the way cannot be searched (another user's HOME)
            return False
        if path.parent == path:
            return False
        path = path.parent


def quiet_telemetry(env: MutableMapping[str, str] = os.environ) -> None:
    """Opt out of onnxruntime's telemetry when it could not keep its device id anyway.

    Without a writable cache folder (a container user without a home, a read-only HOME)
    onnxruntime prints a coloured warning at import ("Failed to persist telemetry device ID;
    using an in-memory identifier"), before any of its logging settings can apply. Its
    opt-out, ``ORT_DISABLE_TELEMETRY=1``, avoids it. A value the user set is kept.
    """
    if TELEMETRY_OPT_OUT not in env and not telemetry_cache_writable(env):
        env[TELEMETRY_OPT_OUT] = "1"


quiet_telemetry()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from irde_onnx.errors import InvalidInputError  # noqa: E402
from irde_onnx.store.config import HEAD_B, HEAD_W  # noqa: E402

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_ints(path: Path) -> list[int] | None:
    """The whitespace-separated integers of a cgroup file; None if absent or not integers."""
    try:
        return [int(v) for v in path.read_text().split()]
    except (OSError, ValueError):
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit of this process's cgroup in CPUs (``docker run --cpus``); None: no limit.

    cgroup v2: ``cpu.max`` holds ``"<quota> <period>"`` or ``"max <period>"``; cgroup v1:
    ``cpu.cfs_quota_us`` (-1: no limit) and ``cpu.cfs_period_us`` under ``cpu/`` (or
    ``cpu,cpuacct/``). In a container the cgroup namespace puts its own cgroup at ``root``.
    """
    try:
        v2 = (root / "cpu.max").read_text().split()
    except OSError:
        v2 = None
    if v2 is not None:
        if len(v2) != 2 or v2[0] == "max":
            return None
        try:
            quota, period = int(v2[0]), int(v2[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    for folder in ("cpu", "cpu,cpuacct"):
        quota = _read_ints(root / folder / "cpu.cfs_quota_us")
        period = _read_ints(root / folder / "cpu.cfs_period_us")
        if quota and period and len(quota) == len(period) == 1:
            if quota[0] > 0 and period[0] > 0:
                return quota[0] / period[0]
            return None
    return None


def default_threads(root: Path | None = None) -> int | None:
    """Intra-op threads when none are given: the cgroup's CPU limit, rounded down, at least 1.

    onnxruntime alone starts one thread per core of the host, so a container limited to
    2 CPUs on a 64-core host would run 64 threads and be throttled. None (no limit, or no
    cgroup files): onnxruntime decides, as before.
    """
    limit = cgroup_cpu_limit(CGROUP_ROOT if root is None else root)
    if limit is None:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(int(limit), cores or 1))


def session_options(threads: int | None) -> ort.SessionOptions:
    """Options for a routing session; ``threads`` bounds intra-op threads.

    None: the cgroup's CPU limit when there is one (:func:`default_threads`), else
    onnxruntime's default (one thread per core).
    """
    opts = ort.SessionOptions()
    if threads is None:
        threads = default_threads()
    if threads is not None:
        if int(threads) < 1:
            raise InvalidInputError(f"threads must be >= 1 or None, got {threads}")
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def check_providers(providers: Sequence[str] | None) -> list[str]:
    """The providers to use, CPU by default; raise listing what is available."""
    wanted = list(providers) if providers else list(DEFAULT_PROVIDERS)
    available = ort.get_available_providers()
    unknown = [p for p in wanted if p not in available]
    if unknown:
        raise InvalidInputError(
            f"execution provider(s) {unknown} are not available; available: {available}"
        )
    return wanted


def inline_external(graph: bytes, files: Mapping[str, bytes]) -> bytes:
    """``graph`` with every tensor stored in ``files`` (``{file name: bytes}``) put inline."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load_from_string(graph)
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            info = ExternalDataInfo(tensor)
            data = files[info.location]
            start = int(info.offset or 0)
            end = len(data) if info.length is None else start + int(info.length)
            tensor.raw_data = bytes(data[start:end])
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    return model.SerializeToString()


def open_session(
    graph: str | os.PathLike | bytes,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    head: tuple[np.ndarray, np.ndarray] | None = None,
    external: str | os.PathLike | Mapping[str, bytes] | None = None,
) -> ort.InferenceSession:
    """Open ``graph`` (a file or its bytes); ``head=(W, b)`` replaces the head initializers.

    The replacement arrays must outlive the session (onnxruntime keeps a reference to their
    memory), so they are attached to the returned session object.
    ``external``: for graph bytes, where their external tensors live: a folder, or
    ``{file name: bytes}``.
    """
    opts = session_options(threads)
    keep: list[object] = []
    replaced: list[tuple[str, np.ndarray]] = []
    if head is not None:
        w, b = head
        replaced += [(HEAD_W, np.asarray(w, np.float32)), (HEAD_B, np.asarray(b, np.float32))]
    for name, arr in replaced:
        buffer = np.ascontiguousarray(arr)
        value = ort.OrtValue.ortvalue_from_numpy(buffer)  # no copy: keep buffer alive
        opts.add_initializer(name, value)
        keep += [buffer, value]
    if isinstance(external, Mapping) and isinstance(graph, bytes):
        # onnxruntime reads external files from memory only since 1.24 (no wheel for
        # Python 3.10): the tensors are put back inline, which every version opens
        graph = inline_external(graph, external)
    elif external is not None:
        opts.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(external)
        )
    source = graph if isinstance(graph, bytes) else str(graph)
    sess = ort.InferenceSession(source, sess_options=opts, providers=check_providers(providers))
    sess._irde_head_values = keep  # noqa: SLF001 - keep the buffers alive with the session
    return sess

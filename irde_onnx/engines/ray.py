"""Training statistics on a Ray cluster (``pip install "irde-onnx[distributed]"``).

Ray Data splits the rows into one partition per worker; each worker is an actor that holds
one onnxruntime session of the router's own graph (the folder's files are shipped through
the object store, so workers need no shared disk) and turns its partition into
:class:`~irde_onnx.learning.partial.PartialStats`. The driver adds the partial statistics and
solves the head once. Moments add exactly, so the result equals a single-process run up to
float64 summation order (features of int8 routers are computed one prompt per call, so they
do not depend on how the rows are split).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from irde_onnx._progress import Progress
from irde_onnx.arguments import check_texts
from irde_onnx.errors import InvalidInputError, MissingExtraError, RouterChangedError
from irde_onnx.learning.partial import PartialStats, StatsPlan, rows_statistics
from irde_onnx.learning.statistics import MAX_TARGET, RouterStats, bad_target_row
from irde_onnx.runtime.router import Router
from irde_onnx.store.config import (
    CONFIG_FILE,
    DATA_FILE,
    TOKENIZER_FILE,
    RouterConfig,
    expert_name_problem,
)

PARTITION_BATCH = 256  # rows a worker encodes between additions


def require_ray() -> Any:
    """Import ray, or raise an ImportError that names the install command."""
    if find_spec("ray") is None or find_spec("ray.data") is None:
        raise MissingExtraError(
            'the ray engine needs Ray 2.x with Ray Data: pip install "irde-onnx[distributed]"'
        )
    import ray

    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, initialised at ``address`` (None: a local instance) unless it already is.

    A session started here is shut down on exit; one the caller started is left running.
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, logging_level="warning")
        except ConnectionError as exc:
            raise InvalidInputError(
                f"cannot connect to the Ray cluster at {address}: {exc}; "
                "check --address (e.g. ray://head:10001 or auto)"
            ) from exc
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def quiet_ray_data() -> None:
    """No Ray Data progress bars (this process's Ray Data context)."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False


def folder_files(root: str | os.PathLike) -> dict[str, bytes]:
    """The bytes of the router generation in ``root``: ``router.json`` and the files it names.

    Read without the folder's lock; if another process commits a new generation meanwhile
    (``router.json`` changed), the files are read again, so the copy is one generation.
    """
    root = Path(root)
    for _ in range(10):
        manifest = (root / CONFIG_FILE).read_bytes()
        config = RouterConfig.from_json(manifest, str(root / CONFIG_FILE))
        names = (config.graph_file, config.stats_file, DATA_FILE, TOKENIZER_FILE)
        try:
            files = {name: (root / name).read_bytes() for name in names}
        except FileNotFoundError:
            files = None
        if (root / CONFIG_FILE).read_bytes() == manifest and files is not None:
            return {CONFIG_FILE: manifest, **files}
    raise RouterChangedError(f"{root} changes faster than it can be read; try again")


class StatsWorker:
    """A Ray actor's state: the router (one onnxruntime session) rebuilt from its files."""

    def __init__(self, files: dict[str, bytes], threads: int | None = 1) -> None:
        quiet_ray_data()
        self._dir = tempfile.mkdtemp(prefix="irde-ray-")
        for name, data in files.items():
            (Path(self._dir) / name).write_bytes(data)
        self.router = Router.load(self._dir, threads=threads)

    def statistics(self, shard: Any, plan: StatsPlan, batch_size: int | None) -> PartialStats:
        """The partial statistics of one Ray Data partition (rows: text, y, fold)."""
        total = PartialStats.zeros(plan)
        for batch in shard.iter_batches(batch_size=PARTITION_BATCH, batch_format="numpy"):
            texts = [str(t) for t in batch["text"]]
            y = np.asarray(np.stack(list(batch["y"])), dtype=np.float64)
            total = total + rows_statistics(self.router, plan, texts, y, batch["fold"], batch_size)
        return total

    def close(self) -> None:
        """Remove the worker's copy of the router."""
        shutil.rmtree(self._dir, ignore_errors=True)


def ray_statistics(
    router_dir: str | os.PathLike,
    plan: StatsPlan,
    texts: Sequence[str],
    y: np.ndarray,
    fold: np.ndarray,
    batch_size: int | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = 1,
    progress: bool = False,
) -> PartialStats:
    """The statistics of all rows, computed by Ray actors and added here.

    Args:
        router_dir: the router whose graph encodes the rows (its files go to every worker).
        plan: what to accumulate.
        texts: the prompts.
        y: targets, shape (n, plan.n_experts).
        fold: cross-validation fold of each row.
        batch_size: prompts per onnxruntime call on the workers (default: the router's).
        address: Ray cluster address; None starts (and stops) a local instance.
        workers: actors, one partition each (default: the cluster's CPUs).
        threads: onnxruntime intra-op threads per actor.
        progress: report finished partitions on stderr.

    """
    texts = check_texts(texts)
    y = np.asarray(y, dtype=np.float64).reshape(len(texts), plan.n_experts)
    fold = np.asarray(fold, dtype=np.int64).reshape(len(texts))
    if not texts:
        return PartialStats.zeros(plan)
    with ray_session(address) as ray:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = min(workers, len(texts))
        quiet_ray_data()
        rows = [{"text": t, "y": y[i], "fold": int(fold[i])} for i, t in enumerate(texts)]
        shards = ray.data.from_items(rows).split(workers, equal=False)
        files = ray.put(folder_files(router_dir))
        actor = ray.remote(num_cpus=1)(StatsWorker)
        pool = [actor.remote(files, threads) for _ in range(workers)]
        sizes = {}
        pending = []
        for worker, shard in zip(pool, shards, strict=True):
            ref = worker.statistics.remote(shard, plan, batch_size)
            sizes[ref] = shard.count()
            pending.append(ref)
        total = PartialStats.zeros(plan)
        try:
            with Progress(len(texts), f"encoding on {workers} Ray workers", progress) as bar:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    total = total + ray.get(done[0])
                    bar.update(sizes[done[0]])
        finally:
            ray.get([w.close.remote() for w in pool])
            for w in pool:
                ray.kill(w)
        return total


def ray_add_expert(
    router: Router,
    name: str,
    texts: Sequence[str],
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = 1,
    progress: bool = False,
    cost: float | None = None,
) -> None:
    """:meth:`Router.add_expert`, with the new expert's prompts encoded by Ray workers.

    The expert's moments are computed on the cluster, wrapped as statistics of one expert
    and merged into the router (:meth:`Router.merge_stats`), which re-solves and swaps the
    head: the same result as ``router.add_expert(name, texts, scores)``.
    """
    problem = expert_name_problem(name)
    if problem:
        raise InvalidInputError(f"the expert name {name!r} {problem}")
    if name in router.experts:
        raise InvalidInputError(
            f"expert {name!r} already exists; remove it first or choose "
            f"another name (experts: {router.experts})"
        )
    texts = check_texts(texts)
    if not texts:
        raise InvalidInputError(f"no texts given for expert {name!r}")
    router.policy.with_expert(name, cost)  # a missing or unwanted cost fails before encoding
    if scores is None:
        if router.config.target == "score":
            raise InvalidInputError(
                "this router was trained on per-expert scores: add the expert with scores "
                "for its prompts"
            )
        y = np.ones((len(texts), 1))
    else:
        try:
            y = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"scores must be numbers: {exc}") from exc
        if y.shape[0] != len(texts):
            raise InvalidInputError(
                f"got {y.shape[0]} scores for {len(texts)} texts; give one score per text"
            )
        row = bad_target_row(y[:, 0])
        if row is not None:
            raise InvalidInputError(
                f"scores[{row}] = {y[row, 0]!r} is not a finite number of magnitude at most "
                f"{MAX_TARGET:g}"
            )
    plan = StatsPlan.for_router(router, "score", 1, 0)
    partial = ray_statistics(
        router.path,
        plan,
        texts,
        y,
        np.zeros(len(texts), np.int64),
        address=address,
        workers=workers,
        threads=threads,
        progress=progress,
    )
    rows = partial.pool
    assert rows is not None
    current = router.stats
    new = RouterStats.empty(current.dim, diagonal=current.diagonal, fingerprint=current.fingerprint)
    new.append(
        name,
        "pooled" if scores is None else "own",
        rows,
        rows.sum_xy[:, 0],
        rows.sum_y[0],
        rows.sum_yy[0],
    )
    router.merge_stats(new, costs=None if cost is None else {name: cost})


__all__ = [
    "StatsWorker",
    "folder_files",
    "ray_add_expert",
    "ray_session",
    "ray_statistics",
    "require_ray",
]

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any

import numpy as np

from irde_onnx._progress import Progress
from irde_onnx.arguments import check_texts
from irde_onnx.errors import InvalidInputError, MissingExtraError
from irde_onnx.learning.partial import PartialStats, StatsPlan, rows_statistics
from irde_onnx.runtime.editor import RouterEditor
from irde_onnx.runtime.router import Router
from irde_onnx.store.folder import generation_files, generation_from_files

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


class StatsWorker:
    """A Ray actor's state: the router (one onnxruntime session) opened from its files."""

    def __init__(self, files: dict[str, bytes], threads: int | None = 1) -> None:
        quiet_ray_data()
        self.router = Router.open(generation_from_files(files), threads)

    def statistics(self, shard: Any, plan: StatsPlan, batch_size: int | None) -> PartialStats:
        """The partial statistics of one Ray Data partition (rows: text, y, fold)."""
        total = PartialStats.zeros(plan)
        for batch in shard.iter_batches(batch_size=PARTITION_BATCH, batch_format="numpy"):
            texts = [str(t) for t in batch["text"]]
            y = np.asarray(np.stack(list(batch["y"])), dtype=np.float64)
            total = total + rows_statistics(self.router, plan, texts, y, batch["fold"], batch_size)
        return total

    def close(self) -> None:
        """Drop the worker's router."""
        del self.router


def ray_statistics(
    router: Router | str | os.PathLike,
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
        router: the router (or its folder) whose graph encodes the rows (its files go to
            every worker).
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
        if isinstance(router, Router):
            source = router.path or router.source  # a router not saved yet: its bytes
        else:
            source = router
        files = ray.put(generation_files(source))
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
    editor: RouterEditor,
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
    """:meth:`RouterEditor.add_expert`, with the new expert's prompts encoded by Ray workers.

    The editor checks the arguments (before Ray starts) and adds the expert's moments,
    computed on the cluster: the same result as ``editor.add_expert(name, texts, scores)``.
    """
    with editor.lock():
        name, texts, y = editor.check_new_expert(name, texts, scores, cost)
        plan = StatsPlan.for_router(editor.router, "score", 1, 0)
        partial = ray_statistics(
            editor.path or editor.router,
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
        editor.add_expert_rows(name, rows, scores is None, cost)


__all__ = [
    "StatsWorker",
    "ray_add_expert",
    "ray_session",
    "ray_statistics",
    "require_ray",
]

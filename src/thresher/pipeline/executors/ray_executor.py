"""The Ray executor: row featurizers through Ray Data `map_batches`, global
near-duplicate clusters through `ray_dedup`.

Each FeatureStore part becomes one Ray Data block and comes back in part
order (`preserve_order`), so the store writes a part as soon as it is done
and a killed job resumes at the first missing part. A featurizer that loads
a model runs in an actor pool (one model load per worker, a GPU per actor
when the cluster has GPUs); the others run as plain tasks. Worker deaths are
retried by Ray (Ray Data's default for system failures; a featurizer that
raises fails the job at once); the features are the same bytes as the local executor's.
"""
from __future__ import annotations

import logging
import os
import pickle
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from thresher.errors import UsageError
from thresher.features.base import Featurizer, checked_table
from thresher.features.execution import Parts

log = logging.getLogger(__name__)

PART = "__thresher_part"
LAZY = "__thresher_lazy_part"
INSTALL_HINT = "the ray executor needs Ray: pip install 'thresher[ray]'"


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None):
    """The `ray` module, initialised: joined to `address` (or `$RAY_ADDRESS`),
    else a local Ray started here (no dashboard, usage stats off). An already
    initialised Ray is reused."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # the core worker's C++ notices, not ours
    ray = _import_ray()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


class RayExecutor:
    """Runs featurizers on a Ray cluster (joined or started on first use)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, block_rows: int | None = None,
                 shard_bytes: int | None = None):
        for name, value in (("num_cpus", num_cpus), ("block_rows", block_rows), ("shard_bytes", shard_bytes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"executor ray: {name} must be a positive integer, got {value!r}")
        self.address, self.num_cpus, self.block_rows, self.shard_bytes = address, num_cpus, block_rows, shard_bytes
        self._ray = None

    def shard_size(self) -> int:
        """Bytes per shard of a pool read on the workers (`thresher.data.shards.SHARD_BYTES` by default)."""
        from thresher.data import shards

        return self.shard_bytes or shards.SHARD_BYTES

    @property
    def ray(self):
        if self._ray is None:
            self._ray = connect(self.address, self.num_cpus)
        return self._ray

    def cluster(self) -> dict[str, float]:
        resources = self.ray.cluster_resources()
        return {"cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)),
                "nodes": len([n for n in self.ray.nodes() if n.get("Alive")])}

    def _window(self) -> int:
        """Items in flight at once: two per CPU (at least 4), so the driver and
        the object store hold one window's inputs and results, never the pool's."""
        return max(4, 2 * int(self.cluster()["cpus"]))

    # -- row featurizers -----------------------------------------------------
    def map_parts(self, featurizer: Featurizer, parts: Parts) -> Iterator[tuple[int, pa.Table]]:
        """Parts go out a window at a time (two per CPU), so the driver and the
        object store hold one window's inputs, never the whole pool's. A model
        featurizer sends all its parts at once: one actor pool, one model load
        per worker (a window would reload the model)."""
        window: list[tuple[int, pa.Table]] = []
        size = float("inf") if featurizer.loads_model else self._window()
        for item in parts:
            window.append(item)
            if len(window) == size:
                yield from self._map_window(featurizer, window)
                window = []
        if window:
            yield from self._map_window(featurizer, window)

    def _map_window(self, featurizer: Featurizer, parts: list[tuple[int, pa.Table]]) -> Iterator[tuple[int, pa.Table]]:
        if parts and not isinstance(parts[0][1], pa.Table):
            yield from self._map_lazy(featurizer, parts)
            return
        sizes = {i: batch.num_rows for i, batch in parts}
        blocks = [batch.append_column(PART, pa.array(np.full(batch.num_rows, i, np.int64)))
                  for i, batch in parts if batch.num_rows]
        for i, batch in parts:
            if not batch.num_rows:  # nothing to send: the typed empty part, here
                yield i, checked_table(featurizer, featurizer.compute(batch), 0)
        if not blocks:
            return
        out = self.ray.data.from_arrow(blocks).map_batches(
            **self._udf(featurizer), batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
        yield from _regroup(out.iter_batches(batch_format="pyarrow", batch_size=None),
                            {i: n for i, n in sizes.items() if n})

    def _map_lazy(self, featurizer: Featurizer, parts: list[tuple[int, Any]]) -> Iterator[tuple[int, pa.Table]]:
        """Parts a worker reads itself (a sharded pool's shards): one Ray Data row
        per part (the pickled reader, a few hundred bytes), one block per row."""
        rows = [{PART: i, LAZY: pickle.dumps(part)} for i, part in parts]
        out = self.ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            **self._udf(featurizer, lazy=True), batch_format="pyarrow", batch_size=1, zero_copy_batch=True)
        yield from _regroup(out.iter_batches(batch_format="pyarrow", batch_size=None),
                            {i: part.num_rows for i, part in parts})

    def _udf(self, featurizer: Featurizer, lazy: bool = False) -> dict[str, Any]:
        if not featurizer.loads_model:
            return {"fn": _compute_lazy if lazy else _compute_block, "fn_kwargs": {"featurizer": featurizer}}
        cluster = self.cluster()
        gpus = 1 if cluster["gpus"] >= 1 else 0
        actors = max(1, int(cluster["gpus"] if gpus else cluster["cpus"]))
        return {"fn": _FeaturizerActor, "fn_constructor_kwargs": {"featurizer": featurizer, "lazy": lazy},
                "compute": self.ray.data.ActorPoolStrategy(min_size=1, max_size=actors), "num_gpus": gpus}

    # -- global near-duplicate clusters ---------------------------------------
    def near_duplicate_clusters(self, texts, checkpoint: str | None = None, **params: Any) -> np.ndarray:
        from thresher.pipeline.executors.ray_dedup import near_duplicate_clusters_ray

        result = near_duplicate_clusters_ray(self.ray, texts, block_rows=self.block_rows,
                                             cpus=self.cluster()["cpus"], checkpoint=checkpoint, **params)
        self.last_near_dup_stats = result.stats
        log.info("near-dup on ray: %s", result.stats)
        return result.dup_cluster

    # -- shards of a pool ------------------------------------------------------
    def map_shards(self, fn, items: list, *args: Any) -> Iterator[Any]:
        """`fn(item, *args)` as Ray tasks (retried when a worker dies), a window
        of two per CPU in flight, results in item order."""
        task = self.ray.remote(max_retries=3)(fn)
        shared = [self.ray.put(a) for a in args]
        window = self._window()
        pending: list = []
        for item in items:
            pending.append(task.remote(item, *shared))
            if len(pending) == window:
                yield self.ray.get(pending.pop(0))
        while pending:
            yield self.ray.get(pending.pop(0))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or os.environ.get("RAY_ADDRESS") or "local",
                **self.cluster()}


def _compute_block(block: pa.Table, featurizer: Featurizer) -> pa.Table:
    """One part's features, carrying the part number along."""
    out = featurizer(block.drop_columns([PART]))
    return out.append_column(PART, block.column(PART))


def _compute_lazy(block: pa.Table, featurizer: Featurizer) -> pa.Table:
    """Parts read here: each row of the block is a pickled reader of one part."""
    out = []
    for i, blob in zip(block.column(PART).to_pylist(), block.column(LAZY).to_pylist()):
        batch = pickle.loads(blob).materialize()
        features = checked_table(featurizer, featurizer.compute(batch), batch.num_rows)
        out.append(features.append_column(PART, pa.array(np.full(features.num_rows, i, np.int64))))
    return pa.concat_tables(out)


class _FeaturizerActor:
    """A featurizer that keeps its model loaded between blocks (the model caches are per process)."""

    def __init__(self, featurizer: Featurizer, lazy: bool = False):
        self.featurizer, self.lazy = featurizer, lazy

    def __call__(self, block: pa.Table) -> pa.Table:
        return (_compute_lazy if self.lazy else _compute_block)(block, self.featurizer)


def _regroup(batches, sizes: dict[int, int]) -> Iterator[tuple[int, pa.Table]]:
    """(part, table) as each part's rows are all in; batches arrive in part order."""
    pending: dict[int, list[pa.Table]] = {}
    have: dict[int, int] = {}
    for batch in batches:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        part_col = table.column(PART).to_numpy()
        for i in np.unique(part_col):
            piece = table.filter(pa.array(part_col == i)).drop_columns([PART])
            i = int(i)
            pending.setdefault(i, []).append(piece)
            have[i] = have.get(i, 0) + piece.num_rows
            if have[i] == sizes[i]:
                yield i, pa.concat_tables(pending.pop(i)).combine_chunks()
    if pending:
        raise UsageError(f"ray returned incomplete feature parts {sorted(pending)}")

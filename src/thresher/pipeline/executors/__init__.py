"""Executors: `local` (this process, the default) and `ray` (Ray Data workers).

`make_executor("ray", address=...)` connects to a cluster (``address``, else
``$RAY_ADDRESS``) or starts a local Ray on demand; `ray` is imported only
here and only then. Use the result with `thresher.features.execution.use_executor`.
"""
from __future__ import annotations

from typing import Any, Mapping

from thresher.errors import UsageError
from thresher.features.execution import LOCAL, Executor, current_executor, use_executor

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Executor", "current_executor", "make_executor", "manifest_fields", "parse_executor",
           "read_pool", "use_executor"]


def parse_executor(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """`"ray"`, `{name: ray, address: auto, num_cpus: 8}` or None as {name, options}."""
    if spec is None:
        return {"name": "local"}
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)} or {{name: ray, address: ...}}, "
                         f"got {spec!r}")
    spec = dict(spec)
    if spec["name"] not in EXECUTORS:
        raise UsageError(f"unknown executor {spec['name']!r}; choose one of {', '.join(EXECUTORS)}")
    allowed = {"local": {"name"}, "ray": {"name", "address", "num_cpus", "block_rows", "shard_bytes"}}[spec["name"]]
    extra = sorted(set(spec) - allowed)
    if extra:
        raise UsageError(f"executor {spec['name']}: unknown option(s) {', '.join(extra)}; "
                         f"allowed: {', '.join(sorted(allowed - {'name'}))}")
    return spec


def make_executor(spec: str | Mapping[str, Any] | None = "local", *, address: str | None = None,
                  num_cpus: int | None = None) -> Executor:
    """The executor for `spec` ("local", "ray" or a mapping with ray options);
    `address`/`num_cpus` given here override the spec's."""
    spec = parse_executor(spec)
    if spec["name"] == "local":
        if address:
            raise UsageError("--ray-address needs --executor ray (a Ray address means nothing to the local executor)")
        return LOCAL
    from thresher.pipeline.executors.ray_executor import RayExecutor

    return RayExecutor(address=address or spec.get("address"), num_cpus=num_cpus or spec.get("num_cpus"),
                       block_rows=spec.get("block_rows"), shard_bytes=spec.get("shard_bytes"))


def manifest_fields(executor: Executor) -> dict[str, Any]:
    """What an executor adds to a manifest: `{"executor": {...}}` for ray, nothing
    for local (so a local run's manifest is the same as before executors existed)."""
    return {} if executor.name == "local" else {"executor": executor.describe()}


def read_pool(path, **options):
    """`read_dataset(path, **options)`'s result. Under a distributed executor a
    JSONL or Parquet file is read shard by shard on its workers
    (`thresher.data.sharded`): the same rows, ids and fingerprint, but only
    the small columns come to this process."""
    from thresher.data.readers import read_dataset
    from thresher.data.sharded import can_shard, open_sharded

    executor = current_executor()
    if executor.name == "local" or not can_shard(path, options.get("file_format")):
        return read_dataset(path, **options)
    return open_sharded(path, executor.map_shards, shard_bytes=executor.shard_size(), **options)

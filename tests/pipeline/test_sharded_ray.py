"""A pool read shard by shard on Ray workers: the whole-file read's rows, ids,
rejects and features; near-dup resumes from the signatures a killed job
saved; a worker killed while reading a shard is retried."""
import json
import os
import time

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("ray")

from thresher.data.readers import read_dataset  # noqa: E402
from thresher.data.sharded import ShardedDataset, open_sharded  # noqa: E402
from thresher.features.execution import use_executor  # noqa: E402
from thresher.features.featurize import featurize  # noqa: E402
from thresher.features.lookup import make  # noqa: E402
from thresher.features.minhash import near_duplicate_clusters  # noqa: E402
from thresher.features.registry import ShardTexts, field_texts  # noqa: E402
from thresher.features.store import FeatureStore, ShardInput  # noqa: E402
from thresher.pipeline.executors import read_pool  # noqa: E402
from thresher.pipeline.executors.ray_dedup import near_duplicate_clusters_ray  # noqa: E402
from tests.helpers import run_cli  # noqa: E402
from tests.pipeline.test_executors_ray import FEATURES, synthetic_rows  # noqa: E402


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("sharded") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(2500, seed=3)))
    return path


def test_a_pool_read_on_ray_is_the_whole_file_read(ray_executor, pool_path, monkeypatch):
    from thresher.data import shards

    monkeypatch.setattr(shards, "SHARD_BYTES", 40_000)
    whole = read_dataset(pool_path).dataset
    with use_executor(ray_executor):
        sharded = read_pool(pool_path).dataset
    assert isinstance(sharded, ShardedDataset) and len(sharded.shards) >= 10
    assert list(sharded.ids) == list(whole.ids) and sharded.fingerprint == whole.fingerprint
    assert sharded.table.column_names == ["id", "task"]  # the texts stayed on the workers
    assert sharded.column("response").to_pylist() == whole.column("response").to_pylist()
    with use_executor(None):
        assert not isinstance(read_pool(pool_path).dataset, ShardedDataset)  # local reads the file whole


def test_features_of_a_sharded_pool_on_ray_are_the_local_ones(ray_executor, pool_path, tmp_path):
    whole = read_dataset(pool_path).dataset
    expected = featurize(whole, FEATURES, store=FeatureStore(tmp_path / "local"))
    sharded = open_sharded(pool_path, ray_executor.map_shards, shard_bytes=50_000).dataset
    store = FeatureStore(tmp_path / "ray")
    with use_executor(ray_executor):
        got = featurize(sharded, FEATURES, store=store)
    assert got.equals(expected)  # row featurizers, the model's actor pool, near-dup and k-means alike
    assert store.stats.parts_computed >= len(sharded.shards)
    again = FeatureStore(tmp_path / "ray")
    assert featurize(whole, FEATURES, store=again).equals(expected) and again.stats.misses == 0


def test_rejects_on_ray_are_the_local_rejects(ray_executor, tmp_path, capsys, monkeypatch):
    from thresher.data import shards

    monkeypatch.setattr(shards, "SHARD_BYTES", 20_000)
    lines = [json.dumps(r) for r in synthetic_rows(1200, seed=4)]
    lines[700] = lines[700][:-5]  # broken JSON in a later shard
    lines[900] = json.dumps({"id": "r3", "instruction": "a repeated id", "output": "x"})
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for name in ("local", "ray"):
        code, _, err = run_cli(["sample", path, "--n", "100", "-o", tmp_path / f"{name}.jsonl", "--on-error", "skip",
                                "--executor", name, "--cache", tmp_path / "cache", "-q"], capsys)
        assert code == 0, err
    for suffix in (".rejects.jsonl", ".jsonl"):
        assert (tmp_path / f"ray{suffix}").read_bytes() == (tmp_path / f"local{suffix}").read_bytes()
    assert len((tmp_path / "ray.rejects.jsonl").read_text().splitlines()) == 2
    code, _, err = run_cli(["sample", path, "--n", "100", "-o", tmp_path / "x.jsonl", "--executor", "ray"], capsys)
    assert code == 2 and "bad.jsonl:701" in err, err


def shard_texts(sharded):
    return [ShardTexts(ShardInput(p, ["prompt", "response"], None, sharded), "both") for p in sharded.shard_parts()]


def test_near_dup_resumes_from_the_signatures_a_killed_job_saved(ray_executor, pool_path, tmp_path):
    data = pool_path.read_bytes()
    copy = tmp_path / "pool.jsonl"
    copy.write_bytes(data)
    sharded = open_sharded(copy, ray_executor.map_shards, shard_bytes=60_000).dataset
    n_blocks = len(sharded.shards)
    whole = read_dataset(copy).dataset
    texts = field_texts(pa.table({"prompt": whole.column("prompt"), "response": whole.column("response")}), "both")
    expected = near_duplicate_clusters(texts, shingle_size=3).dup_cluster
    checkpoint = tmp_path / "signatures"
    copy.write_bytes(data[:-2000])  # the last shard can no longer be read: its task fails, the job with it
    with pytest.raises(Exception, match="was the file changed"):
        near_duplicate_clusters_ray(ray_executor.ray, shard_texts(sharded), shingle_size=3, cpus=2,
                                    checkpoint=str(checkpoint))
    saved = _settled(checkpoint, n_blocks - 1)
    assert 1 <= saved <= n_blocks - 1
    copy.write_bytes(data)
    (checkpoint / sorted(os.listdir(checkpoint))[0]).write_bytes(b"torn")  # a damaged file is signed again
    got = near_duplicate_clusters_ray(ray_executor.ray, shard_texts(sharded), shingle_size=3, cpus=2,
                                      checkpoint=str(checkpoint))
    assert got.stats["blocks"] == n_blocks and got.stats["blocks_resumed"] == saved - 1
    assert np.array_equal(got.dup_cluster, expected) and got.stats["rows_in_clusters"] > 100


def _settled(folder, most: int, wait: float = 30.0) -> int:
    """The number of saved signature files once the failed job's other tasks are done."""
    deadline, last, since = time.time() + wait, -1, time.time()
    while time.time() < deadline:
        count = len(list(folder.glob("signatures-*.npy"))) if folder.exists() else 0
        if count == most:
            return count
        if count != last:
            last, since = count, time.time()
        elif time.time() - since > 3:
            return count
        time.sleep(0.2)
    return last


def test_a_worker_killed_while_reading_a_shard_is_retried(ray_executor, pool_path, tmp_path):
    marker = tmp_path / "died"

    def count_rows(part, marker_path):
        if part.shard.index == 2 and not os.path.exists(marker_path):
            open(marker_path, "w").close()
            os._exit(1)  # the worker process is gone, mid-shard
        return part.dataset().num_rows

    sharded = open_sharded(pool_path, ray_executor.map_shards, shard_bytes=50_000).dataset
    counts = list(ray_executor.map_shards(count_rows, sharded.shard_parts(), str(marker)))
    assert marker.exists()
    assert counts == [s.rows for s in sharded.shards] and sum(counts) == len(sharded)


def test_the_sharded_near_dup_entry_keeps_no_partial_work(ray_executor, pool_path, tmp_path):
    sharded = open_sharded(pool_path, ray_executor.map_shards, shard_bytes=60_000).dataset
    store = FeatureStore(tmp_path)
    with use_executor(ray_executor):
        table = store.get(sharded, make("near_dup"))
    assert ray_executor.last_near_dup_stats["blocks"] == len(sharded.shards)
    assert table.num_rows == len(sharded)
    assert not list(tmp_path.rglob("_partial"))


@pytest.mark.parametrize("method", ["kcenter", "facility"])
def test_two_stage_diversity_picks_the_same_rows_on_ray(ray_executor, method):
    """`partitions`: one Ray task per partition, the picks of the in-process run."""
    from thresher.core.budget import Budget
    from thresher.data.dataset import Dataset
    from thresher.selection.facility import FacilityLocationSelector
    from thresher.selection.kcenter import KCenterSelector

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((30, 16))[rng.integers(0, 30, 6000)] * 3 + rng.standard_normal((6000, 16))).astype(
        np.float32)
    ds = Dataset.from_table(pa.table({"tokens": np.arange(6000) % 5 + 1}))
    make_step = {"kcenter": lambda: KCenterSelector(partitions=6, random_state=2),
                 "facility": lambda: FacilityLocationSelector(partitions=6, random_state=2)}[method]
    local = make_step().select(ds, Budget.parse(n=50), {"embedding": X})
    with use_executor(ray_executor):
        remote = make_step().select(ds, Budget.parse(n=50), {"embedding": X})
    assert np.array_equal(remote.indices, local.indices)
    assert remote.diagnostics == local.diagnostics

"""Executor choice, without Ray: parsing, errors, the local executor."""
import sys

import numpy as np
import pyarrow as pa
import pytest

from thresher.errors import UsageError
from thresher.features.execution import LOCAL, current_executor, use_executor
from thresher.features.minhash import near_duplicate_clusters
from thresher.pipeline.executors import make_executor, parse_executor


def test_local_is_the_default_and_use_executor_restores_it():
    assert current_executor() is LOCAL
    sentinel = type("Fake", (), {"name": "fake"})()
    with use_executor(sentinel):
        assert current_executor() is sentinel
        with use_executor(None):
            assert current_executor() is LOCAL
        assert current_executor() is sentinel
    assert current_executor() is LOCAL


@pytest.mark.parametrize("spec, message", [
    ("spark", "unknown executor 'spark'"),
    ({"name": "ray", "adress": "x"}, "unknown option(s) adress"),
    ({"address": "x"}, "executor must be one of"),
    (3, "executor must be one of"),
])
def test_bad_executor_specs_are_named(spec, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_executor(spec)


def test_ray_options_are_checked_before_ray_starts():
    with pytest.raises(UsageError, match="num_cpus must be a positive integer"):
        make_executor({"name": "ray", "num_cpus": 0})
    with pytest.raises(UsageError, match="shard_bytes must be a positive integer"):
        make_executor({"name": "ray", "shard_bytes": 0})
    assert make_executor({"name": "ray", "shard_bytes": 1024}).shard_size() == 1024


def test_the_local_executor_reads_a_pool_whole(tmp_path):
    from thresher.data.sharded import ShardedDataset
    from thresher.pipeline.executors import read_pool

    path = tmp_path / "p.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n')
    assert not isinstance(read_pool(path).dataset, ShardedDataset)


def test_missing_ray_is_a_usage_error_with_the_install_hint(monkeypatch):
    from thresher.pipeline.executors.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install 'thresher\[ray\]'"):
        RayExecutor().ray  # noqa: B018 - the property connects


def test_local_executor_near_dup_is_minhash_near_duplicate_clusters():
    texts = pa.array(["the cat sat on the mat today", "the cat sat on the mat today!", "", "a dog"] * 3)
    expected = near_duplicate_clusters(texts, threshold=0.7).dup_cluster
    assert np.array_equal(LOCAL.near_duplicate_clusters(texts, threshold=0.7), expected)
    assert LOCAL.describe() == {"name": "local"}


def test_a_ray_address_with_the_local_executor_is_an_error_not_ignored(tmp_path, capsys):
    from tests.helpers import run_cli

    with pytest.raises(UsageError, match="--ray-address needs --executor ray"):
        make_executor("local", address="ray://head:10001")
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "a b c", "output": "d e f"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {pool}\nexecutor: local\nsteps:\n  - dedup: {{kind: exact}}\n"
                      f"output: {tmp_path / 'o.jsonl'}\n")
    code, _, err = run_cli(["run", recipe, "--ray-address", "auto"], capsys)
    assert code == 2 and "--ray-address needs --executor ray" in err
    assert not (tmp_path / "o.jsonl").exists()

"""FeatureStore: cache hits and misses, chunked parts, resume after an interrupt."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import ThresherError, UsageError
from thresher.features.base import Featurizer
from thresher.features.store import FeatureStore, dataset_fingerprint, default_cache_dir

CALLS = {"row": 0, "global": 0}
FAIL = {"at": None}  # raise on this compute call number (simulated interrupt)


class PromptLength(Featurizer):
    """Row featurizer that counts its calls and can be made to fail mid-run."""

    name = "plen"
    version = "1"
    inputs = ("prompt",)
    output_columns = ("plen", "plen_x")

    def __init__(self, scale: int = 2):
        self.scale = scale

    def compute(self, batch):
        CALLS["row"] += 1
        if FAIL["at"] is not None and CALLS["row"] == FAIL["at"]:
            raise RuntimeError("interrupted")
        n = pc.utf8_length(batch.column("prompt"))
        return {"plen": n, "plen_x": pc.multiply(n, self.scale)}


class Rank(Featurizer):
    """Global featurizer: the rank of each row's `plen` (needs every row)."""

    name = "rank"
    version = "1"
    scope = "global"
    inputs = ()
    output_columns = ("rank",)

    def __init__(self, scale: int = 2):
        self.scale = scale

    def depends_on(self):
        return [PromptLength(self.scale)]

    def compute(self, batch):
        CALLS["global"] += 1
        values = batch.column("plen").to_numpy()
        return {"rank": pa.array(np.argsort(np.argsort(values, kind="stable"), kind="stable"))}


@pytest.fixture(autouse=True)
def _reset():
    CALLS.update({"row": 0, "global": 0})
    FAIL["at"] = None


def make_ds(n: int = 50, tag: str = "") -> Dataset:
    prompts = [f"prompt {tag}{'x' * (i % 13)} {i}" for i in range(n)]
    return Dataset.from_records([{"instruction": p, "input": "", "output": "ok"} for p in prompts])


def expected_plen(ds: Dataset) -> list[int]:
    return [len(p) for p in ds.column("prompt").to_pylist()]


def test_miss_then_hit_in_row_order_across_chunks(tmp_path):
    ds = make_ds(50)
    store = FeatureStore(tmp_path, chunk_rows=7)
    table = store.get(ds, PromptLength())
    assert table.column_names == ["plen", "plen_x"]
    assert table.column("plen").to_pylist() == expected_plen(ds)
    assert table.column("plen_x").to_pylist() == [2 * v for v in expected_plen(ds)]
    assert CALLS["row"] == 8  # ceil(50 / 7) parts
    assert (store.stats.hits, store.stats.misses, store.stats.parts_computed) == (0, 1, 8)

    entry = store.entry_dir(ds, PromptLength())
    assert sorted(p.name for p in entry.glob("part-*.parquet")) == [f"part-{i:05d}.parquet" for i in range(8)]
    assert (entry / "_SUCCESS").is_file()
    assert entry.parent.name == ds.fingerprint
    assert entry.name.startswith("plen-1-")

    again = FeatureStore(tmp_path, chunk_rows=7).get(ds, PromptLength())
    assert CALLS["row"] == 8  # nothing recomputed
    assert again.equals(table)


def test_hit_across_store_instances_with_other_chunking(tmp_path):
    ds = make_ds(30)
    FeatureStore(tmp_path, chunk_rows=4).get(ds, PromptLength())
    store = FeatureStore(tmp_path, chunk_rows=1000)  # a finished entry keeps its own chunking
    assert store.get(ds, PromptLength()).column("plen").to_pylist() == expected_plen(ds)
    assert store.stats.hits == 1 and store.stats.misses == 0


def test_resume_after_interrupt_recomputes_only_missing_parts(tmp_path):
    ds = make_ds(50)
    reference = FeatureStore(tmp_path / "ref", chunk_rows=7).get(ds, PromptLength())

    CALLS["row"] = 0
    FAIL["at"] = 4  # parts 0-2 finish, part 3 dies
    store = FeatureStore(tmp_path / "run", chunk_rows=7)
    with pytest.raises(RuntimeError, match="interrupted"):
        store.get(ds, PromptLength())
    entry = store.entry_dir(ds, PromptLength())
    assert sorted(p.name for p in entry.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet",
                                                           "part-00002.parquet"]
    assert not (entry / "_SUCCESS").exists()
    assert not list(entry.glob(".*"))  # no temp file left behind

    CALLS["row"] = 0
    FAIL["at"] = None
    resumed = FeatureStore(tmp_path / "run", chunk_rows=50)  # resume keeps the entry's chunking
    table = resumed.get(ds, PromptLength())
    assert CALLS["row"] == 5  # parts 3..7 only
    assert resumed.stats.parts_resumed == 3 and resumed.stats.parts_computed == 5
    assert table.equals(reference)
    assert (entry / "_SUCCESS").is_file()


def test_params_and_version_make_new_entries(tmp_path):
    ds = make_ds(10)
    store = FeatureStore(tmp_path)
    store.get(ds, PromptLength(2))
    store.get(ds, PromptLength(3))
    assert store.stats.misses == 2
    assert store.entry_dir(ds, PromptLength(2)) != store.entry_dir(ds, PromptLength(3))

    class PromptLengthV2(PromptLength):
        version = "2"

    assert store.entry_dir(ds, PromptLengthV2(2)) != store.entry_dir(ds, PromptLength(2))
    store.get(ds, PromptLengthV2(2))
    assert store.stats.misses == 3


def test_different_data_different_entry(tmp_path):
    store = FeatureStore(tmp_path)
    a, b = make_ds(10, "a"), make_ds(10, "b")
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    assert store.get(a, PromptLength()).column("plen").to_pylist() == expected_plen(a)
    assert store.get(b, PromptLength()).column("plen").to_pylist() == expected_plen(b)
    assert store.stats.misses == 2
    sub = a.take(np.array([3, 1]))
    assert store.get(sub, PromptLength()).column("plen").to_pylist() == expected_plen(sub)


def test_global_featurizer_sees_every_row_and_its_dependency(tmp_path):
    ds = make_ds(40)
    store = FeatureStore(tmp_path, chunk_rows=6)
    ranks = store.get(ds, Rank()).column("rank").to_numpy()
    plen = np.array(expected_plen(ds))
    np.testing.assert_array_equal(ranks, np.argsort(np.argsort(plen, kind="stable"), kind="stable"))
    assert CALLS["global"] == 1 and CALLS["row"] == 7
    entry = store.entry_dir(ds, Rank())
    assert [p.name for p in entry.glob("part-*")] == ["part-00000.parquet"]
    meta = json.loads((entry / "_meta.json").read_text())
    assert meta["scope"] == "global" and meta["depends_on"][0].startswith("plen-1-")
    store.get(ds, Rank())
    assert CALLS["global"] == 1  # hit
    # the dependency's params are part of the key
    assert store.entry_dir(ds, Rank(3)) != entry


def test_damaged_part_is_recomputed(tmp_path):
    ds = make_ds(20)
    store = FeatureStore(tmp_path, chunk_rows=8)
    table = store.get(ds, PromptLength())
    entry = store.entry_dir(ds, PromptLength())
    (entry / "part-00001.parquet").write_bytes(b"not parquet")
    CALLS["row"] = 0
    assert store.get(ds, PromptLength()).equals(table)
    assert CALLS["row"] == 3  # a damaged finished entry is rebuilt


def test_contract_violations_are_reported(tmp_path):
    class WrongColumns(PromptLength):
        name = "wrong"

        def compute(self, batch):
            return {"other": pa.array([1] * batch.num_rows)}

    class WrongLength(PromptLength):
        name = "short"

        def compute(self, batch):
            return {"plen": pa.array([1]), "plen_x": pa.array([1])}

    ds = make_ds(5)
    with pytest.raises(ThresherError, match="declares"):
        FeatureStore(tmp_path).get(ds, WrongColumns())
    with pytest.raises(ThresherError, match="1 values"):
        FeatureStore(tmp_path).get(ds, WrongLength())


def test_empty_dataset(tmp_path):
    ds = Dataset.from_table(pa.table({"prompt": pa.array([], pa.string())}))
    table = FeatureStore(tmp_path).get(ds, PromptLength())
    assert table.num_rows == 0 and table.column_names == ["plen", "plen_x"]
    assert FeatureStore(tmp_path).get(ds, PromptLength()).num_rows == 0


def test_clear(tmp_path):
    a, b = make_ds(5, "a"), make_ds(5, "b")
    store = FeatureStore(tmp_path)
    store.get(a, PromptLength())
    store.get(a, PromptLength(3))
    store.get(b, PromptLength())
    assert store.clear(a.fingerprint) == 2
    assert not store.is_cached(a, PromptLength()) and store.is_cached(b, PromptLength())
    assert store.clear() == 1
    assert store.clear() == 0


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert FeatureStore().root == tmp_path / "env" / "features"
    monkeypatch.delenv("THRESHER_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert FeatureStore().cache_dir == tmp_path / "home" / ".cache" / "thresher"
    with pytest.raises(UsageError, match="chunk_rows"):
        FeatureStore(tmp_path, chunk_rows=0)


def test_fingerprint_fallback_hashes_content():
    class Bare:  # a dataset-like object without a fingerprint
        def __init__(self, table):
            self.table = table

    t1 = pa.table({"prompt": ["a", "b"]})
    t2 = pa.table({"prompt": ["a", "c"]})
    assert dataset_fingerprint(Bare(t1)) == dataset_fingerprint(Bare(pa.table({"prompt": ["a", "b"]})))
    assert dataset_fingerprint(Bare(t1)) != dataset_fingerprint(Bare(t2))
    assert len(dataset_fingerprint(Bare(t1))) == 64

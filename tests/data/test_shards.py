"""A pool read shard by shard (`thresher.data.sharded`) is the whole-file read:
same rows, ids, line numbers, rejects, errors, fingerprint, features and
written subset. These run the shards in this process (the local executor's
`map_shards`); tests/pipeline/test_sharded_ray.py runs them on Ray."""
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.data.readers import read_dataset
from thresher.data.sharded import ShardedDataset, can_shard, open_sharded
from thresher.data.shards import plan_shards
from thresher.data.writers import write_subset
from thresher.errors import InputError
from thresher.features.execution import LOCAL
from thresher.features.featurize import featurize
from thresher.features.lookup import make
from thresher.features.store import FeatureStore


def open_local(path, shard_bytes, **options):
    return open_sharded(path, LOCAL.map_shards, shard_bytes=shard_bytes, **options)


def alpaca_lines(n: int, seed: int = 0, ids: bool = True) -> list[str]:
    """Alpaca rows with repeated contents (so derived ids get occurrence numbers) and a category."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        k = int(rng.integers(0, n // 3 + 1))  # about three rows per content
        row = {"instruction": f"task {k} " + "word " * int(rng.integers(1, 30)), "input": "",
               "output": f"answer {k}", "category": ["a", "b", "c"][k % 3]}
        if k % 7 == 0:
            row["instruction"] = f"task {k}"
        if ids:
            row = {"id": f"r{i}", **row}
        lines.append(json.dumps(row))
    return lines


def assert_same_pool(whole, sharded):
    assert isinstance(sharded, ShardedDataset)
    assert len(sharded) == len(whole)
    assert list(sharded.ids) == list(whole.ids)
    assert np.array_equal(sharded.origin_rows, whole.origin_rows)
    assert sharded.fingerprint == whole.fingerprint
    assert sharded.source == whole.source
    for name in sharded.table.column_names:
        assert sharded.table.column(name).to_pylist() == whole.table.column(name).to_pylist(), name


# -- the plan ----------------------------------------------------------------------
@pytest.mark.parametrize("shard_bytes", [1, 7, 100, 1000, 10**9])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_shards_cut_after_a_newline_and_cover_the_file(tmp_path, shard_bytes, ending):
    body = b"\n".join(line.encode() for line in alpaca_lines(60)) + b"\n\n" + b'{"instruction": "x", "output": "y"}'
    path = tmp_path / "p.jsonl"
    path.write_bytes(body.replace(b"\n", ending.rstrip(b"\n") + b"\n") + ending)
    data = path.read_bytes()
    shards, sha = plan_shards(path, "jsonl", shard_bytes)
    assert sha == hashlib.sha256(data).hexdigest()
    assert shards[0].start == 0 and shards[-1].stop == len(data)
    for a, b in zip(shards, shards[1:]):
        assert a.stop == b.start and data[a.stop - 1:a.stop] == b"\n"
        assert b.before == data[:b.start].count(b"\n")  # the shard's first line number - 1
        assert a.stop - a.start >= min(shard_bytes, len(data))
    assert all(s.stop > s.start for s in shards)
    if shard_bytes == 1:  # a line per shard (a one-byte blank line joins the next)
        assert len(shards) == (62 if ending == b"\r\n" else 61)


def test_parquet_shards_are_runs_of_row_groups(tmp_path):
    table = pa.Table.from_pylist([json.loads(line) for line in alpaca_lines(500)])
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=40)
    shards, sha = plan_shards(path, "parquet", 1)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(s.start, s.stop) for s in shards] == [(g, g + 1) for g in range(13)]
    assert [s.before for s in shards] == list(range(0, 500, 40))
    assert len(plan_shards(path, "parquet", 10**9)[0]) == 1


def test_only_jsonl_and_parquet_files_are_sharded(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "a.csv").write_text("instruction,output\nx,y\n")
    assert can_shard(tmp_path / "a.jsonl") and not can_shard(tmp_path / "a.csv")
    assert not can_shard(tmp_path / "missing.jsonl") and not can_shard(tmp_path)


# -- the pool --------------------------------------------------------------------------
@pytest.mark.parametrize("ids", [True, False])
@pytest.mark.parametrize("shard_bytes", [300, 5000, 10**9])
def test_sharded_read_is_the_whole_file_read(tmp_path, ids, shard_bytes):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(alpaca_lines(400, ids=ids)) + "\n\n")
    whole = read_dataset(path).dataset
    sharded = open_local(path, shard_bytes).dataset
    assert_same_pool(whole, sharded)
    if not ids:
        assert any("-" in i for i in whole.ids)  # repeated contents across shards got occurrence numbers
    assert "instruction" not in sharded.table.column_names  # texts stay in the shards
    assert sharded.fields == whole.fields
    for name in ("prompt", "response", "instruction", "messages"):
        assert sharded.column(name).to_pylist() == whole.column(name).to_pylist(), name  # gathered on demand


@pytest.mark.parametrize("fmt", ["messages", "sharegpt"])
def test_chat_pools_shard_too(tmp_path, fmt):
    key, role, text = ("messages", "role", "content") if fmt == "messages" else ("conversations", "from", "value")
    user, bot = ("user", "assistant") if fmt == "messages" else ("human", "gpt")
    rows = [{key: [{role: user, text: f"q{i % 50}"}, {role: bot, text: f"a{i}"}], "tag": i % 4} for i in range(300)]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole, sharded = read_dataset(path).dataset, open_local(path, 700).dataset
    assert_same_pool(whole, sharded)
    assert sharded.column("prompt").to_pylist() == whole.column("prompt").to_pylist()


def test_parquet_pool(tmp_path):
    table = pa.Table.from_pylist([json.loads(line) for line in alpaca_lines(300)])
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=32)
    sharded = open_local(path, 1).dataset
    assert len(sharded.shards) == 10
    assert_same_pool(read_dataset(path).dataset, sharded)


def bad_pool(tmp_path):
    """Bad rows in later shards: a broken line, a list output, and an id repeated across shards."""
    lines = alpaca_lines(300)
    lines[150] = '{"id": "bad", "instruction": "x", "output": '
    lines[200] = json.dumps({"id": "r200", "instruction": "x", "output": ["a list"]})
    lines[250] = json.dumps({"id": "r3", "instruction": "dup id", "output": "y"})
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_rows_raise_the_whole_file_error(tmp_path):
    path = bad_pool(tmp_path)
    with pytest.raises(InputError) as whole:
        read_dataset(path)
    with pytest.raises(InputError) as sharded:
        open_local(path, 500)
    assert str(sharded.value) == str(whole.value) and "151" in str(whole.value)


def test_bad_rows_are_skipped_as_the_whole_file_read_skips_them(tmp_path):
    path = bad_pool(tmp_path)
    whole, sharded = read_dataset(path, on_error="skip"), open_local(path, 500, on_error="skip")
    assert [r.to_json() for r in sharded.rejects] == [r.to_json() for r in whole.rejects]
    assert len(whole.rejects) == 3 and "dup id" in whole.rejects[-1].raw  # read back from its shard
    assert_same_pool(whole.dataset, sharded.dataset)


def test_empty_inputs_are_refused_as_before(tmp_path):
    for content in (b"", b"\n\n  \n"):
        path = tmp_path / "e.jsonl"
        path.write_bytes(content)
        with pytest.raises(InputError) as whole:
            read_dataset(path)
        with pytest.raises(InputError) as sharded:
            open_local(path, 4)
        assert str(sharded.value) == str(whole.value)


def test_a_file_changed_after_planning_is_reported(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(alpaca_lines(100)) + "\n")
    sharded = open_local(path, 400).dataset
    path.write_text("\n".join(alpaca_lines(100)[:50]) + "\n")
    with pytest.raises(InputError, match="was the file changed"):
        sharded.take(np.arange(100)).in_memory()


# -- the subset and the features -------------------------------------------------------
@pytest.mark.parametrize("out_format", ["jsonl", "json", "csv", "parquet"])
def test_the_subset_is_read_back_from_its_shards_byte_for_byte(tmp_path, out_format):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(alpaca_lines(400, ids=False)) + "\n")
    whole, sharded = read_dataset(path).dataset, open_local(path, 600).dataset
    rows = np.random.default_rng(1).choice(len(whole), 90, replace=False)
    rows = np.r_[np.sort(rows), [5, 5]]  # pool order, and a row taken twice (an oversampled copy)
    extra = {"_weight": np.linspace(1, 2, len(rows))}
    for name, ds in (("whole", whole), ("sharded", sharded)):
        write_subset(ds.take(rows), tmp_path / f"{name}.{out_format}", extra_columns=extra)
    assert (tmp_path / f"whole.{out_format}").read_bytes() == (tmp_path / f"sharded.{out_format}").read_bytes()
    back = sharded.take(rows[::-1])  # any order, and a take of a take
    assert list(back.ids) == list(whole.ids_of(rows[::-1]))
    again = back.take(np.arange(len(rows))[::-1])
    assert again.in_memory().raw.rows() == whole.take(rows).raw.rows()
    assert again.column("response").to_pylist() == whole.take(rows).column("response").to_pylist()


def test_features_of_a_sharded_pool_are_the_whole_pools(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(alpaca_lines(600)) + "\n")
    whole, sharded = read_dataset(path).dataset, open_local(path, 2000).dataset
    names = ["text", "quality", "exact_dup", "near_dup", "tags"]
    expected = featurize(whole, names, store=FeatureStore(tmp_path / "whole"))
    store = FeatureStore(tmp_path / "sharded")
    assert featurize(sharded, names, store=store).equals(expected)
    entry = store.entry_dir(sharded, make("text"))
    meta = json.loads((entry / "_meta.json").read_text())
    assert meta["part_rows"] == [s.rows for s in sharded.shards] and len(meta["part_rows"]) > 3
    assert not list(store.root.rglob("_partial"))  # finished entries keep no partial work
    # same fingerprint, same cache: the whole-file read finds the sharded run's entries
    again = FeatureStore(tmp_path / "sharded")
    assert featurize(whole, names, store=again).equals(expected)
    assert again.stats.misses == 0


def test_input_errors_survive_pickling():
    """A shard's error is raised on a worker and unpickled on the driver, whole."""
    import pickle

    err = pickle.loads(pickle.dumps(InputError("p.jsonl", "bad", line=7, field="output")))
    assert str(err) == "p.jsonl:7: bad" and (err.line, err.field, err.reason) == (7, "output", "bad")


def test_an_empty_subset_keeps_every_column(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(alpaca_lines(50)) + "\n")
    empty = open_local(path, 300).dataset.take(np.zeros(0, np.int64)).in_memory()
    assert len(empty) == 0 and empty.table.column_names == read_dataset(path).dataset.table.column_names


def test_a_subset_in_pool_order_is_written_a_shard_at_a_time(tmp_path, monkeypatch):
    from thresher.data.sharded import ShardedRows

    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(alpaca_lines(400)) + "\n")
    whole, sharded = read_dataset(path).dataset, open_local(path, 600).dataset
    rows = np.sort(np.random.default_rng(2).choice(len(whole), 120, replace=False))
    weights = {"_weight": np.linspace(1, 2, len(rows))}
    write_subset(whole.take(rows), tmp_path / "whole.jsonl", extra_columns=weights)
    monkeypatch.setattr(ShardedRows, "in_memory", lambda self: pytest.fail("read the whole subset at once"))
    write_subset(sharded.take(rows), tmp_path / "sharded.jsonl", extra_columns=weights)
    assert (tmp_path / "whole.jsonl").read_bytes() == (tmp_path / "sharded.jsonl").read_bytes()

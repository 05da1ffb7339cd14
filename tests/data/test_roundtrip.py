"""Every reader, record format and writer: a subset written back equals the original rows."""
import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.data.readers import read_dataset
from thresher.data.writers import write_subset
from tests.data.conftest import ALPACA, FORMATS, MESSAGES, SHAREGPT, write_jsonl


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_jsonl_detects_format_and_roundtrips_bytes(tmp_path, fmt):
    records = FORMATS[fmt]
    src = tmp_path / "in.jsonl"
    # odd spacing and key order must survive byte-for-byte
    src.write_text("".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records))
    ds = read_dataset(src).dataset
    assert ds.source.record_format == fmt
    assert ds.fields == list(records[0].keys()) or set(ds.fields) >= set(records[0].keys())
    out = tmp_path / "out.jsonl"
    write_subset(ds.take(np.arange(len(ds))), out)
    assert out.read_bytes() == src.read_bytes()


def test_jsonl_subset_keeps_original_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    lines = ['{"instruction": "a",  "output": "\\u00e9", "z": 1}', '{"output": "y", "instruction": "b"}',
             '{"instruction":"c","output":"z"}']
    src.write_text("\n".join(lines) + "\n")
    ds = read_dataset(src).dataset
    out = tmp_path / "out.jsonl"
    write_subset(ds.take(np.array([0, 2])), out)
    assert out.read_text().splitlines() == [lines[0], lines[2]]


def test_extra_columns_appended_to_each_object(tmp_path, alpaca_jsonl):
    ds = read_dataset(alpaca_jsonl).dataset
    out = tmp_path / "out.jsonl"
    write_subset(ds.take(np.array([1])), out, extra_columns={"_pi": np.array([0.25]), "_weight": np.array([4.0])})
    row = json.loads(out.read_text())
    assert list(row) == list(ALPACA[1]) + ["_pi", "_weight"]
    assert row["_pi"] == 0.25 and row["_weight"] == 4.0
    # resampling a file that already has _pi replaces, not duplicates
    ds2 = read_dataset(out).dataset
    out2 = tmp_path / "out2.jsonl"
    write_subset(ds2, out2, extra_columns={"_pi": np.array([0.5]), "_weight": np.array([2.0])})
    row2 = json.loads(out2.read_text())
    assert row2["_pi"] == 0.5 and list(row2).count("_pi") == 1


def test_crlf_and_blank_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "a"}\r\n\r\n{"text": "b"}\r\n   \n{"text": "c"}')
    ds = read_dataset(src).dataset
    assert ds.column("response").to_pylist() == ["a", "b", "c"]
    assert ds.origin_rows.tolist() == [1, 3, 5]
    out = tmp_path / "o.jsonl"
    write_subset(ds, out)
    assert out.read_bytes() == b'{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n'


def test_json_array_roundtrip(tmp_path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(SHAREGPT, indent=2))
    ds = read_dataset(src).dataset
    assert ds.source.file_format == "json" and ds.source.record_format == "sharegpt"
    out = tmp_path / "out.json"
    write_subset(ds.take(np.array([1])), out)
    assert json.loads(out.read_text()) == [SHAREGPT[1]]


def test_csv_roundtrip_keeps_text_exactly(tmp_path):
    src = tmp_path / "in.csv"
    rows = [["instruction", "input", "output", "score"], ["Say hi", "", "hi, there\nfriend", "1.50"],
            ["Count", "1,2", "3", "007"]]
    with src.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    ds = read_dataset(src).dataset
    assert ds.source.record_format == "alpaca"
    assert ds.numeric("score").tolist() == [1.5, 7.0]
    out = tmp_path / "out.csv"
    write_subset(ds, out)
    with out.open(newline="") as f:
        assert list(csv.reader(f)) == rows


def test_parquet_roundtrip(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(MESSAGES), src)
    ds = read_dataset(src).dataset
    assert ds.source.record_format == "messages"
    assert ds.ids.tolist() == ["m1", "m2"]
    out = tmp_path / "out.parquet"
    write_subset(ds.take(np.array([1])), out)
    back = pq.read_table(out)
    assert back.schema == pq.read_table(src).schema
    assert back.to_pylist() == pq.read_table(src).to_pylist()[1:]


def test_hf_folder_roundtrip(tmp_path):
    datasets = pytest.importorskip("datasets")
    src = tmp_path / "hf_in"
    datasets.Dataset.from_list(ALPACA).save_to_disk(str(src))
    ds = read_dataset(src).dataset
    assert ds.source.file_format == "hf" and ds.source.record_format == "alpaca"
    out = tmp_path / "hf_out"
    write_subset(ds.take(np.array([0, 2])), out, extra_columns={"_pi": np.array([0.5, 0.5]),
                                                                "_weight": np.array([2.0, 2.0])})
    back = datasets.load_from_disk(str(out))
    assert back.column_names == datasets.load_from_disk(str(src)).column_names + ["_pi", "_weight"]
    rows = back.to_list()
    assert [r["instruction"] for r in rows] == [ALPACA[0]["instruction"], ALPACA[2]["instruction"]]
    assert rows[0]["_pi"] == 0.5


def test_cross_format_jsonl_to_parquet(tmp_path, alpaca_jsonl):
    ds = read_dataset(alpaca_jsonl).dataset
    out = tmp_path / "x.parquet"
    assert write_subset(ds, out) == "parquet"
    assert pq.read_table(out).column("output").to_pylist() == [r["output"] for r in ALPACA]


def test_canonical_columns(tmp_path):
    ds = read_dataset(write_jsonl(tmp_path / "s.jsonl", SHAREGPT)).dataset
    assert ds.column("prompt").to_pylist() == ["Hi", "Be brief.\n\n2+2?\n\n4\n\nand 3+3?"]
    assert ds.column("response").to_pylist() == ["Hello!", "6"]
    assert ds.column("messages").to_pylist()[0] == [{"role": "user", "content": "Hi"},
                                                    {"role": "assistant", "content": "Hello!"}]
    ds = read_dataset(write_jsonl(tmp_path / "a.jsonl", ALPACA)).dataset
    assert ds.column("prompt").to_pylist()[:2] == ["Name a colour.", "Add the numbers.\n\n2 and 3"]


def test_field_map(tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", [{"question": "Why?", "answer": "Because."}])
    ds = read_dataset(src, record_format="alpaca", field_map={"instruction": "question", "output": "answer"}).dataset
    assert ds.column("prompt").to_pylist() == ["Why?"] and ds.column("response").to_pylist() == ["Because."]
    ds = read_dataset(src, field_map={"instruction": "question", "output": "answer"}).dataset
    assert ds.source.record_format == "alpaca"


def test_derived_ids_unique_with_exact_duplicates(tmp_path):
    rows = [ALPACA[0], ALPACA[1], ALPACA[0], ALPACA[0]]
    ds = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows)).dataset
    ids = ds.ids.tolist()
    assert len(set(ids)) == 4
    assert ids[2] == ids[0] + "-1" and ids[3] == ids[0] + "-2"
    # ids don't depend on unrelated rows or on the file format
    again = read_dataset(write_jsonl(tmp_path / "e.jsonl", [ALPACA[1]])).dataset
    assert again.ids[0] == ids[1]


def test_reading_never_modifies_input(tmp_path, alpaca_jsonl):
    before = alpaca_jsonl.read_bytes()
    ds = read_dataset(alpaca_jsonl).dataset
    write_subset(ds, tmp_path / "copy.jsonl")
    assert alpaca_jsonl.read_bytes() == before

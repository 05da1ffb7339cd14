"""`featurize --out`: the same features give the same bytes, computed or read from the cache."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from tests.helpers import run_cli
from thresher.cli.app import main


def _run(args) -> int:
    return run_cli(args, main=main)[0]


def test_featurize_out_is_byte_identical_on_a_cached_rerun(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"q {i}", "output": f"a {i % 3}"}) + "\n" for i in range(30)))
    first, second = tmp_path / "f1.parquet", tmp_path / "f2.parquet"
    base = ["featurize", pool, "--features", "text,quality", "--cache", tmp_path / "cache", "-q", "--out"]
    assert _run(base + [first]) == 0  # computed
    assert _run(base + [second]) == 0  # every feature from the cache
    assert first.read_bytes() == second.read_bytes()
    meta = pq.read_schema(first).metadata
    assert b"thresher.cache" not in meta and b"thresher.features" in meta

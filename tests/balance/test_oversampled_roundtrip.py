"""An oversampled file (copies keep their `id`, marked by `_copy`) reads back with unique ids."""
import json

from thresher.api import read
from thresher.cli.app import main


def test_oversampled_file_reads_back(tmp_path):
    pool = tmp_path / "pool.jsonl"
    rows = [{"id": f"r{i}", "instruction": f"question {i}", "output": "Yes" if i < 2 else "No"} for i in range(8)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "over.jsonl"
    try:
        main(["balance", str(pool), "--by", "output", "--strategy", "oversample", "-o", str(out), "-q"])
    except SystemExit as exc:
        assert exc.code == 0
    ds = read(out)
    assert len(ds) == 12
    ids = list(ds.ids)
    assert len(set(ids)) == 12
    assert sum("#" in i for i in ids) == 4          # the 4 copies of the 2 "Yes" rows
    assert {i.split("#")[0] for i in ids} == {r["id"] for r in rows}


def test_unmarked_duplicate_ids_are_still_an_error(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "instruction": "x", "output": "y"}\n{"id": "a", "instruction": "z", "output": "w"}\n')
    try:
        main(["inspect", str(path)])
    except SystemExit as exc:
        assert exc.code == 2

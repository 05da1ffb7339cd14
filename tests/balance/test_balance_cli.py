"""`thresher balance` end to end: subset + manifest, formats, determinism, errors (exit 2, nothing written)."""
import csv
import json

import numpy as np
import pytest
import typer
from sklearn.utils.class_weight import compute_class_weight
from typer.testing import CliRunner

from tests.helpers import register_command, run_cli
from thresher.cli import balance as balance_cli

CATS = {"a": 60, "b": 25, "c": 9, "d": 2}


@pytest.fixture
def pool(tmp_path):
    cats = np.random.default_rng(0).permutation(np.repeat(list(CATS), list(CATS.values())))
    path = tmp_path / "pool.jsonl"
    with path.open("w") as f:
        for i, c in enumerate(cats.tolist()):
            f.write(json.dumps({"id": f"r{i}", "instruction": f"question {i}", "input": "",
                                "output": f"answer {i}", "category": c}) + "\n")
    return path


@pytest.fixture
def main(monkeypatch):
    """`thresher.cli.app.main` with the balance command registered (until app.py registers it)."""
    register_command(monkeypatch, "balance", balance_cli.register)
    return run_cli


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_oversample_writes_subset_manifest_and_table(tmp_path, pool, main, capsys):
    out = tmp_path / "bal.jsonl"
    code, stdout, err = main(["balance", pool, "--by", "category", "--strategy", "oversample", "--seed", 1,
                              "-o", out], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 4 * 60
    assert {c: sum(r["category"] == c for r in rows) for c in CATS} == {c: 60 for c in CATS}
    originals = [r for r in rows if r["_copy"] == 0]
    assert sorted(r["id"] for r in originals) == sorted(f"r{i}" for i in range(96))  # each original once
    assert all(r["_source_id"] == r["id"] for r in rows)  # copies point at the row they copy
    assert max(r["_copy"] for r in rows if r["category"] == "d") == 29
    man = json.loads((tmp_path / "bal.manifest.json").read_text())
    assert man["command"] == "balance" and man["seed"] == 1 and man["output"]["rows"] == 240
    assert len(man["selected_ids"]) == 240
    dist = {r["stratum"]: r for r in man["diagnostics"]["distribution"]}
    assert dist["d"]["pool"] == 2 and dist["d"]["selected"] == 60 and dist["d"]["share_selected"] == 0.25
    assert "share before" in stdout and "minority/majority" in stdout


def test_derived_ids_in_manifest_and_source_id(tmp_path, main, capsys):
    src = tmp_path / "noid.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i % 7}", "output": f"a{i % 7}", "cat": "x" if i < 9 else "y"})
                           + "\n" for i in range(12)))  # no id column, and repeated contents
    out = tmp_path / "o.jsonl"
    code, _, err = main(["balance", src, "--by", "cat", "--strategy", "oversample", "-o", out, "-q"], capsys)
    assert code == 0, err
    rows = _rows(out)
    man = json.loads((tmp_path / "o.manifest.json").read_text())
    from thresher.api import read

    pool = read(src)
    positions = {rid: i for i, rid in enumerate(pool.ids)}
    assert len(positions) == 12  # repeated contents still get distinct ids
    assert man["selected_ids"] == [r["_source_id"] for r in rows]
    assert [pool.table.column("instruction")[positions[r["_source_id"]]].as_py() for r in rows] == \
        [r["instruction"] for r in rows]


def test_undersample_csv_in_csv_out(tmp_path, pool, main, capsys):
    src = tmp_path / "pool.csv"
    rows = _rows(pool)
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "under.csv"
    code, _, err = main(["balance", src, "--by", "category", "--strategy", "undersample", "--target-ratio", 0.5,
                         "-o", out, "--quiet"], capsys)
    assert code == 0, err
    got = list(csv.DictReader(out.open()))
    counts = {c: sum(r["category"] == c for r in got) for c in CATS}
    assert counts == {"a": 4, "b": 4, "c": 4, "d": 2}  # floor(2 / 0.5) = 4
    assert "_copy" not in got[0] and len({r["id"] for r in got}) == len(got)


def test_weights_column_matches_sklearn(tmp_path, pool, main, capsys):
    out = tmp_path / "w.jsonl"
    code, _, err = main(["balance", pool, "--by", "category", "--strategy", "weights", "-o", out, "--json"], capsys)
    assert code == 0, err
    rows = _rows(out)
    labels = np.array([r["category"] for r in rows])
    classes = np.unique(labels)
    expected = dict(zip(classes, compute_class_weight("balanced", classes=classes, y=labels)))
    assert len(rows) == 96
    np.testing.assert_allclose([r["_weight"] for r in rows], [expected[c] for c in labels], rtol=1e-12)


def test_hybrid_per_class_parquet_and_same_bytes(tmp_path, pool, main, capsys):
    import pyarrow.parquet as pq

    args = ["balance", pool, "--by", "category", "--strategy", "hybrid", "--per-class", "a=10,d=7", "--seed", 3]
    a, b = tmp_path / "a.parquet", tmp_path / "b" / "a.parquet"
    assert main(args + ["-o", a], capsys)[0] == 0
    assert main(args + ["-o", b], capsys)[0] == 0
    assert a.read_bytes() == b.read_bytes()
    man_a, man_b = (json.loads(p.read_text())
                    for p in (tmp_path / "a.manifest.json", tmp_path / "b" / "a.manifest.json"))
    man_a["output"].pop("path"), man_b["output"].pop("path")
    assert man_a == man_b
    table = pq.read_table(a)
    cats = table.column("category").to_pylist()
    assert {c: cats.count(c) for c in CATS} == {"a": 10, "b": 25, "c": 9, "d": 7}
    assert table.schema.field("_copy").type == "int64" and table.schema.field("_source_id").type == "string"
    # --overwrite guard
    code, _, err = main(args + ["-o", a], capsys)
    assert code == 2 and "--overwrite" in err


def test_hf_folder_output_loads_with_datasets(tmp_path, pool, main, capsys):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    code, _, err = main(["balance", pool, "--by", "category", "--strategy", "oversample", "--target-ratio", 0.2,
                         "--output-format", "hf", "-o", out, "--quiet"], capsys)
    assert code == 0, err
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 60 + 25 + 12 + 12
    assert ds.features["_copy"].dtype == "int64" and ds.features["_source_id"].dtype == "string"
    assert sorted(set(ds["_source_id"])) == sorted(f"r{i}" for i in range(96))


def test_diverse_undersampling_runs_end_to_end(tmp_path, pool, main, capsys):
    out = tmp_path / "div.jsonl"
    code, _, err = main(["balance", pool, "--by", "category", "--strategy", "undersample", "--diverse",
                         "--cache", tmp_path / "cache", "-o", out, "--quiet"], capsys)
    assert code == 0, err
    assert len(_rows(out)) == 8


@pytest.mark.parametrize("extra,needle", [
    (["--by", "categry", "--strategy", "oversample"], "no field 'categry'"),
    (["--by", "category", "--strategy", "undersample", "--per-class", '{"zz": 3}'], "unknown class 'zz' in field 'category'"),
    (["--by", "category", "--strategy", "oversample", "--per-class", "a=x"], "class 'a' needs a whole number"),
    (["--by", "category", "--strategy", "oversample", "--target-ratio", 2], "target_ratio"),
    (["--by", "category", "--strategy", "mirror"], "strategy must be one of"),
    (["--by", "category", "--strategy", "oversample", "--per-class", "a=3"], "oversample can only raise"),
])
def test_errors_exit_2_and_write_nothing(tmp_path, pool, main, capsys, extra, needle):
    out = tmp_path / "out" / "x.jsonl"
    code, _, err = main(["balance", pool, *extra, "-o", out], capsys)
    assert code == 2
    assert needle in err and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_register_on_a_fresh_app(tmp_path, pool):
    app = typer.Typer()
    balance_cli.register(app)
    out = tmp_path / "h.jsonl"
    result = CliRunner().invoke(app, [str(pool), "--by", "category", "--strategy", "hybrid", "--target", "9",
                                      "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(_rows(out)) == 36


def test_parse_per_class_forms():
    assert balance_cli.parse_per_class('{"a": 3, "b": 0}') == {"a": 3, "b": 0}
    assert balance_cli.parse_per_class("a=3, x=y=4") == {"a": 3, "x=y": 4}
    assert balance_cli.parse_per_class(None) is None

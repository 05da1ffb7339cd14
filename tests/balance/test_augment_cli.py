"""`thresher augment` on the command line: output, manifest, exit 2 and nothing written on errors."""
import json

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers import register_command, run_cli
from thresher.cli import augment as augment_cli

ROWS = [{"instruction": "Describe a happy walk along the river bank", "input": "", "output": "It was quiet.",
         "category": "walks"},
        {"instruction": "Explain why the quick brown fox jumps over the dog", "input": "", "output": "To play.",
         "category": "animals"},
        {"instruction": "Write a story about a big car and a boat", "input": "", "output": "Once upon a time.",
         "category": "animals"}]


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _app():
    app = typer.Typer()

    @app.callback()
    def _root():  # a group, so the command is invoked by name as in `thresher augment`
        pass

    augment_cli.register(app)
    return app


def _main(argv, monkeypatch):
    """Run through thresher's real entry point (errors -> one line, exit 2)."""
    register_command(monkeypatch, "augment", augment_cli.register)
    return run_cli(argv)[0]


def test_writes_rows_and_manifest(pool, tmp_path):
    out = tmp_path / "aug.jsonl"
    result = CliRunner().invoke(_app(), ["augment", str(pool), "-o", str(out), "--n-aug", "2", "--field", "both",
                                         "--by", "category", "--only-below", "2", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows_augmented"] == 1 and summary["augmented_rows"] == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5
    assert [r["_synthetic"] for r in lines] == [False, False, False, True, True]
    assert {r["category"] for r in lines if r["_synthetic"]} == {"walks"}
    manifest = json.loads((tmp_path / "aug.manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["augment"]["categories"][1]["after"] == 3


def test_human_summary(pool, tmp_path):
    result = CliRunner().invoke(_app(), ["augment", str(pool), "-o", str(tmp_path / "o.jsonl"), "--by", "category"])
    assert result.exit_code == 0, result.output
    assert "augmented 3 of 3 rows" in result.output and "walks" in result.output


@pytest.mark.parametrize("args, message", [
    (["--ops", "sr,zz"], "unknown operation"),
    (["--field", "answer"], "--field must be one of"),
    (["--alpha", "2"], "--alpha"),
    (["--only-below", "3"], "--only-below needs --by"),
    (["--format", "text", "--field", "prompt"], None),
])
def test_bad_options_exit_2_and_write_nothing(pool, tmp_path, monkeypatch, capsys, args, message):
    out = tmp_path / "out" / "aug.jsonl"
    code = _main(["augment", str(pool), "-o", str(out), *args], monkeypatch)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") or "Error" in err
    if message:
        assert message in err
    assert not out.exists() and not (tmp_path / "out" / "aug.manifest.json").exists()


def test_unsupported_format_exits_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "text.jsonl"
    path.write_text('{"text": "A quiet walk by the river"}\n')
    out = tmp_path / "o.jsonl"
    assert _main(["augment", str(path), "-o", str(out), "--field", "prompt"], monkeypatch) == 2
    assert "no prompt" in capsys.readouterr().err and not out.exists()


def test_existing_output_is_not_overwritten(pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.jsonl"
    out.write_text("keep me\n")
    assert _main(["augment", str(pool), "-o", str(out)], monkeypatch) == 2
    assert out.read_text() == "keep me\n" and "--overwrite" in capsys.readouterr().err
    assert _main(["augment", str(pool), "-o", str(out), "--overwrite", "-q"], monkeypatch) == 0
    assert out.read_text() != "keep me\n"

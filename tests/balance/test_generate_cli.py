"""`thresher generate` on the command line, with the LM replaced by a fake."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.balance.test_generate import FakeLM, pool_jsonl
from tests.helpers import register_command, run_cli
from thresher.balance.generate import LMGenerator
from thresher.cli import generate as generate_cli


@pytest.fixture()
def fake_lm(monkeypatch):
    made: list[FakeLM] = []

    def load(cls, path=None, **params):
        made.append(FakeLM())
        made[-1].loaded_with = (path, params)
        return made[-1]

    monkeypatch.setattr(LMGenerator, "load", classmethod(load))
    return made


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    generate_cli.register(app)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the command name
    return app


def run_main(argv: list[str], monkeypatch) -> int:
    """`thresher.cli.app.main` with `generate` registered (whether or not app.py lists it yet)."""
    register_command(monkeypatch, "generate", generate_cli.register)
    return run_cli(argv)[0]


def test_generate_writes_pool_plus_validated_rows_and_reports(tmp_path, app, fake_lm):
    data = pool_jsonl(tmp_path)
    out = tmp_path / "gen.jsonl"
    result = CliRunner().invoke(app, ["generate", str(data), "--by", "category", "--for-below", "5",
                                      "--per-category", "2", "--shots", "2", "--max-new-tokens", "40",
                                      "--seed", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "rate" in result.output and "rejection reason" in result.output and "exact_duplicate" in result.output
    assert "greetings" in result.output and "math" in result.output and "weather" not in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    new = [r for r in rows if r.get("_synthetic")]
    assert len(rows) == 15 + len(new) and 0 < len(new) <= 4
    manifest = json.loads((tmp_path / "gen.manifest.json").read_text())
    assert manifest["method"] == "generate" and manifest["seed"] == 3
    assert manifest["output"]["synthetic_rows"] == len(new)
    assert manifest["params"]["shots"] == 2
    assert fake_lm[0].loaded_with == (None, {"max_new_tokens": 40, "temperature": 0.8, "top_p": 0.95,
                                             "batch_size": 8})


def test_json_summary_and_only_new(tmp_path, app, fake_lm):
    out = tmp_path / "new.jsonl"
    result = CliRunner().invoke(app, ["generate", str(pool_jsonl(tmp_path)), "--by", "category", "--for-below", "4",
                                      "--to", "5", "--only-new", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    (cat,) = summary["categories"]
    assert cat["category"] == "math" and cat["target"] == 2
    assert cat["attempts"] == cat["accepted"] + sum(cat["rejected"].values())
    assert len(out.read_text().splitlines()) == summary["kept"] == cat["kept"]


def test_no_thin_category_exits_0_and_loads_no_model(tmp_path, monkeypatch, capsys):
    def refuse(cls, path=None, **params):
        raise AssertionError("no model should be loaded")

    monkeypatch.setattr(LMGenerator, "load", classmethod(refuse))
    data = pool_jsonl(tmp_path)
    out = tmp_path / "same.jsonl"
    code = run_main(["generate", str(data), "--by", "category", "--for-below", "3", "-o", str(out)], monkeypatch)
    assert code == 0
    assert "nothing to generate" in capsys.readouterr().out
    assert out.read_text() == data.read_text()
    assert json.loads((tmp_path / "same.manifest.json").read_text())["output"]["synthetic_rows"] == 0


@pytest.mark.parametrize("args, message", [
    (["--by", "topic", "--for-below", "5"], "no field 'topic'"),
    (["--by", "category", "--for-below", "5", "--per-category", "1", "--to", "9"], "not both"),
    (["--by", "category", "--for-below", "0"], "for_below"),
])
def test_usage_errors_exit_2(tmp_path, monkeypatch, capsys, fake_lm, args, message):
    code = run_main(["generate", str(pool_jsonl(tmp_path)), *args, "-o", str(tmp_path / "o.jsonl")], monkeypatch)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists() and not fake_lm


def test_text_pool_is_refused(tmp_path, monkeypatch, capsys, fake_lm):
    code = run_main(["generate", str(pool_jsonl(tmp_path, "text")), "--by", "category", "--for-below", "5",
                     "-o", str(tmp_path / "o.jsonl")], monkeypatch)
    assert code == 2 and "'text'" in capsys.readouterr().err


def test_existing_output_needs_overwrite(tmp_path, monkeypatch, capsys, fake_lm):
    out = tmp_path / "o.jsonl"
    out.write_text("keep me\n")
    code = run_main(["generate", str(pool_jsonl(tmp_path)), "--by", "category", "--for-below", "5", "-o", str(out)],
                    monkeypatch)
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n" and not fake_lm

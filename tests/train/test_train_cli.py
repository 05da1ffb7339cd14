"""`thresher train` end to end on a tiny Llama saved to a folder."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers import register_command, run_cli
from thresher.cli import train as train_cli

from .conftest import heavier_rows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_lm):
    model, tok = tiny_lm
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture()
def data_file(tmp_path):
    prompts, answers = heavier_rows(60, seed=4)
    path = tmp_path / "train.jsonl"
    rows = [{"instruction": p, "input": "", "output": a, "task": "heavier"} for p, a in zip(prompts, answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _app() -> typer.Typer:
    app = typer.Typer()
    train_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `train` a named subcommand
    return app


def test_train_writes_adapter_and_metrics(model_dir, data_file, tmp_path):
    out = tmp_path / "adapter"
    args = ["train", str(data_file), "--model", str(model_dir), "--max-steps", "12", "--eval-every", "4",
            "--lr", "0.03", "--threads", "1", "--holdout", "0.25", "--class-weights", "-o", str(out), "--json"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["train_rows"] == 45 and summary["eval_rows"] == 15
    assert [h["step"] for h in summary["history"]] == [0, 4, 8, 12]
    assert summary["best_eval_loss"] < summary["base_eval_loss"]
    m = summary["metrics"]
    assert m["label_set"] == ["No", "Yes"] and sum(v["support"] for v in m["per_class"].values()) == 15
    for name in ("adapter_config.json", "adapter_model.safetensors", "history.json", "train_config.json",
                 "metrics.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["accuracy"] == m["accuracy"]
    assert json.loads((out / "train_config.json").read_text())["config"]["class_weight_power"] == 1.0

    table = CliRunner().invoke(_app(), args[:-1] + ["--overwrite", "--eval", str(data_file), "--holdout", "0"])
    assert table.exit_code == 0, table.output
    assert "eval loss" in table.output and "per class" in table.output and "adapter ->" in table.output


def test_train_refuses_bad_arguments(model_dir, data_file, tmp_path):
    from thresher.errors import OutputExistsError, UsageError

    out = tmp_path / "adapter"
    out.mkdir()
    base = ["train", str(data_file), "--model", str(model_dir), "--max-steps", "2", "--threads", "1"]
    res = CliRunner().invoke(_app(), base + ["-o", str(out)])
    assert isinstance(res.exception, OutputExistsError)
    res = CliRunner().invoke(_app(), base + ["-o", str(tmp_path / "x"), "--eval", str(data_file), "--holdout", "0.2"])
    assert isinstance(res.exception, UsageError) and "not both" in str(res.exception)
    res = CliRunner().invoke(_app(), base + ["-o", str(tmp_path / "x"), "--class-weights", "--label-field", "nope"])
    assert isinstance(res.exception, UsageError) and "nope" in str(res.exception)
    assert not (tmp_path / "x").exists()


def test_main_exits_2_on_user_errors(data_file, tmp_path, capsys, monkeypatch):
    register_command(monkeypatch, "train", train_cli.register)
    assert run_cli(["train", data_file, "--lr", "-1", "-o", tmp_path / "a"])[0] == 2
    assert "lr must be a positive number" in capsys.readouterr().err

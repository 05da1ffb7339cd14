"""`thresher compare | curve | sweep` through typer, on a saved tiny model."""
import json

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers import register_command, run_cli
from thresher.cli import evaluate

from .conftest import heavier_rows

FAST = ["--max-steps", "1", "--batch-size", "8", "--max-length", "64", "--threads", "1", "--lr", "0.01", "-q"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_lm):
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_lm[0].save_pretrained(str(folder))
    tiny_lm[1].save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    p, a = heavier_rows(60, seed=5)
    path = tmp_path_factory.mktemp("data") / "pool.jsonl"
    path.write_text("".join(json.dumps({"instruction": x, "input": "", "output": y, "cat": y}) + "\n"
                            for x, y in zip(p, a)))
    return path


@pytest.fixture()
def cli():
    app = typer.Typer()
    evaluate.register(app)
    runner = CliRunner()
    return lambda args: runner.invoke(app, [str(a) for a in args])


def test_compare_cli_writes_results_and_table(cli, model_dir, pool_file, tmp_path):
    out = tmp_path / "cmp"
    res = cli(["compare", pool_file, "-o", out, "--arms", "full,random@50%,base", "--seeds", "2", "--holdout", "0.2",
               "--model", model_dir, "--label-field", "cat", *FAST])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["kind"] == "compare" and [a["name"] for a in data["arms"]] == ["full", "random@50%", "base"]
    assert abs(data["eval_rows"] - 12) <= 2 and data["eval_rows"] + data["train_rows"] == 60  # duplicates stay together
    assert len(data["arms"][0]["runs"]) == 2
    assert data["command"].startswith("thresher compare ") and "--arms full,random@50%,base" in data["command"]
    assert "random@50%" in (out / "table.txt").read_text()
    # a second run refuses to overwrite
    again = cli(["compare", pool_file, "-o", out, "--model", model_dir, *FAST])
    assert again.exit_code != 0 and "exists" in str(again.exception)


def test_curve_and_sweep_cli(cli, model_dir, pool_file, tmp_path):
    res = cli(["curve", pool_file, "-o", tmp_path / "c", "--fractions", "0.3,0.6,1.0", "--seeds", "1",
               "--n-boot", "50", "--model", model_dir, *FAST])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "c" / "results.json").read_text())["kind"] == "curve"
    res = cli(["sweep", pool_file, "-o", tmp_path / "s", "--grid", "lr=1e-3,1e-2", "--model", model_dir, *FAST])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "s" / "results.json").read_text())
    assert out["kind"] == "sweep" and len(out["trials"]) == 2 and "best" in out


@pytest.fixture()
def main_with_evaluate(monkeypatch):
    """`thresher.cli.app.main` with this module registered (until app.py does it)."""
    register_command(monkeypatch, "compare", evaluate.register)
    return lambda args: run_cli(args)[0]


@pytest.mark.parametrize("arms,message", [("full,random@abc", "random@abc"), ("bag:fullx1", "bag:fullx1"),
                                          ("full,nosuch.jsonl", "nosuch.jsonl")])
def test_bad_arm_spec_exits_2_naming_the_spec(main_with_evaluate, pool_file, tmp_path, capsys, arms, message):
    code = main_with_evaluate(["compare", pool_file, "-o", tmp_path / "x", "--arms", arms])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_sweep_needs_grid_or_random(main_with_evaluate, pool_file, tmp_path, capsys):
    assert main_with_evaluate(["sweep", pool_file, "-o", tmp_path / "s"]) == 2
    assert "--grid or --random" in capsys.readouterr().err

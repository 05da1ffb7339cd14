"""`thresher inspect`: terminal text, --json, --by, and errors (exit 2)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers import register_command, run_cli
from thresher.cli import app as app_module
from thresher.cli import inspect as inspect_cli

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "pool.jsonl"


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A group, so `inspect` stays a subcommand."""

    inspect_cli.register(app)
    return app


def invoke(app, *args):
    return CliRunner().invoke(app, ["inspect", *map(str, args)], catch_exceptions=False)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_demo_terminal_report(app):
    result = invoke(app, DEMO)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "alpaca records (jsonl), 4,647 rows, 7 fields" in out
    assert "category: 32 values, max/min = 131x" in out
    line = next(s for s in out.splitlines() if "tech_support" in s)
    assert "1,050" in line and "22.6%" in line and "█" * 30 in line  # the largest bar fills the width
    health = next(s for s in out.splitlines() if s.strip().startswith("health"))
    assert "0.2%" in health and "█" not in health  # 8 rows: a sliver, not a block
    assert "exact duplicates: 1,290 rows (27.8%)" in out and "near duplicates:" in out
    assert "Suggestions" in out and "thresher balance" in out


def test_json_has_the_profile_keys(app):
    result = invoke(app, DEMO, "--json", "--near-sample", 300, "--seed", 5)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {"schema", "source", "rows", "fields", "lengths", "by", "categories", "duplicates", "near_duplicates",
            "quality", "label_style", "suggestions", "rejected_rows"} <= set(data)
    assert data["rows"] == 4647 and data["rejected_rows"] == 0
    assert data["categories"][0]["counts"][0] == {"value": "tech_support", "count": 1050,
                                                   "share": pytest.approx(1050 / 4647)}
    assert data["near_duplicates"]["sample_rows"] == 300 and data["near_duplicates"]["seed"] == 5


def test_several_by_fields_and_no_category(app, tmp_path):
    rows = [{"instruction": f"question {i}", "output": f"answer {i}", "topic": "ab"[i % 2], "src": "x"}
            for i in range(30)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    out = invoke(app, path, "--by", "topic", "--by", "src").stdout
    assert "topic: 2 values" in out and "src: 1 value" in out
    data = json.loads(invoke(app, path, "--by", "topic,src", "--json").stdout)
    assert data["by"] == ["topic", "src"]
    plain = invoke(app, path).stdout
    assert "no category field" in plain and "--by" in plain


def test_automatic_categories_from_features(app, tmp_path):
    rows = [{"instruction": q, "output": "ok"} for q in ["Translate 'cat' to French.", "Write a poem.",
                                                          "What is 2+2?", "Summarize this text."] * 5]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    data = json.loads(invoke(app, path, "--by", "instruction_type", "--cache", tmp_path / "cache", "--json").stdout)
    assert data["by"] == ["instruction_type"] and data["categories"][0]["classes"] >= 2
    assert sum(c["count"] for c in data["categories"][0]["counts"]) == 20


def test_skipped_rows_are_reported(app, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "c"}\n'
                    '{"instruction": "d", "output": "e"}\n')
    data = json.loads(invoke(app, path, "--on-error", "skip", "--json").stdout)
    assert data["rows"] == 2 and data["rejected_rows"] == 1
    assert "malformed rows were skipped (first: line 2" in data["suggestions"][0]


@pytest.fixture
def main_with_inspect(monkeypatch):
    """`thresher.cli.app.main` with `inspect` registered (a no-op once app.py registers it)."""
    register_command(monkeypatch, "inspect", inspect_cli.register)
    return app_module.main


def run_main(main, args, capsys):
    return run_cli(args, capsys, main)


def test_missing_by_field_exits_2_naming_it(main_with_inspect, capsys):
    code, out, err = run_main(main_with_inspect, ["inspect", DEMO, "--by", "topic"], capsys)
    assert code == 2 and "'topic'" in err and "category" in err and "Traceback" not in err


def test_missing_file_and_bad_sample_exit_2(main_with_inspect, tmp_path, capsys):
    code, _, err = run_main(main_with_inspect, ["inspect", tmp_path / "nope.jsonl"], capsys)
    assert code == 2 and "nope.jsonl" in err
    code, _, err = run_main(main_with_inspect, ["inspect", DEMO, "--near-sample", 0], capsys)
    assert code == 2 and "near_sample" in err


def test_bar_scales_to_peak():
    assert inspect_cli.bar(10, 10, 4) == "████"
    assert inspect_cli.bar(5, 10, 4) == "██"
    assert inspect_cli.bar(1, 1000, 4) == "▏"
    assert inspect_cli.bar(0, 10, 4) == ""
    assert inspect_cli.bar(3, 8, 2) == "▊"  # 6 of 16 eighths

"""`thresher report` and `--report` on sample / select / run."""
import json

import pytest
import typer
import yaml
from typer.testing import CliRunner

from thresher.cli import report as report_cli
from thresher.cli import sample as sample_cli
from thresher.cli import select as select_cli
from thresher.errors import OutputExistsError
from tests.helpers import register_command, run_cli
from tests.report.test_collect import write_pool


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    for module in (report_cli, sample_cli, select_cli):
        module.register(app)
    return app


def invoke(app, args):
    return CliRunner().invoke(app, [str(a) for a in args])


def section_shown(page: str, sec: str) -> bool:
    body = page[page.index(f'<section id="{sec}"'):]
    return "data-absent" not in body[: body.index(">")]


def test_report_command_writes_html_and_pngs(app, tmp_path):
    pool = write_pool(tmp_path / "pool.jsonl", n=90)
    res = invoke(app, ["select", pool, "--method", "quality", "--where", "response_words >= 3", "-o",
                       tmp_path / "q.jsonl", "--cache", tmp_path / "cache", "-q"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "rep" / "q.html"
    res = invoke(app, ["report", tmp_path / "q.manifest.json", "-o", out, "--cache", tmp_path / "cache", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["report"] == str(out) and out.is_file()
    pngs = sorted(p.name for p in (tmp_path / "rep" / "q_figures").iterdir())
    assert pngs == ["01-categories.png", "02-scores.png", "03-embedding.png", "04-funnel.png"]
    assert summary["sections"]["categories"] and not summary["sections"]["compare"]
    res = invoke(app, ["report", tmp_path / "q.manifest.json", "-o", out])
    assert isinstance(res.exception, OutputExistsError)
    (tmp_path / "rep" / "q_figures" / "09-old.png").write_bytes(b"stale")
    res = invoke(app, ["report", tmp_path / "q.manifest.json", "-o", out, "--overwrite", "--by", "task", "-q",
                       "--cache", tmp_path / "cache"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "rep" / "q_figures").iterdir())) == 4  # the stale figure is gone
    assert "Field &#x27;task&#x27; (--by)" in out.read_text()
    res = invoke(app, ["report", tmp_path / "q.jsonl", "-o", tmp_path / "n.html", "--no-figures", "-q",
                       "--cache", tmp_path / "cache"])
    assert res.exit_code == 0 and not (tmp_path / "n_figures").exists()


def test_select_report_is_checked_before_the_subset_is_written(app, tmp_path):
    pool = write_pool(tmp_path / "pool.jsonl", n=90)
    (tmp_path / "r.html").write_text("keep me")
    res = invoke(app, ["select", pool, "--method", "kcenter", "--n", "10", "-o", tmp_path / "k.jsonl",
                       "--report", tmp_path / "r.html", "--cache", tmp_path / "cache"])
    assert isinstance(res.exception, OutputExistsError)
    assert not (tmp_path / "k.jsonl").exists() and (tmp_path / "r.html").read_text() == "keep me"
    res = invoke(app, ["select", pool, "--method", "kcenter", "--n", "10", "-o", tmp_path / "k.jsonl",
                       "--report", tmp_path / "r.html", "--cache", tmp_path / "cache", "--overwrite", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["report"] == str(tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert section_shown(page, "embedding") and section_shown(page, "trace")


def test_sample_report_uses_the_strata_field(app, tmp_path):
    pool = write_pool(tmp_path / "pool.jsonl", n=90)
    res = invoke(app, ["sample", pool, "--design", "stratified", "--by", "task", "--n", "30", "-o",
                       tmp_path / "s.jsonl", "--report", tmp_path / "s.html", "--cache", tmp_path / "cache", "-q"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "s.html").read_text()
    assert "Field &#x27;task&#x27; (--by)" in page
    assert not section_shown(page, "trace") and section_shown(page, "representativeness")


def test_run_report_from_option_and_from_the_recipe(app, tmp_path):
    pool = write_pool(tmp_path / "pool.jsonl", n=90)
    recipe = {"data": str(pool), "seed": 1, "cache": str(tmp_path / "cache"),
              "steps": [{"dedup": {"kind": "exact"}}, {"sample": {"design": "random", "n": 20}}],
              "output": {"path": str(tmp_path / "r.jsonl"), "keep_removed": True},
              "report": str(tmp_path / "from_recipe.html")}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = invoke(app, ["run", tmp_path / "recipe.yaml", "-q"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "from_recipe.html").read_text()
    assert section_shown(page, "trace") and "not drawn by the design" in page
    res = invoke(app, ["run", tmp_path / "recipe.yaml", "--overwrite", "--report", tmp_path / "opt.html", "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "opt.html").is_file()


def test_usage_errors_exit_2_through_the_entry_point(tmp_path, monkeypatch, capsys):
    register_command(monkeypatch, "report", report_cli.register)
    code, _, err = run_cli(["report", tmp_path / "missing.manifest.json", "-o", tmp_path / "r.html"], capsys)
    assert code == 2
    assert "no such file or folder" in err and "Traceback" not in err

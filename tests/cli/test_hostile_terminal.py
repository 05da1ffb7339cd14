"""Every CLI command on a pool whose labels, ids and field names hold rich markup
and terminal escape sequences: no crash, and what is printed shows the data as
written (escaped), never as styling or control sequences."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from thresher.cli.app import main
from thresher.cli.terminal import escape_data, printable, printable_json

MARKUP = "[bold red]ALERT[/bold red]"
CLOSE = "[/]"
ESC = "\x1b[31mred\x1b[0m"
OSC = "\x1b]0;pwned\x07title"
BIDI = "\u202egnp.exe"
LABELS = [MARKUP, CLOSE, ESC, f"{OSC}:warning:{BIDI}"]
ODD_FIELD = "[b]note[/b]\x1b[7m"


def _rows(n_per_label: int = 15) -> list[dict]:
    rows = []
    for j, label in enumerate(LABELS):
        for i in range(n_per_label * (j + 1)):  # unequal classes: balance/augment/generate have work
            k = len(rows)
            rows.append({"id": f"{label}-{k}", "instruction": f"Question {k} about {label} and topic {k % 7}?",
                         "input": "", "output": f"Answer {k}: it depends {CLOSE} on {k % 5} things.",
                         "category": label, ODD_FIELD: f"{MARKUP}{k}", "score": float(k % 10) / 10})
    return rows


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "pool.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tests.train.conftest import build_model, build_tokenizer

    tok = build_tokenizer()
    folder = tmp_path_factory.mktemp("tiny_model")
    build_model(len(tok)).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


class _GarbageLM:
    """Stands in for the LM in `generate`: every candidate fails validation."""

    name = "garbage-lm"
    batch_size = 4

    def __call__(self, prompts, seed, stop):
        return [" I am sorry, I cannot help with that" for _ in prompts]


FAST_TRAIN = ["--max-steps", "1", "--batch-size", "8", "--max-length", "64", "--threads", "1"]


def _commands(pool: Path, tmp: Path, model: str | None) -> dict[str, list]:
    sample = tmp / "s.jsonl"  # written by the `workdir` fixture
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"data: {pool}\nseed: 0\nsteps:\n  - sample: {{design: stratified, by: category, n: 20}}\n"
                      f"output: {tmp / 'r.jsonl'}\n")
    strata = json.dumps({label: 100 for label in LABELS}, ensure_ascii=False)
    return {
        "inspect": ["inspect", pool, "--by", f"category,{ODD_FIELD}"],
        "sample": ["sample", pool, "-o", tmp / "strat.jsonl", "--design", "stratified", "--by", "category",
                   "--n", "20"],
        "size": ["size", "--margin", "0.05", "--strata", strata],
        "check": ["check", sample, "--against", pool, "--by", "category"],
        "bootstrap": ["bootstrap", pool, "--field", "score", "-B", "50"],
        "featurize": ["featurize", pool, "--features", "text", "--cache", tmp / "cache", "--out", tmp / "f.parquet"],
        "select": ["select", pool, "--method", "quality", "-o", tmp / "q.jsonl", "--cache", tmp / "cache"],
        "run": ["run", recipe],
        "balance": ["balance", pool, "-o", tmp / "b.jsonl", "--by", "category", "--strategy", "oversample"],
        "augment": ["augment", pool, "-o", tmp / "a.jsonl", "--by", "category", "--n-aug", "1", "--only-below", "100"],
        "generate": ["generate", pool, "--by", "category", "--for-below", "100", "--per-category", "1",
                     "--max-attempts", "2", "-o", tmp / "g.jsonl"],
        "active": ["active", pool, "--simulate", "--label-field", "category", "--strategies", "random",
                   "--seeds", "1", "--batch", "8", "--max-labels", "24", "--stop-set", "20", "-o", tmp / "act",
                   "--cache", tmp / "cache"],
        "report": ["report", tmp / "s.manifest.json", "-o", tmp / "report.html", "--no-figures",
                   "--cache", tmp / "cache"],
        "train": ["train", pool, "--model", model, "-o", tmp / "adapter", *FAST_TRAIN],
        "compare": ["compare", pool, "-o", tmp / "cmp", "--arms", "full,base", "--seeds", "1", "--model", model,
                    "--label-field", "category", *FAST_TRAIN],
        "curve": ["curve", pool, "-o", tmp / "curve", "--fractions", "0.4,0.7,1.0", "--seeds", "1", "--n-boot", "20",
                  "--model", model, *FAST_TRAIN],
        "sweep": ["sweep", pool, "-o", tmp / "sweep", "--grid", "lr=1e-3,1e-2", "--model", model, *FAST_TRAIN],
    }


NEEDS_MODEL = {"train", "compare", "curve", "sweep"}
SHOWS_LABELS = {"inspect", "sample", "size", "balance", "augment", "generate"}
# Commands owned by other modules whose console output does not go through the
# escaping chokepoint yet; strict, so the mark must go when they are fixed.
KNOWN_UNESCAPED: dict[str, str] = {}  # commands that still print data unescaped (xfail, strict)
ORDER = ["inspect", "sample", "size", "check", "bootstrap", "featurize", "select", "run", "balance", "augment",
         "generate", "active", "report", "train", "compare", "curve", "sweep"]


def _case(name: str):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_UNESCAPED[name])] if name in KNOWN_UNESCAPED else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, pool):
    """One folder for the module, with the stratified sample `check` and `report` read."""
    tmp = tmp_path_factory.mktemp("out")
    code, text = _run(["sample", pool, "-o", tmp / "s.jsonl", "--n", "20"])  # random: prints no labels
    assert code == 0, text
    return tmp


def _run(args) -> tuple[int, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code or 0
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("name", [_case(n) for n in ORDER])
def test_command_survives_hostile_data(name, pool, workdir, monkeypatch, request):
    from thresher.balance.generate import LMGenerator

    model = str(request.getfixturevalue("model_dir")) if name in NEEDS_MODEL else None
    monkeypatch.setattr(LMGenerator, "load", classmethod(lambda cls, path=None, **kw: _GarbageLM()))
    monkeypatch.setenv("COLUMNS", "400")  # wide tables: labels are not wrapped mid-escape
    args = _commands(pool, workdir, model)[name]
    code, text = _run(args + (["--overwrite"] if name in ("sample", "featurize") else []))
    assert code == 0, text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
    assert "Traceback" not in text and "MarkupError" not in text
    if name in SHOWS_LABELS:
        assert MARKUP in text and CLOSE in text, text  # printed as written, not as styling
        assert "\\x1b[31mred\\x1b[0m" in text, text
        assert ":warning:" in text and "\\u202e" in text, text


def test_json_output_is_inert_and_still_json(pool, workdir):
    code, text = _run(["inspect", pool, "--by", "category", "--json"])
    assert code == 0 and "\x1b" not in text and "\u202e" not in text
    labels = {c["value"] for c in json.loads(text)["categories"][0]["counts"]}
    assert labels == set(LABELS)


def test_error_lines_are_inert(tmp_path):
    path = tmp_path / f"{ESC}.jsonl"
    path.write_text('{"instruction": "a"}\n')
    code, text = _run(["inspect", path])
    assert code == 2 and "\x1b" not in text and "\\x1b[31mred" in text


@pytest.mark.parametrize("raw, visible", [
    (MARKUP, MARKUP),
    (CLOSE, CLOSE),
    (ESC, "\\x1b[31mred\\x1b[0m"),
    ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
    ("\ud800x", "\\ud800x"),
    ("\x9b2J", "\\x9b2J"),
    ("ends with \\", "ends with \\"),
    (":smile: \u202e", ":smile: \\u202e"),
])
def test_escape_data_renders_exactly_the_visible_text(raw, visible):
    from thresher.cli.common import console as cli_console

    assert printable(raw) == visible
    console = cli_console.__class__(record=True, width=200, color_system=None, emoji=False, highlight=False)
    console.print(f"[bold]{escape_data(raw)}[/]", end="")
    assert console.export_text() == visible


def test_printable_json_round_trips():
    text = json.dumps({"k": "\x9b\u202e\ud800"}, ensure_ascii=False)
    safe = printable_json(text)
    assert "\x9b" not in safe and "\u202e" not in safe and json.loads(safe) == json.loads(text)

"""`thresher active`: interactive round trip, bad labeled files, simulate outputs."""
import json

import pytest
import typer

import thresher.cli.app as app_module
from tests.helpers import run_cli
from thresher.cli import active as active_cli

ANIMALS = ["cat", "dog", "horse", "parrot", "rabbit", "hamster"]
MARKETS = ["stock", "bond", "dividend", "index fund", "interest rate", "inflation"]


@pytest.fixture
def cli(monkeypatch):
    """Run `thresher ...` through the real entry point with the `active` command registered."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    active_cli.register(app)

    @app.callback()
    def _root():  # keeps `active` a subcommand even when it is the only one
        pass

    monkeypatch.setattr(app_module, "app", app)
    monkeypatch.setattr(app_module, "_register", lambda: None)

    return run_cli


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool.jsonl"
    with path.open("w") as f:
        for i in range(80):
            topic = "pets" if i % 2 == 0 else "finance"
            words = ANIMALS if topic == "pets" else MARKETS
            w1, w2 = words[i % 6], words[(i // 6) % 6]
            f.write(json.dumps({"instruction": f"Tell me about the {w1} and the {w2} ({i}).", "input": "",
                                "output": f"The {w1} is related to the {w2}; note {i}.", "topic": topic}) + "\n")
    return path


def label(batch_file, out_file, field="label", drop_topic=False, edit=None):
    """Simulate a human: copy the batch, adding `field` from the hidden `topic`."""
    rows = [json.loads(line) for line in batch_file.read_text().splitlines()]
    for r in rows:
        r[field] = r["topic"]
        if drop_topic:
            del r["topic"]
    if edit:
        edit(rows)
    out_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_interactive_round_trip(cli, pool, tmp_path, capsys):
    state, cache = tmp_path / "state", tmp_path / "cache"
    code, out, err = cli(["active", pool, "--state", state, "--batch", 6, "-o", tmp_path / "b0.jsonl",
                          "--cache", cache, "--cold-start", "kmeans"], capsys)
    assert code == 0, err
    b0 = [json.loads(x) for x in (tmp_path / "b0.jsonl").read_text().splitlines()]
    assert len(b0) == 6 and all("id" in r and "instruction" in r for r in b0)  # input's format + ids
    assert (tmp_path / "b0.manifest.json").exists()
    saved = json.loads((state / "state.json").read_text())
    assert saved["round"] == 1 and saved["pending"] == [r["id"] for r in b0] and saved["labeled"] == {}
    labeled_ids = set()
    for r in range(3):
        rows = label(tmp_path / f"b{r}.jsonl", tmp_path / f"l{r}.jsonl")
        labeled_ids |= {x["id"] for x in rows}
        code, out, err = cli(["active", pool, "--state", state, "--labeled", tmp_path / f"l{r}.jsonl",
                              "--label-field", "label", "-o", tmp_path / f"b{r + 1}.jsonl", "--cache", cache],
                             capsys)
        assert code == 0, err
        nxt = [json.loads(x)["id"] for x in (tmp_path / f"b{r + 1}.jsonl").read_text().splitlines()]
        assert len(nxt) == 6 and not (set(nxt) & labeled_ids)  # never asks again for a labeled row
    saved = json.loads((state / "state.json").read_text())
    assert len(saved["labeled"]) == 18 and saved["round"] == 4 and saved["strategy"] == "entropy"
    assert set(saved["labeled"].values()) <= {"pets", "finance"}
    assert [h["labeled"] for h in saved["history"]] == [0, 6, 12, 18]
    assert saved["history"][-1]["kappa_vs_prev"] is not None
    assert not list(state.glob("*.tmp"))


def test_budget_rule_fires_and_stops_asking(cli, pool, tmp_path, capsys):
    state, cache = tmp_path / "state", tmp_path / "cache"
    assert cli(["active", pool, "--state", state, "--batch", 5, "-o", tmp_path / "b0.jsonl", "--cache", cache,
                "--max-labels", 8, "--cold-start", "random"], capsys)[0] == 0
    label(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl")
    code, out, _ = cli(["active", pool, "--state", state, "--labeled", tmp_path / "l0.jsonl", "--label-field",
                        "label", "-o", tmp_path / "b1.jsonl", "--cache", cache], capsys)
    assert code == 0 and len((tmp_path / "b1.jsonl").read_text().splitlines()) == 3  # 8 - 5
    label(tmp_path / "b1.jsonl", tmp_path / "l1.jsonl")
    code, out, _ = cli(["active", pool, "--state", state, "--labeled", tmp_path / "l1.jsonl", "--label-field",
                        "label", "-o", tmp_path / "b2.jsonl", "--cache", cache, "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["batch"] == 0 and summary["stopped_reason"].startswith("budget")
    assert not (tmp_path / "b2.jsonl").exists()


def test_unknown_id_exits_2_naming_file_line_and_field(cli, pool, tmp_path, capsys):
    state, cache = tmp_path / "state", tmp_path / "cache"
    assert cli(["active", pool, "--state", state, "--batch", 4, "-o", tmp_path / "b0.jsonl", "--cache", cache],
               capsys)[0] == 0
    before = (state / "state.json").read_text()

    def bad_id(rows):
        rows[1]["id"] = "no-such-row"
    label(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl", edit=bad_id)
    code, out, err = cli(["active", pool, "--state", state, "--labeled", tmp_path / "l0.jsonl", "--label-field",
                          "label", "-o", tmp_path / "b1.jsonl", "--cache", cache], capsys)
    assert code == 2
    assert "l0.jsonl:2" in err and "'no-such-row'" in err and "id" in err
    assert (state / "state.json").read_text() == before  # nothing saved
    assert not (tmp_path / "b1.jsonl").exists()


def test_missing_label_exits_2_naming_the_field(cli, pool, tmp_path, capsys):
    state, cache = tmp_path / "state", tmp_path / "cache"
    assert cli(["active", pool, "--state", state, "--batch", 4, "-o", tmp_path / "b0.jsonl", "--cache", cache],
               capsys)[0] == 0

    def blank(rows):
        rows[2]["label"] = ""
    label(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl", edit=blank)
    code, _, err = cli(["active", pool, "--state", state, "--labeled", tmp_path / "l0.jsonl", "--label-field",
                        "label", "-o", tmp_path / "b1.jsonl", "--cache", cache], capsys)
    assert code == 2 and "l0.jsonl:3" in err and "label" in err
    code, _, err = cli(["active", pool, "--state", state, "--labeled", tmp_path / "l0.jsonl", "--label-field",
                        "answer", "-o", tmp_path / "b1.jsonl", "--cache", cache], capsys)
    assert code == 2 and "no field 'answer'" in err


def test_missing_id_in_labeled_file_exits_2(cli, pool, tmp_path, capsys):
    state, cache = tmp_path / "state", tmp_path / "cache"
    assert cli(["active", pool, "--state", state, "--batch", 4, "-o", tmp_path / "b0.jsonl", "--cache", cache],
               capsys)[0] == 0

    def no_id(rows):
        rows[3]["id"] = None
    label(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl", edit=no_id)
    code, _, err = cli(["active", pool, "--state", state, "--labeled", tmp_path / "l0.jsonl", "--label-field",
                        "label", "-o", tmp_path / "b1.jsonl", "--cache", cache], capsys)
    assert code == 2 and "l0.jsonl:4" in err and "id" in err


def test_interactive_rounds_are_seeded(cli, pool, tmp_path, capsys):
    outs = []
    for name in ("a", "b"):
        code, _, err = cli(["active", pool, "--state", tmp_path / f"s{name}", "--batch", 5, "--seed", 3,
                            "--cold-start", "random", "-o", tmp_path / f"{name}.jsonl", "--cache",
                            tmp_path / "cache"], capsys)
        assert code == 0, err
        outs.append((tmp_path / f"{name}.jsonl").read_bytes())
    assert outs[0] == outs[1]


def test_stratified_cold_start_covers_strata(cli, pool, tmp_path, capsys):
    code, _, err = cli(["active", pool, "--state", tmp_path / "s", "--batch", 4, "--cold-start", "stratified",
                        "--by", "topic", "-o", tmp_path / "b.jsonl", "--cache", tmp_path / "cache"], capsys)
    assert code == 0, err
    topics = {json.loads(x)["topic"] for x in (tmp_path / "b.jsonl").read_text().splitlines()}
    assert topics == {"pets", "finance"}


def test_usage_errors(cli, pool, tmp_path, capsys):
    code, _, err = cli(["active", pool, "-o", tmp_path / "x.jsonl"], capsys)
    assert code == 2 and "--state" in err
    code, _, err = cli(["active", pool, "--simulate", "-o", tmp_path / "sim"], capsys)
    assert code == 2 and "--label-field" in err
    code, _, err = cli(["active", pool, "--state", tmp_path / "s", "--strategy", "bald", "-o", tmp_path / "x.jsonl"],
                       capsys)
    assert code == 2 and "unknown strategy" in err


def test_simulate_writes_trajectory_and_png(cli, pool, tmp_path, capsys):
    out = tmp_path / "sim"
    code, stdout, err = cli(["active", pool, "--simulate", "--label-field", "topic", "--strategies",
                             "random,margin,hybrid", "--seeds", 2, "--batch", 4, "--max-labels", 16, "--stop-set",
                             30, "-o", out, "--cache", tmp_path / "cache"], capsys)
    assert code == 0, err
    traj = json.loads((out / "trajectory.json").read_text())
    assert traj["kind"] == "active" and traj["label_field"] == "topic" and traj["metric"] == "accuracy"
    assert set(traj["strategies"]) == {"random", "margin", "hybrid"}
    for s in traj["strategies"].values():
        assert {"seeds", "mean", "ci_low", "ci_high"} <= set(s)
        assert [r["labeled"] for r in s["seeds"][0]["rounds"]] == [4, 8, 12, 16]
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "labels to 90% of full" in stdout
    code, _, err = cli(["active", pool, "--simulate", "--label-field", "topic", "-o", out, "--cache",
                        tmp_path / "cache"], capsys)
    assert code == 2 and "exists" in err  # no silent overwrite

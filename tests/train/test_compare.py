"""Compare arms: parsing, drawing rows, and a small end-to-end comparison on the tiny model."""
import numpy as np
import pytest

from thresher.api import write_selection
from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.train.arms import ArmData, parse_arm, parse_arms, parse_budget, split_arm_list
from thresher.train.compare import compare, compare_table, evaluate_bag, expand_templates, prepare
from thresher.train.lora import TrainConfig

from .conftest import build_model, heavier_rows

CFG = TrainConfig(max_steps=2, batch_size=8, threads=1, lr=1e-2, max_length=64, eval_batch_size=32)


@pytest.fixture(scope="module")
def pool():
    p, a = heavier_rows(100, seed=1)
    return Dataset.from_records([{"instruction": x, "input": "", "output": y, "cat": y} for x, y in zip(p, a)])


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text,kind,value", [("200", "rows", 200), ("20%", "fraction", 0.2), ("0.2", "fraction", 0.2),
                                             ("50000t", "tokens", 50000), ("1.0", "fraction", 1.0)])
def test_budgets(text, kind, value):
    assert parse_budget(text) == Budget(kind, value)


@pytest.mark.parametrize("spec,kind", [("full", "full"), ("base", "base"), ("random@20%", "random"),
                                       ("random", "random"), ("bootstrap@0.5", "bootstrap"),
                                       ("bag:random@20%x3", "bag"), ("seq:full,random@10%", "seq")])
def test_good_arm_specs(spec, kind):
    arm = parse_arm(spec)
    assert arm.kind == kind and arm.name == spec


def test_arm_modifiers_and_nesting():
    arm = parse_arm("full+class-weights=0.5+template=Q: {prompt}\nA: ")
    assert arm.class_weights == 0.5 and arm.template == "Q: {prompt}\nA: "
    bag = parse_arm("bag:random@10%x4+class-weights")
    assert bag.members == 4 and bag.inner[0].budget == Budget("fraction", 0.1) and bag.class_weights == 1.0
    seq = parse_arm("seq:full,random@50")
    assert [a.kind for a in seq.inner] == ["full", "random"]
    assert split_arm_list("full,random@20%,seq:full,random@5,base") == ["full", "random@20%", "seq:full,random@5",
                                                                          "base"]


def test_selection_file_arm_is_named_by_its_stem(tmp_path):
    f = tmp_path / "picked.jsonl"
    f.write_text("{}\n")
    assert parse_arm(str(f)).name == "picked" and parse_arm(str(f)).kind == "file"


@pytest.mark.parametrize("spec,message", [
    ("random@0", "at least 1"), ("random@abc", "bad budget"), ("random@150%", r"\(0%, 100%\]"),
    ("bag:random@20%x1", "at least 2 members"), ("bag:full", "bag:DATAxK"), ("seq:full", "seq:FIRST,SECOND"),
    ("seq:base,full", "cannot be nested"), ("nosuch.jsonl", "no such file"), ("fulll", "unknown arm"),
    ("full+shiny", "unknown modifier"), ("base+class-weights", "cannot take class weights"),
    ("full+class-weights=2", r"\[0, 1\]"),
])
def test_bad_arm_specs_name_the_spec(spec, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_arm(spec)
    assert repr(spec) in str(err.value)


def test_duplicate_arm_names_are_refused():
    with pytest.raises(UsageError, match="same name"):
        parse_arms(["full", "full"])


def test_templates_expand_every_arm():
    arms = expand_templates(parse_arms(["full", "random@10%+template={prompt} =>"]), ["chat", "plain"])
    assert [a.name for a in arms] == ["full [chat]", "full [plain]", "random@10%+template={prompt} =>"]
    assert arms[0].template is None and "### Instruction" in arms[1].template


# ------------------------------------------------------------------ drawing rows
def _data(pool, tiny_lm, exclude=()):
    return ArmData(pool, tiny_lm[1], label_field="cat", exclude_ids=exclude, max_length=64)


def test_random_arms_differ_by_seed_and_respect_budgets(pool, tiny_lm):
    data = _data(pool, tiny_lm)
    a, b = data.draw(parse_arm("random@30%"), 0), data.draw(parse_arm("random@30%"), 1)
    assert len(a.ids) == len(b.ids) == 30 and set(a.ids) != set(b.ids)
    assert len(set(a.ids)) == 30
    tok = data.draw(parse_arm("random@300t"), 0)
    assert 0 < tok.tokens.sum() <= 300 and tok.tokens.sum() + data.tokens.min() > 300 - data.tokens.max()
    assert len(data.draw(parse_arm("full"), 3).ids) == 100
    boot = data.draw(parse_arm("bootstrap@40"), 0)
    assert len(boot.ids) == 40


def test_selection_file_rows_drop_held_out_ids(pool, tiny_lm, tmp_path):
    sel = Selection(np.arange(0, 40), np.full(40, 0.4), np.full(40, 2.5), "test", {}, 0, len(pool))
    out = tmp_path / "picked.jsonl"
    write_selection(pool, sel, out, command="test")
    held = list(pool.ids[:10])
    data = _data(pool, tiny_lm, exclude=held)
    drawn = data.draw(parse_arm(str(out)), 0)
    assert drawn.dropped == 10 and len(drawn.ids) == 30 and not set(drawn.ids) & set(held)
    assert drawn.examples.weights is not None and np.allclose(drawn.examples.weights, 2.5)
    assert data.draw(parse_arm(str(out)), 5).ids == drawn.ids  # a file is the same rows every seed
    member = data.draw(parse_arm(str(out)), 0, member=1)  # a bag member: bootstrap of the file
    assert len(member.ids) == 30 and len(set(member.ids)) < 30


def test_random_without_budget_needs_a_file_arm(pool, tiny_lm):
    with pytest.raises(UsageError, match="random@BUDGET"):
        _data(pool, tiny_lm).draw(parse_arm("random"), 0)
    assert len(_data(pool, tiny_lm).draw(parse_arm("random"), 0, match_rows=17).ids) == 17


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def results(pool, tiny_lm):
    model, tok = tiny_lm
    return compare(pool, ["full", "random@25%", "base", "seq:random@10%,random@20%", "full+class-weights"],
                   config=CFG, seeds=2, holdout=0.2, label_field="cat", model=model, tokenizer=tok)


def test_compare_results_are_well_formed(results):
    assert results["kind"] == "compare" and results["pool_rows"] == 100 and results["eval_rows"] == 20
    assert results["metrics"] == ["loss", "perplexity", "accuracy", "macro_f1"]
    for arm in results["arms"]:
        assert {"name", "rows", "tokens", "sdf", "runs", "summary", "pir", "per_class_f1", "confusion"} <= set(arm)
        assert len(arm["runs"]) == (1 if arm["name"] == "base" else 2)
        for run in arm["runs"]:
            assert {"seed", "metrics", "train_seconds", "train_tokens", "steps"} <= set(run)
        for m, s in arm["summary"].items():
            assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == len(arm["runs"])
    assert "PIR(macro_f1)" in compare_table(results)


def test_pir_of_full_is_one_and_sdf_is_the_row_fraction(results):
    arms = {a["name"]: a for a in results["arms"]}
    for m in results["metrics"]:
        assert arms["full"]["pir"][m] == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert arms["full"]["sdf"] == 1.0 and arms["full"]["rows"] == 80
    assert arms["random@25%"]["rows"] == 20 and arms["random@25%"]["sdf"] == pytest.approx(0.25)
    assert arms["base"]["sdf"] == 0 and arms["base"]["runs"][0]["steps"] == 0
    full, rnd = arms["full"]["runs"], arms["random@25%"]["runs"]
    ratio = np.mean([f["metrics"]["loss"] for f in full]) / np.mean([r["metrics"]["loss"] for r in rnd])
    assert arms["random@25%"]["pir"]["loss"]["mean"] == pytest.approx(ratio)  # loss: full / arm, ratio of means


def test_seq_arm_trains_twice(results):
    seq = next(a for a in results["arms"] if a["kind"] == "seq")
    for run in seq["runs"]:
        assert run["steps"] == 2 * CFG.max_steps
    assert 16 <= seq["rows"] <= 24  # distinct rows of 8 + 16


def test_class_weights_change_training(results):
    arms = {a["name"]: a for a in results["arms"]}
    a, b = arms["full"]["runs"][0]["metrics"]["loss"], arms["full+class-weights"]["runs"][0]["metrics"]["loss"]
    assert a != b


def test_class_weights_need_a_label_field(pool, tiny_lm):
    with pytest.raises(UsageError, match="label-field"):
        compare(pool, ["full+class-weights"], config=CFG, seeds=1, model=tiny_lm[0], tokenizer=tiny_lm[1])


def test_bag_averages_label_probabilities(pool, tiny_lm):
    from thresher.train.metrics import classification_metrics, label_logprobs, response_loss

    model, tok = tiny_lm
    setup = prepare(pool, config=CFG, holdout=0.3, seed=0, model=model, tokenizer=tok)
    members = [build_model(len(tok), seed=s) for s in (11, 12)]
    got = evaluate_bag(setup, members, None)
    labels = setup.label_set
    probs = [np.exp(label_logprobs(m, tok, setup.eval.prompts, labels, max_length=64)) for m in members]
    pred = [labels[k] for k in np.mean(probs, axis=0).argmax(axis=1)]
    want = classification_metrics([r.strip() for r in setup.eval.responses], pred, labels)
    assert got["metrics"]["accuracy"] == pytest.approx(want["accuracy"])
    assert got["metrics"]["macro_f1"] == pytest.approx(want["macro_f1"])
    losses = [response_loss(m, tok, setup.eval, max_length=64)["loss"] for m in members]
    assert got["metrics"]["loss"] == pytest.approx(np.mean(losses))
    # the average is not simply one member's answer when members disagree
    single = [[labels[k] for k in p.argmax(axis=1)] for p in probs]
    if single[0] != single[1]:
        assert pred != single[0] or pred != single[1]


def test_bag_arm_runs_end_to_end(pool, tiny_lm):
    res = compare(pool, ["bag:random@20%x2"], config=CFG, seeds=1, holdout=0.2, model=tiny_lm[0],
                  tokenizer=tiny_lm[1])
    run = res["arms"][0]["runs"][0]
    assert run["steps"] == 2 * CFG.max_steps and res["arms"][0]["pir"] == {}


def test_baseline_arms_parse_and_draw(tiny_lm):
    _, tok = tiny_lm
    records = [{"instruction": f"Is item {i} heavy?", "output": "Yes " * (1 + i % 7), "task": "ab"[i % 2]}
               for i in range(40)]
    ds = Dataset.from_records(records)
    data = ArmData(ds, tok, label_field="task")
    longest = data.draw(parse_arm("longest@10"), seed=0)
    lengths = [len(r.split()) for r in data.examples.responses]
    assert sorted(len(r.split()) for r in longest.examples.responses) == sorted(lengths)[-10:]
    strat = data.draw(parse_arm("stratified@50%"), seed=3)
    assert len(strat.ids) == 20 and sorted(strat.examples.labels).count("a") == 10
    assert data.draw(parse_arm("stratified@50%"), seed=3).ids == strat.ids
    with pytest.raises(UsageError, match="budget"):
        parse_arm("longest")
    with pytest.raises(UsageError, match="select:METHOD@BUDGET"):
        parse_arm("select:kcenter")
    arm = parse_arm("select:kcenter@25%")
    assert arm.kind == "select" and arm.method == "kcenter" and arm.budget.value == 0.25

"""engine="hf": transformers.Trainer with thresher's per-row weighted loss, on the tiny Llama."""
from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
import torch

from thresher.errors import UsageError
from thresher.train.engine_hf import build_trainer, fine_tune_hf
from thresher.train.examples import Examples, encode
from thresher.train.lora import TrainConfig, _wrap_lora, fine_tune, weighted_loss
from thresher.train.metrics import response_loss, token_nll

FAST = dict(threads=1, batch_size=8, eval_every=10, lr=3e-2, warmup=0.0, engine="hf")
losses = lambda r: [h["train_loss"] for h in r.history]  # noqa: E731


def _hand_row_losses(model, ids, mask, labels) -> np.ndarray:
    """Per-row mean NLL of the labeled positions from the full logits."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), dim=-1)
    out = []
    for i in range(ids.shape[0]):
        pos = [t for t in range(1, ids.shape[1]) if labels[i, t] != -100]
        out.append(-np.mean([logp[i, t - 1, labels[i, t]].item() for t in pos]))
    return np.array(out)


def test_engine_is_validated():
    with pytest.raises(UsageError, match="engine"):
        TrainConfig(engine="trl")
    assert TrainConfig(engine="hf").to_dict()["engine"] == "hf"


@pytest.mark.parametrize("reduction", ["row", "token"])
def test_compute_loss_is_weighted_loss_and_ignores_weight_0_rows(tiny_lm, tmp_path, reduction):
    model, tok = tiny_lm
    ex = Examples(["Is a brick heavier than a leaf?", "Explain what a hash table is.", "Hi"],
                  ["Yes", "A hash table maps keys to values.", "Bonjour."])
    enc = encode(tok, ex)
    w = np.array([1.0, 2.0, 0.5])
    cfg = TrainConfig(max_steps=1, threads=1, loss_reduction=reduction, lora_dropout=0.0, engine="hf")
    torch.manual_seed(0)
    peft = _wrap_lora(copy.deepcopy(model), cfg)
    trainer = build_trainer(peft, tok, enc, w, cfg, str(tmp_path))
    batch = trainer.data_collator([{"row": i} for i in range(3)])
    assert batch["weights"].tolist() == pytest.approx(w.tolist())
    peft.eval()
    with torch.no_grad():
        got = trainer.compute_loss(peft, dict(batch)).item()
        s, c = token_nll(peft, batch["input_ids"], batch["attention_mask"], batch["labels"])
        ours = weighted_loss(s, c, torch.tensor(w, dtype=torch.float32), reduction).item()
    assert got == pytest.approx(ours, rel=1e-6)
    per_row = _hand_row_losses(peft, batch["input_ids"], batch["attention_mask"], batch["labels"])
    cnt = c.numpy()
    hand = ((w * per_row).sum() / w.sum() if reduction == "row"
            else (w * per_row * cnt).sum() / (w * cnt).sum())
    assert got == pytest.approx(float(hand), rel=1e-5)
    # A row of weight 0 counts for nothing: the loss equals the batch without it.
    zero = np.array([1.0, 0.0, 0.5])
    trainer0 = build_trainer(peft, tok, enc, zero, cfg, str(tmp_path))
    without = build_trainer(peft, tok, encode(tok, ex.take([0, 2])), zero[[0, 2]], cfg, str(tmp_path))
    with torch.no_grad():
        a = trainer0.compute_loss(peft, trainer0.data_collator([{"row": i} for i in range(3)])).item()
        b = without.compute_loss(peft, without.data_collator([{"row": 0}, {"row": 1}])).item()
    assert a == pytest.approx(b, rel=1e-5) and a != pytest.approx(got, rel=1e-3)
    assert len(trainer0.train_dataset) == 2  # weight-0 rows never enter the Trainer's data


def test_hf_engine_trains_and_leaves_the_given_model_alone(tiny_lm, heavier):
    model, tok = tiny_lm
    train, _ = heavier
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before = response_loss(model, tok, train)["loss"]
    result = fine_tune(train, config=TrainConfig(max_steps=40, **FAST), model=model, tokenizer=tok)
    after = response_loss(result.model, tok, train)["loss"]
    assert after < before - 2.0
    assert result.steps == 40 and [h["step"] for h in result.history] == [10, 20, 30, 40]
    assert result.train_tokens == result.history[-1]["tokens"] > 0
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before_state.items())


def test_weights_scale_free_and_weight_0_rows_dropped_in_training(tiny_lm, heavier):
    model, tok = tiny_lm
    train, _ = heavier
    cfg = TrainConfig(max_steps=6, **FAST)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(train))
    weighted = fine_tune_hf(Examples(train.prompts, train.responses, weights=w), config=cfg, model=model, tokenizer=tok)
    scaled = fine_tune_hf(Examples(train.prompts, train.responses, weights=3 * w), config=cfg, model=model,
                          tokenizer=tok)
    assert losses(weighted) == pytest.approx(losses(scaled), rel=1e-5)
    plain = fine_tune_hf(train, config=cfg, model=model, tokenizer=tok)
    assert losses(weighted) != pytest.approx(losses(plain), rel=1e-5)
    half = np.r_[np.ones(32), np.zeros(len(train) - 32)]
    dropped = fine_tune_hf(Examples(train.prompts, train.responses, weights=half), config=cfg, model=model,
                           tokenizer=tok)
    subset = fine_tune_hf(train.take(np.arange(32)), config=cfg, model=model, tokenizer=tok)
    assert losses(dropped) == pytest.approx(losses(subset), rel=1e-6)
    assert dropped.train_tokens == subset.train_tokens


@pytest.mark.parametrize("budget", [dict(train_tokens=1500), dict(epochs=1.5), dict(max_steps=7)])
def test_a_budget_gives_both_engines_the_same_steps(tiny_lm, heavier, budget):
    model, tok = tiny_lm
    train, _ = heavier
    kw = dict(FAST, eval_every=100, **budget)
    hf = fine_tune(train, config=TrainConfig(**kw), model=model, tokenizer=tok)
    own = fine_tune(train, config=TrainConfig(**{**kw, "engine": "own"}), model=model, tokenizer=tok)
    assert hf.steps == own.steps > 1
    if "train_tokens" in budget:  # own batches vs the Trainer's: about the same tokens
        assert abs(hf.train_tokens - own.train_tokens) < 0.2 * own.train_tokens


def test_seeded_and_global_rng_untouched(tiny_lm, heavier):
    model, tok = tiny_lm
    train, ev = heavier
    run = lambda seed: fine_tune(train, ev, TrainConfig(max_steps=12, seed=seed, lora_dropout=0.1, **FAST),  # noqa: E731
                                 model=model, tokenizer=tok)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(9)
    a = run(7)
    after = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(9)
    assert after == (torch.rand(1).item(), np.random.rand(), random.random())
    b, c = run(7), run(8)
    assert losses(a) == losses(b) and a.best_eval_loss == b.best_eval_loss
    assert losses(a) != losses(c)


def test_early_stopping_restores_the_best_adapter(tiny_lm, heavier):
    model, tok = tiny_lm
    train, ev = heavier
    cfg = TrainConfig(max_steps=100, patience=2, min_delta=1e6, **FAST)  # no eval can improve by 1e6
    result = fine_tune(train, ev, cfg, model=model, tokenizer=tok)
    assert result.stopped_early and result.steps == 20 and result.best_step == 0
    assert [h["step"] for h in result.history] == [0, 10, 20]
    base = response_loss(model, tok, ev)["loss"]
    assert result.best_eval_loss == pytest.approx(base, rel=1e-6)
    assert response_loss(result.model, tok, ev)["loss"] == pytest.approx(base, rel=1e-6)


def test_engine_option_on_the_cli(tiny_lm, tmp_path):
    import typer
    from typer.testing import CliRunner

    from thresher.cli import train as train_cli
    from thresher.cli.evaluate import _config

    from .conftest import heavier_rows

    model, tok = tiny_lm
    folder = tmp_path / "tiny"
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    prompts, answers = heavier_rows(40, seed=4)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"instruction": p, "output": a}) + "\n" for p, a in zip(prompts, answers)))
    app = typer.Typer()
    train_cli.register(app)
    app.command("noop")(lambda: None)
    base = ["train", str(data), "--model", str(folder), "--max-steps", "4", "--eval-every", "2", "--lr", "0.03",
            "--threads", "1", "--json"]
    res = CliRunner().invoke(app, [*base, "--engine", "hf", "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["config"]["engine"] == "hf"
    assert json.loads(res.stdout)["steps"] == 4
    bad = CliRunner().invoke(app, [*base, "--engine", "trl", "-o", str(tmp_path / "b")])
    assert isinstance(bad.exception, UsageError) and "engine" in str(bad.exception)
    common = dict(max_steps=5, epochs=1.0, lr=1e-3, batch_size=8, lora_r=8, lora_alpha=16, max_length=64,
                  template=None, threads=1, dtype="auto")
    assert _config(**common, engine="hf").engine == "hf" and _config(**common).engine == "own"


def test_a_diverging_run_stops_and_keeps_the_best_adapter(tiny_lm, heavier):
    model, tok = tiny_lm
    train, ev = heavier
    cfg = TrainConfig(max_steps=200, patience=1, lr=3.0, schedule="constant", threads=1, eval_every=5,
                      max_grad_norm=None, engine="hf")
    result = fine_tune(train, ev, cfg, model=model, tokenizer=tok)
    evals = [h["eval_loss"] for h in result.history]
    assert result.stopped_early and result.steps < 200
    assert result.best_eval_loss == min(e for e in evals if np.isfinite(e))
    assert response_loss(result.model, tok, ev)["loss"] == pytest.approx(result.best_eval_loss, rel=1e-5)


def test_compare_runs_arms_on_the_hf_engine(tiny_lm, tmp_path, monkeypatch):
    import thresher.train.engine_hf as engine_hf
    from thresher.api import read
    from thresher.train.arms import parse_arms
    from thresher.train.compare import compare

    from .conftest import heavier_rows

    calls = []
    real = engine_hf.fine_tune_hf
    monkeypatch.setattr(engine_hf, "fine_tune_hf", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, tok = tiny_lm
    prompts, answers = heavier_rows(80, seed=5)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": p, "output": a}) + "\n" for p, a in zip(prompts, answers)))
    cfg = TrainConfig(max_steps=4, batch_size=8, lr=3e-2, threads=1, patience=None, engine="hf")
    res = compare(read(str(pool)), parse_arms(["full", "random@50%"]), config=cfg, holdout=0.25, seeds=1,
                  model=model, tokenizer=tok, device="cpu", validation=None, n_boot=50)
    assert res["config"]["train"]["engine"] == "hf" and len(calls) == 2

"""The LoRA training loop on a tiny Llama: loss definition, batching, early stopping, seeds, saving."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thresher.balance.weights import class_weights
from thresher.errors import UsageError
from thresher.train.examples import Examples, encode, pad_batch
from thresher.train.lora import (TrainConfig, fine_tune, length_grouped_batches, load_adapter, padding_tokens,
                                 random_batches, sample_weights, save_adapter, weighted_loss)
from thresher.train.metrics import label_logprobs, response_loss, token_nll

from .conftest import heavier_rows

FAST = dict(threads=1, batch_size=8, eval_every=10, lr=3e-2, warmup=0.0)


def _hand_row_losses(model, ids, mask, labels) -> np.ndarray:
    """Per-row mean NLL of the labeled positions from the full logits."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), dim=-1)
    out = []
    for i in range(ids.shape[0]):
        pos = [t for t in range(1, ids.shape[1]) if labels[i, t] != -100]
        out.append(-np.mean([logp[i, t - 1, labels[i, t]].item() for t in pos]))
    return np.array(out)


def test_weighted_loss_equals_hand_computation(tiny_lm):
    model, tok = tiny_lm
    ex = Examples(["Is a brick heavier than a leaf?", "Explain what a hash table is.", "Hi"],
                  ["Yes", "A hash table maps keys to values.", "Bonjour."])
    enc = encode(tok, ex)
    ids, mask, labels = (torch.from_numpy(a) for a in pad_batch(enc, np.arange(3), 0))
    w = np.array([1.0, 2.0, 0.5])
    with torch.no_grad():
        s, c = token_nll(model, ids, mask, labels)
        got = weighted_loss(s, c, torch.tensor(w, dtype=torch.float32)).item()
    per_row = _hand_row_losses(model, ids, mask, labels)
    assert got == pytest.approx(float((w * per_row).sum() / w.sum()), rel=1e-5)
    token = weighted_loss(s, c, torch.tensor(w, dtype=torch.float32), "token").item()
    assert token == pytest.approx(float((w * per_row * c.numpy()).sum() / (w * c.numpy()).sum()), rel=1e-5)
    with torch.no_grad():
        hf_batch = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    assert weighted_loss(s, c, torch.ones(3), "token").item() == pytest.approx(hf_batch, rel=1e-5)
    # Masking: prompt-side labels are ignored; giving them targets changes the loss.
    unmasked = ids.clone()
    with torch.no_grad():
        s2, c2 = token_nll(model, ids, mask, torch.where(mask.bool(), unmasked, labels))
    assert (c2 > c).all() and not torch.allclose(s2 / c2, s / c)
    # And our loss agrees with the model's own (HF) loss on one row.
    with torch.no_grad():
        hf = model(input_ids=ids[1:2], attention_mask=mask[1:2], labels=labels[1:2]).loss.item()
    assert (s[1] / c[1]).item() == pytest.approx(hf, rel=1e-5)


def test_scaling_weights_changes_nothing_and_zero_weight_rows_are_dropped(tiny_lm, heavier):
    model, tok = tiny_lm
    train, _ = heavier
    cfg = TrainConfig(max_steps=6, **FAST)
    base = fine_tune(train, config=cfg, model=model, tokenizer=tok)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(train))
    weighted = fine_tune(Examples(train.prompts, train.responses, weights=w), config=cfg, model=model, tokenizer=tok)
    scaled = fine_tune(Examples(train.prompts, train.responses, weights=3 * w), config=cfg, model=model, tokenizer=tok)
    losses = lambda r: [h["train_loss"] for h in r.history]  # noqa: E731
    assert losses(weighted) == pytest.approx(losses(scaled), rel=1e-5)
    assert losses(weighted) != pytest.approx(losses(base), rel=1e-5)
    half = np.r_[np.ones(32), np.zeros(len(train) - 32)]
    dropped = fine_tune(Examples(train.prompts, train.responses, weights=half), config=cfg, model=model, tokenizer=tok)
    subset = fine_tune(train.take(np.arange(32)), config=cfg, model=model, tokenizer=tok)
    assert losses(dropped) == pytest.approx(losses(subset), rel=1e-6)


def test_class_weights_multiply_into_sample_weights():
    labels = ["a"] * 6 + ["b"] * 2
    ex = Examples(["p"] * 8, ["r"] * 8, weights=np.arange(1.0, 9.0), labels=labels)
    np.testing.assert_allclose(sample_weights(ex, 1.0), np.arange(1.0, 9.0) * class_weights(np.array(labels)))
    np.testing.assert_allclose(sample_weights(ex, None), np.arange(1.0, 9.0))
    with pytest.raises(UsageError, match="label"):
        sample_weights(Examples(["p"], ["r"]), 1.0)
    with pytest.raises(UsageError, match="weight 0"):
        sample_weights(Examples(["p"], ["r"], weights=[0.0]), None)


def test_length_grouping_cuts_padding_and_covers_every_row():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(4, 0.8, size=1000).astype(int) + 5
    grouped = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    plain = random_batches(lengths.size, 8, np.random.default_rng(1))
    assert sorted(np.concatenate(grouped).tolist()) == list(range(lengths.size))
    assert padding_tokens(lengths, grouped) < 0.1 * padding_tokens(lengths, plain)
    again = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(grouped, again))
    assert {b.size for b in grouped} <= {8, lengths.size % 8 or 8, *range(1, 8)}


def test_training_lowers_loss_and_leaves_the_given_model_alone(tiny_lm, heavier):
    model, tok = tiny_lm
    train, _ = heavier
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before = response_loss(model, tok, train)["loss"]
    result = fine_tune(train, config=TrainConfig(max_steps=40, **FAST), model=model, tokenizer=tok)
    after = response_loss(result.model, tok, train)["loss"]
    assert after < before - 2.0
    assert result.steps == 40 and result.train_tokens == sum(h["tokens"] for h in result.history[-1:])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before_state.items())
    assert not any("lora" in name for name, _ in model.named_modules())


def test_same_seed_same_losses_other_seed_differs(tiny_lm, heavier):
    model, tok = tiny_lm
    train, ev = heavier
    run = lambda seed: fine_tune(train, ev, TrainConfig(max_steps=12, seed=seed, lora_dropout=0.1, **FAST),  # noqa: E731
                                 model=model, tokenizer=tok)
    a, b, c = run(7), run(7), run(8)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.best_eval_loss == b.best_eval_loss
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


def test_early_stopping_without_improvement_restores_the_start(tiny_lm, heavier):
    model, tok = tiny_lm
    train, ev = heavier
    cfg = TrainConfig(max_steps=100, patience=2, min_delta=1e6, **FAST)  # no eval can improve by 1e6
    result = fine_tune(train, ev, cfg, model=model, tokenizer=tok)
    assert result.stopped_early and result.steps == 20 and result.best_step == 0
    assert [h["step"] for h in result.history] == [0, 10, 20]
    base = response_loss(model, tok, ev)["loss"]
    assert result.best_eval_loss == pytest.approx(base, rel=1e-6)
    assert response_loss(result.model, tok, ev)["loss"] == pytest.approx(base, rel=1e-6)


def test_early_stopping_on_a_diverging_run_keeps_the_best_adapter(tiny_lm, heavier):
    model, tok = tiny_lm
    train, ev = heavier
    cfg = TrainConfig(max_steps=200, patience=1, lr=3.0, schedule="constant", threads=1, eval_every=5,
                      max_grad_norm=None)
    result = fine_tune(train, ev, cfg, model=model, tokenizer=tok)
    evals = [h["eval_loss"] for h in result.history]
    assert result.stopped_early and result.steps < 200
    assert not evals[-1] <= result.best_eval_loss  # worse, or NaN
    assert result.best_eval_loss == min(e for e in evals if np.isfinite(e))
    assert response_loss(result.model, tok, ev)["loss"] == pytest.approx(result.best_eval_loss, rel=1e-5)


def test_label_logprobs_ranks_the_trained_label(tiny_lm):
    model, tok = tiny_lm
    prompts, answers = heavier_rows(16, seed=5)
    train = Examples(prompts, answers)
    result = fine_tune(train, config=TrainConfig(max_steps=60, **FAST), model=model, tokenizer=tok)
    lp = label_logprobs(result.model, tok, prompts, ["No", "Yes"])
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-9)
    pred = np.array(["No", "Yes"])[lp.argmax(axis=1)]
    assert (pred == np.array(answers)).mean() >= 0.9
    base = label_logprobs(model, tok, prompts, ["No", "Yes"])
    assert np.exp(lp).max(axis=1).mean() > np.exp(base).max(axis=1).mean()


def test_save_adapter_round_trip(tiny_lm, heavier, tmp_path):
    from peft import PeftModel

    model, tok = tiny_lm
    train, ev = heavier
    result = fine_tune(train, ev, TrainConfig(max_steps=10, **FAST), model=model, tokenizer=tok)
    out = save_adapter(result, tmp_path / "adapter")
    assert (out / "adapter_config.json").is_file() and (out / "train_config.json").is_file()
    assert json.loads((out / "history.json").read_text()) == result.history
    assert json.loads((out / "train_config.json").read_text())["config"]["lora_r"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temp leftovers
    ids = torch.from_numpy(encode(tok, ev.take([0])).input_ids[0][None])
    with torch.no_grad():
        want = result.model(input_ids=ids).logits
        loaded, _ = load_adapter(out, model=model, tokenizer=tok)
        import copy
        direct = PeftModel.from_pretrained(copy.deepcopy(model), str(out)).eval()
        torch.testing.assert_close(loaded(input_ids=ids).logits, want)
        torch.testing.assert_close(direct(input_ids=ids).logits, want)
        assert not torch.allclose(model(input_ids=ids).logits, want)
    save_adapter(result, out)  # replacing an existing adapter works
    with pytest.raises(UsageError, match="adapter_config"):
        load_adapter(tmp_path, model=model, tokenizer=tok)


def test_bfloat16_autocast_trains(tiny_lm, heavier):
    model, tok = tiny_lm
    train, _ = heavier
    result = fine_tune(train, config=TrainConfig(max_steps=4, dtype="bfloat16", **FAST), model=model, tokenizer=tok)
    assert result.dtype == "bfloat16" and np.isfinite(result.history[-1]["train_loss"])


@pytest.mark.parametrize("bad", [dict(lr=0), dict(batch_size=0), dict(max_steps=-1), dict(dtype="fp8"),
                                 dict(class_weight_power=2.0), dict(lora_dropout=1.0), dict(target_modules=()),
                                 dict(schedule="cosine"), dict(patience=0),
                                 dict(loss_reduction="mean")])
def test_config_validation(bad):
    with pytest.raises(UsageError):
        TrainConfig(**bad)


def test_argument_errors(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(UsageError, match="no training rows"):
        fine_tune(Examples([], []), model=model, tokenizer=tok)
    with pytest.raises(UsageError, match="both model and tokenizer"):
        fine_tune(Examples(["a"], ["b"]), model=model)
    with pytest.raises(UsageError, match="target modules"):
        fine_tune(Examples(["a"], ["b"]), config=TrainConfig(target_modules=("c_attn",)), model=model, tokenizer=tok)


@pytest.mark.slow
def test_short_fine_tune_of_smollm2_lowers_held_out_loss():
    """The bundled SmolLM2 on 64 demo rows of which_is_heavier: a few LoRA steps beat the base model."""
    from pathlib import Path

    from thresher.api import read
    from thresher.models import load_causal_lm

    pool = Path(__file__).resolve().parents[2] / "examples" / "demo" / "pool.jsonl"
    ds = read(str(pool))
    rows = np.flatnonzero(np.asarray(ds.column("category").to_pylist()) == "which_is_heavier")
    ex = Examples.from_dataset(ds.take(rows[:96]), weight_field=None)
    train, held = ex.take(np.arange(64)), ex.take(np.arange(64, 96))
    model, tok = load_causal_lm()
    base = response_loss(model, tok, held)["loss"]
    result = fine_tune(train, held, TrainConfig(lr=1e-3, max_steps=10, eval_every=5, batch_size=8, threads=1),
                       model=model, tokenizer=tok)
    tuned = response_loss(result.model, tok, held)["loss"]
    assert result.history[0]["eval_loss"] == pytest.approx(base, rel=1e-4)
    assert tuned < base - 0.1, (base, tuned, result.history)


def test_a_token_budget_fixes_the_work_of_every_run():
    from thresher.train.lora import plan_batches

    lengths = np.random.default_rng(0).integers(5, 50, 100)
    rows = np.arange(100)
    for budget in (300, 2_000, 9_000):  # less than, about, several epochs
        plan = plan_batches(lengths, rows, TrainConfig(train_tokens=budget, batch_size=8), np.random.default_rng(1))
        done = np.cumsum([lengths[b].sum() for b in plan])
        assert done[-1] >= budget and (len(done) == 1 or done[-2] < budget)
    steps = plan_batches(lengths, rows, TrainConfig(max_steps=30, batch_size=8), np.random.default_rng(1))
    assert len(steps) == 30
    with pytest.raises(UsageError, match="auto"):
        plan_batches(lengths, rows, TrainConfig(train_tokens="auto"), np.random.default_rng(1))


def test_warmup_then_linear_decay():
    from thresher.train.lora import lr_factor

    f = lr_factor(100, TrainConfig(warmup=0.1))
    values = [f(s) for s in range(100)]
    assert values[0] < values[5] < values[9] <= 1.0 and values[10] == 1.0
    assert all(a >= b for a, b in zip(values[10:], values[11:])) and values[-1] < 0.02
    assert lr_factor(10, TrainConfig(warmup=0.0, schedule="constant"))(7) == 1.0
    with pytest.raises(UsageError, match="warmup"):
        TrainConfig(warmup=1.5)

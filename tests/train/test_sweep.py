"""Sweep: grid parsing, random configs, best-by-score with ties to the cheaper config."""
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.train.lora import TrainConfig
from thresher.train.sweep import apply_params, grid_trials, parse_grid, pick_best, random_trials, sweep, sweep_table

from .conftest import heavier_rows

CFG = TrainConfig(max_steps=2, batch_size=8, threads=1, lr=1e-2, max_length=64, eval_batch_size=32)


def test_parse_grid_and_product():
    grid = parse_grid("lr=1e-4,3e-4; epochs=1,2 ;lora_r=4,8")
    assert grid == {"lr": [1e-4, 3e-4], "epochs": [1.0, 2.0], "lora_r": [4, 8]}
    trials = grid_trials(grid)
    assert len(trials) == 8 and {"lr": 3e-4, "epochs": 2.0, "lora_r": 8} in trials


@pytest.mark.parametrize("text,message", [("lr", "bad entry"), ("speed=1,2", "bad entry"), ("lora_r=4.5", "int"),
                                          ("lr=1e-4;lr=2e-4", "twice"), ("lr=", "no values"), ("", "empty")])
def test_bad_grids(text, message):
    with pytest.raises(UsageError, match=message):
        parse_grid(text)


def test_random_trials_are_seeded_and_in_range():
    a, b = random_trials(20, seed=3), random_trials(20, seed=3)
    assert a == b and a != random_trials(20, seed=4)
    assert all(5e-5 <= t["lr"] <= 1e-3 and t["lora_r"] in (4, 8, 16) and t["epochs"] in (1, 2, 3) for t in a)


def test_epochs_clear_max_steps_unless_given():
    assert apply_params(CFG, {"epochs": 2.0}).max_steps is None
    assert apply_params(CFG, {"epochs": 2.0, "max_steps": 5}).max_steps == 5
    with pytest.raises(UsageError):
        apply_params(CFG, {"lora_r": 0})


def _trial(score, tokens):
    return {"params": {}, "metrics": {"macro_f1": {"mean": score}, "loss": {"mean": 1 - score}},
            "train_tokens": tokens, "train_seconds": 1.0}


def test_best_is_highest_score_and_ties_go_to_the_cheaper():
    trials = [_trial(0.70, 100), _trial(0.80, 900), _trial(0.7995, 300), _trial(0.60, 10)]
    best = pick_best(trials, "macro_f1", tie_tol=1e-3)
    assert best["index"] == 2 and best["tied"] == 2
    assert pick_best(trials, "macro_f1", tie_tol=0)["index"] == 1
    assert pick_best(trials, "loss", tie_tol=0)["index"] == 1  # lowest loss


def test_sweep_end_to_end(tiny_lm):
    p, a = heavier_rows(60, seed=4)
    pool = Dataset.from_records([{"instruction": x, "input": "", "output": y} for x, y in zip(p, a)])
    trials = grid_trials(parse_grid("lr=1e-3,1e-2;lora_r=2"))
    out = sweep(pool, trials, config=CFG, holdout=0.25, model=tiny_lm[0], tokenizer=tiny_lm[1])
    assert out["kind"] == "sweep" and out["metric"] == "macro_f1" and len(out["trials"]) == 2
    assert all({"params", "metrics"} <= set(t) for t in out["trials"])
    scores = [t["metrics"]["macro_f1"]["mean"] for t in out["trials"]]
    assert out["best"]["metrics"]["macro_f1"]["mean"] >= max(scores) - 1e-3
    assert "best (*)" in sweep_table(out)

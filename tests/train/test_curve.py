"""Learning curves: nested runs on the tiny model, fit, extrapolation and the recommendation."""
import numpy as np
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.train.curve import analyze, curve, curve_table
from thresher.train.lora import TrainConfig

from .conftest import heavier_rows

CFG = TrainConfig(max_steps=2, batch_size=8, threads=1, lr=1e-2, max_length=64, eval_batch_size=32)


def _points(values_by_rows, seeds=3, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [{"fraction": r / max(values_by_rows), "rows": r, "seed": s, "value": v + rng.normal(0, noise)}
            for r, v in values_by_rows.items() for s in range(seeds)]


def test_steep_curve_has_not_plateaued():
    rows = [100, 200, 400, 800, 1600]
    acc = {r: 1 - (2.0 * r ** -0.5 + 0.05) for r in rows}  # accuracy still climbing
    out = analyze(_points(acc, noise=0.002), "accuracy", 1600, n_boot=300)
    assert out["plateaued"] is False
    two = out["extrapolation"][0]
    want = (2.0 * 1600 ** -0.5) - (2.0 * 3200 ** -0.5)
    assert two["factor"] == 2 and two["rows"] == 3200
    assert two["gain"] == pytest.approx(want, abs=0.01) and two["gain_low"] <= two["gain"] <= two["gain_high"]
    assert "improve accuracy by" in out["recommendation"] and "not plateaued" in out["recommendation"]
    assert [e["factor"] for e in out["extrapolation"]] == [2, 5, 10]
    assert all(e["ci_low"] <= e["value"] <= e["ci_high"] for e in out["extrapolation"])


def test_flat_curve_has_plateaued():
    rows = [100, 200, 400, 800, 1600]
    loss = {r: 0.9 + 0.5 * r ** -2.0 for r in rows}  # flat at these sizes
    out = analyze(_points(loss, noise=0.001), "loss", 1600, n_boot=300)
    assert out["plateaued"] is True
    assert "reduce eval loss" in out["recommendation"] and "has plateaued" in out["recommendation"]
    assert all(e["value"] == pytest.approx(0.9, abs=0.01) for e in out["extrapolation"])


@pytest.fixture(scope="module")
def pool():
    p, a = heavier_rows(90, seed=2)
    return Dataset.from_records([{"instruction": x, "input": "", "output": y, "cat": y} for x, y in zip(p, a)])


def test_curve_end_to_end(pool, tiny_lm):
    out = curve(pool, config=CFG, fractions=[0.25, 0.5, 1.0], seeds=2, holdout=0.2, by="cat", n_boot=100,
                model=tiny_lm[0], tokenizer=tiny_lm[1])
    assert out["kind"] == "curve" and out["metric"] == "macro_f1"
    assert len(out["points"]) == 6 and {p["seed"] for p in out["points"]} == {0, 1}
    assert [p["rows"] for p in out["points"][:3]] == [18, 36, 72]
    assert {"a", "b", "c", "a_ci", "b_ci", "c_ci"} <= set(out["fit"])
    assert len(out["extrapolation"]) == 3 and isinstance(out["plateaued"], bool)
    assert "2x more data (144 rows)" in out["recommendation"]
    assert "fit:" in curve_table(out)


def test_curve_needs_three_fractions_and_a_known_metric(pool, tiny_lm):
    with pytest.raises(UsageError, match="at least 3 fractions"):
        curve(pool, config=CFG, fractions=[0.5, 1.0], model=tiny_lm[0], tokenizer=tiny_lm[1])
    with pytest.raises(UsageError, match="metric 'bleu'"):
        curve(pool, config=CFG, fractions=[0.3, 0.6, 1.0], metric="bleu", model=tiny_lm[0], tokenizer=tiny_lm[1])

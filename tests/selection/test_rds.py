"""rds: exact round-robin, LM embeddings on a tiny random Llama, end to end through a recipe step."""
from __future__ import annotations

import json

import numpy as np
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.rds import RDSSelector, round_robin


def plain_round_robin(pool: np.ndarray, target: np.ndarray, n: int) -> list[int]:
    """The definition: each target row in turn takes its most similar free pool row."""
    sims = target @ pool.T
    taken: list[int] = []
    while len(taken) < n:
        for t in range(len(target)):
            if len(taken) == n:
                break
            order = np.argsort(-sims[t], kind="stable")
            taken.append(int(next(i for i in order if i not in taken)))
    return taken


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed,n_pool,n_target,n", [(0, 200, 7, 60), (1, 50, 3, 50), (2, 300, 40, 120),
                                                    (3, 30, 1, 10)])
def test_round_robin_matches_the_loop(seed, n_pool, n_target, n):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, 16))  # clustered rows: target rows compete for the same pool rows
    pool = unit(centers[rng.integers(0, 4, n_pool)] + 0.3 * rng.standard_normal((n_pool, 16)))
    target = unit(centers[rng.integers(0, 4, n_target)] + 0.3 * rng.standard_normal((n_target, 16)))
    assert round_robin(pool, target, n).tolist() == plain_round_robin(pool, target, n)


def test_round_robin_spreads_the_budget_over_target_rows():
    rng = np.random.default_rng(5)
    pool = unit(rng.standard_normal((500, 8)))
    target = pool[[3, 200]] + 0.0  # two target rows: each gets half of the picks
    picks = round_robin(pool, target, 40)
    nearest = np.argmax(pool[picks] @ target.T, axis=1)
    assert abs(int((nearest == 0).sum()) - 20) <= 3
    assert picks[0] == 3 and picks[1] == 200  # each target row first takes itself


def test_selector_with_given_embeddings_and_token_budget():
    rng = np.random.default_rng(0)
    emb = unit(rng.standard_normal((100, 12)))
    ds = Dataset.from_records([{"prompt": f"q{i}", "completion": "a"} for i in range(100)])
    tokens = rng.integers(1, 20, 100).astype(float)
    sel = RDSSelector(target_embeddings=emb[:5], embedding="e").select(
        ds, Budget("tokens", 100), {"e": emb, "tokens": tokens})
    assert tokens[sel.indices].sum() <= 100 and sel.indices[:5].tolist() == [0, 1, 2, 3, 4]
    assert sel.diagnostics["target_rows"] == 5
    with pytest.raises(UsageError, match="needs a target"):
        RDSSelector()
    with pytest.raises(UsageError, match="same embedder"):
        RDSSelector(target=["x"], embedding="embedding")
    with pytest.raises(UsageError, match="shape"):
        RDSSelector(target_embeddings=emb[:2, :5], embedding="e").select(ds, 3, {"e": emb, "tokens": tokens})


# -- LM embeddings on a tiny random Llama ------------------------------------------
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from tests.features.test_lm_scores import build_model, build_tokenizer

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = build_tokenizer()
    build_model(len(tokenizer)).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def test_lm_embed_is_the_masked_mean_of_final_hidden_states(tiny_lm_dir):
    from thresher.features.lm_embed import lm_embed
    from thresher.models import load_causal_lm

    texts = ["The sea is grey.", "A hash table maps keys to values using a hash function.", "", "The sea is grey."]
    got = lm_embed(texts, tiny_lm_dir, batch_tokens=16)  # small batches: padding must not leak in
    model, tok = load_causal_lm(tiny_lm_dir)
    for i, text in enumerate(texts[:2]):
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            h = model.model(input_ids=ids).last_hidden_state[0].float().mean(0).numpy()
        assert np.allclose(got[i], h / np.linalg.norm(h), atol=1e-4)
    assert np.all(got[2] == 0) and np.array_equal(got[3], got[0])
    weighted = lm_embed(texts[:2], tiny_lm_dir, pooling="weighted")
    assert not np.allclose(weighted[1], got[1], atol=1e-3)


def test_rds_recipe_step_on_tiny_llama(tiny_lm_dir, tmp_path):
    from thresher.features.store import FeatureStore
    from thresher.pipeline.runner import StepSpec, run_steps

    rows = [{"instruction": f"Write a poem about the sea number {i}.", "output": "The sea is grey."}
            for i in range(20)] + [{"instruction": f"Explain hash tables, case {i}.", "output": "A hash table maps keys."}
                                   for i in range(20)]
    pool = Dataset.from_records(rows)
    target = tmp_path / "eval.jsonl"
    target.write_text(json.dumps({"instruction": "Explain hash tables, case 99.", "output": "A hash table maps keys."}))
    store = FeatureStore(tmp_path / "cache")
    spec = StepSpec("rds", {"target": str(target), "model": tiny_lm_dir, "n": 10})
    run = run_steps(pool, [spec], store=store)
    assert len(run.selection) == 10
    assert all(i >= 20 for i in run.selection.indices)  # the hash-table rows are nearest the target
    assert "lm_embed" in store.stats.computed
    store.stats.computed.clear()
    again = run_steps(pool, [spec], store=store)  # cached: no second embedding pass
    assert np.array_equal(again.selection.indices, run.selection.indices) and "lm_embed" not in store.stats.computed


@pytest.mark.slow
def test_rds_on_bundled_smollm2():
    from thresher.features.lm_embed import lm_embed

    emb = lm_embed(["What is the capital of France?", "Name the capital city of France.",
                    "def add(a, b): return a + b"])
    assert emb.shape == (3, 576)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]

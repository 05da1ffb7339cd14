"""featurize(): id first, input order, cache reuse, dependencies, export."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import OutputExistsError, UsageError
from thresher.features import DEFAULT_FEATURES, available, export, featurize, make, registry, resolve
from thresher.features.store import FeatureStore

ROWS = [
    {"instruction": "Write a poem about the sea.", "input": "", "output": "Waves roll in and out."},
    {"instruction": "What is 2+2?", "input": "", "output": "4"},
    {"instruction": "Summarize the text.", "input": "The cat sat on the mat all day long.",
     "output": "A cat sat on a mat."},
    {"instruction": "what is  2+2", "input": "", "output": "4!"},  # same text once normalized
    {"instruction": "Write a poem about the sea.", "input": "", "output": ""},
]


@pytest.fixture
def ds():
    return Dataset.from_records(ROWS)


def test_id_first_then_features_in_input_order(ds, tmp_path):
    table = featurize(ds, ["text", "tags"], cache_dir=tmp_path)
    assert table.column_names[0] == "id" and table.num_rows == len(ROWS)
    assert table.column("id").to_pylist() == list(ds.ids)
    assert table.column("instruction_type").to_pylist() == ["generate", "math", "summarize", "math", "generate"]
    assert table.column("response_chars").to_pylist() == [len(r["output"]) for r in ROWS]
    assert table.column_names[1:] == make("text").columns + ["instruction_type"]


def test_second_run_is_served_from_the_cache(ds, tmp_path):
    first = featurize(ds, ["text", "quality"], cache_dir=tmp_path)
    assert json.loads(first.schema.metadata[b"thresher.cache"]) == \
        {"hits": 0, "misses": 2, "parts_computed": 2, "parts_resumed": 0}
    second = featurize(ds, ["text", "quality"], cache_dir=tmp_path)
    assert json.loads(second.schema.metadata[b"thresher.cache"])["hits"] == 2
    assert second.equals(first)


def test_exact_dup_hashes(ds, tmp_path):
    h = featurize(ds, ["exact_dup"], cache_dir=tmp_path).column("exact_hash").to_pylist()
    assert h[1] == h[3]  # "What is 2+2?"/"4" vs "what is  2+2"/"4!"
    assert len({h[0], h[1], h[2], h[4]}) == 4  # same prompt as row 0 but another response
    one_side = featurize(ds, [{"exact_dup": {"field": "prompt"}}], cache_dir=tmp_path)
    p = one_side.column("exact_hash").to_pylist()
    assert p[0] == p[4] and p[0] != p[1]


def test_near_dup_clusters(tmp_path):
    base = "the quick brown fox jumps over the lazy dog and runs far away into the green forest today"
    rows = [{"instruction": base, "output": "ok"}, {"instruction": base + " now", "output": "ok"},
            {"instruction": "an entirely different request about cooking pasta with tomato sauce", "output": "ok"}]
    cl = featurize(Dataset.from_records(rows), ["near_dup"], cache_dir=tmp_path).column("dup_cluster").to_pylist()
    assert cl == [0, 0, 2]


def test_near_dup_past_32_bit_string_offsets_joins_as_large_string(tmp_path, monkeypatch):
    """Over 2 GiB of prompt + response text (a 5M-row pool) overflowed `string`
    offsets when joined; past the limit the join is `large_string`, same clusters."""
    base = "the quick brown fox jumps over the lazy dog and runs far away into the green forest today"
    rows = [{"instruction": base, "output": "ok"}, {"instruction": base + " now", "output": "ok"},
            {"instruction": "an entirely different request about cooking pasta with tomato sauce", "output": "ok"}]
    pool = Dataset.from_records(rows)
    batch = pa.table({"prompt": pool.column("prompt"), "response": pool.column("response")})
    assert registry.field_texts(batch, "both").type == pa.string()
    monkeypatch.setattr(registry, "STRING_OFFSET_LIMIT", 64)
    joined = registry.field_texts(batch, "both")
    assert joined.type == pa.large_string() and joined.to_pylist()[0] == base + "\n\nok"
    cl = featurize(pool, ["near_dup"], cache_dir=tmp_path).column("dup_cluster").to_pylist()
    assert cl == [0, 0, 2]


def test_dependencies_are_cached_but_only_requested_columns_returned(ds, tmp_path, monkeypatch):
    from tests.features.test_clusters import FakeEmbedding

    monkeypatch.setitem(registry.FEATURIZERS, "fake_embed", FakeEmbedding)
    rows = [{"instruction": c + " task", "output": "x"} for c in "aabbbcaacb"]
    data = Dataset.from_records(rows)
    store = FeatureStore(tmp_path)
    table = featurize(data, [{"cluster": {"k": 3, "embedding": "fake_embed"}}], store=store)
    assert table.column_names == ["id", "cluster", "cluster_distance"]
    assert store.stats.computed == ["fake_embed", "cluster"]
    labels = table.column("cluster").to_pylist()
    assert labels == [{"a": 0, "b": 1, "c": 2}[r["instruction"][0]] for r in rows]
    with_emb = featurize(data, ["fake_embed", {"cluster": {"k": 3, "embedding": "fake_embed"}}], store=store)
    assert "fake_embedding" in with_emb.column_names
    assert store.stats.computed == ["fake_embed", "cluster"]  # nothing new computed


def test_progress_is_reported_per_part(ds, tmp_path):
    calls = []
    featurize(ds, ["text"], store=FeatureStore(tmp_path, chunk_rows=2), progress=lambda *a: calls.append(a))
    assert calls == [("text", 2, 5), ("text", 4, 5), ("text", 5, 5)]


def test_feature_specs(ds, tmp_path):
    assert [f.name for f in resolve(None)] == list(DEFAULT_FEATURES)
    assert [f.name for f in resolve("text")] == ["text"]
    assert len(resolve(["text", "text", {"name": "text"}])) == 1  # same feature once
    assert make({"quality": {"ngram": 2}}).params["ngram"] == 2
    several = resolve({"text": {}, "cluster": {"k": 20}})  # a recipe's mapping form
    assert [f.name for f in several] == ["text", "cluster"] and several[1].k == 20
    assert make({"name": "cluster", "k": 7}).k == 7
    assert {"text", "quality", "tags", "exact_dup", "near_dup", "embed_static", "embed_minilm", "lm",
            "cluster"} <= set(available())
    assert make("embed_static").columns == ["embedding"] and make("embed_minilm").columns == ["embedding_minilm"]
    assert make("lm").chunk_rows == 1024 and make("near_dup").scope == "global"
    with pytest.raises(UsageError, match="unknown feature 'nope'; available: "):
        featurize(ds, ["nope"], cache_dir=tmp_path)
    with pytest.raises(UsageError, match="feature 'text'"):
        make("text", bogus=1)


def test_column_clash_is_an_error(ds, tmp_path):
    with pytest.raises(UsageError, match="both output a column 'exact_hash'"):
        featurize(ds, ["exact_dup", {"exact_dup": {"field": "prompt"}}], cache_dir=tmp_path)


def test_export_is_atomic_and_refuses_to_overwrite(ds, tmp_path):
    table = featurize(ds, ["text"], cache_dir=tmp_path / "cache")
    out = export(table, tmp_path / "out" / "features.parquet")
    assert pq.read_table(out).equals(table)
    assert sorted(p.name for p in out.parent.iterdir()) == ["features.parquet"]
    with pytest.raises(OutputExistsError):
        export(table, out)
    export(table.slice(0, 2), out, overwrite=True)
    assert pq.read_table(out).num_rows == 2
    with pytest.raises(UsageError, match="Parquet"):
        export(table, tmp_path / "features.csv")


def test_featurizer_is_callable_on_a_batch(ds):
    batch = pa.table({"prompt": ds.column("prompt"), "response": ds.column("response")})
    out = make("quality")(batch)
    assert out.num_rows == len(ROWS) and out.column_names == make("quality").columns
    assert out.column("empty_response").to_pylist() == [False, False, False, False, True]
    assert np.isfinite(out.column("rep_ngram_ratio").to_numpy()).all()


def test_embedding_and_lm_wrappers_call_the_batch_functions(ds, tmp_path, monkeypatch):
    from thresher.features import embeddings, lm_scores
    from thresher.features.embeddings import to_arrow

    seen = {}

    def fake_embed_batch(batch, model, field, **params):
        seen["embed"] = (batch.column_names, model, field, params)
        return {"embedding": to_arrow(np.ones((batch.num_rows, 4), np.float32))}

    def fake_lm_batch(batch, model, **params):
        seen["lm"] = (batch.column("prompt").to_pylist(), model, params)
        cols = make("lm").columns
        return {c: pa.array([1.0] * batch.num_rows) for c in cols}

    monkeypatch.setattr(embeddings, "embed_batch", fake_embed_batch)
    monkeypatch.setattr(lm_scores, "lm_score_batch", fake_lm_batch)
    table = featurize(ds, [{"embed_static": {"field": "prompt", "batch_size": 8}},
                           {"lm": {"max_length": 64}}], cache_dir=tmp_path)
    assert table.column("embedding").type == pa.list_(pa.float16(), 4)
    assert seen["embed"] == (["prompt", "response"], "static", "prompt", {"batch_size": 8})
    assert seen["lm"][0] == ds.column("prompt").to_pylist()
    assert seen["lm"][1] is None and seen["lm"][2]["max_length"] == 64
    assert table.column("ifd").to_pylist() == [1.0] * len(ROWS)


@pytest.mark.slow
def test_minilm_embeddings_and_clusters_end_to_end(tmp_path):
    pytest.importorskip("sentence_transformers")
    topics = {"cooking": "How do I bake bread with {} flour?", "space": "How far is the planet {} from the sun?"}
    rows = [{"instruction": t.format(w), "output": "ok"} for t in topics.values()
            for w in ["white", "rye", "spelt", "wheat", "oat", "corn"]]
    data = Dataset.from_records(rows)
    spec = {"cluster": {"k": 2, "embedding": "embed_minilm"}}
    table = featurize(data, ["embed_minilm", spec], cache_dir=tmp_path)
    assert table.column("embedding_minilm").type.list_size == 384
    labels = table.column("cluster").to_pylist()
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]
    again = featurize(data, ["embed_minilm", spec], cache_dir=tmp_path)
    assert json.loads(again.schema.metadata[b"thresher.cache"])["misses"] == 0

"""Dataset-level augmentation: fields per format, thin classes, provenance, dedup, writing."""
import json

import numpy as np
import pyarrow as pa
import pytest

from thresher.api import read
from thresher.balance.augment import Augmenter, augment, write_augmented
from thresher.data.dataset import Dataset
from thresher.errors import OutputExistsError, UsageError

SENTENCES = [
    "Explain why the quick brown fox jumps over the lazy dog",
    "Describe a happy walk along the river bank at night",
    "Write a short story about a big car and a small boat",
    "Summarize the main idea of the following light article",
    "Give three reasons why people enjoy running in the morning",
    "Tell me how to cook rice with a little water and salt",
]


def alpaca_pool(n_per_class=(12, 3, 2)):
    rows = []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            rows.append({"instruction": f"{SENTENCES[(c + i) % len(SENTENCES)]} number {c}-{i}",
                         "input": "", "output": f"Answer {c}-{i}: the reply is Yes, certainly with care.",
                         "category": f"class_{c}"})
    return Dataset.from_records(rows)


def test_only_below_augments_only_thin_classes():
    ds = alpaca_pool()
    res = augment(ds, n_aug=3, by="category", only_below=5, seed=0)
    out = res.dataset
    synthetic = np.asarray(out.column("_synthetic").to_pylist())
    cats = np.asarray(out.column("category").to_pylist())
    assert set(cats[synthetic]) == {"class_1", "class_2"}
    assert synthetic.sum() == 3 * (3 + 2)
    table = {c["category"]: c for c in res.report["categories"]}
    assert table["class_0"] == {"category": "class_0", "before": 12, "augmented": 0, "after": 12}
    assert table["class_1"]["after"] == 3 + 9 and table["class_2"]["after"] == 2 + 6
    assert res.report["rows_augmented"] == 5 and res.report["requested"] == 15


def test_provenance_columns():
    ds = alpaca_pool((3,))
    res = augment(ds, n_aug=2, seed=1)
    out = res.dataset
    ids = out.column("_source_id").to_pylist()
    synthetic = out.column("_synthetic").to_pylist()
    ops = out.column("_aug_ops").to_pylist()
    source_ids = list(ds.ids)
    assert ids[:3] == source_ids and synthetic[:3] == [False] * 3 and ops[:3] == [""] * 3
    assert all(s in source_ids for s in ids[3:]) and all(synthetic[3:])
    assert all(o in ("sr", "ri", "rs", "rd") for o in ops[3:])
    # An augmented row's prompt differs from its source's; the response is untouched (field=prompt).
    by_id = dict(zip(source_ids, ds.table.to_pylist()))
    for row, sid in zip(out.table.to_pylist()[3:], ids[3:]):
        assert row["instruction"] != by_id[sid]["instruction"]
        assert row["output"] == by_id[sid]["output"]


def _synthetic_rows(result):
    out = result.dataset
    rows = out.table.to_pylist()
    return sorted((r["_source_id"], r["instruction"], r["output"]) for r in rows if r["_synthetic"])


def test_results_do_not_depend_on_row_order():
    ds = alpaca_pool((6, 4))
    shuffled = ds.take(np.random.default_rng(0).permutation(len(ds)))
    first = _synthetic_rows(augment(ds, n_aug=3, field="both", seed=5))
    assert len(first) == 30
    assert first == _synthetic_rows(augment(shuffled, n_aug=3, field="both", seed=5))
    assert first != _synthetic_rows(augment(ds, n_aug=3, field="both", seed=6))
    # A row's variants do not depend on which other rows are augmented with it.
    alone = _synthetic_rows(augment(ds.take(np.array([3])), n_aug=3, field="both", seed=5))
    assert set(alone) <= set(first)


def test_exact_duplicates_of_pool_rows_are_dropped_and_counted():
    rows = [{"prompt": "alpha bravo", "completion": "ok"}, {"prompt": "bravo alpha", "completion": "ok"},
            {"prompt": "Bravo, alpha!", "completion": "ok"}]
    ds = Dataset.from_records(rows)
    res = augment(ds, ops=["rs"], n_aug=1, seed=0)
    # Each row's only swap equals (after normalization) another pool row.
    assert res.report["dropped_exact_pool_duplicates"] == 3
    assert res.report["augmented_rows"] == 0 and res.dataset.num_rows == 3


def test_repeats_across_sources_are_dropped_once():
    rows = [{"prompt": "alpha bravo charlie", "completion": "x"}, {"prompt": "alpha bravo charlie", "completion": "x"}]
    ds = Dataset.from_records(rows)
    res = augment(ds, ops=["rd"], alpha=0.3, n_aug=2, seed=0)
    texts = [r["prompt"] for r, s in zip(res.dataset.table.to_pylist(), res.dataset.column("_synthetic").to_pylist())
             if s]
    assert len(texts) == len(set(texts))
    assert res.report["dropped_duplicate_augmented"] + res.report["augmented_rows"] == 4


def test_near_duplicates_of_other_rows_are_counted_and_optionally_dropped():
    base = ("the quick brown fox jumps over the lazy dog near the old river bank today while "
            "a happy child walks along the quiet road toward the big house on the hill")
    rows = [{"prompt": base, "completion": "a"}, {"prompt": base + " again", "completion": "a"},
            {"prompt": "completely different words about cooking rice with water", "completion": "b"}]
    ds = Dataset.from_records(rows)
    kept = augment(ds, ops=["sr"], alpha=0.03, n_aug=2, seed=0, near_dup_threshold=0.6)
    assert kept.report["near_duplicates_of_other_rows"] > 0
    # One word of ~30 replaced: Jaccard ~0.75 with the other look-alike pool row (both ways);
    # the third row has no look-alike.
    assert kept.report["near_duplicates_of_other_rows"] == 4
    dropped = augment(ds, ops=["sr"], alpha=0.03, n_aug=2, seed=0, near_dup_threshold=0.6, drop_near_dups=True)
    assert dropped.report["dropped_near_duplicates"] == kept.report["near_duplicates_of_other_rows"]
    assert dropped.report["augmented_rows"] == kept.report["augmented_rows"] - dropped.report["dropped_near_duplicates"]


def test_messages_edit_only_the_chosen_roles():
    conv = [{"role": "system", "content": "You are a helpful and careful assistant"},
            {"role": "user", "content": "Describe a happy walk along the river bank"},
            {"role": "assistant", "content": "It was a quiet and pleasant walk"}]
    ds = Dataset.from_records([{"messages": conv}])
    for field, changed in (("prompt", {1}), ("response", {2}), ("both", {1, 2})):
        out = augment(ds, n_aug=2, field=field, seed=0).dataset
        for row in out.table.to_pylist()[1:]:
            turns = row["messages"]
            assert [t["role"] for t in turns] == ["system", "user", "assistant"]
            same = {i for i in range(3) if turns[i]["content"] == conv[i]["content"]}
            assert same == {0, 1, 2} - changed


def test_sharegpt_and_prompt_completion_and_text():
    sg = Dataset.from_records([{"conversations": [{"from": "human", "value": "Tell me about the big river"},
                                                  {"from": "gpt", "value": "It is long and wide"}]}])
    out = augment(sg, n_aug=2, field="response", seed=0).dataset.table.to_pylist()
    assert out[1]["conversations"][0]["value"] == "Tell me about the big river"
    assert out[1]["conversations"][1]["value"] != "It is long and wide"
    pc = Dataset.from_records([{"prompt": "Describe the happy dog", "completion": "The dog runs fast"}])
    rows = augment(pc, n_aug=2, field="both", seed=0).dataset.table.to_pylist()
    assert rows[1]["prompt"] != "Describe the happy dog" or rows[1]["completion"] != "The dog runs fast"
    text = Dataset.from_records([{"text": "A long walk by the quiet river"}])
    assert augment(text, n_aug=1, field="response", seed=0).report["augmented_rows"] == 1
    with pytest.raises(UsageError, match="no prompt"):
        augment(text, field="prompt")


def test_refuses_unknown_format_and_bad_options():
    with pytest.raises(UsageError, match="augment works on"):
        augment(Dataset.from_table(pa.table({"a": ["x"]})))
    with pytest.raises(UsageError, match="--field"):
        Augmenter(field="answer")
    with pytest.raises(UsageError, match="--only-below needs --by"):
        Augmenter(only_below=5)
    with pytest.raises(UsageError, match="--ops"):
        Augmenter(ops="sr,zz")


def test_label_is_protected_with_by():
    rows = [{"instruction": "Is the answer Yes or No for this happy dog question", "output": "Yes",
             "category": "Yes"} for _ in range(1)]
    ds = Dataset.from_records(rows)
    res = augment(ds, n_aug=6, alpha=0.5, by="category", seed=0, ops=["sr", "rd", "ri"])
    for row in res.dataset.table.to_pylist()[1:]:
        assert "Yes" in row["instruction"]


def test_augmented_rows_never_straddle_a_group_split():
    from thresher.train.split import group_split, row_groups

    ds = alpaca_pool((20, 10, 6))
    out = augment(ds, n_aug=3, field="both", seed=0).dataset
    groups = np.asarray(out.column("_source_id").to_pylist())
    for seed in range(5):
        train, test = group_split(len(out), 0.3, seed=seed, groups=groups)
        assert not set(groups[train]) & set(groups[test])
    codes = row_groups(out)
    for g in set(groups):
        assert len(set(codes[groups == g])) == 1


def test_write_roundtrip_jsonl_keeps_original_bytes_and_unique_ids(tmp_path):
    src = tmp_path / "pool.jsonl"
    rows = [{"id": f"r{i}", "instruction": SENTENCES[i], "output": "Fine.", "category": "c"} for i in range(4)]
    src.write_text("".join(json.dumps(r, indent=None, separators=(",", ":")) + "\n" for r in rows))
    ds = read(src)
    aug = Augmenter(n_aug=2, seed=0)
    res = aug.augment(ds)
    out = tmp_path / "out.jsonl"
    written = write_augmented(ds, res, out, params=aug.params(), seed=0)
    lines = out.read_text().splitlines()
    original = src.read_text().splitlines()
    for a, b in zip(lines[:4], original):
        assert a.startswith(b[:-1])  # original bytes, provenance keys appended
    back = read(out)  # ids stay unique, so the output reads back
    assert len(back) == 4 + res.report["augmented_rows"]
    assert len(set(back.ids)) == len(back)
    manifest = json.loads(written["manifest"].read_text())
    assert manifest["augment"]["augmented_rows"] == res.report["augmented_rows"]
    assert manifest["method"] == "eda" and manifest["params"]["n_aug"] == 2
    # Same seed, same bytes.
    out2 = tmp_path / "out2.jsonl"
    write_augmented(ds, Augmenter(n_aug=2, seed=0).augment(ds), out2, params=aug.params(), seed=0)
    assert out2.read_bytes() == out.read_bytes()
    with pytest.raises(OutputExistsError):
        write_augmented(ds, res, out, params=aug.params(), seed=0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_other_output_formats(tmp_path, suffix):
    ds = alpaca_pool((3, 2))
    res = augment(ds, n_aug=2, seed=0, only_new=True)
    out = tmp_path / f"out{suffix}"
    write_augmented(ds, res, out, params={}, seed=0)
    back = read(out)
    assert len(back) == res.report["augmented_rows"] == 10
    assert set(back.column("_synthetic").to_pylist()) in ({True}, {"True"}, {"true"})


def test_integer_ids_get_fresh_integers():
    ds = Dataset.from_records([{"id": 7, "prompt": "Describe a happy walk", "completion": "ok"},
                               {"id": 9, "prompt": "Explain the big river", "completion": "ok"}])
    out = augment(ds, n_aug=2, seed=0).dataset
    ids = out.column("id").to_pylist()
    assert ids[:2] == [7, 9] and len(set(ids)) == len(ids) and min(ids[2:]) == 10


def test_augmenting_an_augmented_file_keeps_the_original_groups(tmp_path):
    ds = alpaca_pool((3,))
    aug = Augmenter(n_aug=2, seed=0)
    first = tmp_path / "first.jsonl"
    write_augmented(ds, aug.augment(ds), first, params=aug.params(), seed=0)
    again = read(first)
    res = Augmenter(n_aug=2, seed=1).augment(again)
    groups = set(res.dataset.column("_source_id").to_pylist())
    assert groups == set(ds.ids)  # second-generation rows join their first-generation group
    synthetic = res.dataset.column("_synthetic").to_pylist()
    assert synthetic.count(True) == len(res.dataset) - 3  # first-generation rows stay synthetic
    ops = res.dataset.column("_aug_ops").to_pylist()
    assert any("," in o for o in ops[9:])  # second generation: "<first op>,<second op>"

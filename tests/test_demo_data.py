"""The bundled demo pool: well-formed, real, and exactly as its PROVENANCE.md describes it."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"
POOL = DEMO / "pool.jsonl"
PROVENANCE = DEMO / "PROVENANCE.md"
KEYS = ["id", "instruction", "input", "output", "category", "source", "license"]
LICENSES = {"chatterbot-corpus": "BSD-3-Clause", "evals": "MIT"}
ID_PREFIX = {"chatterbot-corpus": "chatterbot", "evals": "evals"}


def load_builder():
    """scripts/build_demo_data.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_demo_data", REPO / "scripts" / "build_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def markdown_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first table under `## heading`, as dicts keyed by its header cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    header, body = cells[0], cells[2:]
    return [dict(zip(header, row)) for row in body]


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return POOL.read_text(encoding="utf-8").split("\n")


@pytest.fixture(scope="module")
def rows(lines) -> list[dict]:
    assert lines[-1] == "", "pool.jsonl must end with a newline"
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture(scope="module")
def provenance() -> str:
    return PROVENANCE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def table(provenance) -> dict[str, dict[str, str]]:
    entries = markdown_table(provenance, "Rows per category")
    return {e["category"]: e for e in entries}


def test_rows_have_the_documented_keys_in_order_with_string_values(rows):
    for row in rows:
        assert list(row) == KEYS, row.get("id")
        assert all(isinstance(v, str) for v in row.values()), row["id"]


def test_lines_are_canonical_json_without_ascii_escaping(lines, rows):
    # Byte-stable output: each line is exactly what the builder's json.dumps call writes.
    assert all(line == json.dumps(row, ensure_ascii=False) for line, row in zip(lines, rows))
    assert "\r" not in POOL.read_text(encoding="utf-8")


def test_texts_are_real_and_trimmed(rows):
    for row in rows:
        assert row["input"] == ""
        for key in ("instruction", "output"):
            assert row[key] and row[key] == row[key].strip(), (row["id"], key)


def test_ids_are_unique_and_name_source_and_category(rows):
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        match = re.fullmatch(r"(chatterbot|evals)-([a-z0-9_]+)-(\d{4,5})", r["id"])
        assert match, r["id"]
        assert match.group(1) == ID_PREFIX[r["source"]]
        assert match.group(2) == r["category"]


def test_source_and_license_agree(rows):
    assert {r["source"] for r in rows} == set(LICENSES)
    assert all(r["license"] == LICENSES[r["source"]] for r in rows)


def test_size_and_number_of_categories(rows):
    assert 3000 <= len(rows) <= 6000
    assert len({r["category"] for r in rows}) >= 15
    assert POOL.stat().st_size < 5 * 1024 * 1024


def test_category_counts_match_provenance_table(rows, table):
    counts = Counter(r["category"] for r in rows)
    total = table.pop("**total**")
    assert int(total["rows"]) == len(rows)
    assert {c: int(e["rows"]) for c, e in table.items()} == dict(counts)
    for category, entry in table.items():
        members = [r for r in rows if r["category"] == category]
        assert {r["source"] for r in members} == {entry["source"]}
        assert int(entry["distinct outputs"]) == len({r["output"] for r in members})
        triples = {(r["instruction"], r["input"], r["output"]) for r in members}
        assert int(entry["exact duplicate rows"]) == len(members) - len(triples)


def test_provenance_names_versions_and_licenses(provenance):
    sources = {e["package"]: e for e in markdown_table(provenance, "Sources")}
    assert set(sources) == set(LICENSES)
    for package, entry in sources.items():
        assert entry["license"] == LICENSES[package]
        assert re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", entry["version"])
        assert re.fullmatch(r"`[0-9a-f]{64}`", entry["sha256 of the archive"])
    # Both licenses require their notice to travel with the data.
    assert "Copyright (c) 2017, Gunther Cox" in provenance
    assert "Copyright (c) 2023 OpenAI" in provenance


def test_label_style_categories_exist(rows, provenance):
    outputs: dict[str, set] = {}
    sizes = Counter(r["category"] for r in rows)
    for r in rows:
        outputs.setdefault(r["category"], set()).add(r["output"])
    # Small categories have few distinct outputs by accident; require real size.
    label_like = {c for c, o in outputs.items() if len(o) <= 10 and sizes[c] >= 50}
    assert len(label_like) >= 2
    declared = {e["category"] for e in markdown_table(provenance, "Category origins")
                if e["notes"].startswith("label")}
    assert len(declared) >= 2 and declared <= label_like


def test_category_imbalance_is_kept(rows):
    sizes = Counter(r["category"] for r in rows).values()
    assert max(sizes) / min(sizes) >= 50


# ---------------------------------------------------------------- the builder's pure parts

def test_chat_to_instruction_puts_system_first_and_rejects_multi_turn():
    b = load_builder()
    assert b.chat_to_instruction([{"role": "system", "content": " Be brief. "},
                                  {"role": "user", "content": "2+2?\n"}]) == "Be brief.\n\n2+2?"
    assert b.chat_to_instruction([{"role": "user", "content": "hi"}]) == "hi"
    assert b.chat_to_instruction([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) is None
    assert b.chat_to_instruction([{"role": "system", "content": "x", "name": "example_user"},
                                  {"role": "user", "content": "y"}]) is None
    assert b.chat_to_instruction([{"role": "system", "content": "x"}, {"role": "user", "content": " "}]) is None
    assert b.chat_to_instruction("plain prompt") is None


def test_ideal_to_output_accepts_only_unambiguous_answers():
    b = load_builder()
    assert b.ideal_to_output(" Yes ") == "Yes"
    assert b.ideal_to_output(["B", "B "]) == "B"
    assert b.ideal_to_output(["A", "B"]) is None
    assert b.ideal_to_output([]) is None
    assert b.ideal_to_output("  ") is None
    assert b.ideal_to_output(3) is None


def test_chatterbot_pairs_are_consecutive_turns_and_skip_exploded_strings():
    b = load_builder()
    pairs, skipped = b.chatterbot_pairs([["Hi", "Hello", "How are you?"], list("In a"), ["Q", " "]])
    assert pairs == [("Hi", "Hello"), ("Hello", "How are you?")]
    assert skipped["conversation split into single characters"] == 3
    assert skipped["empty or non-string turn"] == 1


def test_sample_indices_is_deterministic_ordered_and_uniform():
    b = load_builder()
    n, cap, draws = 20, 5, 2000
    first = b.sample_indices(list(range(n)), cap, "salt")
    assert first == b.sample_indices(list(range(n)), cap, "salt")
    assert first == sorted(first) and len(set(first)) == cap
    assert b.sample_indices([3, 7], cap, "salt") == [3, 7]
    hits = Counter(i for s in range(draws) for i in b.sample_indices(list(range(n)), cap, f"t{s}"))
    p = cap / n
    tolerance = 5 * math.sqrt(p * (1 - p) / draws)  # 5 standard errors per index
    assert all(abs(hits[i] / draws - p) < tolerance for i in range(n))


@pytest.mark.skipif(not os.environ.get("THRESHER_DEMO_SOURCES"),
                    reason="set THRESHER_DEMO_SOURCES to the folder of downloaded archives to check a rebuild")
def test_rebuild_from_sources_is_byte_identical(tmp_path):
    load_builder().build(Path(os.environ["THRESHER_DEMO_SOURCES"]), tmp_path)
    for name in ("pool.jsonl", "PROVENANCE.md"):
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name

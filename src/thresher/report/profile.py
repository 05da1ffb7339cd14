"""A profile of a pool: format, fields, lengths, categories, duplicates, quality
flags, a sampled near-duplicate estimate, and suggestions in plain words.
`profile_dataset` returns plain JSON-ready data (stable keys, schema
``thresher.profile/1``); `thresher inspect` prints it and the HTML report
reuses it. The near-duplicate estimate (sampled rows against the whole pool,
with its interval) is `thresher.report.near_duplicates` (re-exported here).
"""
from __future__ import annotations

import shlex
from pathlib import PurePath
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError
from thresher.report.near_duplicates import (NEAR_MINHASH_SEED, NEAR_NUM_PERM, NEAR_SHINGLE,  # noqa: F401
                                             near_duplicate_estimate, near_rate_from_signatures, wilson_interval)

SCHEMA = "thresher.profile/1"
THIN_ROWS = 20  # a category with fewer rows is "thin"
IMBALANCE_RATIO = 10.0  # max/min class count that counts as imbalanced
LABEL_MAX_TOKENS = 4  # median response tokens of a label-style category or pool ...
LABEL_MAX_ANSWERS = 20  # ... with at most this many distinct answers
MAX_LISTED = 1000  # category values kept in the profile (most frequent first)


def profile_dataset(ds, by: Sequence[str] | str | None = None, seed: int = 0, near_sample: int = 2000) -> dict:
    """A JSON-ready profile of `ds` (see the module docstring).

    `by`: category field(s), each profiled on its own; None means `category`
    when the pool has that field, else none. `seed` draws the near-duplicate
    sample of `near_sample` rows (all rows when the pool is smaller).
    """
    fields = _category_fields(ds, by)
    if isinstance(near_sample, bool) or not isinstance(near_sample, int) or near_sample < 1:
        raise UsageError(f"near_sample must be a positive integer, got {near_sample!r}")
    prompt, response = _text(ds.column("prompt")), _text(ds.column("response"))
    from thresher.features.registry import field_texts
    from thresher.features.text import count_tokens

    tokens = {"prompt_tokens": count_tokens(prompt), "response_tokens": count_tokens(response)}
    lengths = length_profile(tokens)
    categories = [category_profile(ds, f, response, tokens["response_tokens"]) for f in fields]

    profile = {
        "schema": SCHEMA,
        "source": {"path": ds.source.path, "file_format": ds.source.file_format,
                   "record_format": ds.source.record_format, "sha256": ds.source.sha256},
        "rows": len(ds),
        "fields": field_profile(ds.table),
        "lengths": lengths,
        "by": fields,
        "categories": categories,
        "duplicates": {"exact": exact_duplicates(prompt, response)},
        "near_duplicates": near_duplicate_estimate(field_texts(pa.table({"prompt": prompt, "response": response}),
                                                               "both"), near_sample, seed),
        "quality": quality_profile(prompt, response, ds.source.record_format),
    }
    chat = chat_profile(ds)
    if chat is not None:
        profile["chat"] = chat
    profile["label_style"] = _label_style(lengths, response, categories)
    profile["suggestions"] = suggestions(profile)
    return profile


def chat_profile(ds) -> dict | None:
    """Turns per role and rows with tool calls, tool turns, content parts, non-text
    parts or reasoning (chat records only; see `thresher.data.chat`)."""
    from thresher.data.chat import chat_profile as counts
    from thresher.data.formats import CHAT_KEYS, ROLES

    fmt = ds.source.record_format
    if fmt not in CHAT_KEYS:
        return None
    name = dict(ds.source.field_map).get(ROLES[fmt][0][0], ROLES[fmt][0][0])
    col = ds.table.column(name)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return counts(col, *CHAT_KEYS[fmt])


def _category_fields(ds, by: Sequence[str] | str | None) -> list[str]:
    if by is None:
        return ["category"] if "category" in ds.table.column_names else []
    names = [by] if isinstance(by, str) else list(by)
    for name in names:
        if not isinstance(name, str) or name not in ds.table.column_names:
            raise UsageError(f"{ds.source.path}: no field {name!r} to profile by "
                             f"(fields: {', '.join(ds.table.column_names)})")
    return list(dict.fromkeys(names))


def _text(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], pa.string())
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, "")


# -- fields and lengths --------------------------------------------------------
def field_profile(table: pa.Table) -> list[dict[str, Any]]:
    """Name, Arrow type and null count of every original field."""
    return [{"name": name, "type": str(table.schema.field(name).type), "nulls": int(table.column(name).null_count)}
            for name in table.column_names]


def length_profile(tokens: dict[str, np.ndarray]) -> dict[str, Any]:
    """Summary statistics of token counts per row (e.g. {"prompt_tokens": ...,
    "response_tokens": ...}, the `text` feature's estimate) and their counts in
    power-of-two bins [0, 1), [1, 2), [2, 4), ... shared by all of them."""
    top = max((int(t.max()) for t in tokens.values() if len(t)), default=0)
    edges = [0] + [2**k for k in range(int(top).bit_length() + 1)]
    out: dict[str, Any] = {"tokenizer": "approx", "bins": edges}
    for name, t in tokens.items():
        out[name] = {**summary(t), "counts": _log2_bins(t, len(edges) - 1).tolist()}
    return out


def summary(x: np.ndarray) -> dict[str, float | int | None]:
    """min, p5, median, mean, p95, max and total of `x` (None when empty)."""
    if len(x) == 0:
        return dict.fromkeys(("min", "p5", "median", "mean", "p95", "max", "total"))
    p5, median, p95 = np.percentile(x, [5, 50, 95])
    return {"min": int(x.min()), "p5": float(p5), "median": float(median), "mean": float(x.mean()),
            "p95": float(p95), "max": int(x.max()), "total": int(x.sum())}


def _log2_bins(x: np.ndarray, nbins: int) -> np.ndarray:
    idx = np.where(x > 0, np.floor(np.log2(np.maximum(x, 1))).astype(np.int64) + 1, 0)
    return np.bincount(idx, minlength=nbins)[:nbins]


# -- categories ------------------------------------------------------------------
def category_profile(ds, field: str, response: pa.Array, response_tokens: np.ndarray) -> dict[str, Any]:
    """Counts per value of `field` (most frequent first), the imbalance ratio,
    thin values, and the values whose answers look like labels."""
    codes, labels = ds.categorical([field])
    counts = np.bincount(codes, minlength=len(labels))
    order = np.argsort(-counts, kind="stable")
    n = max(len(codes), 1)
    listed = [{"value": labels[i], "count": int(counts[i]), "share": float(counts[i] / n)}
              for i in order[:MAX_LISTED].tolist()]
    thin = [labels[i] for i in order.tolist() if counts[i] < THIN_ROWS] if len(labels) <= MAX_LISTED else []
    return {"field": field, "classes": len(labels), "counts": listed, "listed": len(listed),
            "imbalance_ratio": float(counts.max() / counts.min()) if len(labels) else None,
            "thin": thin, "thin_rows": THIN_ROWS,
            "label_like": _label_like(codes, labels, counts, response, response_tokens)}


def _label_like(codes: np.ndarray, labels: list[str], counts: np.ndarray, response: pa.Array,
                response_tokens: np.ndarray) -> list[dict[str, Any]]:
    """Values whose responses are short and few: label-style tasks."""
    if len(codes) == 0 or len(labels) > MAX_LISTED:
        return []
    encoded = pc.dictionary_encode(response)
    answer = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pair_codes = np.unique(codes * len(encoded.dictionary) + answer)
    distinct = np.bincount(pair_codes // len(encoded.dictionary), minlength=len(labels))
    order = np.lexsort((response_tokens, codes))  # rows by category, then tokens
    starts = np.cumsum(counts) - counts
    median = response_tokens[order[starts + (counts - 1) // 2]]  # lower median per category
    hits = np.flatnonzero((distinct <= LABEL_MAX_ANSWERS) & (2 * distinct <= counts)
                          & (median <= LABEL_MAX_TOKENS))
    out = []
    for i in hits[np.argsort(-counts[hits], kind="stable")][:20].tolist():
        values = np.unique(answer[codes == i])[:5]
        out.append({"value": labels[i], "distinct_responses": int(distinct[i]),
                    "examples": encoded.dictionary.take(pa.array(values)).to_pylist()})
    return out


def _label_style(lengths: dict, response: pa.Array, categories: list[dict]) -> dict[str, Any]:
    median = lengths["response_tokens"]["median"]
    distinct = int(pc.count_distinct(response).as_py()) if len(response) else 0
    pool = median is not None and 0 < median <= LABEL_MAX_TOKENS
    return {"pool": bool(pool), "median_response_tokens": median, "distinct_responses": distinct,
            "categories": [{"field": c["field"], **hit} for c in categories for hit in c["label_like"]]}


# -- duplicates and quality --------------------------------------------------------
def exact_duplicates(prompt: pa.Array, response: pa.Array) -> dict[str, Any]:
    """Rows whose normalized prompt and response (the `exact_dup` feature's hash)
    equal an earlier row's: `duplicate_rows` is what exact dedup would remove."""
    from thresher.features.registry import ExactDup

    n = len(prompt)
    hashes = ExactDup().compute(pa.table({"prompt": prompt, "response": response}))["exact_hash"]
    _, sizes = np.unique(hashes.to_numpy(zero_copy_only=False), return_counts=True)
    dup = int(n - len(sizes))
    return {"duplicate_rows": dup, "fraction": dup / n if n else 0.0, "groups": int(np.count_nonzero(sizes > 1)),
            "rows_in_groups": int(sizes[sizes > 1].sum()), "largest_group": int(sizes.max(initial=0))}


def quality_profile(prompt: pa.Array, response: pa.Array, record_format: str) -> dict[str, Any]:
    """Empty and truncated responses (the `quality` feature's rules), empty prompts."""
    from thresher.features.quality import truncated

    def blank(text: pa.Array) -> int:
        return int(pc.sum(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)).as_py() or 0)

    return {"empty_responses": blank(response), "truncated_responses": int(truncated(response).sum()),
            "empty_prompts": blank(prompt) if record_format != "text" else None}


# -- suggestions -----------------------------------------------------------------------
def suggestions(profile: dict) -> list[str]:
    """What to do about what the profile shows, in plain words."""
    n = profile["rows"]
    path = profile["source"]["path"]
    data = shlex.quote(path) if path != "<memory>" else "DATA"
    ext = PurePath(path).suffix if profile["source"]["file_format"] in ("jsonl", "json", "csv", "parquet") else ""
    ext = ext or ".jsonl"
    out: list[str] = []
    if n == 0:
        return ["the pool has no rows"]
    exact = profile["duplicates"]["exact"]
    if exact["duplicate_rows"]:
        out.append(f"{exact['duplicate_rows']:,} rows ({_pct(exact['fraction'])}) are exact duplicates of an earlier "
                   f"row: run `thresher select {data} --method dedup --kind exact -o deduped{ext}`")
    out += _quality_suggestions(profile["quality"], n, data, ext)
    out += _category_suggestions(profile, n)
    label = profile["label_style"]
    if label["pool"]:
        tok = label["median_response_tokens"]
        out.append(f"responses are very short (median {tok:g} token{'' if tok == 1 else 's'}, "
                   f"{label['distinct_responses']:,} distinct): looks label-style — per-class metrics "
                   "(precision/recall/F1 per label) apply, not just accuracy")
    for field in profile["by"]:
        hits = [h for h in label["categories"] if h["field"] == field]
        if hits:
            out.append(_label_suggestion(hits))
    near = profile["near_duplicates"]
    if near["ci_low"] > exact["rows_in_groups"] / n + 0.01:  # both count every row of a group
        out.append(f"about {_pct(near['fraction'])} of rows have a near-duplicate, exact ones included "
                   f"(Jaccard >= {near['threshold']:g}; "
                   f"{near['confidence']:.0%} CI {_pct(near['ci_low'])}-{_pct(near['ci_high'])}): "
                   f"run `thresher select {data} --method dedup --kind near -o deduped{ext}`")
    return out


def _label_suggestion(hits: list[dict]) -> str:
    def one(hit: dict) -> str:
        shown = "/".join(e if e.strip() else repr(e) for e in hit["examples"][:3])
        shown += "/..." if hit["distinct_responses"] > 3 else ""
        return f"'{hit['value']}' ({shown})"

    names = ", ".join(one(h) for h in hits[:6]) + (", ..." if len(hits) > 6 else "")
    field = hits[0]["field"]
    what = f"{field} {names} looks" if len(hits) == 1 else f"{len(hits)} values of '{field}' look"
    return (f"{what} label-style (a few short answers{'' if len(hits) == 1 else ': ' + names}): "
            "evaluate with per-class metrics (precision/recall/F1 per label)")


def _quality_suggestions(quality: dict, n: int, data: str, ext: str) -> list[str]:
    out = []
    empty, cut = quality["empty_responses"], quality["truncated_responses"]
    if empty == n:
        out.append(f"all {n:,} responses are empty: check which field holds the answer (--format / --field-map)")
    elif empty or cut:
        what = " and ".join(s for s in (f"{empty:,} empty" if empty else "", f"{cut:,} truncated" if cut else "") if s)
        out.append(f"{what} responses: run `thresher select {data} --method quality "
                   f"--where 'not empty_response and not truncated_response' -o clean{ext}`")
    return out


def _category_suggestions(profile: dict, n: int) -> list[str]:
    if not profile["categories"]:
        return ["no category field: use `--by FIELD`, or get automatic categories with "
                "`--by instruction_type` (instruction-type tags) or `--by cluster` (k-means on embeddings); "
                "`thresher featurize --features tags,cluster` caches them"]
    out = []
    for cat in profile["categories"]:
        field, classes = cat["field"], cat["classes"]
        if classes > max(50, n // 2):
            out.append(f"'{field}' has {classes:,} distinct values for {n:,} rows: it looks like an id, not a category")
            continue
        if classes == 1:
            out.append(f"'{field}' has a single value: nothing to balance; use another `--by` field")
            continue
        out += _thin_suggestions(cat, n)
        if cat["imbalance_ratio"] >= IMBALANCE_RATIO:
            out.append(f"classes of '{field}' are imbalanced (max/min = {cat['imbalance_ratio']:.0f}x): "
                       "consider `thresher balance` (over/under-sampling or class weights)")
    return out


def _thin_suggestions(cat: dict, n: int) -> list[str]:
    field, thin = cat["field"], cat["thin"]
    if not thin:
        return []
    count = {c["value"]: c["count"] for c in cat["counts"]}
    fix = f"consider `thresher generate --by {field} --for-below {cat['thin_rows']}` or merging"
    if len(thin) <= 3:
        return [f"{field} '{v}' has {_rows(count[v])} ({_pct(count[v] / n)}): {fix} it" for v in reversed(thin)]
    listed = ", ".join(f"{v} ({count[v]})" for v in list(reversed(thin))[:6])
    more = ", ..." if len(thin) > 6 else ""
    return [f"{len(thin)} values of '{field}' have fewer than {cat['thin_rows']} rows ({listed}{more}): {fix} them"]


def _rows(k: int) -> str:
    return f"{k:,} row" if k == 1 else f"{k:,} rows"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 or x == 0 else f"{100 * x:.2g}%"

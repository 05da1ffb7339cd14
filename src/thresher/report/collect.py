"""Gather what a RUN holds: a subset manifest (with its pool, selected rows,
trace and removed rows), compare/curve `results.json`, active `trajectory.json`.

RUN is a `<stem>.manifest.json`, a subset file with a manifest beside it, a
results/trajectory JSON file, or a folder holding any of these (results files
may also sit one folder down, e.g. `run/compare/results.json`).
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thresher.errors import InputError, UsageError

RESULT_KINDS = ("compare", "curve", "active")
RESULT_FILES = ("results.json", "trajectory.json")  # looked for in RUN and its sub-folders
EXPENSIVE_FEATURIZERS = ("lm", "embed_minilm")  # read from the cache only, never computed for a report
DEFAULT_CATEGORY_FIELDS = ("category", "task", "label")
REMOVED_EXAMPLES = 3
# feature columns that are not scores: vectors, hashes and group / cluster ids
NOT_SCORES = frozenset({"embedding", "embedding_minilm", "embedding_custom", "exact_hash", "dup_cluster", "cluster",
                        "cluster_distance", "lang", "instruction_type"})


@dataclass
class RunData:
    """Everything a report can show; a part that is missing has a note saying why."""

    source: str
    manifest: dict[str, Any] | None = None
    manifest_path: Path | None = None
    pool: Any = None  # thresher Dataset
    pool_note: str | None = None
    selected: np.ndarray | None = None  # pool row positions of the subset (repeats for with-replacement)
    removed_rows: list[dict[str, Any]] = field(default_factory=list)  # from <stem>.removed.jsonl
    results: list[dict[str, Any]] = field(default_factory=list)  # compare / curve
    trajectory: dict[str, Any] | None = None  # active
    notes: list[str] = field(default_factory=list)

    @property
    def trace(self) -> list[dict[str, Any]]:
        return list((self.manifest or {}).get("trace") or [])

    def steps(self) -> list[tuple[str, dict[str, Any]]]:
        """(step name, params) of the run: the trace's steps, else the single method."""
        if self.trace:
            return [(t["step"], dict(t.get("params") or {})) for t in self.trace]
        m = self.manifest or {}
        if m.get("method") and m.get("method") != "recipe":
            return [(m["method"], dict(m.get("params") or {}))]
        return []


def collect(run: str | Path, *, pool=None, selected: np.ndarray | None = None) -> RunData:
    """Find and load the parts of RUN. `pool` / `selected` skip re-reading the pool
    when the caller (e.g. `thresher select --report`) already holds it."""
    run = Path(run)
    if not run.exists():
        raise UsageError(f"{run}: no such file or folder; give a <stem>.manifest.json, a subset file, "
                         "a results.json / trajectory.json or a folder holding them")
    data = RunData(str(run))
    manifests, results = _find(run)
    for path in results:
        _load_result(path, data)
    if len(manifests) > 1 and not (data.results or data.trajectory):
        raise UsageError(f"{run}: holds several manifests ({', '.join(p.name for p in manifests)}); "
                         "give the one to report on")
    if len(manifests) > 1:
        data.notes.append(f"{len(manifests)} subset manifests here; the report covers the results files only")
    elif manifests:
        _load_manifest(manifests[0], data, pool, selected)
    if data.manifest is None and not data.results and data.trajectory is None:
        raise UsageError(f"{run}: found no manifest (*.manifest.json), results.json or trajectory.json")
    return data


def _find(run: Path) -> tuple[list[Path], list[Path]]:
    if run.is_dir():
        manifests = sorted(run.glob("*.manifest.json"))
        results = sorted(p for pattern in ("*.json", "*/*.json") for p in run.glob(pattern)
                         if p.name in RESULT_FILES)
        return manifests, results
    if run.name.endswith(".manifest.json"):
        return [run], []
    if run.suffix == ".json" and _json_kind(run) in RESULT_KINDS:
        return [], [run]
    from thresher.data.manifest import manifest_path

    beside = manifest_path(run)
    if beside.is_file():
        return [beside], []
    raise UsageError(f"{run}: not a manifest or results file, and no {beside.name} beside it")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(str(path), f"not readable JSON ({err})") from None


def _json_kind(path: Path) -> str | None:
    try:
        data = _read_json(path)
    except InputError:
        return None
    return data.get("kind") if isinstance(data, dict) else None


def _load_result(path: Path, data: RunData) -> None:
    body = _read_json(path)
    kind = body.get("kind") if isinstance(body, dict) else None
    if kind not in RESULT_KINDS:
        raise InputError(str(path), f"expected a JSON object with kind one of {', '.join(RESULT_KINDS)}")
    if kind == "active":
        data.trajectory = body
    else:
        data.results.append(body)


def _load_manifest(path: Path, data: RunData, pool, selected) -> None:
    data.manifest = _read_json(path)
    data.manifest_path = path
    if not isinstance(data.manifest, dict) or "input" not in data.manifest:
        raise InputError(str(path), "not a thresher manifest (no 'input' section)")
    data.removed_rows = _removed_rows(path)
    if pool is None:
        pool = _read_pool(data)
    if pool is None:
        return
    data.pool = pool
    data.selected = np.asarray(selected, dtype=np.int64) if selected is not None else _positions(data)


def _read_pool(data: RunData):
    """The pool named by the manifest, if it is still there and unchanged."""
    from thresher.data.readers import read_dataset

    info = data.manifest["input"]
    recipe = data.manifest.get("recipe") or {}
    candidates = [Path(info.get("path") or "")]
    candidates += [data.manifest_path.parent / candidates[0]]
    if recipe.get("path"):
        candidates.append(Path(recipe["path"]).parent / candidates[0])
    found = next((p for p in candidates if str(p) not in ("", ".") and p.exists()), None)
    if found is None:
        data.pool_note = (f"the pool {info.get('path')!r} named in the manifest is not found (looked relative to "
                          "the working folder and the manifest); run the report from where the subset was made")
        return None
    result = read_dataset(str(found), record_format=info.get("record_format"),
                          field_map=recipe.get("field_map") or None,
                          on_error="skip" if info.get("rejected_rows") else "raise")
    ds = result.dataset
    if info.get("sha256") and ds.source.sha256 and ds.source.sha256 != info["sha256"]:
        data.pool_note = f"the pool {found} changed since the run (sha256 differs from the manifest's)"
        return None
    return ds


def _positions(data: RunData) -> np.ndarray | None:
    """Pool positions of the manifest's selected ids (the first row of an id that repeats)."""
    ids = data.manifest.get("selected_ids")
    if ids is None:
        data.notes.append("the manifest lists no selected_ids")
        return None
    pool_ids = np.asarray(data.pool.ids, dtype=str)
    uniq, first = np.unique(pool_ids, return_index=True)
    wanted = np.asarray(ids, dtype=str) if ids else np.array([], dtype=str)
    at = np.minimum(np.searchsorted(uniq, wanted), max(len(uniq) - 1, 0))
    hit = (uniq[at] == wanted) if len(uniq) else np.zeros(len(wanted), dtype=bool)
    if not hit.all():
        data.notes.append(f"{int((~hit).sum())} selected ids are not in the pool; they are left out")
    return first[at[hit]].astype(np.int64)


def _removed_rows(manifest: Path) -> list[dict[str, Any]]:
    """Up to a few removed rows per (step, reason) from `<stem>.removed.jsonl` (written with --keep-removed)."""
    stem = manifest.name[: -len(".manifest.json")]
    path = manifest.with_name(f"{stem}.removed.jsonl")
    if not path.is_file():
        return []
    seen: dict[tuple, int] = {}
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            key = (rec.get("step"), rec.get("reason"))
            if isinstance(rec, dict) and seen.get(key, 0) < REMOVED_EXAMPLES:
                seen[key] = seen.get(key, 0) + 1
                rows.append(rec)
    order = {key: i for i, key in enumerate(seen)}
    return sorted(rows, key=lambda r: order[(r.get("step"), r.get("reason"))])


# -- what to plot ----------------------------------------------------------
def category_field(data: RunData, by: str | None = None) -> tuple[str | None, str]:
    """The field whose distribution is compared, and where that choice came from."""
    fields = data.pool.fields if data.pool is not None else []
    if by:
        return by, "--by"
    for name, params in data.steps():
        given = params.get("by")
        if isinstance(given, str):
            given = [g.strip() for g in given.split(",")]
        if given and all(g in fields for g in given):
            return given[0], f"the {name} step's 'by'"
    for name in DEFAULT_CATEGORY_FIELDS:
        if name in fields:
            return name, f"the pool's '{name}' field"
    return None, "no --by given, no step stratified by a field, and the pool has no category/task/label field"


def step_features(data: RunData) -> tuple[list[str], list[dict[str, Any]]]:
    """Scalar feature columns the steps used, and the thresholds their parameters name.

    Threshold: {"feature", "op", "value", "step"}."""
    from thresher.pipeline.registry import build_step, requirements

    seed = (data.manifest or {}).get("seed") or 0
    used, thresholds = [], []
    for name, params in data.steps():
        try:
            step, _ = build_step(name, params, seed)
            used += requirements(step)
        except Exception:  # noqa: BLE001  (a step this version cannot rebuild just shows fewer plots)
            continue
        if name == "quality" and isinstance(params.get("where"), str):
            thresholds += _rule_thresholds(params["where"], name)
        if name in ("ifd", "superfilter"):
            thresholds.append({"feature": "ifd", "op": "<", "value": float(params.get("max_ifd", 1.0)),
                               "step": name})
    return [c for c in dict.fromkeys(used) if c not in NOT_SCORES], thresholds


def _rule_thresholds(where: str, step: str) -> list[dict[str, Any]]:
    from thresher.selection.quality import parse_rules

    out = []
    for clause in parse_rules(where):
        for node in ast.walk(clause):
            if not isinstance(node, ast.Compare) or len(node.ops) != 1:
                continue
            left, right = node.left, node.comparators[0]
            if isinstance(left, ast.Name) and isinstance(right, ast.Constant) and _is_number(right.value):
                out.append({"feature": left.id, "op": _OPS.get(type(node.ops[0]), "?"),
                            "value": float(right.value), "step": step})
    return out


_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def pool_features(pool, columns: list[str], cache_dir: str | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feature columns for the pool (cheap ones computed and cached; LM scores and
    MiniLM embeddings only when already cached), and a note per column left out."""
    from thresher.features.registry import make
    from thresher.features.store import FeatureStore
    from thresher.features.columns import feature_sources, load_features

    store = FeatureStore(cache_dir)
    sources = feature_sources()
    out, notes = {}, []
    for col in columns:
        if col not in pool.fields and col not in sources:
            notes.append(f"'{col}' is neither a pool field nor a feature")
            continue
        source = sources.get(col)
        if col not in pool.fields and source in EXPENSIVE_FEATURIZERS and not store.is_cached(pool, make(source)):
            notes.append(f"'{col}' is not in the feature cache ({store.root}); the report does not run the "
                         f"{source} featurizer (run `thresher featurize` with it first)")
            continue
        try:
            out.update(load_features(pool, [col], store=store))
        except Exception as err:  # noqa: BLE001  (a feature that cannot be made is a note, not a failure)
            notes.append(f"'{col}' could not be loaded ({err})")
    return out, notes

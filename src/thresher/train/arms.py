"""Arm specs for `thresher compare`: what each arm trains on and how.

Grammar (modifiers come last, `+template=` takes the rest of the spec)::

    ARM   := BASE ["+class-weights[=POWER]"] ["+template=TEMPLATE"]
    BASE  := full | base | DATA
           | bag:DATAxK            (K adapters, probabilities averaged)
           | seq:DATA,DATA         (train on the first, then on the second)
    DATA  := full | random | random@BUDGET | bootstrap | bootstrap@BUDGET | PATH
           | stratified@BUDGET     (random within each label/task, proportional)
           | longest@BUDGET        (the longest responses: the length baseline)
           | select:METHOD@BUDGET  (a thresher selector run on the training side, timed)
    BUDGET:= 200 (rows) | 20% | 0.2 (fraction of the pool) | 50000t (tokens)

`random` without a budget draws as many rows as the first selection-file arm
(so a selection is compared with random data of the same size). `bootstrap`
draws rows with replacement (default: as many as the pool). A PATH is a
subset file written by `thresher sample/select/run/balance` (its manifest
next to it maps rows to pool ids) or any data file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from thresher.core.budget import Budget
from thresher.errors import UsageError

if TYPE_CHECKING:
    from thresher.train.examples import Examples

DATA_KINDS = ("full", "random", "bootstrap", "file", "stratified", "longest", "select")
BUDGETED = ("stratified", "longest", "select")  # kinds that need an @BUDGET
_BUDGET = re.compile(r"^(?:(?P<pct>\d+(?:\.\d*)?)%|(?P<tok>\d+)t|(?P<rows>\d+)|(?P<frac>\d*\.\d+))$")
_KEYWORDS = ("full", "base", "random", "bootstrap", "stratified", "longest")


@dataclass(frozen=True)
class Arm:
    """One parsed arm. `kind`: full | base | random | bootstrap | file | bag | seq.
    `inner`: the member data of a bag (one arm) or the two stages of a seq."""

    spec: str
    name: str
    kind: str
    budget: Budget | None = None
    path: str | None = None
    members: int = 1
    inner: tuple["Arm", ...] = field(default=())
    class_weights: float | None = None
    template: str | None = None
    method: str | None = None  # the selector of a select: arm

    @property
    def trains(self) -> bool:
        return self.kind != "base"

    def with_template(self, template: str, label: str) -> "Arm":
        """This arm under `template`, named `name [label]`."""
        return replace(self, template=template, name=f"{self.name} [{label}]")


def parse_budget(text: str, spec: str | None = None) -> Budget:
    """`200` rows, `20%` or `0.2` of the pool, `50000t` tokens."""
    where = f"arm {spec!r}: " if spec else ""
    m = _BUDGET.match(text.strip())
    if not m:
        raise UsageError(f"{where}bad budget {text!r}; use rows (200), a fraction (20% or 0.2) or tokens (50000t)")
    if m["pct"] is not None:
        value = float(m["pct"]) / 100
        if not 0 < value <= 1:
            raise UsageError(f"{where}budget {text!r} must be in (0%, 100%]")
        return Budget("fraction", value)
    if m["frac"] is not None:
        value = float(m["frac"])
        if not 0 < value <= 1:
            raise UsageError(f"{where}budget {text!r} must be in (0, 1]")
        return Budget("fraction", value)
    kind, raw = ("tokens", m["tok"]) if m["tok"] is not None else ("rows", m["rows"])
    if int(raw) < 1:
        raise UsageError(f"{where}budget {text!r} must be at least 1")
    return Budget(kind, float(int(raw)))


def parse_arm(spec: str) -> Arm:
    """Parse one arm spec; a UsageError names the spec when it is malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"empty arm spec {spec!r}")
    text = spec.strip()
    if text not in _KEYWORDS and Path(text).is_file():  # a file name may hold '+'
        return _data_arm(text, spec)
    text, template = _split_template(spec.lstrip(), spec)  # a template keeps its trailing spaces
    text, power = _split_class_weights(text.rstrip(), spec)
    if text == "base":
        if power is not None:
            raise UsageError(f"arm {spec!r}: the untuned 'base' arm cannot take class weights")
        arm = Arm(spec, spec, "base")
    elif text.startswith("bag:"):
        arm = _bag_arm(text[4:], spec)
    elif text.startswith("seq:"):
        arm = _seq_arm(text[4:], spec)
    else:
        arm = _data_arm(text, spec)
    return replace(arm, spec=spec, class_weights=power, template=template)


def parse_arms(specs: list[str | Arm]) -> list[Arm]:
    """Parse several specs (parsed arms pass through); names must be distinct."""
    if not specs:
        raise UsageError("give at least one arm (e.g. --arms full,random@20%)")
    arms = [s if isinstance(s, Arm) else parse_arm(s) for s in specs]
    seen: dict[str, str] = {}
    for arm in arms:
        if arm.name in seen:
            raise UsageError(f"arms {seen[arm.name]!r} and {arm.spec!r} have the same name {arm.name!r}")
        seen[arm.name] = arm.spec
    return arms


def split_arm_list(text: str) -> list[str]:
    """Split `--arms "full,random@20%,seq:full,sel.jsonl"` on commas, keeping
    the comma inside a `seq:A,B` spec."""
    parts = [p.strip() for p in text.split(",")]
    out: list[str] = []
    for part in parts:
        if out and out[-1].startswith("seq:") and "," not in out[-1]:
            out[-1] = f"{out[-1]},{part}"
        elif part:
            out.append(part)
    return out


def _split_template(text: str, spec: str) -> tuple[str, str | None]:
    if "+template=" not in text:
        return text, None
    text, template = text.split("+template=", 1)
    if not template:
        raise UsageError(f"arm {spec!r}: +template= needs a template, e.g. +template='Q: {{prompt}}\\nA: '")
    return text, template


def _split_class_weights(text: str, spec: str) -> tuple[str, float | None]:
    m = re.search(r"\+class-weights(?:=([^+]*))?$", text)
    if not m:
        if "+" in text and not Path(text).is_file():
            bad = text[text.index("+"):]
            raise UsageError(f"arm {spec!r}: unknown modifier {bad!r}; use +class-weights[=POWER] or +template=...")
        return text, None
    power = 1.0
    if m.group(1) is not None:
        try:
            power = float(m.group(1))
        except ValueError:
            raise UsageError(f"arm {spec!r}: class-weights power must be a number in [0, 1]") from None
        if not 0 <= power <= 1:
            raise UsageError(f"arm {spec!r}: class-weights power must be in [0, 1], got {power}")
    return text[:m.start()], power


def _data_arm(text: str, spec: str) -> Arm:
    if text == "full":
        return Arm(spec, spec, "full")
    if text.startswith("select:"):
        method, sep, budget = text[len("select:"):].partition("@")
        if not method or not sep:
            raise UsageError(f"arm {spec!r}: a selector arm is select:METHOD@BUDGET, e.g. select:kcenter@20%")
        return Arm(spec, spec, "select", budget=parse_budget(budget, spec), method=method)
    for kind in BUDGETED[:2]:
        if text == kind or text.startswith(kind + "@"):
            if not text.startswith(kind + "@"):
                raise UsageError(f"arm {spec!r}: {kind} needs a budget, e.g. {kind}@20%")
            return Arm(spec, spec, kind, budget=parse_budget(text[len(kind) + 1:], spec))
    for kind in ("random", "bootstrap"):
        if text == kind:
            return Arm(spec, spec, kind)
        if text.startswith(kind + "@"):
            return Arm(spec, spec, kind, budget=parse_budget(text[len(kind) + 1:], spec))
    if text in ("base",) or text.startswith(("bag:", "seq:")):
        raise UsageError(f"arm {spec!r}: {text!r} cannot be nested; a bag or seq member is data "
                         "(full, random[@BUDGET], bootstrap[@BUDGET] or a file)")
    path = Path(text)
    if not path.is_file():
        if path.suffix.lower() in (".jsonl", ".json", ".csv", ".parquet") or "/" in text or path.is_dir():
            if path.is_dir() and (path / "dataset_info.json").is_file():
                return Arm(spec, path.name, "file", path=str(path))
            raise UsageError(f"arm {spec!r}: no such file {text!r}")
        raise UsageError(f"arm {spec!r}: unknown arm; use full, base, random@BUDGET, bootstrap@BUDGET, "
                         "bag:DATAxK, seq:DATA,DATA or a selection file")
    name = path.stem if spec.strip() == text else spec
    return Arm(spec, name, "file", path=str(path))


def _bag_arm(body: str, spec: str) -> Arm:
    m = re.match(r"^(.+)x(\d+)$", body)
    if not m:
        raise UsageError(f"arm {spec!r}: a bag is bag:DATAxK, e.g. bag:random@20%x3")
    k = int(m.group(2))
    if k < 2:
        raise UsageError(f"arm {spec!r}: a bag needs at least 2 members, got {k}")
    inner = _data_arm(m.group(1), spec)
    return Arm(spec, spec, "bag", members=k, inner=(inner,))


def _seq_arm(body: str, spec: str) -> Arm:
    if body.count(",") < 1:
        raise UsageError(f"arm {spec!r}: a sequential arm is seq:FIRST,SECOND, e.g. seq:full,picked.jsonl")
    first, second = body.split(",", 1)
    stages = (_data_arm(first.strip(), spec), _data_arm(second.strip(), spec))
    return Arm(spec, spec, "seq", inner=stages)


# ------------------------------------------------------------------ drawing rows
@dataclass
class Drawn:
    """Rows an arm trains on for one seed: examples, tokens per row, pool ids."""

    examples: "Examples"
    tokens: np.ndarray
    ids: list[str]
    dropped: int = 0  # rows of a selection file left out because they are held out
    select_seconds: float = 0.0  # time a select: arm's selector took


class ArmData:
    """Draws each data arm's rows from the training side of the pool.

    `exclude_ids` are held-out ids: rows of selection files with those ids are
    dropped, so a selection made on the whole pool never trains on eval rows.
    Tokens per row are counted with `tokenizer` under `template` (the
    training encoding, capped at `max_length`).
    """

    def __init__(self, pool, tokenizer, *, label_field: str | None = None, exclude_ids=(),
                 template: str | None = None, max_length: int = 256, task_field: str | None = None,
                 cache_dir: str | None = None):
        from thresher.train.examples import Examples

        self.pool = pool
        self.tokenizer, self.template, self.max_length = tokenizer, template, max_length
        self.label_field, self.task_field, self.cache_dir = label_field, task_field, cache_dir
        self._response_tokens: np.ndarray | None = None
        self.examples = Examples.from_dataset(pool, weight_field="auto", label_field=label_field)
        self.exclude = set(map(str, exclude_ids))
        self._tokens: np.ndarray | None = None
        self._files: dict[str, Drawn] = {}

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = self.count_tokens(self.examples)
        return self._tokens

    def count_tokens(self, examples) -> np.ndarray:
        from thresher.train.examples import encode

        if not len(examples):
            return np.zeros(0, np.int64)
        return encode(self.tokenizer, examples, self.template, self.max_length).lengths

    def file_rows(self, arm: Arm) -> Drawn:
        """A selection file's rows (minus held-out ids), read once."""
        if arm.path not in self._files:
            self._files[arm.path] = self._read_file(arm)
        return self._files[arm.path]

    def draw(self, arm: Arm, seed: int, member: int | None = None, match_rows: int | None = None) -> Drawn:
        """The rows of data arm `arm` for `seed`. A bag `member` index makes
        full and file data a bootstrap resample (random data a fresh subset)."""
        rng = np.random.default_rng([seed, 0 if member is None else member + 1])
        if arm.kind == "file":
            base = self.file_rows(arm)
            if member is None:
                return base
            return _subset(base, rng.integers(0, len(base.ids), size=len(base.ids)))
        if arm.kind in BUDGETED:
            return self._budgeted(arm, seed)
        everything = Drawn(self.examples, self.tokens if arm.budget and arm.budget.kind == "tokens" else None,
                           [str(i) for i in self.examples.ids])
        n = len(self.examples)
        if arm.kind == "full":
            rows = np.arange(n) if member is None else rng.integers(0, n, size=n)
        elif arm.kind == "bootstrap":
            rows = rng.integers(0, n, size=self._size(arm, n, match_rows))
        else:
            rows = self._random_rows(arm, rng, n, match_rows)
        drawn = _subset(everything, rows)
        if drawn.tokens is None:
            drawn.tokens = self.count_tokens(drawn.examples)
        return drawn

    def _size(self, arm: Arm, n: int, match_rows: int | None) -> int:
        if arm.budget is None:
            if arm.kind == "bootstrap":
                return n
            if match_rows is None:
                raise UsageError(f"arm {arm.spec!r}: 'random' without a budget matches a selection-file arm's "
                                 "size, and there is none; use random@BUDGET (e.g. random@20%)")
            k = match_rows
        else:
            k = arm.budget.rows(n)
        if k > n and arm.kind == "random":
            raise UsageError(f"arm {arm.spec!r}: budget of {k} rows exceeds the {n} training rows of the pool")
        if k < 1:
            raise UsageError(f"arm {arm.spec!r}: budget gives 0 rows on a pool of {n}")
        return k

    def _random_rows(self, arm: Arm, rng: np.random.Generator, n: int, match_rows: int | None) -> np.ndarray:
        order = rng.permutation(n)
        if arm.budget is not None and arm.budget.kind == "tokens":
            k = arm.budget.fits_tokens(self.tokens[order])
            if k < 1:
                raise UsageError(f"arm {arm.spec!r}: {int(arm.budget.value)} tokens hold no whole row")
            return np.sort(order[:k])
        return np.sort(order[:self._size(arm, n, match_rows)])

    def _budgeted(self, arm: Arm, seed: int) -> Drawn:
        """stratified / longest / select: rows, the selector's time, as a Drawn."""
        import time

        start = time.perf_counter()
        n = len(self.examples)
        k = arm.budget.rows(n) if arm.budget.kind != "tokens" else None
        if arm.kind == "longest":
            order = np.lexsort((np.arange(n), -self.response_tokens))
            rows = order[:k] if k else order[:max(1, arm.budget.fits_tokens(self.tokens[order]))]
        elif arm.kind == "stratified":
            rows = self._stratified(arm, seed, k)
        else:
            rows = self._selected(arm, seed)
        drawn = _subset(Drawn(self.examples, self.tokens, [str(i) for i in self.examples.ids]), np.sort(rows))
        drawn.select_seconds = time.perf_counter() - start
        return drawn

    @property
    def response_tokens(self) -> np.ndarray:
        if self._response_tokens is None:
            ids = self.tokenizer(self.examples.responses, add_special_tokens=False)["input_ids"]
            self._response_tokens = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        return self._response_tokens

    def _stratified(self, arm: Arm, seed: int, k: int | None) -> np.ndarray:
        from thresher.sampling.stratified import StratifiedSampler

        field = self.task_field or self.label_field
        if field is None:
            raise UsageError(f"arm {arm.spec!r}: stratified sampling needs --label-field (or --task-field)")
        if k is None:
            raise UsageError(f"arm {arm.spec!r}: stratified takes a row budget (200 or 20%), not tokens")
        sel = StratifiedSampler(by=[field], allocation="proportional", random_state=seed).select(self.pool, k)
        return np.asarray(sel.indices, np.int64)

    def _selected(self, arm: Arm, seed: int) -> np.ndarray:
        from thresher.features.store import FeatureStore
        from thresher.pipeline.runner import StepSpec, run_steps

        budget = ({"tokens": int(arm.budget.value)} if arm.budget.kind == "tokens"
                  else {"n": arm.budget.rows(len(self.examples))})
        result = run_steps(self.pool, [StepSpec(arm.method, budget)], seed=seed, store=FeatureStore(self.cache_dir))
        return np.asarray(result.selection.indices, np.int64)

    def _read_file(self, arm: Arm) -> Drawn:
        from thresher.data.manifest import load_manifest, manifest_path
        from thresher.data.readers import read_dataset
        from thresher.train.examples import Examples

        ds = read_dataset(arm.path).dataset
        ids = [str(i) for i in ds.ids]
        man = manifest_path(Path(arm.path))
        if man.is_file():
            selected = load_manifest(man).get("selected_ids")
            if isinstance(selected, list) and len(selected) == len(ds):
                ids = [str(i) for i in selected]
        label_field = self.label_field if self.label_field in ds.fields else None
        if self.label_field and label_field is None:
            raise UsageError(f"arm {arm.spec!r}: {arm.path} has no label field {self.label_field!r}")
        examples = Examples.from_dataset(ds, weight_field="auto", label_field=label_field)
        examples.ids = ids
        keep = np.flatnonzero([i not in self.exclude for i in ids])
        if keep.size == 0:
            raise UsageError(f"arm {arm.spec!r}: every row of {arm.path} is held out for evaluation")
        kept = examples.take(keep)
        return Drawn(kept, self.count_tokens(kept), [ids[i] for i in keep], dropped=len(ids) - keep.size)


def _subset(drawn: Drawn, rows: np.ndarray) -> Drawn:
    tokens = None if drawn.tokens is None else drawn.tokens[rows]
    return Drawn(drawn.examples.take(rows), tokens, [drawn.ids[i] for i in rows])

"""The pool-based active-learning loop: simulation with an oracle, and summaries.

`ActiveSimulator(...).run(X, y)` splits the rows into a seeded held-out test
set and a pool, labels a cold-start set, then per round fits the learner on
the labeled rows, scores it on the test set, predicts a fixed stop set
(for the stabilizing-predictions rule) and asks the strategy for the next
batch, with the labels as the oracle. Every strategy sees the same split,
cold-start set and stop set for a given seed, so curves are paired.
The simulation runs to the label budget so curves align across seeds; a
round's `stopped_reason` marks where a stopping rule first fired (and the
final round, where the budget did).

Interactive mode keeps an `ActiveState` in a directory: each call reads the
labels of the last batch back (`read_labels`), refits, and picks the next
batch (`next_batch`), recording kappa on the stop set and any stopping rule.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from thresher.active.coldstart import cold_start
from thresher.active.learners import Learner, LogisticLearner, predict
from thresher.active.stopping import (BudgetRule, PlateauRule, StabilizingPredictions, StoppingRule,
                                      cohen_kappa, first_reason)
from thresher.active.strategies import make_strategy
from thresher.errors import InputError, UsageError

METRICS = ("accuracy", "macro_f1")


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 (mean over the classes in truth or prediction, as scikit-learn)."""
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    _, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = codes[: len(y_true)], codes[len(y_true):]
    k = int(codes.max()) + 1 if len(codes) else 0
    tp = np.bincount(t[t == p], minlength=k)
    denom = np.bincount(t, minlength=k) + np.bincount(p, minlength=k)  # 2tp + fp + fn
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(k), where=denom > 0)
    return {"accuracy": float(np.mean(t == p)) if len(t) else float("nan"),
            "macro_f1": float(f1.mean()) if k else float("nan")}


def split_test(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) row positions: per class, round(fraction * n_c) rows go to the test set."""
    _, codes = np.unique(np.asarray(y).astype(str), return_inverse=True)
    order = np.lexsort((rng.random(len(codes)), codes))
    sizes = np.bincount(codes)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    test = rank < np.floor(fraction * sizes[codes] + 0.5)
    return np.flatnonzero(~test), np.flatnonzero(test)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a Student-t confidence interval per column (rows = seeds; NaN = missing)."""
    from scipy.special import stdtrit  # scipy.stats takes seconds to import on a loaded box

    values = np.asarray(values, dtype=np.float64)
    n = np.sum(np.isfinite(values), axis=0)
    mean = np.nanmean(values, axis=0)
    sd = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1])
    half = np.where(n > 1, stdtrit(np.maximum(n - 1, 1), 0.5 + confidence / 2) * np.nan_to_num(sd) /
                    np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, mean - half, mean + half


class ActiveSimulator:
    """Compare query strategies on a labeled pool, the labels playing the oracle.

    Parameters
    ----------
    strategies: names from `STRATEGIES` (random, least-confidence, margin, entropy, kcenter, hybrid).
    seeds: number of seeds (seed, seed+1, ...); each gives its own split, cold start and stop set.
    batch: rows labeled per round; initial: cold-start size (default: batch).
    max_labels: label budget (cold start included); the loop runs until it is spent.
    cold_start: "kmeans" (medoids of the embeddings) or "random".
    test_fraction: held-out share per class; stop_set: rows in the kappa stop set.
    uncertainty, factor: hybrid's uncertainty measure and candidate factor (m = factor * batch).
    patience, min_delta: plateau rule on `metric`; kappa, kappa_window: stabilizing predictions.
    C: inverse regularisation of the logistic learner; learner: optional factory `X -> Learner`.
    reach: report the labels needed to reach this fraction of the full-data score.
    """

    def __init__(self, strategies: Sequence[str] = ("random", "entropy", "hybrid"), seeds: int = 3,
                 seed: int = 0, batch: int = 20, initial: int | None = None, max_labels: int = 200,
                 cold_start: str = "kmeans", test_fraction: float = 0.25, stop_set: int = 1000,
                 uncertainty: str = "entropy", factor: int = 5, patience: int = 3, min_delta: float = 0.005,
                 kappa: float = 0.99, kappa_window: int = 3, metric: str = "accuracy", C: float = 10.0,
                 reach: float = 0.9, learner: Callable[[np.ndarray], Learner] | None = None):
        self.strategies = list(strategies)
        self.seeds, self.seed, self.batch, self.initial = seeds, seed, batch, initial
        self.max_labels, self.cold_start, self.test_fraction = max_labels, cold_start, test_fraction
        self.stop_set, self.uncertainty, self.factor = stop_set, uncertainty, factor
        self.patience, self.min_delta, self.kappa, self.kappa_window = patience, min_delta, kappa, kappa_window
        self.metric, self.C, self.reach, self.learner = metric, C, reach, learner
        self._validate()

    def _validate(self) -> None:
        if not self.strategies:
            raise UsageError("give at least one strategy")
        for name in self.strategies:
            make_strategy(name, uncertainty=self.uncertainty, factor=self.factor)
        if len(set(self.strategies)) != len(self.strategies):
            raise UsageError("strategies must be distinct")
        for name, low in (("seeds", 1), ("seed", 0), ("batch", 1), ("max_labels", 1), ("stop_set", 1)):
            _check_int(name, getattr(self, name), low)
        _check_int("initial", self.initial, 1, allow_none=True)
        if self.cold_start not in ("kmeans", "random"):
            raise UsageError(f"simulation cold start must be 'kmeans' or 'random', got {self.cold_start!r}")
        if not (isinstance(self.test_fraction, float) and 0 < self.test_fraction < 1):
            raise UsageError(f"test_fraction must be a float in (0, 1), got {self.test_fraction!r}")
        if self.metric not in METRICS:
            raise UsageError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not 0 < self.reach <= 1:
            raise UsageError(f"reach must be in (0, 1], got {self.reach!r}")
        self.rules()  # validates the rule parameters

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "strategies", "seeds", "seed", "batch", "initial", "max_labels", "cold_start", "test_fraction",
            "stop_set", "uncertainty", "factor", "patience", "min_delta", "kappa", "kappa_window", "metric",
            "C", "reach")}

    def rules(self) -> list[StoppingRule]:
        return [PlateauRule(self.patience, self.min_delta, self.metric),
                StabilizingPredictions(self.kappa, self.kappa_window), BudgetRule(max_labels=self.max_labels)]

    def _learner(self, X: np.ndarray) -> Learner:
        return self.learner(X) if self.learner is not None else LogisticLearner(X, C=self.C)

    def run(self, X: np.ndarray, y: Sequence[Any], label_field: str = "label",
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """The trajectory of every strategy over every seed (see the module doc for the layout)."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=object).astype(str)
        if X.ndim != 2 or len(X) != len(y):
            raise UsageError(f"X must be (rows, dims) with one label per row; got {X.shape} and {len(y)} labels")
        if len(np.unique(y)) < 2:
            raise UsageError("the label field has a single value; active learning needs at least two classes")
        from threadpoolctl import threadpool_limits

        # Small fits: BLAS threads only add contention (measured 5x slower with 2 threads on 2 cores).
        with threadpool_limits(limits=1):
            return self._run(X, y, label_field, progress)

    def _run(self, X, y, label_field, progress) -> dict[str, Any]:
        seeds = [self.seed + i for i in range(self.seeds)]
        runs: dict[str, list[dict]] = {s: [] for s in self.strategies}
        total, done = len(seeds) * len(self.strategies), 0
        for seed in seeds:
            setup = self._setup(X, y, seed)
            for name in self.strategies:
                runs[name].append(self._one(X, y, name, seed, setup))
                done += 1
                if progress:
                    progress(done, total)
        n_pool = len(setup["pool"])
        return {"kind": "active", "label_field": label_field, "metric": self.metric,
                "params": {**self.get_params(), "learner": "custom" if self.learner else "logistic"},
                "rows": int(len(y)), "pool_rows": int(n_pool), "test_rows": int(len(y) - n_pool),
                "classes": int(len(np.unique(y))),
                "strategies": {name: summarise(runs[name], self.metric, self.reach) for name in self.strategies}}

    def _setup(self, X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        """Split, cold-start set, stop set and full-data score for one seed (shared by the strategies)."""
        split_ss, cold_ss, stop_ss, pick_ss = np.random.SeedSequence(seed).spawn(4)
        pool, test = split_test(y, self.test_fraction, np.random.default_rng(split_ss))
        k = min(self.initial or self.batch, self.max_labels, len(pool))
        start = cold_start(self.cold_start, k, X=X[pool], n=len(pool),
                           random_state=int(np.random.default_rng(cold_ss).integers(2**31 - 1)))
        stop = np.random.default_rng(stop_ss).choice(len(pool), size=min(self.stop_set, len(pool)), replace=False)
        full = self._learner(X).fit(pool, y[pool])
        return {"pool": pool, "test": test, "start": start, "stop": np.sort(stop), "pick_ss": pick_ss,
                "full": scores(y[test], predict(full, test))}

    def _one(self, X: np.ndarray, y: np.ndarray, name: str, seed: int, setup: dict) -> dict[str, Any]:
        strategy = make_strategy(name, uncertainty=self.uncertainty, factor=self.factor)
        pool, test, stop = setup["pool"], setup["test"], setup["stop"]
        rng = np.random.default_rng(setup["pick_ss"])
        Xp, yp = X[pool], y[pool]
        mask = np.zeros(len(pool), dtype=bool)
        mask[setup["start"]] = True
        rules, history, prev, fired = self.rules(), [], None, None
        learner = self._learner(X)
        while True:
            lab = np.flatnonzero(mask)
            learner.fit(pool[lab], yp[lab])
            stop_pred = predict(learner, pool[stop])
            rec = {"round": len(history), "labeled": int(len(lab)), **scores(y[test], predict(learner, test)),
                   "kappa_vs_prev": None if prev is None or len(learner.classes_) < 2 else cohen_kappa(prev, stop_pred),
                   "stopped_reason": None}
            history.append(rec)
            prev = stop_pred
            unl = np.flatnonzero(~mask)
            spent = rules[-1].check(history) or (None if len(unl) else "pool exhausted")
            reason = first_reason(rules[:-1], history) or spent
            if reason and fired is None:
                rec["stopped_reason"] = reason
                fired = {"round": rec["round"], "labeled": rec["labeled"], "reason": reason}
            if spent:
                rec["stopped_reason"] = spent
                break
            proba = learner.predict_proba(pool[unl]) if strategy.needs_proba else None
            picks = strategy.select(min(self.batch, self.max_labels - len(lab)), unlabeled=unl, labeled=lab,
                                    proba=proba, X=Xp, rng=rng)
            mask[picks] = True
        return {"seed": seed, "full": setup["full"], "stop": fired, "rounds": history}


def summarise(runs: list[dict], metric: str, reach: float = 0.9) -> dict[str, Any]:
    """Per strategy: the seeds' runs plus mean / CI curves and the labels needed to reach `reach` x full."""
    length = max(len(r["rounds"]) for r in runs)
    curves = np.full((len(runs), length), np.nan)
    labeled = [None] * length
    for i, run in enumerate(runs):
        for j, rec in enumerate(run["rounds"]):
            curves[i, j] = rec[metric]
            labeled[j] = rec["labeled"]
    mean, low, high = t_interval(curves)
    full = float(np.mean([r["full"][metric] for r in runs]))
    target = reach * full
    hit = np.flatnonzero(mean >= target)
    per_seed = []
    for run in runs:
        reached = [rec["labeled"] for rec in run["rounds"] if rec[metric] >= reach * run["full"][metric]]
        per_seed.append(reached[0] if reached else None)
    return {"labeled": labeled, "seeds": runs, "mean": mean.tolist(), "ci_low": low.tolist(),
            "ci_high": high.tolist(), "full_mean": full,
            "reach": {"fraction": reach, "target": target,
                      "labels_mean_curve": labeled[int(hit[0])] if len(hit) else None, "labels_per_seed": per_seed}}


# -- interactive mode: one round per call, state kept in a directory ----------

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class ActiveState:
    """What an interactive session keeps between calls (DIR/state.json, written atomically).

    data: {"path", "sha256", "rows"} of the pool; labeled: id -> label;
    pending: ids of the last batch asked for; history: one record per round;
    stop_predictions: the last round's predictions on the stop set (for kappa).
    """

    data: dict[str, Any]
    strategy: str
    seed: int
    batch: int
    params: dict[str, Any]
    round: int = 0
    labeled: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    stop_predictions: list[str] | None = None
    label_field: str | None = None
    version: int = STATE_VERSION

    def save(self, directory: str | Path) -> Path:
        from thresher.data.writers import atomic_path

        path = Path(directory) / STATE_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ActiveState | None":
        """The saved state, or None when the directory has none yet."""
        path = Path(directory) / STATE_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(str(path), f"cannot read the active-learning state: {err}") from None
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise InputError(str(path), f"not a version-{STATE_VERSION} active-learning state file")
        try:
            return cls(**raw)
        except TypeError as err:
            raise InputError(str(path), f"unexpected state layout ({err})") from None


def _where(ds, row: int) -> dict[str, int]:
    origin = int(ds.origin_rows[row])
    return {"line": origin} if ds.source.file_format in ("jsonl", "csv") else {"record": origin + 1}


def read_labels(pool, path: str | Path, label_field: str) -> dict[str, str]:
    """id -> label from a labeled file (any readable format); ids must be pool ids, labels non-empty."""
    import pandas as pd

    from thresher.data.readers import read_dataset

    ds = read_dataset(path).dataset
    if label_field not in ds.fields:
        raise InputError(str(path), f"no field '{label_field}' to read labels from (fields: {', '.join(ds.fields)})",
                         field=label_field)
    ids = ds.ids
    unknown = np.flatnonzero(pd.Index(pool.ids).get_indexer(ids) < 0)
    if len(unknown):
        r = int(unknown[0])
        raise InputError(str(path), f"field 'id': {ids[r]!r} is not an id of the pool {pool.source.path} "
                         f"({len(unknown)} unknown ids in all)", field="id", **_where(ds, r))
    labels: dict[str, str] = {}
    for r, (row_id, value) in enumerate(zip(ids.tolist(), ds.column(label_field).to_pylist())):
        if value is None or isinstance(value, (list, dict)) or (isinstance(value, str) and not value.strip()):
            problem = "must be a string or a number" if isinstance(value, (list, dict)) else "is missing or empty"
            raise InputError(str(path), f"field '{label_field}' {problem}: every returned row needs its label",
                             field=label_field, **_where(ds, r))
        label = str(value)
        if labels.setdefault(row_id, label) != label:
            raise InputError(str(path), f"field '{label_field}': id {row_id!r} is labeled twice, "
                             f"{labels[row_id]!r} and {label!r}",
                             field=label_field, **_where(ds, r))
    return labels


def next_batch(pool, X: np.ndarray, state: ActiveState) -> tuple[np.ndarray, str | None]:
    """The next rows to label (pool positions) and the stopping reason if a rule fired.

    Updates `state` in place: history, stop-set predictions, pending ids, round.
    """
    import pandas as pd

    from threadpoolctl import threadpool_limits

    p = state.params
    ids = pool.ids
    lab = pd.Index(ids).get_indexer(list(state.labeled))
    if (lab < 0).any():
        raise UsageError("the state holds ids that are not in this pool; was the data changed?")
    mask = np.zeros(len(pool), dtype=bool)
    mask[lab] = True
    unl = np.flatnonzero(~mask)
    max_labels = p.get("max_labels")
    k = min(state.batch, len(unl), len(pool) if max_labels is None else max(max_labels - len(lab), 0))
    if p.get("max_rounds") is not None and state.round >= p["max_rounds"]:
        k = 0
    rng = np.random.default_rng([state.seed, state.round])
    rec = {"round": state.round, "labeled": int(len(lab)), "accuracy": None, "macro_f1": None,
           "kappa_vs_prev": None, "stopped_reason": None}
    with threadpool_limits(limits=1):
        if len(lab) == 0:
            picks = cold_start(p.get("cold_start", "kmeans"), k, X=X, ds=pool, by=p.get("by"), n=len(pool),
                               random_state=int(rng.integers(2**31 - 1))) if k else np.empty(0, np.int64)
        else:
            learner = LogisticLearner(X, C=p.get("C", 10.0)).fit(lab, np.array(list(state.labeled.values()), object))
            stop = np.sort(np.random.default_rng([state.seed, 1 << 20]).choice(
                len(pool), size=min(p.get("stop_set", 1000), len(pool)), replace=False))
            stop_pred = predict(learner, stop).astype(str)
            prev = state.stop_predictions
            comparable = prev and len(prev) == len(stop) and len(learner.classes_) > 1  # one class: kappa says nothing
            rec["kappa_vs_prev"] = cohen_kappa(prev, stop_pred) if comparable else None
            state.stop_predictions = stop_pred.tolist()
            strategy = make_strategy(state.strategy, uncertainty=p.get("uncertainty", "entropy"),
                                     factor=p.get("factor", 5))
            proba = learner.predict_proba(unl) if strategy.needs_proba and k else None
            picks = strategy.select(k, unlabeled=unl, labeled=lab, proba=proba, X=X, rng=rng) if k \
                else np.empty(0, np.int64)
    rules = [StabilizingPredictions(p.get("kappa", 0.99), p.get("kappa_window", 3)),
             BudgetRule(max_labels=max_labels, max_rounds=p.get("max_rounds"))]
    rec["stopped_reason"] = first_reason(rules, state.history + [rec]) or (None if len(unl) else "pool exhausted")
    state.history.append(rec)
    state.pending = [str(i) for i in ids[picks]] if len(picks) else []
    state.round += 1
    return np.asarray(picks, dtype=np.int64), rec["stopped_reason"]

"""Representativeness check: does a subset look like the pool it was taken from?

Per field, a significance test, effect sizes and a verdict:

- categorical (strings, bools, each ``by`` field and, for several, their "a|b"
  cell): chi-square goodness of fit of the subset's counts against the pool's
  shares (categories expected < 5 times are merged into "(other)", and the
  field's notes say which), Cramér's V = sqrt(sum((s - p)² / p) / (k - 1)),
  per category pool share vs subset share, and coverage (pool categories the
  subset lacks).
- numeric: two-sample Kolmogorov-Smirnov D and p-value; PSI = sum((s - p) ln(s / p))
  over 10 quantile bins of the pool, with empty-bin shares floored at 1e-4 so
  the logarithm stays finite; SMD = (mean_sub - mean_pool) / sqrt((var_sub + var_pool) / 2).
- embeddings (optional): unbiased MMD² with an RBF kernel, bandwidth = median
  pairwise distance, on a seeded subsample of at most 2000 rows per side, with
  a permutation p-value.

Verdict, the same rule for every kind: "ok" when the difference is not
significant (p >= ``alpha``, default 0.01): at that subset size the effect
sizes are within chance (a note says when they look large). Otherwise the
worst grade of the effect sizes, graded ok / warn / fail:

    PSI                  < 0.10   < 0.25   >= 0.25
    |SMD|                < 0.10   < 0.20   >= 0.20
    KS D                 < 0.10   < 0.20   >= 0.20
    max |share diff|     < 0.05   < 0.10   >= 0.10
    Cramér's V           < 0.10   < 0.20   >= 0.20
    MMD²                 < 0.002  < 0.01   >= 0.01

(MMD² on Gaussian clusters: dropping one cluster of five gives about 0.015,
halving one about 0.004.) A subset category absent from the pool fails the
field; a pool category missing from the subset although expected >= 5 times
there (a chance under e^-5 < 1%) makes it at least "warn". The overall
verdict is the worst field verdict.

``fpc=True`` (default): the subset was drawn without replacement from the
pool, so every test is the subset against the *rest* of the pool, which a
random subset is exchangeable with (chi2 and KS rescaled by the sampling
fraction f = n / N; MMD leaves out pool rows whose embedding is in the
subset). ``fpc=False``: an independent sample, or one drawn with replacement.

``weights`` (e.g. the ``_weight`` = 1/pi column of a PPS subset) make every
subset statistic weighted (shares, ECDF, PSI bins, mean, variance, kernel
mean), so an unequal-probability design is judged after reweighting. Tests
then use an effective size n / mean design effect (Rao-Scott first-order
correction with linearization variances); the MMD side compares with the
whole pool, which makes its p-value conservative. Both are approximations,
liberal for small weighted subsets (effective size under a few hundred).

This module holds the rules (which fields, as what; verdicts; the report);
the statistics themselves are computed in `thresher.sampling.twosample`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from thresher.core.rng import make_rng
from thresher.core.selection import _jsonable
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.strata import row_labels
from thresher.sampling.twosample import MIN_EXPECTED, Scale, ks_statistic, merge_small, mmd_test, psi, smd

# ks_statistic, psi and smd live in `thresher.sampling.twosample`; re-exported here
__all__ = ["CategoryShare", "CheckReport", "FieldCheck", "check_representativeness", "ks_statistic", "psi", "smd"]

VERDICTS = ("ok", "warn", "fail")
THRESHOLDS = {  # effect size -> (ok below, fail at or above); see the module docstring
    "psi": (0.1, 0.25), "smd": (0.1, 0.2), "ks": (0.1, 0.2),
    "share_diff": (0.05, 0.10), "cramers_v": (0.1, 0.2), "mmd2": (0.002, 0.01),
}
MAX_CATEGORIES, LONG_TEXT_CHARS = 50, 64
OTHER = "(other)"
SKIP_COLUMNS = ("id", "_weight", "_pi")  # ids and design columns are not data


@dataclass
class CategoryShare:
    """One category: pool count and share, subset row count and share (weighted
    when weights are given)."""

    category: str
    pool_count: int
    pool_share: float
    subset_count: int
    subset_share: float

    @property
    def diff(self) -> float:
        return self.subset_share - self.pool_share

    def to_json(self) -> dict:
        return {**asdict(self), "diff": self.diff}


@dataclass
class FieldCheck:
    """The check of one field: kind ("categorical" | "numeric" | "embedding"),
    verdict, statistics, reasons for the verdict and other notes."""

    field: str
    kind: str
    verdict: str
    stats: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    categories: list[CategoryShare] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # pool categories absent from the subset

    def to_json(self) -> dict:
        return _jsonable({"field": self.field, "kind": self.kind, "verdict": self.verdict, "stats": self.stats,
                       "reasons": self.reasons, "notes": self.notes, "missing": self.missing,
                       "categories": [c.to_json() for c in self.categories]})

    def summary(self) -> str:
        """The key statistics in one line."""
        s = self.stats
        if self.kind == "categorical":
            return (f"chi2 p={_fmt(s['p_value'])}  V={_fmt(s['cramers_v'])}  "
                    f"max diff={100 * s['max_share_diff']:.1f} pts  coverage {s['covered']}/{s['categories']}")
        if self.kind == "numeric":
            return f"KS D={_fmt(s['ks'])} p={_fmt(s['p_value'])}  PSI={_fmt(s['psi'])}  SMD={_fmt(s['smd'])}"
        return f"MMD²={_fmt(s['mmd2'])} p={_fmt(s['p_value'])}"


@dataclass
class CheckReport:
    """All field checks of a subset against its pool, and the overall verdict."""

    fields: list[FieldCheck]
    overall: str
    n_subset: int
    n_pool: int
    n_effective: float  # Kish's (sum w)² / sum w² with weights, else n_subset
    weighted: bool
    fpc: bool
    alpha: float
    notes: list[str] = field(default_factory=list)

    def field(self, name: str) -> FieldCheck:
        """The check of `name` (a `by` cell is named "a|b", embeddings "embedding")."""
        for f in self.fields:
            if f.field == name:
                return f
        raise KeyError(f"no check for field {name!r}; checked: {[f.field for f in self.fields]}")

    def to_json(self) -> dict:
        """Plain JSON types in a fixed key order."""
        return _jsonable({"overall": self.overall, "n_subset": self.n_subset, "n_pool": self.n_pool,
                       "n_effective": self.n_effective, "weighted": self.weighted, "fpc": self.fpc,
                       "alpha": self.alpha, "thresholds": {k: list(v) for k, v in THRESHOLDS.items()},
                       "fields": [f.to_json() for f in self.fields], "notes": self.notes})

    def render_rich(self):
        """A rich Table with one verdict line per field (for the CLI)."""
        from rich.table import Table

        style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
        table = Table(title=f"subset ({self.n_subset} rows) vs pool ({self.n_pool} rows): "
                            f"[{style[self.overall]}]{self.overall}[/]")
        for col in ("field", "kind", "verdict", "statistics", "why"):
            table.add_column(col)
        for f in self.fields:
            why = "; ".join(f.reasons) or "no significant difference"
            table.add_row(f.field, f.kind, f"[{style[f.verdict]}]{f.verdict}[/]", f.summary(), why)
        return table


def check_representativeness(
    subset: Dataset,
    pool: Dataset,
    by: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    embeddings: tuple[np.ndarray, np.ndarray] | None = None,
    weights: np.ndarray | str | None = None,
    *,
    fpc: bool = True,
    alpha: float = 0.01,
    max_embedding_rows: int = 2000,
    n_permutations: int = 200,
    random_state: int | np.random.Generator | None = 0,
) -> CheckReport:
    """Compare `subset` with `pool` field by field (rules in the module docstring).

    by: categorical fields, checked one by one and, when several, as combined cells.
    fields: fields to check; None means every scalar column present in both
        except ids (all-unique strings), long text (mean > 64 chars), strings
        with more than 50 distinct values and the id/_weight/_pi columns.
        Numbers are tested as numeric, strings and bools as categorical.
    embeddings: (subset rows x dim, pool rows x dim) arrays for the MMD check.
    weights: one non-negative weight per subset row, or the name of a subset
        column holding them (e.g. "_weight", the 1/pi written with a PPS subset).
    fpc: the subset was drawn without replacement from the pool.
    random_state: seeds the embedding subsample and permutations.
    """
    n, big_n = len(subset), len(pool)
    if n == 0 or big_n == 0:
        raise UsageError(f"cannot check representativeness of a {n}-row subset against a {big_n}-row pool")
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be in (0, 1), got {alpha}")
    w = _weights(subset.numeric(weights) if isinstance(weights, str) else weights, n)
    notes: list[str] = []
    if fpc and n >= big_n:
        fpc = False
        notes.append(f"subset ({n} rows) is not smaller than the pool ({big_n}); finite-population correction off")
    scale = Scale(float(n), big_n, n / big_n if fpc else None)
    numeric, categorical, skipped = _plan(subset, pool, by, fields)
    checks = [_categorical(name, _labels(subset, names), _labels(pool, names), w, scale, alpha)
              for name, names in categorical]
    checks += [_numeric(name, subset.numeric(name), pool.numeric(name), w, scale, alpha) for name in numeric]
    if embeddings is not None:
        checks.append(_embedding(embeddings, n, big_n, w, fpc, alpha, max_embedding_rows, n_permutations,
                                 make_rng(random_state)))
    if not checks:
        raise UsageError("no field to check: the subset and pool share no usable column; "
                         "name some with fields=[...] or by=[...], or pass embeddings")
    n_eff = float(n) if w is None else float(w.sum() ** 2 / (w**2).sum())
    return CheckReport(checks, _worst(c.verdict for c in checks), n, big_n, n_eff, w is not None, fpc, alpha,
                       notes + skipped)


# -- which fields, as what ------------------------------------------------
def _plan(subset: Dataset, pool: Dataset, by, fields) -> tuple[list[str], list[tuple[str, list[str]]], list[str]]:
    """Numeric fields, (name, fields) of categorical checks, and notes on skipped columns."""
    by = list(by or [])
    for name in by + list(fields or []):
        for ds, role in ((subset, "subset"), (pool, "pool")):
            if name not in ds.table.column_names:
                raise UsageError(f"field '{name}' is not in the {role} (fields: {', '.join(ds.fields)})")
    numeric, cats, skipped = [], [], []
    names = [c for c in subset.table.column_names if c in pool.table.column_names and c not in SKIP_COLUMNS]
    for name in names if fields is None else fields:
        kind = _kind(pool.table.schema.field(name).type)
        if fields is not None and kind is None:
            raise UsageError(f"field '{name}' is {pool.table.schema.field(name).type}; "
                             f"only numbers, strings and bools can be checked")
        if fields is None and kind == "text":
            kind = _text_kind(pool, name, skipped)
        (numeric if kind == "numeric" else cats if kind in ("categorical", "text") else []).append(name)
    cats = by + [c for c in cats if c not in by]
    numeric = [c for c in numeric if c not in by]
    return numeric, [(c, [c]) for c in cats] + ([("|".join(by), by)] if len(by) > 1 else []), skipped


def _kind(typ: pa.DataType) -> str | None:
    typ = typ.value_type if pa.types.is_dictionary(typ) else typ
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return "numeric"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    return "categorical" if pa.types.is_boolean(typ) else None


def _text_kind(pool: Dataset, name: str, skipped: list[str]) -> str | None:
    """"categorical" for a short, low-cardinality string column; None (and a note) otherwise."""
    col = pc.cast(pool.table.column(name), pa.large_string())
    distinct = pc.count_distinct(col, mode="all").as_py()
    if distinct == len(pool) > 1:
        skipped.append(f"'{name}' skipped: every value is unique (an id?)")
    elif (pc.mean(pc.utf8_length(col)).as_py() or 0) > LONG_TEXT_CHARS:
        skipped.append(f"'{name}' skipped: long text (mean over {LONG_TEXT_CHARS} characters)")
    elif distinct > MAX_CATEGORIES:
        skipped.append(f"'{name}' skipped: {distinct} distinct values (over {MAX_CATEGORIES}); "
                       f"name it in fields=[...] to test it as categorical")
    else:
        return "categorical"
    return None


def _labels(ds: Dataset, names: list[str]) -> pa.Array:
    """Category label per row, as stratum labels (nulls are "<null>"; several fields are joined "a|b")."""
    return row_labels(ds.table, names)


def _weights(weights, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise UsageError(f"weights must have one value per subset row ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise UsageError("weights must be finite, non-negative and not all zero (e.g. the _weight = 1/pi column)")
    return w


# -- categorical ----------------------------------------------------------
def _categorical(name: str, sub: pa.Array, pool: pa.Array, w, scale: Scale, alpha: float) -> FieldCheck:
    vc = pc.value_counts(pool)
    cats = np.asarray(vc.field("values").to_pylist(), dtype=object)
    order = np.argsort(cats.astype(str), kind="stable")
    cats, pool_counts = cats[order].astype(str), vc.field("counts").to_numpy()[order]
    codes = pc.index_in(sub, value_set=pa.array(cats.tolist(), pa.large_string()))
    known = codes.is_valid().to_numpy(zero_copy_only=False)
    codes = codes.fill_null(0).to_numpy()[known]
    k, wt = len(cats), (np.ones(len(sub)) if w is None else w)
    sub_counts = np.bincount(codes, minlength=k)
    p = pool_counts / pool_counts.sum()
    s = np.bincount(codes, weights=wt[known], minlength=k) / wt.sum()
    if w is not None:
        a = w / w.sum()
        scale = scale.weighted(a, np.bincount(codes, weights=a[known] ** 2, minlength=k), s, p)
    table = [CategoryShare(c, int(m), float(pp), int(sc), float(ss))
             for c, m, pp, sc, ss in zip(cats.tolist(), pool_counts, p, sub_counts, s)]
    reasons, notes, floor = [], [], "ok"
    novel = sorted(str(c) for c in pc.unique(sub.filter(pa.array(~known))).to_pylist())
    if novel:
        floor = "fail"
        reasons.append(f"subset has categories absent from the pool: {_list(novel)}")
    lost = cats[(sub_counts == 0) & (scale.n * p >= MIN_EXPECTED)].tolist()
    if lost:
        floor = _worst([floor, "warn"])
        reasons.append(f"missing although expected >= {MIN_EXPECTED:g} times: {_list(lost)}")
    groups, merged = merge_small(p, scale.n)
    if len(merged):
        notes.append(f"{len(merged)} categories expected < {MIN_EXPECTED:g} times merged into '{OTHER}' "
                     f"for the chi-square: {_list(cats[merged].tolist())}")
    gs, gp = (np.bincount(groups, weights=v) for v in (s, p))
    gs = gs / gs.sum() if gs.sum() > 0 else gs  # shares among known categories
    dof = len(gp) - 1
    if dof == 0:
        notes.append("too few rows or categories for a chi-square test")
    chi2 = scale.chi2(gs, gp) if dof else 0.0
    pval = float(stats.chi2.sf(chi2, dof)) if dof else 1.0
    v = float(np.sqrt(np.sum((gs - gp) ** 2 / gp) / dof)) if dof else 0.0
    max_diff = float(max(np.abs(s - p).max(), 1 - s.sum()))  # 1 - s.sum(): share of novel categories
    st = {"chi2": chi2, "dof": dof, "p_value": pval, "cramers_v": v, "max_share_diff": max_diff,
          "n_effective": scale.n, "categories": k, "covered": int((sub_counts > 0).sum()),
          "coverage": float((sub_counts > 0).mean())}
    verdict = _verdict({"share_diff": max_diff, "cramers_v": v}, pval, alpha, floor, reasons, notes)
    return FieldCheck(name, "categorical", verdict, st, reasons, notes, table, cats[sub_counts == 0].tolist())


# -- numeric --------------------------------------------------------------
def _numeric(name: str, x: np.ndarray, y: np.ndarray, w, scale: Scale, alpha: float) -> FieldCheck:
    notes: list[str] = []
    ok_x, ok_y = ~np.isnan(x), ~np.isnan(y)
    wx = (np.ones(len(x)) if w is None else w)[ok_x]
    if not (ok_x.all() and ok_y.all()):
        notes.append(f"missing values: subset {100 * (1 - ok_x.mean()):.1f}%, pool {100 * (1 - ok_y.mean()):.1f}% "
                     f"(left out of the tests)")
    x, y = x[ok_x], np.sort(y[ok_y])
    if len(x) == 0 or len(y) == 0 or wx.sum() <= 0:
        st = {"ks": None, "p_value": None, "psi": None, "smd": None}
        return FieldCheck(name, "numeric", "warn", st, ["no non-missing values to compare on one side"], notes)
    d = ks_statistic(x, y, wx)
    if w is not None:  # design effect of the weighted ECDF at the pool's deciles
        a, cuts = wx / wx.sum(), np.quantile(y, np.linspace(0.1, 0.9, 9))
        below = x[:, None] <= cuts[None, :]
        scale = scale.weighted(a, (a * a) @ below, a @ below, np.searchsorted(y, cuts, side="right") / len(y))
    pval = scale.ks_pvalue(d)
    psi_value, smd_value = psi(x, y, wx), smd(x, y, wx)
    st = {"ks": d, "p_value": pval, "psi": psi_value, "smd": smd_value,
          "mean_subset": float(np.average(x, weights=wx)), "mean_pool": float(y.mean()), "n_effective": scale.n}
    reasons: list[str] = []
    verdict = _verdict({"ks": d, "psi": psi_value, "smd": abs(smd_value)}, pval, alpha, "ok", reasons, notes)
    return FieldCheck(name, "numeric", verdict, st, reasons, notes)


# -- embeddings -----------------------------------------------------------
def _embedding(embeddings, n: int, big_n: int, w, fpc: bool, alpha: float, max_rows: int, n_perm: int,
               rng: np.random.Generator) -> FieldCheck:
    ex, ey = (np.asarray(e, dtype=np.float64) for e in embeddings)
    if ex.ndim != 2 or ey.ndim != 2 or ex.shape[1] != ey.shape[1] or len(ex) != n or len(ey) != big_n:
        raise UsageError(f"embeddings must be (subset rows={n}, dim) and (pool rows={big_n}, dim) arrays "
                         f"of the same dim; got {ex.shape} and {ey.shape}")
    st = mmd_test(ex, ey, w, fpc, max_rows, n_perm, rng)
    if st is None:
        return FieldCheck("embedding", "embedding", "ok", {"mmd2": 0.0, "p_value": 1.0},
                          notes=["the subset holds (almost) every pool embedding"])
    reasons: list[str] = []
    notes = [f"MMD on {st['rows_subset']} subset and {st['rows_pool']} pool rows, RBF bandwidth "
             f"{st['bandwidth']:.3g}, {n_perm} permutations"]
    verdict = _verdict({"mmd2": st["mmd2"]}, st["p_value"], alpha, "ok", reasons, notes)
    return FieldCheck("embedding", "embedding", verdict, st, reasons, notes)


# -- verdicts -------------------------------------------------------------
def _verdict(effects: dict[str, float], pval: float, alpha: float, floor: str, reasons: list[str],
             notes: list[str]) -> str:
    """The worst effect grade when significant, else ok; never better than `floor`."""
    grades = {k: _grade(k, v) for k, v in effects.items()}
    large = ", ".join(f"{k}={_fmt(v)} ({grades[k]})" for k, v in effects.items() if grades[k] != "ok")
    if pval >= alpha:
        if large:
            notes.append(f"not significant (p={_fmt(pval)}) although {large}: the subset may be too small to tell")
        return floor
    if large:
        reasons.append(f"significant (p={_fmt(pval)}): {large}")
    else:
        notes.append(f"significant (p={_fmt(pval)}) but every effect size is small")
    return _worst([floor, *grades.values()])


def _grade(name: str, value: float) -> str:
    ok, fail = THRESHOLDS[name]
    return "ok" if value < ok else "warn" if value < fail else "fail"


def _worst(verdicts) -> str:
    return max(verdicts, key=VERDICTS.index, default="ok")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")

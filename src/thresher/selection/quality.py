"""`quality`: keep rows whose features pass threshold rules, with a reason per removed row.

Rules are a small boolean language over feature columns and fields:
`"response_words >= 3 and ifd < 1 and not empty_response"`; comparisons,
`and` / `or` / `not`, parentheses, numbers, strings and booleans. Parsed with
`ast` and evaluated vectorized over numpy columns; nothing is `eval`-ed.
"""
from __future__ import annotations

import ast
from typing import Any

import numpy as np

from thresher.selection.base import deterministic
from thresher.errors import UsageError

_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
            ast.Eq: np.equal, ast.NotEq: np.not_equal}


def parse_rules(where: str) -> list[ast.expr]:
    """Top-level `and` clauses of `where` (each becomes one removal reason)."""
    try:
        tree = ast.parse(where.strip(), mode="eval").body
    except SyntaxError as err:
        raise UsageError(f"--where: cannot parse {where!r} ({err.msg})") from None
    clauses = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    for clause in clauses:
        _check(clause, where)
    return clauses


def _check(node: ast.AST, where: str) -> None:
    allowed = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.Name, ast.Constant,
               ast.Load, *_COMPARE)
    for sub in ast.walk(node):
        if not isinstance(sub, allowed):
            raise UsageError(f"--where: {type(sub).__name__} is not allowed in {where!r}; use comparisons of "
                             "features with numbers joined by and/or/not")


def rule_names(clauses: list[ast.expr]) -> list[str]:
    return sorted({n.id for c in clauses for n in ast.walk(c) if isinstance(n, ast.Name)} - {"True", "False"})


def evaluate(node: ast.expr, columns: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(node, ast.BoolOp):
        parts = [evaluate(v, columns) for v in node.values]
        return np.logical_and.reduce(parts) if isinstance(node.op, ast.And) else np.logical_or.reduce(parts)
    if isinstance(node, ast.UnaryOp):
        value = evaluate(node.operand, columns)
        return np.logical_not(value.astype(bool)) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        left = evaluate(node.left, columns)
        result = None
        for op, comparator in zip(node.ops, node.comparators):
            right = evaluate(comparator, columns)
            part = _COMPARE[type(op)](left, right)
            result = part if result is None else result & part
            left = right
        return result
    if isinstance(node, ast.Name):
        return np.asarray(columns[node.id])
    return np.asarray(node.value)


class QualityFilter:
    """Keep rows passing every clause of `where` (rows with a missing value fail that clause).

    `fields` (e.g. ["instruction"]): the response-side signals of the text and
    quality featurizers (response_words, empty_response, rep_ngram_ratio, ...)
    are computed on those fields' text instead of the response."""

    name = "quality"
    needs_budget = False

    def __init__(self, where: str = "not empty_response and response_words >= 1",
                 fields: str | list[str] | None = None):
        from thresher.features.fields import parse_fields

        if not isinstance(where, str) or not where.strip():
            raise UsageError("quality: give a rule, e.g. --where 'response_words >= 3 and ifd < 1'")
        self.where = where
        self.fields = None if fields is None else parse_fields(fields)
        self._clauses = parse_rules(where)

    @property
    def requires(self) -> list:
        names = rule_names(self._clauses)
        if self.fields is None:
            return names
        from thresher.features.fields import OnFields
        from thresher.features.columns import feature_sources

        sources = feature_sources()
        targeted = sorted({sources[n] for n in names if sources.get(n) in ("text", "quality")})
        rest = [n for n in names if sources.get(n) not in ("text", "quality")]
        return [OnFields(name, self.fields) for name in targeted] + rest

    @property
    def _names(self) -> list[str]:
        return rule_names(self._clauses)

    def select(self, ds, budget=None, features: dict[str, np.ndarray] | None = None, seed: int | None = None):
        features = features or {}
        n = len(ds)
        missing = [c for c in self._names if c not in features]
        if missing:
            raise UsageError(f"quality: missing features {missing}")
        keep = np.ones(n, dtype=bool)
        removed: dict[str, np.ndarray] = {}
        for clause in self._clauses:
            with np.errstate(invalid="ignore"):
                passed = np.broadcast_to(np.asarray(evaluate(clause, features), dtype=bool), (n,))
            failing = np.flatnonzero(keep & ~passed)
            if len(failing):
                removed[f"fails {ast.unparse(clause)}"] = failing
            keep &= passed
        kept = np.flatnonzero(keep)
        reasons = {k: int(len(v)) for k, v in removed.items()}
        return deterministic(kept, method="quality", params=self.params(), seed=seed, pool_size=n,
                             diagnostics={"removed_by_reason": reasons}, removed=removed)

    def params(self) -> dict[str, Any]:
        return {"where": self.where} if self.fields is None else {"where": self.where, "fields": self.fields}

"""length: longest / shortest first, row and token budgets (prefix and skip fill)."""
from __future__ import annotations

import numpy as np
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.length import LengthSelector, _greedy_fill


def ds_of(n: int) -> Dataset:
    return Dataset.from_records([{"prompt": f"p{i}", "completion": "x"} for i in range(n)])


def test_longest_rows_ties_in_pool_order():
    length = np.array([3, 9, 9, 1, 5.0])
    sel = LengthSelector(by="len").select(ds_of(5), 3, {"len": length, "tokens": length})
    assert sel.indices.tolist() == [1, 2, 4] and sel.diagnostics["cut"] == 5
    short = LengthSelector(by="len", order="shortest").select(ds_of(5), 2, {"len": length, "tokens": length})
    assert short.indices.tolist() == [3, 0]
    assert len(sel.removed["shorter than the budget's cut (len)"]) == 2


def test_token_budget_prefix_and_skip():
    length = np.array([10, 8, 7, 3, 2, 1.0])
    feats = {"len": length, "tokens": length}
    prefix = LengthSelector(by="len").select(ds_of(6), Budget("tokens", 20), feats)
    assert prefix.indices.tolist() == [0, 1]  # 10 + 8; the 7 would overflow: stop
    skip = LengthSelector(by="len", fill="skip").select(ds_of(6), Budget("tokens", 20), feats)
    assert skip.indices.tolist() == [0, 1, 4] and skip.diagnostics["tokens_used"] == 20


def test_greedy_fill_matches_the_loop():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cost = rng.integers(0, 30, rng.integers(1, 60)).astype(float)
        limit = float(rng.integers(0, 200))
        kept, left = [], limit
        for i, c in enumerate(cost):
            if c <= left:
                kept.append(i)
                left -= c
        assert _greedy_fill(cost, limit).tolist() == kept


def test_errors():
    with pytest.raises(UsageError, match="order"):
        LengthSelector(order="tallest")
    with pytest.raises(UsageError, match="fill"):
        LengthSelector(fill="all")
    with pytest.raises(UsageError, match="no feature or field 'response_tokens' given; it is computed by the "
                                         "featurizer 'text'"):
        LengthSelector().select(ds_of(3), 2, {})


def test_top_rows_is_a_stable_argsort_prefix():
    from thresher.selection.length import top_rows

    rng = np.random.default_rng(3)
    for _ in range(30):
        key = rng.integers(0, 5, rng.integers(1, 80)).astype(float)
        k = int(rng.integers(0, len(key) + 2))
        assert top_rows(key, k).tolist() == np.argsort(key, kind="stable")[:k].tolist()

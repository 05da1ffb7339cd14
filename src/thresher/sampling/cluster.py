"""Cluster sampling (one or two stages) with intra-cluster correlation and
design-effect diagnostics."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from thresher.core.budget import Budget, budget_rows
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import (Design, check_choice, check_field_name, check_int,
                                       check_random_state, check_without_replacement, label_array,
                                       numeric_column, srs_within_groups)
from thresher.sampling.strata import strata


@dataclass
class ClusterPlan:
    codes: np.ndarray  # cluster of every pool row
    labels: list[str]
    sizes: np.ndarray  # N_i
    take: np.ndarray  # rows drawn from cluster i if it is chosen (N_i in one stage)
    m: int  # clusters to choose

    @property
    def first_stage_pi(self) -> float:
        return self.m / len(self.sizes) if len(self.sizes) else 0.0


class ClusterSampler(Design):
    """Cluster sampling: a simple random sample of m of the M clusters.

    One stage: every row of a chosen cluster is taken; pi = m/M. The row
    budget n sets m = round(n·M/N) (at least 1, at most M), so the expected
    number of rows m·N/M is as close to n as whole clusters allow.

    Two stages: within each chosen cluster, an SRS of k_i = min(rows_per_cluster,
    N_i) rows (small clusters are taken whole); pi = (m/M)·(k_i/N_i). Here
    m = round(n / mean_i k_i), so the expected row count is about n.

    With `icc_of`, diagnostics report the intra-cluster correlation ρ of that
    numeric field over the pool (ANOVA estimator), the rows per chosen
    cluster m̄, the design effect 1 + (m̄-1)·ρ, the effective sample size
    n/deff and the clusters needed for an effective sample of n rows.
    """

    method = "cluster"

    def __init__(self, cluster_by: str, stages: int = 1, rows_per_cluster: int | None = None,
                 icc_of: str | None = None, random_state: int | np.random.Generator | None = None):
        self.cluster_by = cluster_by
        self.stages = stages
        self.rows_per_cluster = rows_per_cluster
        self.icc_of = icc_of
        self.random_state = random_state
        check_field_name("cluster_by", cluster_by)
        check_int("stages", stages, 1)
        check_choice("stages", stages, (1, 2))
        check_int("rows_per_cluster", rows_per_cluster, 1, allow_none=True)
        if stages == 2 and rows_per_cluster is None:
            raise UsageError("stages=2 needs rows_per_cluster=K (rows drawn within each chosen cluster)")
        if stages == 1 and rows_per_cluster is not None:
            raise UsageError("rows_per_cluster only applies to stages=2; one-stage sampling takes whole clusters")
        check_field_name("icc_of", icc_of, allow_none=True)
        check_random_state(random_state)

    def plan(self, ds: Dataset, budget: int | Budget) -> ClusterPlan:
        """Clusters, rows per chosen cluster and the number of clusters to choose."""
        n = budget_rows(budget, len(ds))
        check_without_replacement(n, len(ds))
        cells = strata(ds, [self.cluster_by])
        codes, labels = cells.codes, cells.labels
        sizes = np.bincount(codes, minlength=len(labels))
        take = sizes if self.stages == 1 else np.minimum(sizes, self.rows_per_cluster)
        m = 0
        if n > 0:
            m = int(np.clip(math.floor(n / take.mean() + 0.5), 1, len(labels)))
        return ClusterPlan(codes, labels, sizes, take, m)

    def inclusion_probabilities(self, ds: Dataset, budget: int | Budget) -> np.ndarray:
        """pi of every pool row: (m/M)·(k_i/N_i) (k_i = N_i in one stage)."""
        plan = self.plan(ds, budget)
        return (plan.first_stage_pi * plan.take / plan.sizes)[plan.codes]

    def select(self, ds: Dataset, budget: int | Budget) -> Selection:
        """Choose m clusters at random, then all (or k_i random) rows of each."""
        plan = self.plan(ds, budget)
        rng = self._rng()
        chosen = np.sort(rng.choice(len(plan.sizes), size=plan.m, replace=False))
        take = np.zeros(len(plan.sizes), dtype=np.int64)
        take[chosen] = plan.take[chosen]
        if self.stages == 1:
            indices = np.flatnonzero(take[plan.codes] > 0)
        else:
            indices = srs_within_groups(plan.codes, plan.sizes, take, rng)
        cell = plan.codes[indices]
        row_pi = plan.first_stage_pi * plan.take / plan.sizes
        pi = row_pi[cell]
        strata = [{"stratum": plan.labels[c], "pool": int(plan.sizes[c]), "selected": int(take[c]),
                   "pi": float(row_pi[c])} for c in chosen.tolist()]
        return Selection(
            indices=indices, pi=pi, weights=1.0 / pi, method=self.method, params=self.get_params(),
            seed=self._seed(), pool_size=len(ds), labels={"cluster": label_array(plan.labels, cell)},
            strata=strata, diagnostics=self._diagnostics(ds, plan, len(indices), budget_rows(budget, len(ds))),
        )

    def _diagnostics(self, ds: Dataset, plan: ClusterPlan, n_selected: int, n_target: int) -> dict:
        per_cluster = float(plan.take.mean()) if len(plan.take) else 0.0
        out = {"stages": self.stages, "clusters_pool": len(plan.sizes), "clusters_selected": plan.m,
               "first_stage_pi": plan.first_stage_pi, "expected_rows": plan.m * per_cluster,
               "pool_mean_cluster_size": float(plan.sizes.mean()) if len(plan.sizes) else 0.0,
               "mean_cluster_size": per_cluster}
        if self.icc_of is None:
            return out
        y = numeric_column(ds, self.icc_of, "icc_of", allow_nan=True)
        rho = icc_anova(y, plan.codes)
        out["icc_field"] = self.icc_of
        out["icc"] = rho
        if rho is None:
            return out
        deff = design_effect(per_cluster, rho)
        out["design_effect"] = deff
        out["effective_n"] = n_selected / deff if deff > 0 else None
        needed = clusters_needed(n_target, per_cluster, rho)
        out["clusters_for_target"] = {"target_effective_n": n_target, "clusters": needed,
                                      "available": len(plan.sizes)}
        if needed > plan.m:
            out["note"] = (f"an effective sample of {n_target} rows needs about {needed} clusters "
                           f"(design effect {deff:.3g}); {plan.m} were drawn")
        return out


def icc_anova(y: np.ndarray, codes: np.ndarray) -> float | None:
    """Intra-cluster correlation by one-way ANOVA (unequal cluster sizes):
    ρ = (MSB - MSW) / (MSB + (n0 - 1)·MSW), n0 = (N - ΣN_i²/N)/(M - 1).
    Missing values are ignored; None when there are fewer than 2 clusters or
    no within-cluster replication."""
    ok = np.isfinite(y)
    y, codes = y[ok], codes[ok]
    counts = np.bincount(codes).astype(np.float64)
    present = counts > 0
    big_m, big_n = int(present.sum()), len(y)
    if big_m < 2 or big_n - big_m < 1:
        return None
    sums = np.bincount(codes, weights=y)[present]
    counts = counts[present]
    grand = y.mean()
    ssb = float((sums ** 2 / counts).sum() - big_n * grand ** 2)
    ssw = float((y * y).sum() - (sums ** 2 / counts).sum())
    msb, msw = ssb / (big_m - 1), max(ssw, 0.0) / (big_n - big_m)
    n0 = (big_n - (counts ** 2).sum() / big_n) / (big_m - 1)
    denom = msb + (n0 - 1) * msw
    return float((msb - msw) / denom) if denom > 0 else None


def design_effect(mean_cluster_size: float, icc: float) -> float:
    """Kish's design effect of cluster sampling: 1 + (m̄ - 1)·ρ."""
    return 1.0 + (mean_cluster_size - 1.0) * icc


def clusters_needed(target_effective_n: float, mean_cluster_size: float, icc: float) -> int:
    """Clusters of m̄ rows needed for an effective sample size of `target_effective_n`."""
    deff = design_effect(mean_cluster_size, icc)
    if mean_cluster_size <= 0:
        raise UsageError("mean_cluster_size must be positive")
    return int(math.ceil(target_effective_n * max(deff, 0.0) / mean_cluster_size - 1e-9))

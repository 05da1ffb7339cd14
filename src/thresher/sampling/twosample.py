"""Two-sample statistics of a subset against its pool, the arithmetic behind
`thresher.sampling.check`: the test scaling (finite-population correction
and the Rao-Scott effective size of a weighted subset), the numeric distances
(KS D, PSI, SMD), merging rare categories for a chi-square test, and the
RBF-kernel MMD² with its permutation test. Rules and thresholds are in the
docstring of `thresher.sampling.check`; these functions only compute.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

PSI_BINS, PSI_EPS = 10, 1e-4
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Scale:
    """The subset's (effective) size n, the pool size N, and the sampling
    fraction f when the subset was drawn from the pool (else None)."""

    n: float
    big_n: int
    f: float | None

    def chi2(self, s: np.ndarray, p: np.ndarray) -> float:
        """Chi-square of subset shares s vs pool shares p: against the rest of the pool,
        n sum((s-p)²/p) / (1-f), or a homogeneity test against the pool as an independent sample."""
        if self.f is not None:
            return float(self.n * np.sum((s - p) ** 2 / p) / (1 - self.f))
        q = (self.n * s + self.big_n * p) / (self.n + self.big_n)
        return float(self.n * self.big_n / (self.n + self.big_n) * np.sum((s - p) ** 2 / q))

    def ks_pvalue(self, d: float) -> float:
        """Asymptotic two-sample KS p-value (scipy's kstwo at the effective size)."""
        if self.f is not None:  # F_sub - F_pool = (1 - f)(F_sub - F_rest)
            d, en = d / (1 - self.f), self.n * (1 - self.f)
        else:
            en = self.n * self.big_n / (self.n + self.big_n)
        return float(stats.kstwo.sf(min(d, 1.0), max(1, round(en))))

    def weighted(self, a: np.ndarray, a2_in: np.ndarray, s: np.ndarray, p: np.ndarray) -> "Scale":
        """This scale at the effective size n / mean design effect of weighted shares s
        (Rao-Scott first order, linearization variances). a: normalized weights;
        a2_in: sum of a² over each share's rows; p: the pool's shares."""
        n, keep = len(a), (p > 0) & (p < 1)
        if n < 2 or not keep.any():
            return self
        v = (a2_in * (1 - s) ** 2 + (np.sum(a * a) - a2_in) * s**2) * n / (n - 1)
        deff = v[keep] * n / (p[keep] * (1 - p[keep]))
        mean_deff = float(np.sum((1 - p[keep]) * deff) / np.sum(1 - p[keep]))
        return replace(self, n=n / mean_deff) if mean_deff > 0 else self


def merge_small(p: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Group id per category and the merged categories: those expected < 5 times
    share one "(other)" group, joined by the next smallest until it reaches 5."""
    small = n * p < MIN_EXPECTED
    for i in np.argsort(p, kind="stable"):  # one pass over categories, not rows
        if not small.any() or n * p[small].sum() >= MIN_EXPECTED or (~small).sum() <= 1:
            break
        small[i] = True
    groups = np.full(len(p), (~small).sum(), dtype=np.int64)
    groups[~small] = np.arange((~small).sum())
    return groups, np.flatnonzero(small)


def ks_statistic(x: np.ndarray, y_sorted: np.ndarray, wx: np.ndarray | None = None) -> float:
    """sup |F_x - F_y| of the (weighted) ECDF of x and the ECDF of sorted y."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cw = np.cumsum(np.ones(len(x)) if wx is None else wx[order])
    cw = cw / cw[-1]
    points = np.concatenate([xs, y_sorted])  # both ECDFs are step functions jumping only here
    i = np.searchsorted(xs, points, side="right")
    fx = np.where(i > 0, cw[np.maximum(i - 1, 0)], 0.0)
    fy = np.searchsorted(y_sorted, points, side="right") / len(y_sorted)
    return float(np.max(np.abs(fx - fy)))


def psi(x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, bins: int = PSI_BINS) -> float:
    """Population stability index sum((s - p) ln(s / p)) of x (subset, weights wx)
    against y (pool) over the pool's quantile bins [q_j, q_j+1); shares floored at 1e-4."""
    edges = np.unique(np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1]))
    k = len(edges) + 1
    wx = np.ones(len(x)) if wx is None else wx
    p = np.bincount(np.searchsorted(edges, y, side="right"), minlength=k) / len(y)
    s = np.bincount(np.searchsorted(edges, x, side="right"), weights=wx, minlength=k) / wx.sum()
    s, p = np.maximum(s, PSI_EPS), np.maximum(p, PSI_EPS)
    return float(np.sum((s - p) * np.log(s / p)))


def smd(x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None) -> float:
    """(mean_x - mean_y) / sqrt((var_x + var_y) / 2) with sample variances
    (ddof=1; with weights wx, its reliability-weights analogue)."""
    a = np.full(len(x), 1 / len(x)) if wx is None else wx / wx.sum()
    mx, my = float(a @ x), float(y.mean())
    vx = float(a @ (x - mx) ** 2) / (1 - float(a @ a)) if float(a @ a) < 1 else 0.0
    sd = np.sqrt((vx + (float(y.var(ddof=1)) if len(y) > 1 else 0.0)) / 2)
    tiny = 1e-12 * max(abs(mx), abs(my), 1.0)  # rounding noise of constant columns
    if sd <= tiny:
        return 0.0 if abs(mx - my) <= tiny else float(np.sign(mx - my) * np.inf)
    return (mx - my) / float(sd)


def mmd_test(ex: np.ndarray, ey: np.ndarray, w: np.ndarray | None, fpc: bool, max_rows: int, n_perm: int,
             rng: np.random.Generator) -> dict | None:
    """Weighted unbiased MMD² of subset embeddings `ex` vs pool embeddings `ey` on a
    seeded subsample of at most `max_rows` per side, with a permutation p-value;
    None when fewer than two pool rows are left to compare with."""
    rows = np.arange(len(ey))
    if fpc and w is None:  # the rest of the pool is what a random subset is exchangeable with
        rows = rows[~np.isin(row_hash(ey), row_hash(ex))]
    if len(rows) < 2:
        return None
    ix = np.sort(rng.choice(len(ex), min(len(ex), max_rows), replace=False))
    iy = np.sort(rng.choice(rows, min(len(rows), max_rows), replace=False))
    g = np.concatenate([np.ones(len(ix)) if w is None else w[ix] / w[ix].mean(), np.ones(len(iy))])
    kernel, bandwidth2 = rbf_kernel(np.vstack([ex[ix], ey[iy]]))
    in_x = np.zeros((len(g), n_perm + 1), dtype=bool)  # column 0: the observed split, then permutations
    in_x[: len(ix), 0] = True
    for j in range(1, n_perm + 1):
        in_x[rng.permutation(len(g))[: len(ix)], j] = True
    mmd = mmd2(kernel, g, in_x)
    pval = float((1 + np.sum(mmd[1:] >= mmd[0])) / (n_perm + 1))
    return {"mmd2": float(mmd[0]), "p_value": pval, "bandwidth": float(np.sqrt(bandwidth2)),
            "rows_subset": len(ix), "rows_pool": len(iy), "permutations": n_perm}


def row_hash(e: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes (equal rows, equal hashes)."""
    mult = np.random.default_rng(0x7E5).integers(1, 2**63, e.shape[1], dtype=np.uint64) | np.uint64(1)
    return np.ascontiguousarray(e).view(np.uint64) @ mult


def rbf_kernel(z: np.ndarray) -> tuple[np.ndarray, float]:
    """exp(-|zi - zj|² / (2 s²)), s² the median positive squared distance; built in place."""
    sq = np.einsum("ij,ij->i", z, z)
    k = z @ z.T
    k *= -2
    k += sq[:, None]
    k += sq[None, :]
    np.maximum(k, 0.0, out=k)
    positive = k[k > 0]
    bandwidth2 = float(np.median(positive)) if positive.size else 1.0
    k /= -2 * bandwidth2
    np.exp(k, out=k)
    return k, bandwidth2


def mmd2(kernel: np.ndarray, g: np.ndarray, in_x: np.ndarray) -> np.ndarray:
    """Weighted unbiased MMD² for each column of the membership matrix `in_x`
    (self-pairs left out; weights g normalized within each side)."""
    a = np.where(in_x, g[:, None], 0.0)
    b = np.where(in_x, 0.0, g[:, None])
    a, b = a / a.sum(axis=0), b / b.sum(axis=0)
    ka, kb = kernel @ a, kernel @ b
    diag = np.diag(kernel)[:, None]

    def within(u: np.ndarray, ku: np.ndarray) -> np.ndarray:
        uu = (u * u).sum(axis=0)
        return ((u * ku).sum(axis=0) - (diag * u * u).sum(axis=0)) / np.maximum(1 - uu, 1e-12)

    return within(a, ka) + within(b, kb) - 2 * (a * kb).sum(axis=0)

"""The sampled near-duplicate estimate of a pool's profile: a seeded simple
random sample of m rows (without replacement) is compared against *every* row
of the pool through MinHash LSH (the same signatures, banding and verification
as the ``near_dup`` feature). Each sampled row then carries the indicator "has
a near-duplicate anywhere in the pool", so the sample share is an unbiased
estimate of the pool share. (Looking for pairs only *within* the sample would
not be: a row's partner is in the sample with probability ~m/N, so that share
shrinks with the sample.) The interval is Wilson's score interval with the
finite-population correction (N - m) / (N - 1); it collapses to the exact value
when m = N. The rest of the profile is `thresher.report.profile`.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.core.rng import make_rng

NEAR_THRESHOLD = 0.8
NEAR_NUM_PERM = 128
NEAR_SHINGLE = 5
NEAR_MINHASH_SEED = 1  # the near_dup feature's default, so both see the same pairs
_NEAR_CANDIDATES = 64  # pool rows checked per sampled row and band


def near_duplicate_estimate(texts: pa.Array, sample_size: int = 2000, seed: int = 0, *,
                            threshold: float = NEAR_THRESHOLD, confidence: float = 0.95) -> dict[str, Any]:
    """Estimated share of rows that have a near-duplicate (MinHash Jaccard >=
    `threshold` on 5-word shingles) anywhere in the pool, from a seeded sample
    of `sample_size` rows compared against all rows, with a confidence interval."""
    from thresher.features.minhash import minhash_signatures

    sig = minhash_signatures(texts, NEAR_NUM_PERM, NEAR_SHINGLE, NEAR_MINHASH_SEED)
    return near_rate_from_signatures(sig, sample_size, seed, threshold=threshold, confidence=confidence)


def near_rate_from_signatures(sig: np.ndarray, sample_size: int, seed: int = 0, *,
                              threshold: float = NEAR_THRESHOLD, confidence: float = 0.95,
                              verify_z: float = 2.0) -> dict[str, Any]:
    """`near_duplicate_estimate` on precomputed MinHash signatures (n, num_perm)."""
    n = len(sig)
    m = min(sample_size, n)
    sample = np.sort(make_rng(seed).choice(n, size=m, replace=False)) if m < n else np.arange(n)
    found = has_near_duplicate(sig, sample, threshold, verify_z)
    k = int(found.sum())
    low, high = wilson_interval(k, m, n, confidence)
    return {"threshold": threshold, "sample_rows": m, "pool_rows": n, "rows_with_near_duplicate": k,
            "fraction": k / m if m else 0.0, "ci_low": low, "ci_high": high, "confidence": confidence,
            "exact": m == n, "seed": seed,
            "method": "sampled rows vs. all rows (MinHash LSH, Wilson interval with finite-population correction)"}


def has_near_duplicate(sig: np.ndarray, rows: np.ndarray, threshold: float = NEAR_THRESHOLD,
                       verify_z: float = 2.0) -> np.ndarray:
    """For each of `rows`, whether another row of `sig` shares an LSH band with
    it and has estimated Jaccard >= threshold - verify_z * sd (as `near_dup`)."""
    from thresher.features.minhash import EMPTY_SIGNATURE, choose_bands

    num_perm = sig.shape[1]
    bands, width = choose_bands(threshold, num_perm)
    cut = threshold - verify_z * math.sqrt(threshold * (1 - threshold) / num_perm)
    keys = _band_keys(sig, bands, width)  # (bands, n)
    found = np.zeros(len(rows), dtype=bool)
    todo = np.flatnonzero(sig[rows, 0] != EMPTY_SIGNATURE)
    live = sig[:, 0] != EMPTY_SIGNATURE
    for band in range(bands):
        if len(todo) == 0:
            break
        key, mine = keys[band], keys[band, rows[todo]]
        order = _rows_holding(key, np.unique(mine), live)
        order = order[np.argsort(key[order], kind="stable")]
        lo = np.searchsorted(key[order], mine, side="left")
        take = np.minimum(np.searchsorted(key[order], mine, side="right") - lo, _NEAR_CANDIDATES + 1)
        owner = np.repeat(np.arange(len(todo)), take)
        pos = lo[owner] + np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
        me, other = rows[todo[owner]], order[pos]
        keep = me != other
        me, other, owner = me[keep], other[keep], owner[keep]
        equal = np.count_nonzero(sig[me] == sig[other], axis=1) / num_perm
        hit = np.unique(owner[equal >= cut])
        found[todo[hit]] = True
        todo = np.delete(todo, hit)
    return found


def _rows_holding(key: np.ndarray, wanted: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Rows whose `key` is in the sorted `wanted` (and that are `live`): a bitmap
    on the low bits first, so only the few rows that pass it are searched."""
    bits = np.zeros(1 << 20, dtype=bool)
    bits[(wanted & np.uint64(0xFFFFF)).astype(np.int64)] = True
    rows = np.flatnonzero(bits[(key & np.uint64(0xFFFFF)).astype(np.int64)] & live)
    at = np.minimum(np.searchsorted(wanted, key[rows]), len(wanted) - 1)
    return rows[wanted[at] == key[rows]]


def _band_keys(sig: np.ndarray, bands: int, width: int) -> np.ndarray:
    """(bands, n) uint64: one hash per band of `width` signature values."""
    mult = np.random.default_rng(0xBA2D).integers(1, 2**63, size=width, dtype=np.uint64) | np.uint64(1)
    out = np.empty((bands, len(sig)), dtype=np.uint64)
    step = 8192  # rows per pass: the block stays in cache
    with np.errstate(over="ignore"):
        for start in range(0, len(sig), step):
            cube = sig[start: start + step, : bands * width].reshape(-1, bands, width).astype(np.uint64)
            acc = np.zeros(cube.shape[:2], dtype=np.uint64)
            for j in range(width):
                acc ^= cube[:, :, j]
                acc *= mult[j]
            out[:, start: start + step] = acc.T
    return out


def wilson_interval(k: int, m: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a share k/m from a simple random sample of m
    of n rows without replacement (finite-population corrected)."""
    if m == 0:
        return 0.0, 1.0
    p = k / m
    if m >= n:
        return p, p
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    eff = m * (n - 1) / (n - m)  # the sample size whose binomial variance matches the fpc one
    centre = (p + z * z / (2 * eff)) / (1 + z * z / eff)
    half = z * math.sqrt(p * (1 - p) / eff + z * z / (4 * eff * eff)) / (1 + z * z / eff)
    return max(0.0, centre - half), min(1.0, centre + half)

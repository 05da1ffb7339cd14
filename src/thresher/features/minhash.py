"""Near-duplicate clusters from MinHash signatures: LSH banding, candidate
verification by estimated Jaccard, and connected components.

The signatures themselves (and the exact hashes) are per-row work in
`thresher.features.shingles`, re-exported here so that `minhash` stays the
one import for deduplication. Everything is vectorized over numpy arrays.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.core.arrays import sorted_unique
from thresher.errors import UsageError
from thresher.features.shingles import (  # noqa: F401 (re-exported: the signatures' public names)
    EMPTY_SIGNATURE,
    check_signature_args,
    exact_hash,
    minhash_signatures,
    normalize_text,
)

_BAND_KEYS = np.random.default_rng(0x7E5E).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


# -- LSH, verification, clusters ---------------------------------------------
def choose_bands(threshold: float, num_perm: int, min_prob: float = 0.99) -> tuple[int, int]:
    """(bands, rows) for LSH: the most selective banding (largest rows per
    band, bands = num_perm // rows) whose S-curve 1 - (1 - J**r)**b gives a
    pair at Jaccard == threshold at least `min_prob` chance to be a candidate.
    Falls back to (num_perm, 1) when no banding reaches it."""
    check_threshold(threshold)
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if 1.0 - (1.0 - threshold**r) ** b >= min_prob:
            return b, r
    return num_perm, 1


def check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float, np.floating)) or not 0.0 < threshold <= 1.0:
        raise UsageError(f"threshold must be a number in (0, 1], got {threshold!r}")


def check_max_bucket(max_bucket: int) -> None:
    if not isinstance(max_bucket, (int, np.integer)) or max_bucket < 2:
        raise UsageError(f"max_bucket must be an integer >= 2, got {max_bucket!r}")


def _check_signatures(signatures: np.ndarray) -> np.ndarray:
    sig = np.asarray(signatures)
    if sig.ndim != 2 or sig.dtype != np.uint32:
        raise UsageError(f"signatures must be a uint32 array of shape (rows, num_perm), got {sig.dtype} {sig.shape}")
    return sig


def _band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: a linear hash of each band's values. A collision
    only adds a candidate that verification then rejects."""
    out = np.zeros((len(sig), bands), dtype=np.uint64)
    term = np.empty_like(out)
    cube = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    for j in range(rows):
        np.multiply(cube[:, :, j], _BAND_KEYS[j], out=term)
        out += term
    return out


def key_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, start, size): `keys[order]` is sorted; group g is
    order[start[g] : start[g] + size[g]]. (np.unique is avoided: its hash
    path in numpy 2.x is ~50x slower than a sort here.)"""
    order = np.argsort(keys)
    skeys = keys[order]
    start = np.flatnonzero(np.concatenate([[True], skeys[1:] != skeys[:-1]])) if len(keys) else order
    return order, start, np.diff(np.append(start, len(keys)))


def band_keys(sig: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(live, band, whole): the positions of the rows with words, their
    (m, bands) band hashes and one uint64 key of all their bands. Each row's
    values depend on that row only, so blocks of rows can be keyed apart."""
    live = np.flatnonzero(sig[:, 0] != EMPTY_SIGNATURE)
    bh = _band_hashes(sig, bands, rows)
    if len(live) < len(sig):
        bh = bh[live]
    return live, bh, bh @ _BAND_KEYS[:bands]


def signature_stars(whole: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, reps) for rows whose banded signatures are identical (`whole`
    keys equal): each such group links its other rows `hi` to its smallest id
    `lo` as a star, and only its representative (positions `reps`, sorted)
    goes on through the bands. `ids` must be increasing."""
    order, start, size = key_groups(whole)
    rep = np.minimum.reduceat(order, start) if len(order) else order
    rep_of = np.repeat(rep, size)
    other = rep_of != order
    return ids[rep_of[other]], ids[order[other]], np.sort(rep)


def bucket_pairs(keys: np.ndarray, ids: np.ndarray, max_bucket: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (lo < hi) of `ids` sharing a key: all pairs in a bucket of up to
    `max_bucket` rows, a star on the bucket's smallest id in a bigger one.
    The pairs depend only on which ids share a key, not on their order."""
    order, start, size = key_groups(keys)
    sid = ids[order[np.repeat(size >= 2, size)]]  # members of shared buckets, bucket by bucket
    size = size[size >= 2]
    first = np.cumsum(size) - size
    small = size <= max_bucket
    end = np.repeat(first + size, size)
    pos = np.flatnonzero(np.repeat(small, size))
    lo, hi = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for d in range(1, int(size[small].max(initial=1))):
        pos = pos[pos + d < end[pos]]
        lo.append(np.minimum(sid[pos], sid[pos + d]))
        hi.append(np.maximum(sid[pos], sid[pos + d]))
    if not small.all():
        hub = np.repeat(np.minimum.reduceat(sid, first)[~small], size[~small])
        spoke = sid[np.repeat(~small, size)]
        lo.append(hub[spoke != hub])
        hi.append(spoke[spoke != hub])
    return np.concatenate(lo), np.concatenate(hi), int(np.count_nonzero(~small))


def _lsh(sig: np.ndarray, bands: int, rows: int, max_bucket: int) -> tuple[np.ndarray, dict[str, int]]:
    n = len(sig)
    live, bh, whole = band_keys(sig, bands, rows)
    lo, hi, reps = signature_stars(whole, live)
    codes = [lo * n + hi]
    capped = 0
    for k in range(bands):
        lo, hi, c = bucket_pairs(bh[reps, k], live[reps], max_bucket)
        codes.append(lo * n + hi)
        capped += c
    codes = sorted_unique(np.concatenate(codes))
    pairs = np.stack([codes // max(n, 1), codes % max(n, 1)], axis=1)
    stats = {"empty_rows": n - len(live), "identical_signature_rows": len(live) - len(reps),
             "candidate_pairs": len(pairs), "capped_buckets": capped}
    return pairs, stats


def verify_cut(threshold: float, num_perm: int, verify_z: float) -> float:
    """The estimated-Jaccard cut of `near_duplicate_clusters`' verification."""
    return threshold - verify_z * np.sqrt(threshold * (1 - threshold) / num_perm)


def lsh_candidates(
    signatures: np.ndarray,
    threshold: float = 0.8,
    num_perm: int | None = None,
    *,
    max_bucket: int = 16,
    min_prob: float = 0.99,
) -> np.ndarray:
    """Candidate pairs (i < j, int64 of shape (m, 2), sorted) that share a
    band of their first `num_perm` signature values (default: all of them).

    Bands come from `choose_bands(threshold, num_perm, min_prob)`. Rows with
    identical banded signatures are linked to the smallest such row; a band
    bucket of more than `max_bucket` rows emits a star on its smallest row
    instead of all its pairs (O(m), not O(m**2)). Empty rows take no part.
    """
    sig = _check_signatures(signatures)
    num_perm = sig.shape[1] if num_perm is None else num_perm
    if not 1 <= num_perm <= sig.shape[1]:
        raise UsageError(f"num_perm must be in [1, {sig.shape[1]}] for these signatures, got {num_perm}")
    check_max_bucket(max_bucket)
    bands, rows = choose_bands(threshold, num_perm, min_prob)
    return _lsh(sig, bands, rows, max_bucket)[0]


def estimate_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """float32 fraction of equal signature values per pair (0 if a row is empty)."""
    sig = _check_signatures(signatures)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float32)
    step = max(1, (1 << 22) // max(sig.shape[1], 1))
    empty = sig[:, 0] == EMPTY_SIGNATURE
    for s in range(0, len(pairs), step):
        i, j = pairs[s : s + step, 0], pairs[s : s + step, 1]
        equal = np.count_nonzero(sig[i] == sig[j], axis=1)
        out[s : s + step] = np.where(empty[i] | empty[j], 0.0, equal / sig.shape[1])
    return out


def verify_pairs(signatures: np.ndarray, pairs: np.ndarray, threshold: float) -> np.ndarray:
    """The pairs whose estimated Jaccard (`estimate_jaccard`) is >= threshold."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs[estimate_jaccard(signatures, pairs) >= threshold]


def cross_matches(query: np.ndarray, reference: np.ndarray, threshold: float = 0.8, *, max_bucket: int = 64,
                  min_prob: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, its most similar reference row among LSH candidates
    and their estimated Jaccard: (jaccard float32, reference row int64; 0.0 /
    -1 when no candidate reaches `threshold`). Only query x reference pairs
    are formed (a pool against an eval set), never pairs within either side.
    A band bucket holding more than `max_bucket` reference rows contributes
    its first `max_bucket` of them."""
    q, r = _check_signatures(query), _check_signatures(reference)
    if q.shape[1] != r.shape[1]:
        raise UsageError(f"signatures must have the same num_perm, got {q.shape[1]} and {r.shape[1]}")
    check_max_bucket(max_bucket)
    best = np.zeros(len(q), dtype=np.float32)
    match = np.full(len(q), -1, dtype=np.int64)
    r_live = np.flatnonzero(r[:, 0] != EMPTY_SIGNATURE)
    if not len(q) or not len(r_live):
        return best, match
    bands, rows = choose_bands(threshold, q.shape[1], min_prob)
    qb, rb = _band_hashes(q, bands, rows), _band_hashes(r[r_live], bands, rows)
    q_live = q[:, 0] != EMPTY_SIGNATURE
    keys = []
    for j in range(bands):
        order = np.argsort(rb[:, j])
        sk = rb[order, j]
        lo = np.searchsorted(sk, qb[:, j], side="left")
        cnt = np.minimum(np.searchsorted(sk, qb[:, j], side="right") - lo, max_bucket) * q_live
        total = int(cnt.sum())
        if total == 0:
            continue
        qi = np.repeat(np.arange(len(q), dtype=np.int64), cnt)
        within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        ri = r_live[order[np.repeat(lo, cnt) + within]]
        keys.append(qi * len(r) + ri)
    if not keys:
        return best, match
    pairs = sorted_unique(np.concatenate(keys))
    pairs = np.stack([pairs // len(r), pairs % len(r)], axis=1)
    jac = _cross_jaccard(q, r, pairs)
    ok = jac >= threshold
    pairs, jac = pairs[ok], jac[ok]
    order = np.lexsort((-jac, pairs[:, 0]))  # per query row, the best pair first
    first = order[np.concatenate([[True], pairs[order[1:], 0] != pairs[order[:-1], 0]])] if len(order) else order
    best[pairs[first, 0]] = jac[first]
    match[pairs[first, 0]] = pairs[first, 1]
    return best, match


def _cross_jaccard(q: np.ndarray, r: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float32)
    step = max(1, (1 << 22) // max(q.shape[1], 1))
    for s in range(0, len(pairs), step):
        i, j = pairs[s:s + step, 0], pairs[s:s + step, 1]
        out[s:s + step] = np.count_nonzero(q[i] == r[j], axis=1) / q.shape[1]
    return out


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """int64 component id per row: the smallest row index in its component
    (a row in no pair is its own id)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as _components

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise UsageError(f"pairs must index rows in [0, {n}), got values {pairs.min()}..{pairs.max()}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = _components(graph, directed=False)
    smallest = np.full(count, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n, dtype=np.int64))
    return smallest[labels]


@dataclass(frozen=True)
class NearDupResult:
    """Near-duplicate clusters of a text column.

    dup_cluster: int64 per row, the smallest row index of its cluster.
    pairs: int64 (m, 2), i < j, the verified edges the clusters are built from.
    jaccard: float32 (m,), estimated Jaccard of each pair.
    bands, rows: the LSH banding used.
    stats: counts (rows, empty_rows, candidate_pairs, verified_pairs,
        clusters, rows_in_clusters, ...) and seconds per phase.
    """

    dup_cluster: np.ndarray
    pairs: np.ndarray
    jaccard: np.ndarray
    bands: int
    rows: int
    stats: dict[str, Any] = field(default_factory=dict)


def near_duplicate_clusters(
    texts: "pa.Array | pa.ChunkedArray | list[str]",
    num_perm: int = 128,
    shingle_size: int = 5,
    threshold: float = 0.8,
    seed: int | np.random.Generator | None = 1,
    *,
    verify_z: float = 2.0,
    max_bucket: int = 16,
) -> NearDupResult:
    """Cluster rows whose word-shingle Jaccard similarity is about `threshold` or more.

    MinHash signatures -> LSH candidates (`lsh_candidates`) -> verification on
    the estimated Jaccard -> connected components. Verification keeps pairs
    with estimate >= threshold - verify_z * sqrt(t(1-t)/num_perm), so a pair
    exactly at the threshold survives its estimator's noise with probability
    ~98% (verify_z=2); verify_z=0 verifies at the threshold itself.
    """
    check_threshold(threshold)
    check_max_bucket(max_bucket)
    if not verify_z >= 0:
        raise UsageError(f"verify_z must be >= 0, got {verify_z}")
    clock = {"start": time.perf_counter()}
    sig = minhash_signatures(texts, num_perm, shingle_size, seed)
    clock["signatures_s"] = time.perf_counter()
    bands, rows = choose_bands(threshold, num_perm)
    candidates, stats = _lsh(sig, bands, rows, max_bucket)
    clock["lsh_s"] = time.perf_counter()
    cut = verify_cut(threshold, num_perm, verify_z)
    jac = estimate_jaccard(sig, candidates)
    keep = jac >= cut
    pairs, jac = candidates[keep], jac[keep]
    clock["verify_s"] = time.perf_counter()
    cluster = connected_components(len(sig), pairs)
    clock["components_s"] = time.perf_counter()
    sizes = np.bincount(cluster, minlength=len(sig))
    stats.update(rows=len(sig), verify_threshold=float(cut), verified_pairs=len(pairs),
                 clusters=int(np.count_nonzero(sizes > 1)), rows_in_clusters=int(sizes[sizes > 1].sum()))
    names = list(clock)
    stats.update({k: round(clock[k] - clock[p], 4) for p, k in zip(names, names[1:])})
    return NearDupResult(cluster, pairs, jac, bands, rows, stats)

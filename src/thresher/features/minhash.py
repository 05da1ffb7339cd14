"""Exact and near-duplicate signatures: normalized-text hashes, MinHash over
word shingles, LSH banding, verification and duplicate clusters.

Everything is vectorized over Arrow buffers / numpy arrays; rows are processed
in bounded chunks so memory stays flat whatever the number of rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.features._hashing import (
    as_string_array,
    blake2b64,
    hash_spans,
    make_string_array,
    normalize_buffers,
    shingle_hashes,
    string_buffers,
    tokenize,
)

#: Signature value of a row with no words. Real values are always odd, so it
#: can never occur otherwise; such rows take part in no pair.
EMPTY_SIGNATURE = np.uint32(0xFFFFFFFE)

_CHUNK_BYTES = 16 << 20  # input text per chunk
_CHUNK_ROWS = 1 << 17
_BLOCK = 1 << 19  # (row, shingle, permutation) cells per numpy call: cache sized
# Rows are padded to the next length on this ladder so that a whole block of
# rows reduces as one (rows, length, perms) array (np.minimum.reduceat along
# axis 0 measured ~8x slower here). Padding repeats the row's own last shingle
# and so never changes a minimum.
_LADDER = np.unique(np.concatenate([np.arange(1, 9), np.ceil(8 * 2 ** (np.arange(1, 37) / 4))])).astype(np.int64)
_BAND_KEYS = np.random.default_rng(0x7E5E).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


# -- normalization and exact hashes -------------------------------------------
def normalize_text(arr: "pa.Array | pa.ChunkedArray | list[str]") -> pa.Array:
    """Lowercased text with punctuation removed and whitespace collapsed.

    Punctuation is ASCII `string.punctuation` plus Unicode category P; format
    and control characters are removed too. Null rows stay null.
    """
    arr = as_string_array(arr)
    out = make_string_array(*normalize_buffers(arr))
    if arr.null_count:
        out = pc.if_else(pc.is_valid(arr), out, pa.scalar(None, out.type))
    return out


def exact_hash(arr: "pa.Array | pa.ChunkedArray | list[str]") -> pa.Array:
    """uint64 hash of each row's normalized text (null for null rows).

    It is blake2b with an 8-byte digest of the utf-8 normalized text read
    big-endian: `format(h, "016x") == blake2b(norm.encode(), digest_size=8).hexdigest()`.
    Each distinct normalized string is hashed once.
    """
    encoded = pc.dictionary_encode(normalize_text(arr))
    data, offsets = string_buffers(encoded.dictionary)
    raw = data.tobytes()
    digests = blake2b64(raw[s:e] for s, e in zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    return pc.take(pa.array(digests, pa.uint64()), encoded.indices)


# -- signatures ---------------------------------------------------------------
def _row_minima(x: np.ndarray, per_row: np.ndarray, a: np.ndarray) -> np.ndarray:
    """min over each row's shingles of a*x mod 2**32, per multiplier in `a`."""
    n, p = len(per_row), len(a)
    out = np.full((n, p), EMPTY_SIGNATURE, dtype=np.uint32)
    off = np.concatenate([[0], np.cumsum(per_row)])
    rung = np.where(per_row > 0, np.searchsorted(_LADDER, per_row), len(_LADDER) + 1)
    order = np.argsort(rung, kind="stable")
    bounds = np.searchsorted(rung[order], np.arange(len(_LADDER) + 2))
    for c in range(len(_LADDER) + 1):
        rows = order[bounds[c] : bounds[c + 1]]
        if len(rows) == 0:
            continue
        if c == len(_LADDER):
            _long_row_minima(x, off, rows, a, out)
            continue
        length = int(_LADDER[c])
        step = max(1, _BLOCK // (length * p))
        buf = np.empty((min(step, len(rows)), length, p), dtype=np.uint32)
        cols = np.arange(length)
        for s in range(0, len(rows), step):
            blk = rows[s : s + step]
            idx = off[blk, None] + np.minimum(cols, per_row[blk, None] - 1)
            v = buf[: len(blk)]
            np.multiply(x[idx][:, :, None], a, out=v)
            out[blk] = v.min(axis=1)
    return out


def _long_row_minima(x, off, rows, a, out) -> None:
    """Rows past the ladder: reduce each in cache-sized slices (each slice
    carries thousands of shingles, so the loop costs nothing per shingle)."""
    step = max(1, _BLOCK // len(a))
    for r in rows:
        acc = np.full(len(a), 0xFFFFFFFF, dtype=np.uint32)
        for s in range(off[r], off[r + 1], step):
            np.minimum(acc, (x[s : min(s + step, off[r + 1]), None] * a).min(axis=0), out=acc)
        out[r] = acc


def _multipliers(num_perm: int, seed) -> np.ndarray:
    rng = make_rng(seed)
    return rng.integers(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)


def _check_signature_args(num_perm: int, shingle_size: int) -> None:
    if not isinstance(num_perm, (int, np.integer)) or not 1 <= num_perm <= 4096:
        raise UsageError(f"num_perm must be an integer in [1, 4096], got {num_perm!r}")
    if not isinstance(shingle_size, (int, np.integer)) or not 1 <= shingle_size <= 64:
        raise UsageError(f"shingle_size must be an integer in [1, 64], got {shingle_size!r}")


def _chunks(texts: "pa.Array | pa.ChunkedArray"):
    """Row slices of `texts` holding about _CHUNK_BYTES of text each."""
    if isinstance(texts, pa.ChunkedArray):
        for chunk in texts.chunks:
            yield from _chunks(chunk)
        return
    arr = as_string_array(texts)
    if len(arr) == 0:
        return
    _, offsets = string_buffers(arr)
    start = 0
    while start < len(arr):
        end = int(np.searchsorted(offsets, offsets[start] + _CHUNK_BYTES, side="right")) - 1
        end = min(max(end, start + 1), start + _CHUNK_ROWS, len(arr))
        yield arr.slice(start, end - start)
        start = end


def minhash_signatures(
    texts: "pa.Array | pa.ChunkedArray | list[str]",
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int | np.random.Generator | None = 1,
) -> np.ndarray:
    """MinHash signatures, uint32 of shape (n, num_perm), over word shingles.

    Text is normalized (`normalize_text`) and split on spaces; a shingle is
    `shingle_size` consecutive words (a row with fewer words is one shingle
    of all of them). Value i is the minimum over the row's shingles of
    a_i * x mod 2**32, where x is the shingle's odd 32-bit hash and a_i an odd
    multiplier drawn from `seed` (multiplicative hashing: a bijection of the
    odd residues per i). Rows with no words get `EMPTY_SIGNATURE` in every
    position and match nothing.
    """
    _check_signature_args(num_perm, shingle_size)
    if not isinstance(texts, pa.ChunkedArray):
        texts = as_string_array(texts)
    a = _multipliers(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    done = 0
    for chunk in _chunks(texts):
        data, offsets = normalize_buffers(chunk, collapse=False)
        starts, lengths, counts = tokenize(data, offsets)
        x, per_row = shingle_hashes(hash_spans(data, starts, lengths), counts, shingle_size)
        out[done : done + len(chunk)] = _row_minima(x, per_row, a)
        done += len(chunk)
    return out


# -- LSH, verification, clusters ---------------------------------------------
def choose_bands(threshold: float, num_perm: int, min_prob: float = 0.99) -> tuple[int, int]:
    """(bands, rows) for LSH: the most selective banding (largest rows per
    band, bands = num_perm // rows) whose S-curve 1 - (1 - J**r)**b gives a
    pair at Jaccard == threshold at least `min_prob` chance to be a candidate.
    Falls back to (num_perm, 1) when no banding reaches it."""
    _check_threshold(threshold)
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if 1.0 - (1.0 - threshold**r) ** b >= min_prob:
            return b, r
    return num_perm, 1


def _check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float, np.floating)) or not 0.0 < threshold <= 1.0:
        raise UsageError(f"threshold must be a number in (0, 1], got {threshold!r}")


def _check_max_bucket(max_bucket: int) -> None:
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


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    x = np.sort(x)
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if len(x) else x


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
    codes = _sorted_unique(np.concatenate(codes))
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
    _check_max_bucket(max_bucket)
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
    _check_max_bucket(max_bucket)
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
    pairs = _sorted_unique(np.concatenate(keys))
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
    _check_threshold(threshold)
    _check_max_bucket(max_bucket)
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

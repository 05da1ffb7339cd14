"""Global MinHash-LSH near-duplicate clusters on Ray, identical to
`minhash.near_duplicate_clusters`.

The local algorithm, stage by stage, with the pool cut into row blocks:

1. signatures: one task per block computes its MinHash signatures (kept in
   the object store, never gathered) and its band keys;
2. identical banded signatures: (whole key, row) records are shuffled by key
   to reducers, each group links its rows to its smallest row (a star);
3. bands: the remaining rows' (band, key, row) records are shuffled by key;
   each reducer builds the bucket pairs of the buckets it owns (`bucket_pairs`:
   a bucket's pairs depend only on its members, so owning whole buckets is
   enough to give the same pairs as one machine);
4. verification: candidate pairs are grouped by the blocks of their two rows
   and checked by a task that reads just those two signature blocks;
5. components: the verified pairs (few) are gathered and joined into global
   connected components; each row's cluster is its smallest row, so which
   copy is kept never depends on arrival order.

Memory per task is one block's signatures (stage 1, 4) or one reducer's share
of the keys (2, 3); the driver holds the row count's int64s and the pairs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.errors import UsageError
from thresher.features import minhash as mh

MIN_BLOCK_ROWS = 20_000
MAX_BLOCK_ROWS = 250_000
_SALT = np.random.default_rng(0x5EED).integers(1, 2**63, size=4096, dtype=np.uint64)


@dataclass(frozen=True)
class RayNearDupResult:
    dup_cluster: np.ndarray
    pairs: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def block_bounds(n: int, cpus: float, block_rows: int | None = None) -> np.ndarray:
    """Block start rows (plus n at the end): about 4 blocks per CPU, within
    [MIN_BLOCK_ROWS, MAX_BLOCK_ROWS] rows each unless `block_rows` is given."""
    if block_rows is None:
        block_rows = int(np.clip(np.ceil(n / max(4 * cpus, 1)), MIN_BLOCK_ROWS, MAX_BLOCK_ROWS))
    return np.unique(np.r_[np.arange(0, n, block_rows), n]).astype(np.int64)


def near_duplicate_clusters_ray(ray, texts: "pa.Array | pa.ChunkedArray | list", num_perm: int = 128,
                                shingle_size: int = 5, threshold: float = 0.8, seed: int = 1, *,
                                verify_z: float = 2.0, max_bucket: int = 16, block_rows: int | None = None,
                                cpus: float = 1, checkpoint: str | None = None) -> RayNearDupResult:
    """`minhash.near_duplicate_clusters(texts, ...)`'s `dup_cluster`, computed on Ray.

    `texts` is an array (cut into blocks here) or a list of lazy parts (a
    sharded pool: `num_rows` and `materialize()`, read by the task that signs
    them; one block each). With `checkpoint` (a folder every worker can
    reach), each block's signatures are saved there, so a job killed later
    resumes without signing again."""
    mh.check_signature_args(num_perm, shingle_size)
    mh.check_threshold(threshold)
    mh.check_max_bucket(max_bucket)
    if not verify_z >= 0:
        raise UsageError(f"verify_z must be >= 0, got {verify_z}")
    clock = [time.perf_counter()]
    if isinstance(texts, list):
        bounds = np.r_[0, np.cumsum([t.num_rows for t in texts])].astype(np.int64)
        blocks = texts
    else:
        texts = _as_array(texts)
        bounds = block_bounds(len(texts), cpus, block_rows)
        blocks = [block_texts(texts, start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
    n = int(bounds[-1])
    reducers = max(1, len(bounds) - 1)
    bands, rows = mh.choose_bands(threshold, num_perm)
    tasks = _remote_tasks(ray)

    # 1. signatures and the whole-key shuffle's map side
    outs = [tasks["signatures"].options(num_returns=SHARES + reducers).remote(
        block, int(start), int(stop), num_perm, shingle_size, seed, bands, rows, reducers, checkpoint)
        for block, start, stop in zip(blocks, bounds[:-1], bounds[1:])]
    sig_refs, live_refs, band_refs, live_counts, resumed = ([o[k] for o in outs] for k in range(SHARES))
    # 2. identical banded signatures: stars, and the rows that leave the band stage
    stars = ray.get([tasks["stars"].remote(*[o[SHARES + p] for o in outs]) for p in range(reducers)])
    star_lo = np.concatenate([np.zeros(0, np.int64)] + [s[0] for s in stars])
    star_hi = np.concatenate([np.zeros(0, np.int64)] + [s[1] for s in stars])
    followers = ray.put(np.sort(star_hi))
    clock.append(time.perf_counter())
    # 3. bands
    records = [tasks["band_records"].options(num_returns=reducers).remote(live, band, followers, reducers)
               for live, band in zip(live_refs, band_refs)]
    if reducers == 1:
        records = [[r] for r in records]
    buckets = ray.get([tasks["band_pairs"].remote(max_bucket, *[r[p] for r in records]) for p in range(reducers)])
    codes = mh.sorted_unique(np.concatenate([star_lo * n + star_hi] + [b[0][:, 0] * n + b[0][:, 1] for b in buckets]))
    candidates = np.stack([codes // max(n, 1), codes % max(n, 1)], axis=1)
    clock.append(time.perf_counter())
    # 4. verification, by pair of blocks
    cut = mh.verify_cut(threshold, num_perm, verify_z)
    pairs = _verify(ray, tasks["verify"], sig_refs, bounds, candidates, cut)
    clock.append(time.perf_counter())
    # 5. global components
    cluster = mh.connected_components(n, pairs)
    clock.append(time.perf_counter())
    sizes = np.bincount(cluster, minlength=n)
    live_rows = sum(ray.get(live_counts))
    stats = {"rows": n, "blocks": len(bounds) - 1, "blocks_resumed": int(sum(ray.get(resumed))),
             "empty_rows": n - live_rows,
             "identical_signature_rows": int(len(star_hi)), "candidate_pairs": int(len(candidates)),
             "capped_buckets": int(sum(b[1] for b in buckets)), "verify_threshold": float(cut),
             "verified_pairs": int(len(pairs)), "clusters": int(np.count_nonzero(sizes > 1)),
             "rows_in_clusters": int(sizes[sizes > 1].sum())}
    for name, a, b in zip(("signatures_s", "lsh_s", "verify_s", "components_s"), clock, clock[1:]):
        stats[name] = round(b - a, 4)
    return RayNearDupResult(cluster, pairs, stats)


def _verify(ray, verify_task, sig_refs, bounds, candidates, cut) -> np.ndarray:
    if not len(candidates):
        return np.zeros((0, 2), np.int64)
    block = np.searchsorted(bounds, candidates, side="right") - 1  # (m, 2) block of each row
    key = block[:, 0] * len(sig_refs) + block[:, 1]
    order, start, size = mh.key_groups(key)
    jobs = []
    for s, c in zip(start, size):
        members = candidates[np.sort(order[s:s + c])]
        bi, bj = block[order[s]]
        jobs.append(verify_task.remote(sig_refs[bi], sig_refs[bj], int(bounds[bi]), int(bounds[bj]), members, cut))
    kept = [k for k in ray.get(jobs) if len(k)]
    if not kept:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(kept)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def block_texts(texts: pa.Array, start: int, stop: int) -> pa.Array:
    """Rows start..stop as a compact array. A slice would pickle its parent's
    whole buffers, shipping the entire pool to every block's task (measured
    at 1M rows: +1.9 GB on the driver, and Ray spilling to disk)."""
    return pa.concat_arrays([texts.slice(start, stop - start)])


def _as_array(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    return texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())


# -- the tasks (module-level functions, wrapped once per Ray session) --------
SHARES = 5  # the signature task's returns before its per-reducer shares


def _signatures(texts, first_row, stop_row, num_perm, shingle_size, seed, bands, rows, reducers, checkpoint):
    saved = _signature_file(checkpoint, first_row, stop_row, num_perm, shingle_size, seed) if checkpoint else None
    sig = _saved_signatures(saved, stop_row - first_row, num_perm)
    resumed = sig is not None
    if sig is None:
        texts = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts.materialize()
        sig = mh.minhash_signatures(texts, num_perm, shingle_size, seed)
        if saved is not None:
            _save_signatures(saved, sig)
    live, band, whole = mh.band_keys(sig, bands, rows)
    live_rows = live.astype(np.int64) + first_row
    dest = (whole % np.uint64(reducers)).astype(np.int64)
    shares = [(whole[dest == p], live_rows[dest == p]) for p in range(reducers)]
    return (sig, live_rows, band, len(live_rows), resumed, *shares)  # the count: stats need no gather of the rows


def _signature_file(checkpoint: str, first_row: int, stop_row: int, num_perm: int, shingle_size: int,
                    seed) -> Path:
    return Path(checkpoint) / f"signatures-p{num_perm}-s{shingle_size}-r{seed}-{first_row:012d}-{stop_row:012d}.npy"


def _saved_signatures(path: Path | None, rows: int, num_perm: int) -> np.ndarray | None:
    """A block's signatures saved by an earlier, unfinished run (any damage: sign again)."""
    if path is None:
        return None
    try:
        sig = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    if sig.shape != (rows, num_perm) or sig.dtype != np.uint32:
        return None
    return sig


def _save_signatures(path: Path, sig: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, sig)
    os.replace(tmp, path)  # whole or absent: a task killed mid-write leaves only its temp file


def _stars(*shares):
    """Stars of one reducer's whole keys. Shares come in block order, so rows increase."""
    whole = np.concatenate([np.zeros(0, np.uint64)] + [s[0] for s in shares])
    rows = np.concatenate([np.zeros(0, np.int64)] + [s[1] for s in shares])
    lo, hi, _ = mh.signature_stars(whole, rows)
    return lo, hi


def _band_records(live_rows, band, followers, reducers):
    keep = ~np.isin(live_rows, followers, assume_unique=True)
    rows, band = live_rows[keep], band[keep]
    out = []
    dest = [((band[:, k] ^ _SALT[k]) % np.uint64(reducers)).astype(np.int64) for k in range(band.shape[1])]
    for p in range(reducers):
        ks, keys, ids = [], [], []
        for k, d in enumerate(dest):
            mine = d == p
            ks.append(np.full(int(mine.sum()), k, np.int16))
            keys.append(band[mine, k])
            ids.append(rows[mine])
        out.append((np.concatenate(ks), np.concatenate(keys), np.concatenate(ids)))
    return out if reducers > 1 else out[0]


def _band_pairs(max_bucket, *shares):
    """Bucket pairs of the (band, key) buckets one reducer owns, band by band."""
    band = np.concatenate([s[0] for s in shares])
    keys = np.concatenate([s[1] for s in shares])
    ids = np.concatenate([s[2] for s in shares])
    codes, capped = [np.zeros(0, np.int64)], 0
    n = int(ids.max(initial=0)) + 1
    for k in np.unique(band):
        mine = band == k
        lo, hi, c = mh.bucket_pairs(keys[mine], ids[mine], max_bucket)
        codes.append(lo * n + hi)
        capped += c
    codes = mh.sorted_unique(np.concatenate(codes))
    return np.stack([codes // n, codes % n], axis=1), capped


def _verify_block_pair(sig_i, sig_j, start_i, start_j, pairs, cut):
    """The pairs (rows of blocks i and j) whose estimated Jaccard clears `cut`."""
    same = start_i == start_j
    stacked = sig_i if same else np.concatenate([sig_i, sig_j])
    local = np.stack([pairs[:, 0] - start_i, pairs[:, 1] - start_j + (0 if same else len(sig_i))], axis=1)
    return pairs[mh.estimate_jaccard(stacked, local) >= cut]


_TASKS: dict[int, dict[str, Any]] = {}


def _remote_tasks(ray) -> dict[str, Any]:
    key = id(ray)
    if key not in _TASKS:
        retry = {"max_retries": 3}
        _TASKS[key] = {"signatures": ray.remote(**retry)(_signatures), "stars": ray.remote(**retry)(_stars),
                       "band_records": ray.remote(**retry)(_band_records),
                       "band_pairs": ray.remote(**retry)(_band_pairs),
                       "verify": ray.remote(**retry)(_verify_block_pair)}
    return _TASKS[key]

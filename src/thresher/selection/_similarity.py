"""Similarity computation for the diversity selectors: a thread pool for
blocks of work, chunked similarities and distances, and k-nearest-neighbour
graphs (exact, or partitioned by spherical k-means). Their inputs (embedding
matrices, costs, budgets) are read by `thresher.selection._inputs`.

Similarities are computed block by block (`X[rows] @ X[cols].T`), never as
one `X @ X.T`: besides the memory, numpy's shared-buffer SYRK path crashes on
large inputs (numpy issue 19685).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import scipy.sparse as sp


METRICS = ("squared_cosine", "cosine")
KNN_METHODS = ("auto", "exact", "partitioned")
BLOCK_ROWS = 2048  # rows of X per similarity block: 2048 x 2048 float32 = 16 MiB
KNN_BLOCK = 4096  # exact kNN blocks: larger blocks cut the per-block merging
EXACT_KNN_MAX_ROWS = 10_000  # above this, `knn="auto"` uses the partitioned search


# -- threads -----------------------------------------------------------------
def n_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
    """fn(task) for every task, in order, on one thread per core.

    BLAS runs single-threaded meanwhile: threads working on separate blocks
    scale better than one BLAS call split over cores, and do not stall when
    the cores are shared (an oversubscribed multi-threaded BLAS call is several
    times slower). At most two tasks per thread are in flight. Without
    threadpoolctl the tasks run here, one after the other, on BLAS's threads.
    """
    tasks = iter(tasks)
    limit = _single_threaded_blas()
    workers = n_workers() if limit is not None else 1
    with limit or nullcontext():
        if workers == 1:
            yield from map(fn, tasks)
            return
        with ThreadPoolExecutor(workers) as pool:
            running = deque(pool.submit(fn, t) for t in islice(tasks, 2 * workers))
            while running:
                result = running.popleft().result()
                for t in tasks:
                    running.append(pool.submit(fn, t))
                    break
                yield result


def parallel_do(fn: Callable[[Any], Any], tasks: Iterable[Any]) -> None:
    """Run fn(task) for every task (see `parallel_map`), for its side effects."""
    deque(parallel_map(fn, tasks), maxlen=0)


def _single_threaded_blas() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1, user_api="blas")


# -- similarities ------------------------------------------------------------
def to_similarity(dots: np.ndarray, metric: str) -> np.ndarray:
    """Turn cosines into the facility-location similarity, in place.

    "squared_cosine": cos^2 (apricot's `metric="cosine"`); "cosine": max(cos, 0).
    """
    if metric == "squared_cosine":
        return np.square(dots, out=dots)
    return np.maximum(dots, 0, out=dots)


def dense_similarity(X: np.ndarray, metric: str) -> np.ndarray:
    """The full (n, n) float32 similarity matrix, computed in row blocks."""
    S = np.empty((len(X), len(X)), dtype=np.float32)

    def block(a: int) -> None:
        np.matmul(X[a:a + BLOCK_ROWS], X.T, out=S[a:a + BLOCK_ROWS])
        to_similarity(S[a:a + BLOCK_ROWS], metric)

    parallel_do(block, range(0, len(X), BLOCK_ROWS))
    return S


def coverage(X: np.ndarray, selected: np.ndarray, metric: str = "squared_cosine") -> float:
    """Exact facility-location objective sum_i max_{j in selected} sim(i, j) on unit rows `X`."""
    selected = np.asarray(selected, dtype=np.int64)
    if len(selected) == 0:
        return 0.0
    C = X[selected]

    def block(a: int) -> float:
        best = np.full(min(BLOCK_ROWS, len(X) - a), -np.inf, dtype=np.float32)
        for b in range(0, len(C), BLOCK_ROWS):
            np.maximum(best, to_similarity(X[a:a + BLOCK_ROWS] @ C[b:b + BLOCK_ROWS].T, metric).max(axis=1),
                       out=best)
        return float(best.sum(dtype=np.float64))

    return float(sum(parallel_map(block, range(0, len(X), BLOCK_ROWS))))


def min_sqdist(X: np.ndarray, sqnorms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every row of `X` to its nearest row in `centers` (float32)."""
    XC, nc = X[centers], sqnorms[centers]
    out = np.empty(len(X), dtype=np.float32)

    def block(a: int) -> None:
        best = np.full(min(BLOCK_ROWS, len(X) - a), np.inf, dtype=np.float32)
        for b in range(0, len(XC), BLOCK_ROWS):
            d = X[a:a + BLOCK_ROWS] @ XC[b:b + BLOCK_ROWS].T
            d *= -2
            d += sqnorms[a:a + BLOCK_ROWS, None]
            d += nc[None, b:b + BLOCK_ROWS]
            np.minimum(best, d.min(axis=1), out=best)
        out[a:a + BLOCK_ROWS] = best

    parallel_do(block, range(0, len(X), BLOCK_ROWS))
    return out


def dot_rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """X[rows] @ X.T as a (len(rows), n) float32 array, column blocks in parallel."""
    out = np.empty((len(rows), len(X)), dtype=np.float32)
    Xr = X[rows]
    step = max(BLOCK_ROWS, -(-len(X) // n_workers()))

    def block(a: int) -> None:
        out[:, a:a + step] = Xr @ X[a:a + step].T

    parallel_do(block, range(0, len(X), step))
    return out


# -- k-nearest-neighbour graphs ----------------------------------------------
def knn_graph(X: np.ndarray, n_neighbors: int, metric: str = "squared_cosine", method: str = "auto",
              n_partitions: int | None = None, n_probe: int = 4,
              rng: np.random.Generator | None = None) -> sp.csr_matrix:
    """Sparse similarity graph for facility location, candidate-major.

    Row j lists the rows i that have j among their `n_neighbors` most similar
    rows (themselves included), with value sim(i, j): G[j, i] = sim(i, j).
    `method="exact"` compares every pair in blocks; `"partitioned"` searches
    only the `n_probe` nearest of `n_partitions` spherical k-means cells
    (approximate); `"auto"` is exact up to 10,000 rows.
    """
    n = len(X)
    nn = min(int(n_neighbors), n)
    if nn == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    if method == "auto":
        method = "exact" if n <= EXACT_KNN_MAX_ROWS else "partitioned"
    if method == "exact":
        idx, val = exact_knn(X, nn, metric)
    else:
        idx, val = partitioned_knn(X, nn, metric, n_partitions, n_probe, rng or np.random.default_rng(0))
    if metric == "cosine":
        np.maximum(val, 0, out=val)
    idx, val = idx.ravel(), val.ravel()
    customers = np.repeat(np.arange(n, dtype=np.int32), nn)
    if (idx < 0).any():  # the partitioned search may find fewer than nn neighbours
        keep = idx >= 0
        idx, val, customers = idx[keep], val[keep], customers[keep]
    # customers ascend, so every row of the CSR result has sorted column indices
    return sp.coo_matrix((val, (idx, customers)), shape=(n, n)).tocsr()


def exact_knn(X: np.ndarray, nn: int, metric: str, block: int = KNN_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """The `nn` most similar rows of every row (itself included): (index int32, similarity float32).

    Each block pair X[a] @ X[b].T is computed once and serves the rows of both
    blocks. Diagonal blocks go first and give every row a threshold (its
    nn-th best value so far); later blocks only pass entries at or above it,
    so the full selection runs on few candidates.
    """
    n = len(X)
    best_v = np.full((n, nn), -np.inf, dtype=np.float32)
    best_i = np.full((n, nn), -1, dtype=np.int32)
    starts = list(range(0, n, block))

    def diagonal(a: int) -> None:
        best_v[a:a + block], best_i[a:a + block] = _top_per_row(_sims(X, a, a, block, metric), nn, a)

    parallel_do(diagonal, starts)
    thr = best_v.min(axis=1)  # read by the workers: a stale value is still a valid lower bound

    def pair(ab: tuple[int, int]) -> tuple[int, int, tuple, tuple]:
        a, b = ab
        S = _sims(X, a, b, block, metric)
        width = S.shape[1]
        pos = np.flatnonzero(S >= thr[a:a + block, None])
        mine = (pos // width, (pos % width + b).astype(np.int32), S.ravel()[pos])
        pos = np.flatnonzero(S >= thr[None, b:b + width])
        theirs = (pos % width, (pos // width + a).astype(np.int32), S.ravel()[pos])
        return a, b, mine, theirs

    pending: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {b: [] for b in starts}
    pairs = [(a, b) for ai, a in enumerate(starts) for b in starts[ai + 1:]]
    for a, b, mine, theirs in parallel_map(pair, pairs):
        if pending[a]:
            _flush(best_v, best_i, thr, a, pending[a])
        _flush(best_v, best_i, thr, a, [mine])
        pending[b].append(theirs)
        if sum(len(p[0]) for p in pending[b]) > 2 * block * nn:
            _flush(best_v, best_i, thr, b, pending[b])
    for b in starts:
        _flush(best_v, best_i, thr, b, pending[b])
    return best_i, best_v


def _sims(X: np.ndarray, a: int, b: int, block: int, metric: str) -> np.ndarray:
    S = X[a:a + block] @ X[b:b + block].T
    if metric == "squared_cosine":
        np.square(S, out=S)  # rank by |cos|: anti-correlated rows are similar under cos^2
    return S


def _flush(best_v: np.ndarray, best_i: np.ndarray, thr: np.ndarray, start: int,
           found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Merge candidates (row - start, column, value) into the best lists, then clear `found`."""
    if not found:
        return
    rows, cols, vals = (np.concatenate(part) for part in zip(*found))
    found.clear()
    keep = vals >= thr[start + rows]  # thresholds may have risen since these were found
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    if not len(rows):
        return
    nn = best_v.shape[1]
    hits = np.bincount(rows)
    touched = np.flatnonzero(hits)
    slot = np.zeros(len(hits), dtype=np.int64)
    slot[touched] = np.arange(len(touched))
    g = start + touched
    local = np.concatenate([np.repeat(np.arange(len(touched)), nn), slot[rows]])
    all_v = np.concatenate([best_v[g].ravel(), vals])
    all_i = np.concatenate([best_i[g].ravel(), cols])
    # One sort: by row, then by value descending (values lie in [-1, 1]; -inf placeholders as -2).
    order = np.argsort(local * 4.0 + (1.0 - np.maximum(all_v, -2.0)), kind="stable")
    counts = np.bincount(local, minlength=len(touched))
    take = order[((np.cumsum(counts) - counts)[:, None] + np.arange(nn)).ravel()]
    best_v[g] = all_v[take].reshape(-1, nn)
    best_i[g] = all_i[take].reshape(-1, nn)
    thr[g] = best_v[g, -1]


def partitioned_knn(X: np.ndarray, nn: int, metric: str, n_partitions: int | None, n_probe: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Approximate neighbours: rows are split into spherical k-means cells and
    the rows of a cell are compared only with the rows of the `n_probe` cells
    nearest to it (itself included). Missing neighbours are -1."""
    n = len(X)
    n_partitions = min(n_partitions or max(1, int(np.sqrt(n))), n)
    centroids = spherical_kmeans(X, n_partitions, rng)
    home = _nearest_centroids(X, centroids, 1)[:, 0]
    members = np.argsort(home, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(home, minlength=len(centroids)))])
    near = _nearest_centroids(centroids, centroids, min(n_probe, len(centroids)))
    best_v = np.full((n, nn), -np.inf, dtype=np.float32)
    best_i = np.full((n, nn), -1, dtype=np.int32)

    def cell(p: int) -> None:
        rows = members[bounds[p]:bounds[p + 1]]
        if len(rows) == 0:
            return
        cand = np.concatenate([members[bounds[q]:bounds[q + 1]] for q in near[p]])
        XC = X[cand]
        for c in range(0, len(rows), BLOCK_ROWS):
            part = rows[c:c + BLOCK_ROWS]
            S = X[part] @ XC.T
            if metric == "squared_cosine":
                np.square(S, out=S)
            v, i = _top_per_row(S, nn, 0)
            best_v[part] = v
            best_i[part] = np.where(i >= 0, cand[np.maximum(i, 0)], -1)

    parallel_do(cell, range(len(centroids)))
    return best_i, best_v


def spherical_kmeans(X: np.ndarray, n_clusters: int, rng: np.random.Generator, n_iter: int = 6,
                     sample_per_cluster: int = 40) -> np.ndarray:
    """Unit-length k-means centroids (cosine), fitted on a seeded sample of rows."""
    n = len(X)
    n_clusters = min(n_clusters, n)
    sample = X[np.sort(rng.choice(n, size=min(n, sample_per_cluster * n_clusters), replace=False))]
    C = sample[rng.choice(len(sample), size=n_clusters, replace=False)].copy()
    for _ in range(n_iter):
        labels = _nearest_centroids(sample, C, 1)[:, 0]
        one_hot = sp.csr_matrix((np.ones(len(sample), np.float32), (labels, np.arange(len(sample)))),
                                shape=(n_clusters, len(sample)))
        sums = np.asarray(one_hot @ sample, dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1)
        empty = np.flatnonzero(norms == 0)
        sums[empty] = sample[rng.choice(len(sample), size=len(empty), replace=False)]  # re-seed empty cells
        norms[empty] = 1.0
        C = sums / norms[:, None]
    return C


def _nearest_centroids(X: np.ndarray, C: np.ndarray, m: int) -> np.ndarray:
    """Indices of the `m` most similar centroids of every row, most similar first (int32)."""
    out = np.empty((len(X), m), dtype=np.int32)

    def block(a: int) -> None:
        S = X[a:a + BLOCK_ROWS] @ C.T
        if m == 1:
            out[a:a + len(S), 0] = S.argmax(axis=1)
            return
        top = np.argpartition(S, S.shape[1] - m, axis=1)[:, -m:] if m < S.shape[1] else \
            np.broadcast_to(np.arange(S.shape[1]), S.shape).copy()
        order = np.argsort(-np.take_along_axis(S, top, axis=1), axis=1, kind="stable")
        out[a:a + len(S)] = np.take_along_axis(top, order, axis=1)

    parallel_do(block, range(0, len(X), BLOCK_ROWS))
    return out


def _top_per_row(S: np.ndarray, nn: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The `nn` largest values of each row of `S` and their column + `offset` (-1 where fewer columns)."""
    rows, cols = S.shape
    if cols <= nn:
        v = np.full((rows, nn), -np.inf, dtype=np.float32)
        i = np.full((rows, nn), -1, dtype=np.int32)
        v[:, :cols] = S
        i[:, :cols] = np.arange(offset, offset + cols, dtype=np.int32)
        return v, i
    # A value partition plus a threshold mask is ~4x faster than argpartition;
    # rows with ties at the threshold fall back to argpartition.
    thr = np.partition(S, cols - nn, axis=1)[:, cols - nn]
    pos = np.flatnonzero(S >= thr[:, None])
    if len(pos) == rows * nn:
        pos = pos.reshape(rows, nn)
        cols_ = pos - (np.arange(rows) * cols)[:, None]
    else:
        cols_ = np.argpartition(S, cols - nn, axis=1)[:, cols - nn:]
    return np.take_along_axis(S, cols_, axis=1), (cols_ + offset).astype(np.int32)

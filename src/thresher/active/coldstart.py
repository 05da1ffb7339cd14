"""Cold start: the first rows to label when there are no labels yet.

- `kmeans_medoids`: k-means on the embeddings, then per center the row
  nearest to it (distinct rows): representative examples of each region.
- `stratified_seed`: a stratified sample over a metadata field, so every
  stratum is represented (at least one row each).
- `random_seed`: a uniform random set.
"""
from __future__ import annotations

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError

COLD_STARTS = ("kmeans", "random", "stratified")


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"the cold-start size must be a positive integer, got {k!r}")
    if k > n:
        raise UsageError(f"cannot pick {k} cold-start rows from {n}")
    return int(k)


def kmeans_medoids(X: np.ndarray, k: int, random_state: int | None = 0) -> np.ndarray:
    """Rows nearest to the k-means centers (one distinct row per center), largest cluster first."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    X = np.asarray(X, dtype=np.float32)
    k = _check_k(k, len(X))
    seed = int(make_rng(random_state).integers(2**31 - 1))
    if len(X) > 20_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    labels = model.fit_predict(X)
    centers = model.cluster_centers_.astype(np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    taken = np.zeros(len(X), dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    for t, c in enumerate(order):  # k passes of O(n d): never an n x k matrix
        d = sq - 2.0 * (X @ centers[c])
        d[taken] = np.inf
        picks[t] = int(np.argmin(d))
        taken[picks[t]] = True
    return picks


def stratified_seed(ds, by: str | list[str], k: int, random_state: int | None = 0) -> np.ndarray:
    """A stratified sample of k rows over `by` with at least one row per stratum."""
    from thresher.sampling.designs import sample

    k = _check_k(k, len(ds))
    fields = [by] if isinstance(by, str) else list(by)
    _, cells = ds.categorical(fields)
    if k < len(cells):
        raise UsageError(f"a stratified seed set over {', '.join(fields)} needs at least one row per stratum: "
                         f"{len(cells)} strata but only {k} rows; raise the size or use --cold-start kmeans")
    return np.sort(sample(ds, "stratified", n=k, by=fields, min_per_stratum=1, seed=random_state).indices)


def random_seed(n: int, k: int, random_state: int | None = 0) -> np.ndarray:
    """k distinct uniform random rows of n."""
    k = _check_k(k, n)
    return make_rng(random_state).choice(n, size=k, replace=False).astype(np.int64)


def cold_start(method: str, k: int, *, X: np.ndarray | None = None, ds=None, by: str | list[str] | None = None,
               n: int | None = None, random_state: int | None = 0) -> np.ndarray:
    """The first k rows to label by `method` (kmeans needs X, stratified needs ds and by)."""
    if method == "kmeans":
        if X is None:
            raise UsageError("cold start 'kmeans' needs the embedding matrix")
        return kmeans_medoids(X, k, random_state)
    if method == "stratified":
        if ds is None or not by:
            raise UsageError("cold start 'stratified' needs --by FIELD")
        return stratified_seed(ds, by, k, random_state)
    if method == "random":
        size = n if n is not None else (len(X) if X is not None else len(ds))
        return random_seed(size, k, random_state)
    raise UsageError(f"unknown cold start {method!r}; choose one of {', '.join(COLD_STARTS)}")

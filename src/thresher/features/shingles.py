"""Per-row text signatures: normalized text, exact hashes (64-bit, of the
normalized text) and MinHash signatures over word shingles.

Each row's values depend on that row alone, so any block of rows can be
signed apart (the Ray executor signs blocks on workers). Everything is
vectorized over Arrow buffers / numpy arrays, in bounded chunks, so memory
stays flat whatever the number of rows. `minhash` builds the LSH and the
duplicate clusters on these signatures.
"""
from __future__ import annotations

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


def check_signature_args(num_perm: int, shingle_size: int) -> None:
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
    check_signature_args(num_perm, shingle_size)
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

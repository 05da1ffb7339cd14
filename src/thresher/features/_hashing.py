"""Byte-level text primitives over Arrow string buffers: normalization and
stable hashing, vectorized with numpy (no Python loop per row)."""
from __future__ import annotations

import functools
import hashlib
import string
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError

_SPACE = 32
_M64 = (1 << 64) - 1
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_LEN_KEY = np.uint64(0x9E3779B97F4A7C15)
_SHINGLE_KEYS = np.random.default_rng(0x5417).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)
# Tokens longer than this are rare (URLs, blobs); hashlib hashes them.
_MAX_VECTOR_TOKEN = 64
_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [_M64], dtype=np.uint64)


def _byte_table() -> np.ndarray:
    """Per-byte rewrite: 0 = drop, 32 = separator, A-Z lowered, rest kept."""
    table = np.arange(256, dtype=np.uint8)
    table[ord("A") : ord("Z") + 1] += 32
    for ch in string.punctuation:
        table[ord(ch)] = 0
    table[list(range(0, 9)) + list(range(14, 28)) + [127]] = 0  # control chars
    table[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = _SPACE
    return table


_BYTE_TABLE = _byte_table()


def as_string_array(texts: "pa.Array | pa.ChunkedArray | list[str]") -> pa.Array:
    """`texts` as one Arrow string / large_string array (nulls kept)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    elif not isinstance(texts, pa.Array):
        try:
            texts = pa.array(list(texts), type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise UsageError(f"texts must be strings (or None): {exc}") from None
    if pa.types.is_dictionary(texts.type):
        texts = texts.dictionary_decode()
    if pa.types.is_null(texts.type):
        texts = texts.cast(pa.string())
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise UsageError(f"texts must be a string column, got Arrow type {texts.type}")
    return texts


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(utf-8 bytes, int64 offsets rebased to 0) of a null-free string array."""
    bufs = arr.buffers()
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_type)[arr.offset : arr.offset + len(arr) + 1]
    offsets = offsets.astype(np.int64)
    if len(offsets) == 0:
        offsets = np.zeros(1, np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


@functools.cache
def _unicode_tables() -> tuple[np.ndarray, np.ndarray]:
    """(class of each BMP code point: 0 keep, 1 drop (punctuation, format,
    control), 2 separator (category Z, NEL); per UTF-8 lead byte, whether
    any code point it starts has a nonzero class)."""
    table = np.zeros(0x10000, dtype=np.uint8)
    for cp in range(0x80, 0x10000):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "P" or cat in ("Cf", "Cc"):
            table[cp] = 1
        elif cat[0] == "Z":
            table[cp] = 2
    table[0x85] = 2
    lead = np.zeros(256, dtype=bool)
    lead[0xC2:0xE0] = table[: 0x800].reshape(32, 64).any(axis=1)[2:]
    lead[0xE0:0xF0] = table.reshape(16, 4096).any(axis=1)
    return table, lead


def _rewrite_unicode(raw: np.ndarray, out: np.ndarray) -> None:
    """Mark the bytes of non-ASCII punctuation 0 (drop) in `out` and turn
    non-ASCII separators into one space. Characters outside the BMP are kept."""
    table, interesting = _unicode_tables()
    leads = np.flatnonzero(raw >= 0xC2)
    leads = leads[interesting[raw[leads]]]  # e.g. skips Cyrillic and CJK ideographs
    if len(leads) == 0:
        return
    last = len(raw) - 1
    b0 = raw[leads].astype(np.int64)
    b1 = raw[np.minimum(leads + 1, last)].astype(np.int64) & 0x3F
    b2 = raw[np.minimum(leads + 2, last)].astype(np.int64) & 0x3F
    two = b0 < 0xE0
    cp = np.where(two, ((b0 & 0x1F) << 6) | b1, ((b0 & 0x0F) << 12) | (b1 << 6) | b2)
    cls = table[cp & 0xFFFF]
    for kind in (1, 2):
        at, three = leads[cls == kind], ~two[cls == kind]
        out[at] = 0 if kind == 1 else _SPACE
        out[np.minimum(at + 1, last)] = 0
        out[np.minimum(at + 2, last)[three]] = 0


def _drop(data: np.ndarray, offsets: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the bytes where `drop` is True, keeping row offsets consistent."""
    gone = np.flatnonzero(drop)
    if len(gone) == 0:
        return data, offsets
    return data[~drop], offsets - np.searchsorted(gone, offsets)


def normalize_buffers(arr: pa.Array, collapse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Normalized utf-8 bytes and offsets of `arr` (nulls read as "").

    Normal form: lowercase; punctuation (ASCII `string.punctuation`, Unicode
    category P in the BMP) and control/format characters removed; every run
    of whitespace (ASCII or Unicode category Z) one space; no leading or
    trailing space. With collapse=False whitespace is only mapped to single
    spaces, not collapsed or trimmed (enough for `tokenize`).
    """
    arr = pc.fill_null(arr, "")
    data, offsets = string_buffers(arr)
    non_ascii = len(data) > 0 and int(data.max()) >= 0x80
    if non_ascii:
        data, offsets = string_buffers(pc.utf8_lower(arr))
    out = _BYTE_TABLE[data]
    if non_ascii:
        _rewrite_unicode(data, out)
    data, offsets = _drop(out, offsets, out == 0)
    if not collapse:
        return data, offsets
    # Keep a space only as the first of its run and not at a row start ...
    is_space = data == _SPACE
    after_space = np.empty_like(is_space)
    after_space[1:] = is_space[:-1]
    after_space[offsets[:-1][offsets[:-1] < len(data)]] = True
    data, offsets = _drop(data, offsets, is_space & after_space)
    # ... nor at a row end.
    ends = offsets[1:][offsets[1:] > offsets[:-1]] - 1
    trailing = ends[data[ends] == _SPACE]
    if len(trailing) == 0:
        return data, offsets
    return np.delete(data, trailing), offsets - np.searchsorted(trailing, offsets)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, in place on a uint64 array."""
    tmp = np.empty_like(x)
    for mult in (_FMIX1, _FMIX2):
        np.right_shift(x, np.uint64(33), out=tmp)
        np.bitwise_xor(x, tmp, out=x)
        np.multiply(x, mult, out=x)
    np.right_shift(x, np.uint64(33), out=tmp)
    np.bitwise_xor(x, tmp, out=x)
    return x


def hash_spans(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each byte span data[start:start+length].

    Spans of up to 64 bytes are read as little-endian 8-byte words, chained
    through fmix64; longer spans use blake2b (8-byte digest).
    """
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[: len(data)] = data
    # An unaligned uint64 view at every byte offset: one gather per word.
    words = np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    h = words[starts] & _BYTE_MASKS[np.minimum(lengths, 8)]
    h ^= lengths.astype(np.uint64) * _LEN_KEY
    fmix64(h)
    sel = np.flatnonzero((lengths > 8) & (lengths <= _MAX_VECTOR_TOKEN))
    for k in range(8, _MAX_VECTOR_TOKEN, 8):
        sel = sel[lengths[sel] > k]
        if len(sel) == 0:
            break
        w = words[starts[sel] + k] & _BYTE_MASKS[np.minimum(lengths[sel] - k, 8)]
        h[sel] = fmix64(h[sel] ^ w)
    long_spans = np.flatnonzero(lengths > _MAX_VECTOR_TOKEN)
    if len(long_spans):
        raw = data.tobytes()
        h[long_spans] = blake2b64(raw[s : s + n] for s, n in zip(starts[long_spans], lengths[long_spans]))
    return h


def tokenize(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length) of every token (maximal run of non-space bytes within a
    row) and the number of tokens per row."""
    n = len(data)
    word = data != _SPACE
    # joined[p]: bytes p-1 and p are word bytes of the same row.
    joined = np.zeros(n + 1, dtype=bool)
    np.logical_and(word[1:], word[:-1], out=joined[1:n])
    joined[offsets[:-1][offsets[:-1] < n]] = False
    starts = np.flatnonzero(word & ~joined[:n])
    ends = np.flatnonzero(word & ~joined[1:]) + 1
    return starts, ends - starts, np.diff(np.searchsorted(starts, offsets))


def shingle_hashes(tokens: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Odd 32-bit hash of every k-token shingle, rows in order, and shingles per row.

    `tokens` are 64-bit token hashes, `counts` tokens per row. A row with
    1..k-1 tokens is one shingle of all of them; an empty row has none. The
    hash is the top half of sum_j key_j * token_j (mod 2**64), which is
    uniform because the token hashes are.
    """
    n_tok = len(tokens)
    row_end = np.cumsum(counts)
    # Shingle starting at every token, from contiguous shifted slices ...
    acc = tokens * _SHINGLE_KEYS[0]
    for j in range(1, min(k, n_tok)):
        acc[: n_tok - j] += tokens[j:] * _SHINGLE_KEYS[j]
    # ... kept where k tokens of the same row follow.
    valid = np.ones(n_tok, dtype=bool)
    for j in range(1, k):
        valid[(row_end - j)[counts >= j]] = False
    per_row = np.where(counts >= k, counts - k + 1, np.minimum(counts, 1))
    short = np.flatnonzero((counts > 0) & (counts < k))
    if len(short) == 0:
        return _top_odd(acc[valid]), per_row
    out = np.empty(int(per_row.sum()), dtype=np.uint64)
    at_short = np.zeros(len(out), dtype=bool)
    at_short[(np.cumsum(per_row) - 1)[short]] = True
    out[~at_short] = acc[valid]
    first = row_end[short] - counts[short]
    whole = np.zeros(len(short), dtype=np.uint64)
    for j in range(k - 1):
        term = tokens[np.minimum(first + j, n_tok - 1)] * _SHINGLE_KEYS[j]
        whole += np.where(counts[short] > j, term, np.uint64(0))
    out[at_short] = whole
    return _top_odd(out), per_row


def _top_odd(h: np.ndarray) -> np.ndarray:
    """Top 32 bits with the lowest bit set: odd values keep x -> a*x (a odd)
    a bijection without the fixed point 0."""
    return (h >> np.uint64(32)).astype(np.uint32) | np.uint32(1)


def blake2b64(items) -> np.ndarray:
    """blake2b with an 8-byte digest of each bytes item, as big-endian uint64
    (so `format(h, "016x")` is the hexdigest)."""
    digests = b"".join(hashlib.blake2b(x, digest_size=8).digest() for x in items)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def make_string_array(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """A null-free Arrow string array (large_string past 2 GiB) over bytes and offsets."""
    large = len(data) >= 2**31
    off = offsets.astype(np.int64 if large else np.int32)
    typ = pa.large_string() if large else pa.string()
    buffers = [None, pa.py_buffer(off), pa.py_buffer(np.ascontiguousarray(data))]
    return pa.Array.from_buffers(typ, len(offsets) - 1, buffers, null_count=0)

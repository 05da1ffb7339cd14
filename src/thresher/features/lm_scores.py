"""Language-model scores per row: response loss with and without its prompt,
IFD (instruction-following difficulty), response and prompt perplexity.

What is scored, exactly:

* The prompt is placed in a template: the tokenizer's chat template with one
  user turn (``user = prompt``) followed by the assistant header, or a plain
  template string holding ``{prompt}``. Rendering the template around a
  placeholder gives constant *head* and *tail* token ids; the prompt and the
  response are tokenized on their own (no special tokens) and spliced in:
  ``conditioned = head + prompt + tail + response``.
* ``loss_response_given_prompt``: mean token NLL (nats) of the response tokens
  in ``conditioned``. Only the response's own tokens count: not the template,
  not the end-of-turn / EOS token.
* ``loss_response_alone``: the same response tokens with an empty prompt,
  ``head + tail + response`` (same template, no instruction), so both losses
  average over identical tokens.
* ``ifd = loss_response_given_prompt / loss_response_alone``;
  ``ppl_response = exp(loss_response_given_prompt)``;
  ``ppl_prompt = exp(mean NLL of the prompt tokens after head)``.
* Plain templates get the BOS token (EOS if there is none) in front so that
  the first prompt/response token is scored too.
* When ``head + prompt + tail + response`` exceeds ``max_length`` the row is
  flagged ``lm_truncated``; the prompt loses its *middle* (its start and end
  are kept, `thresher.features.truncation`, the rule training uses; the
  featurizer sees only the prompt text, so the whole prompt is the part cut)
  and the response keeps its *first* tokens. The prompt keeps up to half of
  the room left by the template (more if the response is short); the response
  gets the rest. All scores use the kept tokens.
* An empty response gives NaN losses, IFD and ``ppl_response``; an empty
  prompt gives NaN ``ppl_prompt`` (and IFD 1 up to rounding).

This module plans the sequences (dedup, truncation, one token pool) and
batches them; talking to the model (template ids, forward passes, prefix
cache) is `thresher.features.lm_forward`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from thresher.errors import UsageError
from thresher.features.lm_forward import PLAIN_TEMPLATE, prefix_cache, target_nll, template_ids  # noqa: F401
from thresher.models import autocast, resolve_causal_lm, torch_threads

SCORE_COLUMNS = (
    "loss_response_given_prompt",
    "loss_response_alone",
    "ifd",
    "ppl_response",
    "ppl_prompt",
    "lm_truncated",
)
DEFAULT_BATCH_TOKENS = 4096
DEFAULT_MAX_LENGTH = 1024
DTYPES = ("auto", "float32", "bfloat16")
# Model types whose logits are exactly lm_head(last hidden state), so the head
# can be applied to the scored positions only (skips padding and template).
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
# Both on by default; switches exist so the benchmark can measure each.
_REUSE_PREFIX = True  # run the shared template prefix once per group
_DEDUP = True  # score identical sequences once
_PAD_SLACK, _MIN_BATCH = 0.1, 256  # padded tokens per batch: <= 10% once it holds 256 real ones

ModelLike = Any  # None | str | os.PathLike | (model, tokenizer)
_template_ids = template_ids  # the name the tests and the benchmark use
Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- API
def score_lm(
    prompts: Sequence[str | None],
    responses: Sequence[str | None],
    model: ModelLike = None,
    *,
    template: str = "auto",
    dtype: str = "auto",
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_length: int = DEFAULT_MAX_LENGTH,
    num_threads: int | None = None,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Per-row LM scores (see the module docstring). Sequences are batched by
    length, identical ones are scored once, and the template prefix they share
    is run once (for llama/mistral/qwen2/qwen3 models).

    `model` is None (the bundled SmolLM2), a local model folder, or a
    `(model, tokenizer)` pair. `template` is "auto" (chat template if the
    tokenizer has one, else plain), "chat", or a string holding "{prompt}".
    `dtype` "auto" is bfloat16 autocast where the hardware has native bf16
    (CUDA, AVX512-BF16/AMX CPUs), else float32. `num_threads` defaults to the
    cores this process may use. `progress(tokens_done, tokens_total)` is called
    after each batch.
    Returns float64 arrays (bool for `lm_truncated`), one value per row."""
    _check_args(prompts, responses, dtype, batch_tokens, max_length)
    lm, tokenizer = resolve_causal_lm(model)
    plan = _Plan.build(tokenizer, prompts, responses, template, max_length)
    seq_sum = np.zeros(2 * plan.n)  # NLL sums: [0, n) conditioned, [n, 2n) alone
    prompt_sum = np.zeros(plan.n)
    with torch_threads(num_threads), autocast(lm, dtype):
        _run_batches(lm, plan, batch_tokens, seq_sum, prompt_sum, progress)
    return plan.finish(seq_sum, prompt_sum)


def score_lm_reference(
    prompts: Sequence[str | None],
    responses: Sequence[str | None],
    model: ModelLike = None,
    *,
    template: str = "auto",
    dtype: str = "float32",
    max_length: int = DEFAULT_MAX_LENGTH,
    num_threads: int | None = None,
) -> dict[str, np.ndarray]:
    """The same scores computed one row at a time, without padding, from the full
    logits (log-softmax + gather). Slow; the yardstick for tests and benchmarks."""
    _check_args(prompts, responses, dtype, DEFAULT_BATCH_TOKENS, max_length)
    import torch

    from thresher.features.truncation import fit_prompts

    lm, tokenizer = resolve_causal_lm(model)
    head, tail = template_ids(tokenizer, template)
    device = next(lm.parameters()).device
    out = {k: np.full(len(prompts), np.nan) for k in SCORE_COLUMNS}
    out["lm_truncated"] = np.zeros(len(prompts), dtype=bool)

    def nll(ids: list[int], start: int, count: int) -> float:
        if count == 0:
            return float("nan")
        x = torch.tensor([ids], device=device)
        logp = torch.log_softmax(lm(input_ids=x).logits[0].float(), dim=-1)
        pos = torch.arange(start, start + count, device=device)
        return float(-logp[pos - 1, x[0, pos]].mean())

    with torch.inference_mode(), torch_threads(num_threads), autocast(lm, dtype):
        for i, (p_text, r_text) in enumerate(zip(prompts, responses)):
            p = tokenizer(p_text or "", add_special_tokens=False)["input_ids"]
            r = tokenizer(r_text or "", add_special_tokens=False)["input_ids"]
            room = max_length - len(head) - len(tail)
            if len(p) + len(r) > room:
                out["lm_truncated"][i] = True
                keep_p = min(len(p), max(room - len(r), room // 2))
                cut = fit_prompts(tokenizer, [p_text or ""], [np.asarray(p, np.int64)], np.array([keep_p]))[0][0]
                p, r = cut.tolist(), r[: room - keep_p]
            cond = head + p + tail + r
            out["loss_response_given_prompt"][i] = nll(cond, len(cond) - len(r), len(r))
            out["loss_response_alone"][i] = nll(head + tail + r, len(head) + len(tail), len(r))
            out["ppl_prompt"][i] = np.exp(nll(cond, len(head), len(p)))
    out["ifd"] = out["loss_response_given_prompt"] / out["loss_response_alone"]
    out["ppl_response"] = np.exp(out["loss_response_given_prompt"])
    return out


def lm_score_batch(batch: pa.RecordBatch | pa.Table, model: ModelLike = None, **params: Any) -> dict[str, pa.Array]:
    """`score_lm` over the `prompt` and `response` columns of an Arrow batch;
    float64 arrays (NaN as null) and a bool `lm_truncated`, in row order."""
    missing = [c for c in ("prompt", "response") if c not in batch.column_names]
    if missing:
        raise UsageError(
            f"LM scores need 'prompt' and 'response' columns; missing {missing} (have {batch.column_names})"
        )
    scores = score_lm(
        batch.column("prompt").to_pylist(), batch.column("response").to_pylist(), model, **params
    )
    return {
        k: pa.array(v, type=pa.bool_() if k == "lm_truncated" else pa.float64(), from_pandas=True)
        for k, v in scores.items()
    }


# ------------------------------------------------------------------ arguments
def _check_args(prompts: Sequence, responses: Sequence, dtype: str, batch_tokens: int, max_length: int) -> None:
    if len(prompts) != len(responses):
        raise UsageError(f"got {len(prompts)} prompts but {len(responses)} responses; they must pair up")
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(max_length, (int, np.integer)) or max_length < 8:
        raise UsageError(f"max_length must be an integer >= 8, got {max_length!r}")
    if not isinstance(batch_tokens, (int, np.integer)) or batch_tokens < 1:
        raise UsageError(f"batch_tokens must be a positive integer, got {batch_tokens!r}")


# ----------------------------------------------------------------------- plan
def _flatten(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _text_codes(texts: list[str]) -> np.ndarray:
    """Equal texts get equal int codes (Arrow hash, vectorized)."""
    return pa.array(texts, pa.large_string()).dictionary_encode().indices.to_numpy(zero_copy_only=False)


def _first_equal(keys: np.ndarray) -> np.ndarray:
    """For each row of `keys`, the index of the first row equal to it."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for each (s, l), vectorized."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total)


@dataclass
class _Plan:
    """Every row's two sequences as ranges into one token pool.

    Sequence j < n is row j conditioned on its prompt, j >= n is row j - n alone.
    Each sequence is four segments (head, prompt, tail, response) given by
    start/length into `pool`; the alone sequences have an empty prompt segment.
    `rep[j]` is the first sequence identical to j (rows repeating a prompt and
    response, or a response, are common in real pools)."""

    n: int
    head_len: int
    tail_len: int
    pool: np.ndarray  # head ++ tail ++ all prompt tokens ++ all response tokens
    seg_start: np.ndarray  # (2n, 4)
    seg_len: np.ndarray  # (2n, 4)
    truncated: np.ndarray  # (n,) bool
    rep: np.ndarray  # (2n,) int

    @classmethod
    def build(cls, tokenizer: Any, prompts: Sequence, responses: Sequence, template: str, max_length: int) -> "_Plan":
        head, tail = template_ids(tokenizer, template)
        room = max_length - len(head) - len(tail)
        if room < 2:
            raise UsageError(f"max_length={max_length} leaves no room next to the {len(head) + len(tail)}-token template")
        from thresher.features.truncation import fit_prompts

        p_text, r_text = [x or "" for x in prompts], [x or "" for x in responses]
        enc = lambda xs: tokenizer(xs, add_special_tokens=False)["input_ids"] if xs else []  # noqa: E731
        p_ids = [np.asarray(x, np.int64) for x in enc(p_text)]
        r_flat, r = _flatten(enc(r_text))
        p = np.fromiter((x.size for x in p_ids), np.int64, len(p_ids))
        truncated = p + r > room
        keep_p = np.where(truncated, np.minimum(p, np.maximum(room - r, room // 2)), p)
        keep_r = np.where(truncated, np.minimum(r, room - keep_p), r)
        # the prompt loses its middle (the training rule), so its start, the instruction, is scored too
        p_flat, keep_p = _flatten(fit_prompts(tokenizer, p_text, p_ids, keep_p)[0])
        h, t = len(head), len(tail)
        p_base, r_base = h + t, h + t + len(p_flat)
        p_start = p_base + np.cumsum(keep_p) - keep_p
        r_start = r_base + np.cumsum(r) - r  # keep the response's start
        n = len(p)
        zeros = np.zeros(n, np.int64)
        starts = np.stack([zeros, p_start, zeros + h, r_start], axis=1)
        lens = np.stack([zeros + h, keep_p, zeros + t, keep_r], axis=1)
        alone_lens = lens.copy()
        alone_lens[:, 1] = 0
        pool = np.concatenate([np.asarray(head + tail, np.int64), p_flat, r_flat])
        rep = np.arange(2 * n)
        if _DEDUP and n:
            p_code, r_code = _text_codes(p_text), _text_codes(r_text)
            # Same texts, same tokens and truncation; alone, only the kept response matters.
            rep = np.concatenate([_first_equal(np.stack([p_code, r_code], 1)),
                                  n + _first_equal(np.stack([r_code, keep_r], 1))])
        return cls(n, h, t, pool, np.concatenate([starts, starts]), np.concatenate([lens, alone_lens]), truncated, rep)

    @property
    def lengths(self) -> np.ndarray:
        return self.seg_len.sum(axis=1)

    @property
    def active(self) -> np.ndarray:
        """Sequences to run: first of their kind, with a prompt or response token to score."""
        return (self.rep == np.arange(2 * self.n)) & (self.seg_len[:, 3] + self.seg_len[:, 1] > 0)

    def tokens(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of `seqs`, concatenated, and each sequence's length."""
        starts, lens = self.seg_start[seqs].ravel(), self.seg_len[seqs].ravel()
        return self.pool[_ranges(starts, lens)], self.seg_len[seqs].sum(axis=1)

    def finish(self, seq_sum: np.ndarray, prompt_sum: np.ndarray) -> dict[str, np.ndarray]:
        """Per-row scores from NLL sums of the sequences that were run."""
        seq_sum, prompt_sum = seq_sum[self.rep], prompt_sum[self.rep[: self.n]]
        cond_sum, alone_sum = seq_sum[: self.n], seq_sum[self.n :]
        n_resp = self.seg_len[: self.n, 3].astype(float)
        n_prompt = self.seg_len[: self.n, 1].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = np.where(n_resp > 0, cond_sum / n_resp, np.nan)
            alone = np.where(n_resp > 0, alone_sum / n_resp, np.nan)
            return {
                "loss_response_given_prompt": cond,
                "loss_response_alone": alone,
                "ifd": cond / alone,
                "ppl_response": np.exp(cond),
                "ppl_prompt": np.exp(np.where(n_prompt > 0, prompt_sum / n_prompt, np.nan)),
                "lm_truncated": self.truncated.copy(),
            }


# -------------------------------------------------------------------- compute
def _buckets(lengths: np.ndarray, batch_tokens: int) -> Iterator[np.ndarray]:
    """Sequence indices sorted by length, cut into right-padded batches of at most
    `batch_tokens` tokens (a longer sequence forms a batch of its own) whose
    padding stays under _PAD_SLACK of their tokens once they hold _MIN_BATCH."""
    order = np.argsort(lengths, kind="stable")
    sorted_len = lengths[order]
    start = 0
    while start < len(order):
        # Sorted ascending, so no batch starting here holds more than this many.
        window = sorted_len[start : start + batch_tokens // max(1, int(sorted_len[start])) + 1]
        padded = np.arange(1, len(window) + 1) * window
        real = np.cumsum(window)
        ok = (padded <= batch_tokens) & ((padded <= (1 + _PAD_SLACK) * real) | (real < _MIN_BATCH))
        size = max(1, int(np.argmin(ok)) if not ok.all() else len(ok))
        yield order[start : start + size]
        start += size


def _run_batches(lm: Any, plan: _Plan, batch_tokens: int, seq_sum: np.ndarray, prompt_sum: np.ndarray,
                 progress: Progress | None) -> None:
    import torch

    fast = getattr(lm.config, "model_type", None) in _PLAIN_HEAD_TYPES
    # Conditioned sequences all start with the template head, alone ones with
    # head + tail. On the fast path that shared prefix runs once and its KV
    # cache is reused; its last token stays in the batch because its output
    # predicts the first scored token.
    groups = [(np.arange(plan.n), plan.head_len), (np.arange(plan.n, 2 * plan.n), plan.head_len + plan.tail_len)]
    active = plan.active
    total, done = int(plan.lengths[active].sum()), 0
    with torch.inference_mode():
        for seqs, shared in groups:
            seqs = seqs[active[seqs]]
            skip = shared - 1 if fast and _REUSE_PREFIX and len(seqs) else 0
            prefix = prefix_cache(lm, plan.pool[:skip]) if skip > 0 else None
            lengths = plan.lengths[seqs]
            for batch in _buckets(lengths - skip, batch_tokens):
                _score_batch(lm, plan, seqs[batch], skip, prefix, fast, seq_sum, prompt_sum)
                done += int(lengths[batch].sum())
                if progress is not None:
                    progress(done, total)


def _score_batch(lm: Any, plan: _Plan, seqs: np.ndarray, skip: int, prefix: Any, fast: bool,
                 seq_sum: np.ndarray, prompt_sum: np.ndarray) -> None:
    """Adds each sequence's response NLL sum to seq_sum (and prompt NLL sums of
    conditioned sequences to prompt_sum) for one right-padded batch whose first
    `skip` tokens per sequence are in the `prefix` cache."""
    import torch

    ids, lens = plan.tokens(seqs)
    mask = np.arange(int(lens.max())) < lens[:, None]
    grid = np.zeros(mask.shape, dtype=np.int64)
    grid[mask] = ids
    # Scored targets: response tokens (segment 3) of every sequence and prompt
    # tokens (segment 1) of conditioned ones; alone sequences have none.
    seg_len = plan.seg_len[seqs]
    seg_start = np.cumsum(seg_len, axis=1) - seg_len - skip
    rows = np.arange(len(seqs))
    tgt_row = np.concatenate([np.repeat(rows, seg_len[:, 3]), np.repeat(rows, seg_len[:, 1])])
    tgt_pos = np.concatenate([_ranges(seg_start[:, 3], seg_len[:, 3]), _ranges(seg_start[:, 1], seg_len[:, 1])])
    n_resp = int(seg_len[:, 3].sum())

    device = next(lm.parameters()).device
    x, m = torch.from_numpy(grid[:, skip:]).to(device), torch.from_numpy(mask[:, skip:]).long().to(device)
    nll = target_nll(lm, x, m, tgt_row, tgt_pos, prefix, plain_head=fast).double().cpu().numpy()
    seq_sum[seqs] += np.bincount(tgt_row[:n_resp], weights=nll[:n_resp], minlength=len(seqs))
    prompt_part = np.bincount(tgt_row[n_resp:], weights=nll[n_resp:], minlength=len(seqs))
    cond = seqs < plan.n
    prompt_sum[seqs[cond]] += prompt_part[cond]

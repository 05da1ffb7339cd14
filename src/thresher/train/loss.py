"""Token losses of a causal LM, shared by training (both engines) and
evaluation: per-row NLL sums over the learned tokens of a padded batch, the
weighted batch loss of `thresher.train.lora`, and the pad id a tokenizer
implies."""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.errors import UsageError
from thresher.train.examples import IGNORE_INDEX, Encoded, pad_batch

# Model types whose logits are exactly lm_head(last hidden state): the head then
# runs only where a loss is taken (skips prompt, template and padding positions).
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
_HEAD_CHUNK = 1024  # positions per head chunk without grad (bounds logits memory)


def token_nll(model: Any, ids, mask, labels):
    """(NLL sum, learned-token count) per row of a padded batch, as torch tensors.
    Differentiable when grad is enabled."""
    import torch
    import torch.nn.functional as F

    target = labels[:, 1:]
    sel = target != IGNORE_INDEX
    head = _plain_head(model)
    if head is not None:
        decoder, lm_head = head
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, :-1][sel]
        if torch.is_grad_enabled():
            nll = F.cross_entropy(lm_head(hidden).float(), target[sel], reduction="none")
        else:
            tgt = target[sel]
            nll = torch.cat([F.cross_entropy(lm_head(hidden[i:i + _HEAD_CHUNK]).float(), tgt[i:i + _HEAD_CHUNK],
                                             reduction="none") for i in range(0, tgt.numel(), _HEAD_CHUNK)]
                            or [hidden.new_zeros(0)])
    else:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][sel]
        nll = F.cross_entropy(logits.float(), target[sel], reduction="none")
    rows = sel.nonzero()[:, 0]
    sums = torch.zeros(ids.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)
    return sums, sel.sum(dim=1)


def _plain_head(model: Any):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if getattr(cfg, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    if not (hasattr(base, "model") and hasattr(base, "lm_head")) or getattr(cfg, "final_logit_softcapping", None):
        return None
    return base.model, base.lm_head


def row_nll(model: Any, enc: Encoded, pad_id: int, batch_size: int = 16, dtype: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Per-row NLL sums and learned-token counts, batched by length, without grad."""
    import torch

    from thresher.models import resolve_dtype

    device = next(model.parameters()).device
    use_bf16 = resolve_dtype(dtype, device.type) == "bfloat16"
    sums, counts = np.zeros(len(enc)), np.zeros(len(enc), np.int64)
    order = np.argsort(enc.lengths, kind="stable")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for i in range(0, order.size, batch_size):
                rows = order[i:i + batch_size]
                ids, mask, labels = (torch.from_numpy(a).to(device) for a in pad_batch(enc, rows, pad_id))
                s, c = token_nll(model, ids, mask, labels)
                sums[rows], counts[rows] = s.double().cpu().numpy(), c.cpu().numpy()
    finally:
        model.train(was_training)
    return sums, counts


def encoded_loss(model: Any, enc: Encoded, pad_id: int, batch_size: int = 16, dtype: str = "auto") -> dict:
    """{"loss", "perplexity", "tokens"} over encoded rows (token-weighted mean)."""
    if len(enc) == 0:
        raise UsageError("no rows to evaluate")
    sums, counts = row_nll(model, enc, pad_id, batch_size, dtype)
    loss = float(sums.sum() / counts.sum())
    return {"loss": loss, "perplexity": float(np.exp(loss)), "tokens": int(counts.sum())}


def weighted_loss(nll_sum, count, weights, reduction: str = "row"):
    """The batch loss of the module docstring ("row"): sum_i w_i * (nll_sum_i / count_i) / sum_i w_i;
    "token": sum_i w_i * nll_sum_i / sum_i w_i * count_i (transformers' token mean when w = 1)."""
    if reduction == "token":
        return (weights * nll_sum).sum() / (weights * count).sum()
    return (weights * nll_sum / count).sum() / weights.sum()


def pad_id_of(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if tid is not None:
            return int(tid)
    return 0

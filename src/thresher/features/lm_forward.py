"""The causal LM side of LM scoring: the token ids a prompt template puts
around the prompt (chat template or plain string, BOS in front), and the
forward pass that gives the NLL of chosen target positions, with the output
head run on those positions only and an optional KV cache of a prefix that
every sequence of a batch shares. `thresher.features.lm_scores` plans what to
score and batches it; this module only talks to the model.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from thresher.errors import UsageError

PLAIN_TEMPLATE = "{prompt}\n\n"
_PLACEHOLDER = "\u2063THRESHER_PROMPT\u2063"
_HEAD_CHUNK = 512  # positions per lm_head/cross-entropy chunk (bounds logits memory)


def template_ids(tokenizer: Any, template: str) -> tuple[list[int], list[int]]:
    """Token ids before and after the prompt (head always non-empty)."""
    chat = getattr(tokenizer, "chat_template", None)
    if template == "chat" and not chat:
        raise UsageError("template='chat' but the tokenizer has no chat template; pass a string with '{prompt}'")
    use_chat = template == "chat" or (template == "auto" and bool(chat))
    if use_chat:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _PLACEHOLDER}], tokenize=False, add_generation_prompt=True
        )
        parts = text.split(_PLACEHOLDER)
        if len(parts) != 2:
            raise UsageError("the tokenizer's chat template does not render the user message verbatim once")
    else:
        text = PLAIN_TEMPLATE if template == "auto" else template
        parts = text.split("{prompt}")
        if len(parts) != 2:
            raise UsageError(f"template must be 'auto', 'chat' or a string holding '{{prompt}}' once, got {template!r}")
    head, tail = (tokenizer(t, add_special_tokens=False)["input_ids"] if t else [] for t in parts)
    if not use_chat or not head:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise UsageError("the tokenizer has neither a BOS nor an EOS token to start a plain template with")
        head = [start, *head]
    return list(head), list(tail)


def target_nll(lm: Any, x: Any, mask: Any, tgt_row: np.ndarray, tgt_pos: np.ndarray, prefix: Any,
               plain_head: bool) -> Any:
    """NLL of x[tgt_row, tgt_pos] given the tokens before it, in float32. `plain_head`: the
    model's logits are lm_head(last hidden state), so the head runs on the scored positions only."""
    import torch
    import torch.nn.functional as F

    rows, pos = torch.from_numpy(tgt_row).to(x.device), torch.from_numpy(tgt_pos).to(x.device)
    targets = x[rows, pos]
    if not plain_head:
        logits = lm(input_ids=x, attention_mask=mask).logits[rows, pos - 1]
        return F.cross_entropy(logits.float(), targets, reduction="none")
    hidden = hidden_states(lm, x, mask, prefix)[rows, pos - 1]
    head = lm.get_output_embeddings()  # applied to scored positions only, in chunks
    parts = [
        F.cross_entropy(head(hidden[i : i + _HEAD_CHUNK]).float(), targets[i : i + _HEAD_CHUNK], reduction="none")
        for i in range(0, len(targets), _HEAD_CHUNK)
    ]
    return torch.cat(parts) if parts else torch.zeros(0)


def hidden_states(lm: Any, x: Any, mask: Any, prefix: Any) -> Any:
    import torch

    base = getattr(lm, lm.base_model_prefix)
    if prefix is None:
        return base(input_ids=x, attention_mask=mask).last_hidden_state
    cache = copy.deepcopy(prefix)  # the forward pass appends to it
    cache.batch_repeat_interleave(x.shape[0])
    full_mask = torch.cat([mask.new_ones(x.shape[0], cache.get_seq_length()), mask], dim=1)
    kwargs = {cache_kwarg(base): cache, "use_cache": True}
    return base(input_ids=x, attention_mask=full_mask, **kwargs).last_hidden_state


def prefix_cache(lm: Any, ids: np.ndarray) -> Any:
    """The KV cache of one shared token prefix (batch size 1)."""
    import torch

    base = getattr(lm, lm.base_model_prefix)
    x = torch.from_numpy(np.ascontiguousarray(ids)[None]).to(next(lm.parameters()).device)
    out = base(input_ids=x, use_cache=True)
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def cache_kwarg(base: Any) -> str:
    # transformers >= 5.2x calls it `cache`; older versions `past_key_values`.
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

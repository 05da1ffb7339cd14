"""LM embeddings for RDS / RDS+: pooled final hidden states of a causal LM.

Each row's text (prompt, a blank line, response by default; any `fields`) is
tokenized without special tokens, cut to `max_length` tokens, and run through
the model's base (no LM head: its logits are never needed). The embedding is
the mean of the final hidden states over the row's tokens (``pooling="mean"``)
or a position-weighted mean, weight ∝ position (``"weighted"``, RDS+'s
choice in Ivison et al. 2025), L2-normalised, stored as float16. Empty texts
get a zero vector (cosine 0 to everything).

Rows are sorted by length and batched so that a batch holds about
`batch_tokens` padded tokens; identical texts are embedded once.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from thresher.errors import UsageError
from thresher.features.base import Batch, Featurizer, check_choice, check_positive_int
from thresher.features.fields import input_columns, parse_fields, resolve_fields

POOLINGS = ("mean", "weighted")


class LMEmbed(Featurizer):
    """`lm_embedding`: pooled final hidden states of the bundled SmolLM2 (or `model`, a local folder)."""

    name = "lm_embed"
    version = "1"
    chunk_rows = 2048
    loads_model = True
    output_columns = ("lm_embedding",)

    def __init__(self, model: str | None = None, fields: str | list[str] = "both", pooling: str = "mean",
                 max_length: int = 256, batch_tokens: int = 8192):
        check_choice("pooling", pooling, POOLINGS)
        check_positive_int("max_length", max_length)
        check_positive_int("batch_tokens", batch_tokens)
        if model is not None and (not isinstance(model, str) or not model):
            raise UsageError(f"model must be a local model folder or None (the bundled SmolLM2), got {model!r}")
        self.model = model
        self.fields = parse_fields(fields)
        self.pooling = pooling
        self.max_length = max_length
        self.batch_tokens = batch_tokens

    @property
    def inputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return input_columns(self.fields)

    def bind(self, ds, store) -> "LMEmbed":
        fields = resolve_fields(ds, self.fields)
        if fields == self.fields:
            return self
        return LMEmbed(self.model, fields, self.pooling, self.max_length, self.batch_tokens)

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        from thresher.features.embeddings import to_arrow
        from thresher.features.fields import field_text

        texts = field_text(batch, self.fields).to_pylist()
        emb = lm_embed(texts, self.model, pooling=self.pooling, max_length=self.max_length,
                       batch_tokens=self.batch_tokens)
        return {"lm_embedding": to_arrow(emb)}


def lm_embed(texts: Sequence[str | None], model: Any = None, *, pooling: str = "mean", max_length: int = 256,
             batch_tokens: int = 8192, num_threads: int | None = None) -> np.ndarray:
    """(n, hidden) float32 unit rows: pooled final hidden states (see the module docstring).
    `model`: None (bundled SmolLM2), a local folder, or a (model, tokenizer) pair."""
    import torch

    from thresher.models import resolve_causal_lm, torch_threads

    check_choice("pooling", pooling, POOLINGS)
    lm, tokenizer = resolve_causal_lm(model)
    uniques, inverse = np.unique(np.asarray([t or "" for t in texts], dtype=object).astype(str), return_inverse=True)
    ids = tokenizer(uniques.tolist(), add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    hidden = lm.config.hidden_size
    out = np.zeros((len(uniques), hidden), dtype=np.float32)
    base = lm.base_model
    device = next(lm.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode(), torch_threads(num_threads):
        for rows in _batches(lengths, batch_tokens):
            width = int(lengths[rows].max())
            x = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows.tolist()):
                x[j, : lengths[r]] = torch.tensor(ids[r], dtype=torch.long)
                mask[j, : lengths[r]] = 1
            states = base(input_ids=x.to(device), attention_mask=mask.to(device)).last_hidden_state.float()
            out[rows] = _pool(states, mask.to(device), pooling).cpu().numpy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return out[inverse.ravel()]


def _pool(states, mask, pooling: str):
    weights = mask.float()
    if pooling == "weighted":
        weights = weights * mask.cumsum(dim=1).float()
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    return (states * weights.unsqueeze(-1)).sum(dim=1)


def _batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Row groups in length order, each about `batch_tokens` padded tokens (empty rows skipped)."""
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    out, start = [], 0
    while start < len(order):
        # sorted ascending: the last row of a group is its widest
        width = lengths[order[start:start + batch_tokens]]  # a group never holds more rows than tokens
        fits = np.arange(1, len(width) + 1) * width <= batch_tokens
        size = max(1, int(np.argmin(fits)) if not fits.all() else len(width))
        out.append(order[start:start + size])
        start += size
    return out

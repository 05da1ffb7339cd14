"""Featurizers by name, and the wrappers that turn the dedup, embedding and
LM-scoring functions into featurizers.

=============  ======  ==========================================================
name           scope   columns
=============  ======  ==========================================================
text           row     chars, words, tokens, prompt_*/response_* counts, turns, n_messages
quality        row     empty_response, truncated_response, rep_ngram_ratio, rep_line_ratio,
                       non_alnum_ratio, upper_ratio, lang, lang_score, copy_overlap
tags           row     instruction_type
exact_dup      row     exact_hash (uint64 of the normalized prompt and response)
near_dup       global  dup_cluster (smallest row index of its MinHash-LSH cluster)
embed_static   row     embedding (float16 x 256, the shipped static embedder)
embed_minilm   row     embedding_minilm (float16 x 384, all-MiniLM-L6-v2)
embed          row     embedding_custom (any local model folder: ``model=PATH``)
lm             row     loss_response_given_prompt, loss_response_alone, ifd,
                       ppl_response, ppl_prompt, lm_truncated
cluster        global  cluster, cluster_distance (k-means on ``embedding=embed_static``)
quality_score  row     quality_score (0..1 composite of the quality signals, + lm when cached)
complexity     row     complexity (0.05..1, prompt length and constraint markers)
lm_embed       row     lm_embedding (float16 x hidden size: mean-pooled hidden states of the LM)
=============  ======  ==========================================================
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError
from thresher.features.base import Batch, Featurizer, check_choice, check_positive_int, string_column
from thresher.features.clusters import KMeansClusters
from thresher.features.lm_embed import LMEmbed
from thresher.features.lookup import FEATURIZERS, FeatureSpec, available, make  # noqa: F401 (re-export)
from thresher.features.quality import QualitySignals
from thresher.features.scores import Complexity, QualityScore
from thresher.features.tags import InstructionTags
from thresher.features.text import TextStats

FIELDS = ("prompt", "response", "both")
_MIX = np.uint64(0x9E3779B97F4A7C15)


class ExactDup(Featurizer):
    """`exact_hash`: a uint64 hash of the normalized text (lower-cased, no
    punctuation, collapsed whitespace; see `minhash.normalize_text`). With
    ``field="both"`` the prompt and response hashes are combined, so rows
    are equal only when both sides are."""

    name = "exact_dup"
    version = "1"
    output_columns = ("exact_hash",)

    def __init__(self, field: str = "both"):
        check_choice("field", field, FIELDS)
        self.field = field

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        from thresher.features.minhash import exact_hash

        def side(name: str) -> np.ndarray:
            return exact_hash(string_column(batch, name)).to_numpy(zero_copy_only=False).astype(np.uint64)

        if self.field != "both":
            return {"exact_hash": pa.array(side(self.field), pa.uint64())}
        with np.errstate(over="ignore"):
            mixed = (side("prompt") * _MIX) ^ side("response")
        return {"exact_hash": pa.array(mixed, pa.uint64())}


class NearDup(Featurizer):
    """`dup_cluster`: MinHash-LSH near-duplicate clusters (`minhash.near_duplicate_clusters`)."""

    name = "near_dup"
    version = "1"
    scope = "global"
    reads_shards = True
    output_columns = ("dup_cluster",)

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 5, seed: int = 1,
                 field: str = "both"):
        check_choice("field", field, FIELDS)
        check_positive_int("num_perm", num_perm)
        check_positive_int("shingle_size", shingle_size)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise UsageError(f"threshold must be a Jaccard similarity in (0, 1], got {threshold!r}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        self.field = field

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        from thresher.features.execution import current_executor

        if hasattr(batch, "parts"):  # a sharded pool: each shard's texts are read where its signatures are made
            texts, checkpoint = [ShardTexts(part, self.field) for part in batch.parts], batch.checkpoint
        else:
            texts, checkpoint = field_texts(batch, self.field), None
        # The executor's clusters are identical to `minhash.near_duplicate_clusters`' (local or on Ray).
        clusters = current_executor().near_duplicate_clusters(
            texts, checkpoint=checkpoint, num_perm=self.num_perm, shingle_size=self.shingle_size,
            threshold=self.threshold, seed=self.seed)
        return {"dup_cluster": pa.array(np.asarray(clusters, np.int64))}


class ShardTexts:
    """One shard's texts for near-dup, read on the worker that signs them."""

    def __init__(self, part, field: str):
        self.part, self.field = part, field

    @property
    def num_rows(self) -> int:
        return self.part.num_rows

    def materialize(self) -> pa.Array:
        texts = field_texts(self.part.materialize(), self.field)
        return texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts


class EmbedText(Featurizer):
    """A text embedding per row (`embeddings.embed`), float16 fixed-size list."""

    version = "1"
    loads_model = True

    def __init__(self, model: str = "static", field: str = "both", batch_size: int | None = None):
        check_choice("field", field, FIELDS)
        check_positive_int("batch_size", batch_size, allow_none=True)
        if not isinstance(model, str) or not model:
            raise UsageError(f"embedding model must be 'static', 'minilm' or a local folder, got {model!r}")
        self.model = model
        self.field = field
        self.batch_size = batch_size
        named = model in ("static", "minilm")
        self.name = f"embed_{model}" if named else "embed"
        self.output_columns = ({"static": "embedding", "minilm": "embedding_minilm"}.get(model, "embedding_custom"),)
        # sentence-transformers runs ~200 rows/s on 2 cores: small parts keep a resume close
        self.chunk_rows = None if model == "static" else 4096

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        from thresher.features.embeddings import embed_batch

        extra = {} if self.batch_size is None else {"batch_size": self.batch_size}
        out = embed_batch(_strings(batch), self.model, self.field, **extra)
        return {self.output_columns[0]: out["embedding"]}


class LMScores(Featurizer):
    """Per-row scores from a small causal LM (`lm_scores.score_lm`): losses, IFD, perplexities."""

    name = "lm"
    version = "1"
    loads_model = True
    chunk_rows = 1024  # ~minutes of CPU per part: an interrupted run loses little
    output_columns = ("loss_response_given_prompt", "loss_response_alone", "ifd", "ppl_response",
                      "ppl_prompt", "lm_truncated")

    def __init__(self, model: str | None = None, template: str = "auto", dtype: str = "auto",
                 batch_tokens: int = 4096, max_length: int = 1024):
        check_positive_int("batch_tokens", batch_tokens)
        check_positive_int("max_length", max_length)
        self.model = model
        self.template = template
        self.dtype = dtype
        self.batch_tokens = batch_tokens
        self.max_length = max_length

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        from thresher.features.lm_scores import lm_score_batch

        return lm_score_batch(_strings(batch), self.model, template=self.template, dtype=self.dtype,
                              batch_tokens=self.batch_tokens, max_length=self.max_length)


FEATURIZERS.update({
    "text": TextStats,
    "quality": QualitySignals,
    "tags": InstructionTags,
    "exact_dup": ExactDup,
    "near_dup": NearDup,
    "embed_static": partial(EmbedText, model="static"),
    "embed_minilm": partial(EmbedText, model="minilm"),
    "embed": EmbedText,
    "lm": LMScores,
    "cluster": KMeansClusters,
    "quality_score": QualityScore,
    "complexity": Complexity,
    "lm_embed": LMEmbed,
})
DEFAULT_FEATURES: tuple[str, ...] = ("text", "quality", "exact_dup", "near_dup", "embed_static")
STRING_OFFSET_LIMIT = 2**31  # bytes an Arrow `string` array can hold; past it, `large_string`


def field_texts(batch: Batch, field: str) -> pa.Array:
    """The prompt, the response, or both joined by a blank line (the side that is empty is left out)."""
    if field != "both":
        return string_column(batch, field)
    p, r = string_column(batch, "prompt"), string_column(batch, "response")
    # pyarrow's if_else reserves both branches' bytes: past int32 offsets (~5M rows), int64 ones
    if 2 * (p.nbytes + r.nbytes + 2 * len(p)) >= STRING_OFFSET_LIMIT:
        p, r = p.cast(pa.large_string()), r.cast(pa.large_string())
    joined = pc.binary_join_element_wise(p, r, pa.scalar("\n\n", p.type))
    joined = pc.if_else(pc.equal(pc.utf8_length(r), 0), p, joined)
    return pc.if_else(pc.equal(pc.utf8_length(p), 0), r, joined)


def _strings(batch: Batch) -> pa.Table:
    """prompt/response with nulls as "" and one chunk each (what the wrapped functions expect)."""
    names = [c for c in ("prompt", "response") if c in batch.column_names]
    return pa.table({c: string_column(batch, c) for c in names})

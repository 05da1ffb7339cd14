"""Held-out evaluation: response loss / perplexity, label scoring, per-class
and generation metrics.

* Loss is the token-weighted mean NLL (nats) over the learned tokens of the
  rows (the response and the template's end-of-turn tokens, see
  `thresher.train.examples`), unweighted by sample weights:
  ``sum_i sum_t nll_{i,t} / sum_i T_i``; perplexity is ``exp(loss)``.
* Label scoring: ``log P(label | prompt)`` sums the NLL of the label's tokens
  and, by default, the end-of-turn tokens after it (so a label that is a
  prefix of another, "Yes" vs "Yes.", is not favoured); the scores are then
  normalized over the label set (log-softmax). Prediction = argmax.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Sequence

import numpy as np

from thresher.errors import UsageError
from thresher.train.examples import IGNORE_INDEX, Examples, encode, template_parts
from thresher.train.loss import encoded_loss, pad_id_of, row_nll, token_nll  # noqa: F401 (re-export)
from thresher.train.scoring import detect_label_set  # noqa: F401 (re-export)


# ------------------------------------------------------------------ losses
def response_loss(model: Any, tokenizer: Any, examples: Examples, template: str | None = None, max_length: int = 256,
                  batch_size: int = 16, dtype: str = "auto") -> dict:
    """{"loss", "perplexity", "tokens"}: token-weighted mean NLL over the
    response (+ end-of-turn) tokens of `examples`."""
    enc = encode(tokenizer, examples, template, max_length)
    return encoded_loss(model, enc, pad_id_of(tokenizer), batch_size, dtype)


# ------------------------------------------------------------------ labels


def label_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], label_set: Sequence[str],
                   template: str | None = None, batch_size: int = 16, with_end: bool = True,
                   max_length: int = 256, dtype: str = "auto") -> np.ndarray:
    """(n, C) log P(label | prompt), normalized over `label_set` (log-softmax
    per row). Sums the label's tokens, plus the end-of-turn tokens when `with_end`."""
    from scipy.special import logsumexp

    labels = [str(x) for x in label_set]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise UsageError(f"label_set needs at least two distinct labels, got {labels}")
    n, c = len(prompts), len(labels)
    if n == 0:
        return np.zeros((0, c))
    ex = Examples([p for p in prompts for _ in labels], labels * n)
    enc = encode(tokenizer, ex, template, max_length)
    if not with_end:
        end = len(template_parts(tokenizer, template).end)
        for lab, cut in zip(enc.labels, enc.truncated):
            if end and not cut:
                lab[-end:] = IGNORE_INDEX
    sums, _ = row_nll(model, enc, pad_id_of(tokenizer), batch_size, dtype)
    lp = -sums.reshape(n, c)
    return lp - logsumexp(lp, axis=1, keepdims=True)


def classification_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict:
    """accuracy, macro_f1, per_class {label: precision, recall, f1, support},
    confusion {"labels", "matrix"} (rows: true, columns: predicted), via scikit-learn."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(labels)
    y_true, y_pred = [str(y) for y in y_true], [str(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise UsageError(f"got {len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise UsageError("no rows to compute classification metrics on")
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(labels)},
        "confusion": {"labels": labels, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    }


# ------------------------------------------------------------------ generation
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split())


def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """exact_match and token_f1 (SQuAD-style), averaged over rows."""
    if len(predictions) != len(references):
        raise UsageError(f"got {len(predictions)} predictions but {len(references)} references")
    if not references:
        raise UsageError("no rows to compute generation metrics on")
    em, f1 = [], []
    for pred, ref in zip(predictions, references):
        p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
        em.append(float(p == r))
        common = sum((Counter(p) & Counter(r)).values())
        if not p or not r:
            f1.append(float(p == r))
        elif common == 0:
            f1.append(0.0)
        else:
            prec, rec = common / len(p), common / len(r)
            f1.append(2 * prec * rec / (prec + rec))
    return {"exact_match": float(np.mean(em)), "token_f1": float(np.mean(f1))}


def generate_responses(model: Any, tokenizer: Any, prompts: Sequence[str], template: str | None = None,
             max_new_tokens: int = 32, batch_size: int = 16, max_length: int = 256) -> list[str]:
    """Greedy completions of the prompts in the template (left-padded batches)."""
    import torch

    parts = template_parts(tokenizer, template)
    enc = encode(tokenizer, Examples(list(prompts), [""] * len(prompts)), template, max_length)
    inputs = [ids[:p] for ids, p in zip(enc.input_ids, enc.prompt_lengths)]
    pad = pad_id_of(tokenizer)
    stop = sorted({t for t in (tokenizer.eos_token_id, *(parts.end[:1])) if t is not None})
    device = next(model.parameters()).device
    out: list[str] = [""] * len(inputs)
    order = np.argsort([x.size for x in inputs], kind="stable")
    model.eval()
    with torch.no_grad():
        for i in range(0, order.size, batch_size):
            rows = order[i:i + batch_size]
            width = max(inputs[j].size for j in rows)
            ids = np.full((rows.size, width), pad, np.int64)
            mask = np.zeros((rows.size, width), np.int64)
            for k, j in enumerate(rows):
                ids[k, width - inputs[j].size:], mask[k, width - inputs[j].size:] = inputs[j], 1
            gen = model.generate(input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop, pad_token_id=pad)
            for k, j in enumerate(rows):
                new = gen[k, width:].tolist()
                cut = next((m for m, t in enumerate(new) if t in stop), len(new))
                out[j] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
    return out


# ------------------------------------------------------------------ all together
def evaluate_model(model: Any, tokenizer: Any, eval: Examples, label_set: Sequence[str] | str | None = "auto",
                   template: str | None = None, generate: bool = False, max_new_tokens: int = 32,
                   batch_size: int = 16, max_length: int = 256, dtype: str = "auto", keep_rows: bool = False,
                   row_labels: list[list[str] | None] | None = None) -> dict:
    """Held-out metrics: always n / loss / perplexity / tokens / truncation;
    `loss_by_label` when `eval.labels` is set; with label rows (a given label
    set, or "auto": detected per task from the responses, see
    `thresher.train.scoring.row_label_sets`): label_set, label_rows, accuracy,
    macro_f1, per_class, confusion; with `generate`: exact_match, token_f1 and
    a few predictions; with `keep_rows`: `rows` = the per-row `RowScores`.
    `row_labels` (each row's candidate labels) overrides `label_set`.
    Loss and labels come from one pass (`thresher.train.scoring.score_rows`)."""
    from thresher.train.scoring import row_label_sets, score_rows

    if len(eval) == 0:
        raise UsageError("no rows to evaluate")
    if row_labels is None:
        row_labels = row_label_sets(eval, label_set)
    scores = score_rows(model, tokenizer, eval, row_labels, template, max_length, batch_size, dtype)
    loss = float(scores.nll.sum() / max(int(scores.tokens.sum()), 1))
    out = {"n": len(eval), "loss": loss, "perplexity": float(np.exp(loss)), "tokens": int(scores.tokens.sum()),
           "truncation": scores.truncated}
    if eval.labels is not None:
        out["loss_by_label"] = _loss_by_label(scores.nll, scores.tokens, eval.labels)
    out.update(_label_metrics(scores, row_labels, label_set))
    if generate:
        preds = generate_responses(model, tokenizer, eval.prompts, template, max_new_tokens, batch_size, max_length)
        out.update(generation_metrics(preds, eval.responses))
        out["predictions"] = preds[:20]
    if keep_rows:
        out["rows"] = scores
    return out


def _loss_by_label(nll: np.ndarray, tokens: np.ndarray, labels: Sequence[str]) -> dict:
    codes, names = _codes(labels)
    s, c = np.bincount(codes, weights=nll), np.bincount(codes, weights=tokens)
    return {name: float(s[k] / c[k]) if c[k] else float("nan") for k, name in enumerate(names)}


def _codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names, codes = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    return codes.reshape(-1), [str(x) for x in names]


def union_labels(row_labels: list[list[str] | None], label_set: Sequence[str] | str | None = "auto") -> list[str]:
    """The labels of every row's set (a given set in its own order, else sorted)."""
    if label_set not in (None, "auto"):
        return [str(x) for x in label_set]
    return sorted({lab for labs in row_labels if labs for lab in labs})


def _label_metrics(scores, row_labels: list[list[str] | None], label_set) -> dict:
    keep = scores.label_rows
    labels = union_labels(row_labels, label_set)
    if not labels:
        return {}
    out: dict = {"label_set": labels, "label_rows": int(keep.size)}
    if keep.size:
        out.update(classification_metrics([scores.truth[i] for i in keep], [scores.pred[i] for i in keep], labels))
    return out

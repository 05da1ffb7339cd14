"""What the evaluate stage (compare, curve, sweep) shares before and after
training: split the held-out rows (or take an eval file) and the validation
rows of the training side, load the base model on its device, build the arm
sampler (`Setup`), and evaluate one model, or a bag of models, on the
held-out rows. Running arms and comparing them is `thresher.train.compare`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.errors import UsageError
from thresher.train.arms import ArmData

TEMPLATE_ALIASES = {"chat": None, "plain": "PLAIN"}
LABEL_METRICS = ("accuracy", "macro_f1")
VALIDATION_ROWS = 32


@dataclass
class Setup:
    """What every arm shares: the training side of the pool, the held-out
    examples and each one's candidate labels, the validation rows carved from
    the training side, and the loaded base model."""

    data: ArmData
    eval: Any  # Examples
    row_labels: list
    labels: list[str]
    validation: Any  # Examples | None
    model: Any
    tokenizer: Any
    config: Any  # TrainConfig
    info: dict

    @property
    def label_set(self) -> list[str] | None:
        return self.labels or None

    @property
    def metrics(self) -> list[str]:
        return ["loss", "perplexity"] + (list(LABEL_METRICS) if self.labels else [])


def resolve_template(text: str | None) -> str | None:
    """`chat` (the tokenizer's chat template), `plain` (### Instruction/Response)
    or a template string holding `{prompt}`."""
    from thresher.train.examples import PLAIN_TEMPLATE

    if text is None:
        return None
    alias = TEMPLATE_ALIASES.get(text.strip(), text)
    return PLAIN_TEMPLATE if alias == "PLAIN" else alias


def prepare(pool, *, config, eval_data=None, holdout: float | None = 0.1, seed: int = 0,
            label_field: str | None = None, group_field: str | None = None, label_set="auto",
            model=None, tokenizer=None, model_path: str | None = None, device: str = "auto",
            task_field: str | None = None, validation: int | None = VALIDATION_ROWS,
            cache_dir: str | None = None) -> Setup:
    """Split off the held-out rows (or use `eval_data`) and `validation` rows of
    the training side, load the base model (moved to `device`: auto = cuda when
    available) and build the arm sampler. Label sets are found per task
    (`task_field`, default `label_field`)."""
    from thresher.train.examples import Examples
    from thresher.train.metrics import union_labels
    from thresher.train.scoring import row_label_sets

    train, test, info = _split_test(pool, eval_data, holdout, seed, label_field, group_field)
    train, val = _split_validation(train, validation, seed, label_field, group_field)
    if (model is None) != (tokenizer is None):
        raise UsageError("give both model and tokenizer, or neither")
    if model is None:
        from thresher.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_path)
    model = model.to(resolve_device(device))
    task_field = task_field or label_field
    if task_field is not None and task_field not in test.fields:
        task_field = None
    eval_examples = Examples.from_dataset(test, weight_field=None, task_field=task_field)
    row_labels = row_label_sets(eval_examples, label_set)
    labels = union_labels(row_labels, label_set)
    exclude = [str(i) for i in test.ids] + ([str(i) for i in val.ids] if val is not None else [])
    data = ArmData(train, tokenizer, label_field=label_field, exclude_ids=exclude, template=config.template,
                   max_length=config.max_length, task_field=task_field, cache_dir=cache_dir)
    val_examples = Examples.from_dataset(val, weight_field=None) if val is not None else None
    info.update(pool_rows=len(pool), train_rows=len(train), eval_rows=len(test), label_field=label_field,
                task_field=task_field, label_set=labels or None,
                validation_rows=0 if val is None else len(val),
                label_rows=sum(1 for r in row_labels if r is not None))
    return Setup(data, eval_examples, row_labels, labels, val_examples, model, tokenizer, config, info)


def _split_test(pool, eval_data, holdout, seed, label_field, group_field):
    from thresher.train.split import holdout_split

    if eval_data is not None and holdout:
        raise UsageError("give an eval file or a holdout fraction, not both")
    if eval_data is None:
        if not holdout:
            raise UsageError("need held-out data: an eval file (--eval) or a holdout fraction (--holdout 0.1)")
        train, test = holdout_split(pool, holdout, seed, label_field=label_field, group_field=group_field)
        return train, test, {"holdout": holdout, "split_seed": seed}
    held = set(map(str, eval_data.ids))
    keep = np.flatnonzero([str(i) not in held for i in pool.ids])
    return pool.take(keep), eval_data, {"eval": eval_data.source.path,
                                        "pool_rows_in_eval_dropped": int(len(pool) - keep.size)}


def _split_validation(train, rows: int | None, seed: int, label_field, group_field):
    """(training side, validation rows) - none when the pool is too small to spare them."""
    from thresher.train.split import holdout_split

    if not rows or len(train) < 5 * rows:
        return train, None
    label = label_field if label_field in train.fields else None
    return holdout_split(train, rows / len(train), seed + 7_777, label_field=label, group_field=group_field)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; other names are checked by torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return str(torch.device(device))
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None


# ------------------------------------------------------------------ evaluation
def evaluate(setup: Setup, model: Any, template: str | None) -> dict:
    """{"metrics", "per_class", "confusion", "rows" (RunRows), "truncation"} of one model on the held-out rows."""
    from thresher.train.metrics import evaluate_model
    from thresher.train.stats import RunRows

    cfg = setup.config
    out = evaluate_model(model, setup.tokenizer, setup.eval, template=template, batch_size=cfg.eval_batch_size,
                         max_length=cfg.max_length, dtype=cfg.dtype, keep_rows=True, row_labels=setup.row_labels,
                         label_set=setup.labels or None)
    metrics = {m: float(out[m]) for m in setup.metrics if m in out}
    return {"metrics": metrics, "per_class": out.get("per_class"), "confusion": out.get("confusion"),
            "rows": RunRows.from_scores(out["rows"], setup.labels), "truncation": out["truncation"]}


def evaluate_bag(setup: Setup, models: list[Any], template: str | None) -> dict:
    """A bag's metrics: mean member NLL per row; label probabilities averaged over members."""
    from thresher.train.metrics import classification_metrics

    members = [evaluate(setup, m, template) for m in models]
    rows = members[0]["rows"]
    rows.nll = np.mean([m["rows"].nll for m in members], axis=0)
    loss = float(rows.nll.sum() / rows.tokens.sum())
    out = {"metrics": {"loss": loss, "perplexity": float(np.exp(loss))}, "per_class": None, "confusion": None,
           "rows": rows, "truncation": members[0]["truncation"]}
    if setup.labels:
        keep = np.flatnonzero(rows.truth >= 0)
        if keep.size:
            probs = [_label_probs(setup, m, template) for m in models]
            mean = np.mean(probs, axis=0)
            rows.pred = np.where(rows.truth >= 0, mean.argmax(axis=1), -1)
            cls = classification_metrics([setup.labels[t] for t in rows.truth[keep]],
                                         [setup.labels[p] for p in rows.pred[keep]], setup.labels)
            out["metrics"].update({m: cls[m] for m in LABEL_METRICS})
            out["per_class"], out["confusion"] = cls["per_class"], cls["confusion"]
    return out


def _label_probs(setup: Setup, model: Any, template: str | None) -> np.ndarray:
    """(n, C) probabilities over the union label set (0 outside a row's own set)."""
    from thresher.train.scoring import score_rows

    cfg = setup.config
    scores = score_rows(model, setup.tokenizer, setup.eval, setup.row_labels, template, cfg.max_length,
                        cfg.eval_batch_size, cfg.dtype)
    out = np.zeros((len(setup.eval), len(setup.labels)))
    col = {lab: k for k, lab in enumerate(setup.labels)}
    for i, lp in enumerate(scores.logprobs):
        for lab, v in (lp or {}).items():
            out[i, col[lab]] = np.exp(v)
    return out


@contextmanager
def reported(progress, label: str):
    """The step callback of one run of `progress` (a reporter or None), finished on exit."""
    step = progress.run(label) if progress is not None else None
    try:
        yield step
    finally:
        if progress is not None:
            progress.finished()

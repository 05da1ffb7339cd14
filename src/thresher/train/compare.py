"""`thresher compare`: fine-tune one adapter per arm and seed, evaluate on
held-out rows, and summarize each arm with t-intervals, PIR and SDF.

* Every run trains a fresh LoRA adapter on a copy of the same base model with
  the same `TrainConfig` (only the data, the seed and the arm's modifiers
  change) and no early stopping on the held-out rows (they are the test set).
* Seeds: run i uses seed `seed + i` for its random subset and for training.
* PIR (performance-improvement ratio) is paired by seed: arm / full for
  scores (accuracy, macro-F1), full / arm for loss and perplexity, so > 1 is
  better for every metric. SDF (selected data fraction) = arm rows / full rows.
* `bag:DATAxK`: K adapters on different draws (fresh random subsets, or
  bootstrap resamples of full / file data); label probabilities (exp of the
  normalized label log-probabilities) are averaged before the argmax; loss is
  the mean of the members' losses (perplexity its exp).
* `seq:A,B`: an adapter is trained on A, merged into the weights, then a
  fresh adapter is trained on B with the same config.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from thresher.errors import UsageError
from thresher.train.arms import Arm, ArmData, Drawn, parse_arms
from thresher.train.results import (fmt_ci, mean_per_class_f1, pir_summary, summarize, summed_confusion, text_table)

log = logging.getLogger(__name__)
TEMPLATE_ALIASES = {"chat": None, "plain": "PLAIN"}
LABEL_METRICS = ("accuracy", "macro_f1")


@dataclass
class Setup:
    """What every arm shares: the training side of the pool, the held-out
    examples, the label set and the loaded base model."""

    data: ArmData
    eval: Any  # Examples
    label_set: list[str] | None
    model: Any
    tokenizer: Any
    config: Any  # TrainConfig
    info: dict

    @property
    def metrics(self) -> list[str]:
        return ["loss", "perplexity"] + (list(LABEL_METRICS) if self.label_set else [])


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
            model=None, tokenizer=None, model_path: str | None = None, device: str = "auto") -> Setup:
    """Split off the held-out rows (or use `eval_data`), load the base model (moved to
    `device`: auto = cuda when available) and build the arm sampler."""
    from thresher.train.examples import Examples
    from thresher.train.metrics import detect_label_set
    from thresher.train.split import holdout_split

    if eval_data is not None and holdout:
        raise UsageError("give an eval file or a holdout fraction, not both")
    if eval_data is None:
        if not holdout:
            raise UsageError("need held-out data: an eval file (--eval) or a holdout fraction (--holdout 0.1)")
        train, test = holdout_split(pool, holdout, seed, label_field=label_field, group_field=group_field)
        info = {"holdout": holdout, "split_seed": seed}
    else:
        test = eval_data
        held = set(map(str, test.ids))
        keep = np.flatnonzero([str(i) not in held for i in pool.ids])
        train = pool.take(keep)
        info = {"eval": test.source.path, "pool_rows_in_eval_dropped": int(len(pool) - keep.size)}
    if (model is None) != (tokenizer is None):
        raise UsageError("give both model and tokenizer, or neither")
    if model is None:
        from thresher.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_path)
    model = model.to(resolve_device(device))
    # no labels on the eval rows: evaluate_model would spend a forward pass on loss per label
    eval_examples = Examples.from_dataset(test, weight_field=None)
    labels = detect_label_set(eval_examples.responses) if label_set == "auto" else label_set
    exclude = [str(i) for i in test.ids]
    data = ArmData(train, tokenizer, label_field=label_field, exclude_ids=exclude, template=config.template,
                   max_length=config.max_length)
    info.update(pool_rows=len(pool), train_rows=len(train), eval_rows=len(test), label_field=label_field,
                label_set=list(labels) if labels else None)
    return Setup(data, eval_examples, list(labels) if labels else None, model, tokenizer, config, info)


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
    """{"metrics": {...}, "per_class": ..., "confusion": ...} of one model on the held-out rows."""
    from thresher.train.metrics import evaluate_model

    cfg = setup.config
    out = evaluate_model(model, setup.tokenizer, setup.eval, label_set=setup.label_set, template=template,
                         batch_size=cfg.eval_batch_size, max_length=cfg.max_length, dtype=cfg.dtype)
    metrics = {m: float(out[m]) for m in setup.metrics if m in out}
    return {"metrics": metrics, "per_class": out.get("per_class"), "confusion": out.get("confusion")}


def evaluate_bag(setup: Setup, models: list[Any], template: str | None) -> dict:
    """A bag's metrics: mean member loss; label probabilities averaged over members."""
    from thresher.train.metrics import classification_metrics, label_logprobs, response_loss

    cfg = setup.config
    losses = [response_loss(m, setup.tokenizer, setup.eval, template, cfg.max_length, cfg.eval_batch_size,
                            cfg.dtype)["loss"] for m in models]
    loss = float(np.mean(losses))
    out = {"metrics": {"loss": loss, "perplexity": float(np.exp(loss))}, "per_class": None, "confusion": None}
    if setup.label_set:
        truth = np.asarray([r.strip() for r in setup.eval.responses], dtype=object)
        keep = np.flatnonzero(np.isin(truth, np.asarray(setup.label_set, dtype=object)))
        if keep.size:
            prompts = [setup.eval.prompts[i] for i in keep]
            probs = np.mean([np.exp(label_logprobs(m, setup.tokenizer, prompts, setup.label_set, template,
                                                   cfg.eval_batch_size, max_length=cfg.max_length,
                                                   dtype=cfg.dtype)) for m in models], axis=0)
            pred = [setup.label_set[k] for k in probs.argmax(axis=1)]
            cls = classification_metrics(truth[keep].tolist(), pred, setup.label_set)
            out["metrics"].update({m: cls[m] for m in LABEL_METRICS})
            out["per_class"], out["confusion"] = cls["per_class"], cls["confusion"]
    return out


# ------------------------------------------------------------------ one run
def _train(setup: Setup, drawn: Drawn, cfg, model=None):
    from thresher.train.lora import fine_tune

    return fine_tune(drawn.examples, None, cfg, model=setup.model if model is None else model,
                     tokenizer=setup.tokenizer)


def run_arm(setup: Setup, arm: Arm, seed: int, match_rows: int | None = None,
            save_dir: Path | None = None) -> dict:
    """Train (unless `base`) and evaluate one arm for one seed: a `runs` entry."""
    cfg = replace(setup.config, seed=seed, template=arm.template if arm.template is not None else setup.config.template)
    if arm.class_weights is not None:
        if setup.data.label_field is None:
            raise UsageError(f"arm {arm.spec!r}: class weights need --label-field")
        cfg = replace(cfg, class_weight_power=arm.class_weights)
    if arm.kind == "base":
        res = evaluate(setup, setup.model, cfg.template)
        return _run(seed, res, [], 0, 0)
    if arm.kind == "bag":
        results, draws = [], []
        for m in range(arm.members):
            drawn = setup.data.draw(arm.inner[0], seed, member=m, match_rows=match_rows)
            results.append(_train(setup, drawn, replace(cfg, seed=seed + 1000 * (m + 1))))
            draws.append(drawn)
        res = evaluate_bag(setup, [r.model for r in results], cfg.template)
    elif arm.kind == "seq":
        draws = [setup.data.draw(stage, seed, match_rows=match_rows) for stage in arm.inner]
        first = _train(setup, draws[0], cfg)
        merged = first.model.merge_and_unload()
        results = [first, _train(setup, draws[1], cfg, model=merged)]
        res = evaluate(setup, results[1].model, cfg.template)
    else:
        draws = [setup.data.draw(arm, seed, match_rows=match_rows)]
        results = [_train(setup, draws[0], cfg)]
        res = evaluate(setup, results[0].model, cfg.template)
    if save_dir is not None:
        _save(results, save_dir / _slug(arm.name) / f"seed{seed}")
    return _run(seed, res, draws, sum(r.train_tokens for r in results), sum(r.steps for r in results),
                seconds=sum(r.seconds for r in results))


def _run(seed: int, res: dict, draws: list[Drawn], train_tokens: int, steps: int, seconds: float = 0.0) -> dict:
    ids: dict[str, int] = {}
    for d in draws:
        ids.update(zip(d.ids, d.tokens.tolist()))
    return {"seed": seed, "metrics": res["metrics"], "train_seconds": round(seconds, 3),
            "train_tokens": int(train_tokens), "steps": int(steps), "rows": len(ids),
            "data_tokens": int(sum(ids.values())), "dropped_heldout": int(sum(d.dropped for d in draws)),
            "per_class": res["per_class"], "confusion": res["confusion"]}


def _save(results: list, folder: Path) -> None:
    from thresher.train.lora import save_adapter

    if len(results) == 1:
        save_adapter(results[0], folder)
        return
    for k, r in enumerate(results):
        save_adapter(r, folder / f"part{k + 1}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9@%._-]+", "_", name).strip("_")[:80] or "arm"


# ------------------------------------------------------------------ the whole comparison
def expand_templates(arms: list[Arm], templates: Sequence[str] | None) -> list[Arm]:
    """Each arm once per template (arms with their own +template= are kept as given)."""
    if not templates:
        return arms
    if len(templates) < 2:
        raise UsageError("--templates needs at least two templates separated by '|' (e.g. \"chat|plain\")")
    out = []
    for arm in arms:
        if arm.template is not None:
            out.append(arm)
            continue
        for k, t in enumerate(templates):
            label = t.strip() if t.strip() in TEMPLATE_ALIASES else f"T{k + 1}"
            out.append(arm.with_template(resolve_template(t), label))
    return out


def compare(pool, arms: Sequence[str | Arm], *, config=None, eval_data=None, holdout: float | None = 0.1,
            seeds: int = 3, seed: int = 0, templates: Sequence[str] | None = None, label_field: str | None = None,
            group_field: str | None = None, model=None, tokenizer=None, model_path: str | None = None,
            save_adapters: str | Path | None = None, progress: Callable[[str], None] | None = None,
            command: str = "", device: str = "auto") -> dict:
    """Run every arm for `seeds` seeds and return the `compare` results dict
    (see the module docstring and `results.json`)."""
    from thresher.train.lora import TrainConfig

    config = config or TrainConfig()
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UsageError(f"seeds must be a positive integer, got {seeds!r}")
    parsed = expand_templates(parse_arms(list(arms)), templates)
    setup = prepare(pool, config=config, eval_data=eval_data, holdout=holdout, seed=seed, label_field=label_field,
                    group_field=group_field, model=model, tokenizer=tokenizer, model_path=model_path, device=device)
    match_rows = next((len(setup.data.file_rows(a).ids) for a in parsed if a.kind == "file"), None)
    save_dir = Path(save_adapters) if save_adapters else None
    arm_results = []
    for arm in parsed:
        runs = []
        for i in range(1 if arm.kind == "base" else seeds):
            if progress:
                progress(f"{arm.name}: seed {seed + i}")
            runs.append(run_arm(setup, arm, seed + i, match_rows, save_dir))
        arm_results.append((arm, runs))
    return build_results(setup, arm_results, seeds, command)


def build_results(setup: Setup, arm_results: list[tuple[Arm, list[dict]]], seeds: int, command: str) -> dict:
    """The `compare` results dict from each arm's runs."""
    full_rows = len(setup.data)
    metrics = setup.metrics
    refs = {a.template: runs for a, runs in arm_results if a.kind == "full" and a.class_weights is None}
    arms = []
    for arm, runs in arm_results:
        rows = float(np.mean([r["rows"] for r in runs])) if arm.kind != "base" else 0.0
        arms.append({
            "name": arm.name, "spec": arm.spec, "kind": arm.kind, "template": arm.template,
            "rows": int(round(rows)), "tokens": int(round(np.mean([r["data_tokens"] for r in runs]))),
            "sdf": rows / full_rows if full_rows else None,
            "runs": [{k: v for k, v in r.items() if k not in ("per_class", "confusion")} for r in runs],
            "summary": summarize(runs, metrics),
            "pir": pir_summary(runs, refs.get(arm.template), metrics),
            "per_class_f1": mean_per_class_f1([r["per_class"] for r in runs]),
            "confusion": summed_confusion([r["confusion"] for r in runs]),
            "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
            "train_tokens": float(np.mean([r["train_tokens"] for r in runs])),
        })
    return {"kind": "compare", "metrics": metrics, "pool_rows": setup.info["pool_rows"],
            "train_rows": full_rows, "eval_rows": len(setup.eval), "arms": arms,
            "config": {"train": setup.config.to_dict(), "seeds": seeds, **setup.info,
                       "interval": "95% Student-t interval over seeds (mean +- t(n-1) * sd / sqrt(n))",
                       "pir": "arm/full for accuracy and F1; full/arm for loss and perplexity (>1 is better)",
                       "sdf": "arm training rows (distinct) / full training rows"},
            "command": command}


def compare_table(results: dict) -> str:
    """The plain-text table of a `compare` results dict."""
    metrics = results["metrics"]
    primary = "macro_f1" if "macro_f1" in metrics else "loss"
    header = ["arm", "rows", "SDF"] + metrics + [f"PIR({primary})", "train s", "train tokens"]
    rows = []
    for a in results["arms"]:
        sdf = f"{a['sdf']:.3f}" if a["sdf"] is not None else "-"
        rows.append([a["name"], a["rows"], sdf] + [fmt_ci(a["summary"][m]) for m in metrics]
                    + [fmt_ci(a["pir"].get(primary)), f"{a['train_seconds']:.1f}", f"{a['train_tokens']:.0f}"])
    n = results["config"]["seeds"]
    note = (f"\nmean [95% t-interval over {n} seeds]; PIR = arm/full for accuracy/F1, full/arm for loss/perplexity "
            f"(>1 is better); SDF = arm rows / full rows ({results['train_rows']}); eval rows: {results['eval_rows']}\n")
    return text_table(header, rows) + note


__all__ = ["Setup", "prepare", "compare", "run_arm", "evaluate", "evaluate_bag", "build_results", "compare_table",
           "expand_templates", "resolve_template"]

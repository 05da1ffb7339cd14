"""`thresher compare`: fine-tune one adapter per arm and seed, evaluate on
held-out rows, and say plainly which arms beat random, base and full.

* Every run trains a fresh LoRA adapter on a copy of the same base model with
  the same `TrainConfig` (only the data, the seed and the arm's modifiers
  change). Compute is equal across arms by default: every run processes the
  same number of training tokens (`train_tokens`; "auto" is three epochs of
  the smallest arm, capped at `AUTO_TOKENS_CPU` on a CPU and
  `AUTO_TOKENS_GPU` on a GPU); `max_steps` (equal steps) or `epochs` instead.
* Early stopping never looks at the test rows: a small validation split is
  carved from the training side (`validation`), left out of every arm, and
  used when a run goes over its data at least twice.
* Seeds: run i uses seed `seed + i` for its random subset and for training.
* Statistics (`thresher.train.stats`): intervals by a paired bootstrap over
  eval rows x seeds, differences against `random` (the same seeds), `base`
  and `full`, the minimum detectable difference and a verdict per arm.
* PIR (performance-improvement ratio): arm / full for scores, full / arm for
  losses (> 1 is better). SDF (selected data fraction) = arm rows / full rows.
* `bag:DATAxK`: K adapters on different draws (fresh random subsets, or
  bootstrap resamples of full / file data); label probabilities are averaged
  before the argmax; loss is the mean of the members' losses.
* `seq:A,B`: an adapter is trained on A, merged into the weights, then a
  fresh adapter is trained on B with the same config.

This module runs the arms and builds the results; what compare, curve and
sweep share (held-out and validation splits, the base model, evaluating a
model or a bag) is `thresher.train.setup`, re-exported here.
"""
from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from thresher.errors import UsageError
from thresher.train.arms import Arm, Drawn, parse_arms
from thresher.train.setup import (TEMPLATE_ALIASES, VALIDATION_ROWS, Setup, evaluate, evaluate_bag,  # noqa: F401
                                  prepare, reported, resolve_template)
from thresher.train.results import fmt_ci, higher_is_better, mean_per_class_f1, summed_confusion, text_table

log = logging.getLogger(__name__)
AUTO_TOKENS_CPU = 24_576  # ~1 min of SmolLM2-135M LoRA training on 2 cores
AUTO_TOKENS_GPU = 1_048_576
AUTO_EPOCHS = 3


# ------------------------------------------------------------------ one run
def _train(setup: Setup, drawn: Drawn, cfg, model=None, progress=None):
    from thresher.train.lora import fine_tune

    epochs = _epochs(cfg, drawn)
    val = setup.validation if setup.validation is not None and epochs >= 2 else None
    if val is not None:  # the run repeats its data: watch a validation loss (never the test rows)
        steps = max(1, int(round(epochs * len(drawn.ids) / cfg.batch_size)))
        cfg = replace(cfg, eval_every=max(1, steps // 4), patience=cfg.patience or 2)
    else:
        cfg = replace(cfg, patience=None)
    return fine_tune(drawn.examples, val, cfg, model=setup.model if model is None else model,
                     tokenizer=setup.tokenizer, progress=progress)


def _epochs(cfg, drawn: Drawn) -> float:
    """Passes over its data a run makes."""
    total = float(np.sum(drawn.tokens)) if drawn.tokens is not None else 0.0
    if cfg.train_tokens:
        return cfg.train_tokens / max(total, 1.0)
    if cfg.max_steps:
        return cfg.max_steps * cfg.batch_size / max(len(drawn.ids), 1)
    return cfg.epochs


def run_arm(setup: Setup, arm: Arm, seed: int, match_rows: int | None = None,
            save_dir: Path | None = None, progress=None) -> dict:
    """Train (unless `base`) and evaluate one arm for one seed: a `runs` entry.
    `progress`: a reporter with `run(label)` -> step callback and `finished()`."""
    cfg = replace(setup.config, seed=seed, template=arm.template if arm.template is not None else setup.config.template)
    if arm.class_weights is not None:
        if setup.data.label_field is None:
            raise UsageError(f"arm {arm.spec!r}: class weights need --label-field")
        cfg = replace(cfg, class_weight_power=arm.class_weights)
    with reported(progress, f"{arm.name} seed {seed}") as step:
        return _run_arm(setup, arm, seed, cfg, match_rows, save_dir, step)


def _run_arm(setup, arm, seed, cfg, match_rows, save_dir, step) -> dict:
    if arm.kind == "base":
        return _run(seed, evaluate(setup, setup.model, cfg.template), [], [])
    if arm.kind == "bag":
        results, draws = [], []
        for m in range(arm.members):
            drawn = setup.data.draw(arm.inner[0], seed, member=m, match_rows=match_rows)
            results.append(_train(setup, drawn, replace(cfg, seed=seed + 1000 * (m + 1)), progress=step))
            draws.append(drawn)
        res = evaluate_bag(setup, [r.model for r in results], cfg.template)
    elif arm.kind == "seq":
        draws = [setup.data.draw(stage, seed, match_rows=match_rows) for stage in arm.inner]
        first = _train(setup, draws[0], cfg, progress=step)
        merged = first.model.merge_and_unload()
        results = [first, _train(setup, draws[1], cfg, model=merged, progress=step)]
        res = evaluate(setup, results[1].model, cfg.template)
    else:
        draws = [setup.data.draw(arm, seed, match_rows=match_rows)]
        results = [_train(setup, draws[0], cfg, progress=step)]
        res = evaluate(setup, results[0].model, cfg.template)
    if save_dir is not None:
        _save(results, save_dir / _slug(arm.name) / f"seed{seed}")
    return _run(seed, res, draws, results)


def _run(seed: int, res: dict, draws: list[Drawn], results: list) -> dict:
    ids: dict[str, int] = {}
    for d in draws:
        ids.update(zip(d.ids, d.tokens.tolist()))
    return {"seed": seed, "metrics": res["metrics"], "train_seconds": round(sum(r.seconds for r in results), 3),
            "select_seconds": round(sum(d.select_seconds for d in draws), 3),
            "train_tokens": int(sum(r.train_tokens for r in results)), "steps": int(sum(r.steps for r in results)),
            "stopped_early": any(r.stopped_early for r in results),
            "best_step": results[-1].best_step if results else None,
            "rows": len(ids), "data_tokens": int(sum(ids.values())),
            "dropped_heldout": int(sum(d.dropped for d in draws)), "truncation": res["truncation"],
            "per_class": res["per_class"], "confusion": res["confusion"], "eval_rows": res["rows"]}


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


def resolve_budget(setup: Setup, arms: list[Arm], seed: int, match_rows: int | None):
    """The config with `train_tokens="auto"` made a number: `AUTO_EPOCHS` epochs
    of the smallest arm's data, capped by the device's `AUTO_TOKENS_*`."""
    cfg = setup.config
    if cfg.train_tokens != "auto":
        return cfg
    sizes = []
    for arm in arms:
        for data in (arm.inner or (arm,)):
            if data.kind != "base":
                drawn = setup.data.draw(data, seed, match_rows=match_rows)
                sizes.append(float(np.sum(drawn.tokens)))
    device = next(setup.model.parameters()).device.type
    cap = AUTO_TOKENS_GPU if device == "cuda" else AUTO_TOKENS_CPU
    tokens = int(min(cap, AUTO_EPOCHS * min(sizes))) if sizes else cap
    return replace(cfg, train_tokens=max(tokens, 1))


def compare(pool, arms: Sequence[str | Arm], *, config=None, eval_data=None, holdout: float | None = 0.1,
            seeds: int = 3, seed: int = 0, templates: Sequence[str] | None = None, label_field: str | None = None,
            group_field: str | None = None, model=None, tokenizer=None, model_path: str | None = None,
            save_adapters: str | Path | None = None, progress=None, command: str = "", device: str = "auto",
            task_field: str | None = None, validation: int | None = VALIDATION_ROWS, n_boot: int = 2000,
            cache_dir: str | None = None) -> dict:
    """Run every arm for `seeds` seeds and return the `compare` results dict
    (see the module docstring and `results.json`). `config.train_tokens` may be
    "auto" (see `resolve_budget`). `progress`: a reporter (see `run_arm`)."""
    import time

    from thresher.train.lora import TrainConfig

    started = time.perf_counter()
    config = config or TrainConfig()
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UsageError(f"seeds must be a positive integer, got {seeds!r}")
    parsed = expand_templates(parse_arms(list(arms)), templates)
    auto = config.train_tokens == "auto"
    setup = prepare(pool, config=replace(config, train_tokens=None) if auto else config, eval_data=eval_data,
                    holdout=holdout, seed=seed, label_field=label_field, group_field=group_field, model=model,
                    tokenizer=tokenizer, model_path=model_path, device=device, task_field=task_field,
                    validation=validation, cache_dir=cache_dir)
    match_rows = next((len(setup.data.file_rows(a).ids) for a in parsed if a.kind == "file"), None)
    if auto:
        setup.config = resolve_budget(replace(setup, config=replace(config, train_tokens="auto")), parsed, seed,
                                      match_rows)
    save_dir = Path(save_adapters) if save_adapters else None
    arm_results = []
    for arm in parsed:
        runs = [run_arm(setup, arm, seed + i, match_rows, save_dir, progress)
                for i in range(1 if arm.kind == "base" else seeds)]
        arm_results.append((arm, runs))
    results = build_results(setup, arm_results, seeds, command, n_boot=n_boot, seed=seed)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def build_results(setup: Setup, arm_results: list[tuple[Arm, list[dict]]], seeds: int, command: str,
                  n_boot: int = 2000, seed: int = 0) -> dict:
    """The `compare` results dict from each arm's runs."""
    from thresher.train.stats import PairedBootstrap

    full_rows = len(setup.data)
    metrics = setup.metrics
    boot = PairedBootstrap(len(setup.eval), seeds, n_boot, seed)
    reps = {id(arm): {m: boot.replicates([r["eval_rows"] for r in runs], m, len(setup.labels)) for m in metrics}
            for arm, runs in arm_results}
    refs = _references(arm_results)
    runs_of = {id(arm): runs for arm, runs in arm_results}
    primary = "macro_f1" if "macro_f1" in metrics else "loss"
    arms = [_arm_entry(arm, runs, reps, refs, runs_of, metrics, primary, full_rows, len(setup.eval))
            for arm, runs in arm_results]
    return {"kind": "compare", "metrics": metrics, "primary": primary, "pool_rows": setup.info["pool_rows"],
            "train_rows": full_rows, "eval_rows": len(setup.eval), "arms": arms,
            "config": {"train": setup.config.to_dict(), "seeds": seeds, **setup.info,
                       "interval": f"95% paired bootstrap over eval rows x seeds ({n_boot} replicates)",
                       "pir": "arm/full for accuracy and F1; full/arm for loss and perplexity (>1 is better)",
                       "sdf": "arm training rows (distinct) / full training rows",
                       "mdd": "minimum detectable difference: 2.8 x the bootstrap SE of the paired difference "
                              "(5% two-sided test, 80% power)"},
            "command": command}


def _references(arm_results) -> dict:
    """The arms others are compared with: the first plain random / full arm and base (per template)."""
    refs: dict = {}
    for arm, _ in arm_results:
        if arm.kind in ("random", "full", "base") and arm.class_weights is None:
            refs.setdefault((arm.kind, arm.template), arm)
    return refs


def _mean(runs: list[dict], metric: str) -> float:
    return float(np.mean([r["metrics"][metric] for r in runs]))


def _arm_entry(arm, runs, reps, refs, runs_of, metrics, primary, full_rows, eval_rows) -> dict:
    from thresher.train.stats import compare_to, interval, verdict

    rows = float(np.mean([r["rows"] for r in runs])) if arm.kind != "base" else 0.0
    means = {m: _mean(runs, m) for m in metrics}
    summary = {}
    for m in metrics:
        lo, hi = interval(reps[id(arm)][m])
        summary[m] = {"mean": means[m], "ci_low": lo, "ci_high": hi, "n": len(runs)}
    against = {}
    for kind in ("random", "base", "full"):
        ref = refs.get((kind, arm.template))
        if ref is None or ref is arm:
            continue
        sign = 1.0 if higher_is_better(primary) else -1.0
        point = sign * (means[primary] - _mean(runs_of[id(ref)], primary))
        against[kind] = compare_to(reps[id(arm)][primary], reps[id(ref)][primary], point, primary, eval_rows)
    return {
        "name": arm.name, "spec": arm.spec, "kind": arm.kind, "template": arm.template,
        "rows": int(round(rows)), "tokens": int(round(np.mean([r["data_tokens"] for r in runs]))),
        "sdf": rows / full_rows if full_rows else None,
        "runs": [_run_record(r) for r in runs],
        "summary": summary, "pir": _pir(arm, reps, refs, runs_of, means, metrics),
        "vs": against, "verdict": verdict(arm.name, arm.kind, against.get("random"), against.get("base"), primary),
        "per_class_f1": mean_per_class_f1([r["per_class"] for r in runs]),
        "confusion": summed_confusion([r["confusion"] for r in runs]),
        "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
        "select_seconds": float(np.mean([r["select_seconds"] for r in runs])),
        "train_tokens": float(np.mean([r["train_tokens"] for r in runs])),
        "truncation": runs[0]["truncation"],
    }


def _pir(arm, reps, refs, runs_of, means, metrics) -> dict:
    from thresher.train.stats import interval

    ref = refs.get(("full", arm.template))
    if ref is None:
        return {}
    out = {}
    for m in metrics:
        a, f = reps[id(arm)][m], reps[id(ref)][m]
        full_mean = _mean(runs_of[id(ref)], m)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = a / f if higher_is_better(m) else f / a
            point = means[m] / full_mean if higher_is_better(m) else full_mean / means[m]
        lo, hi = interval(ratio[np.isfinite(ratio)]) if np.isfinite(ratio).any() else (float("nan"),) * 2
        out[m] = {"mean": point, "ci_low": lo, "ci_high": hi}
    return out


def _run_record(run: dict) -> dict:
    out = {k: v for k, v in run.items() if k not in ("per_class", "confusion", "eval_rows")}
    out["eval_rows"] = run["eval_rows"].to_json()
    return out


def compare_table(results: dict) -> str:
    """The plain-text table of a `compare` results dict, and one verdict line per arm."""
    metrics = results["metrics"]
    primary = results.get("primary", "macro_f1" if "macro_f1" in metrics else "loss")
    header = (["arm", "rows", "SDF"] + metrics + [f"vs random ({primary})", f"PIR({primary})", "select s",
                                                  "train s", "saved s", "train tokens"])
    full = next((a for a in results["arms"] if a["kind"] == "full"), None)
    rows = []
    for a in results["arms"]:
        select = f"{a['select_seconds']:.1f}" if a["kind"] in ("select", "stratified", "longest", "random") else "-"
        saved = f"{full['train_seconds'] - a['train_seconds']:+.0f}" if full and a["kind"] != "base" else "-"
        sdf = f"{a['sdf']:.3f}" if a["sdf"] is not None else "-"
        vs = (a.get("vs") or {}).get("random")
        diff = f"{vs['diff']:+.3g} [{vs['ci_low']:+.3g}, {vs['ci_high']:+.3g}]" if vs else "-"
        rows.append([a["name"], a["rows"], sdf] + [fmt_ci(a["summary"][m]) for m in metrics]
                    + [diff, fmt_ci(a["pir"].get(primary)), select, f"{a['train_seconds']:.1f}", saved,
                       f"{a['train_tokens']:.0f}"])
    cfg = results["config"]
    n = cfg["seeds"]
    budget = cfg["train"].get("train_tokens")
    budget_note = (f"every run trained on {budget:,} tokens (equal compute)" if budget else
                   f"every run trained {cfg['train'].get('max_steps')} steps" if cfg["train"].get("max_steps") else
                   f"every run trained {cfg['train'].get('epochs')} epochs of its own data")
    note = (f"\nmean [95% paired bootstrap over {results['eval_rows']} eval rows x {n} seeds]; vs random: paired "
            f"difference (> 0 is better); PIR = arm/full for accuracy/F1, full/arm for loss/perplexity (>1 is better); "
            f"SDF = arm rows / full rows ({results['train_rows']}); select s: time to pick the rows (files: made "
            f"beforehand, not timed); saved s: full's training time minus the arm's; {budget_note}\n")
    verdicts = "\n".join(f"  {a['name']}: {a['verdict']}" for a in results["arms"])
    trunc = results["arms"][0].get("truncation") if results["arms"] else None
    tnote = ""
    if trunc and trunc.get("rows"):
        tnote = (f"\ntruncated eval rows: {trunc['rows']} ({trunc['share']:.0%}), {trunc['mean_removed']:.0f} tokens "
                 f"cut on average from the middle of the input (--max-length {cfg['train']['max_length']})\n")
    return text_table(header, rows) + note + "\nverdicts:\n" + verdicts + "\n" + tnote


__all__ = ["Setup", "prepare", "compare", "run_arm", "evaluate", "evaluate_bag", "build_results", "compare_table",
           "expand_templates", "resolve_template", "resolve_budget", "reported"]

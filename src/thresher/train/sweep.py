"""`thresher sweep`: a small grid or random search over learning rate,
epochs and LoRA rank on the chosen data, scored on the held-out rows.

The held-out rows choose the best config here, so its score is optimistic as
an estimate of new-data performance; confirm the winner with `compare` on a
separate eval file. Ties (scores within `tie_tol`) go to the cheaper config
(fewer training tokens processed).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.train.results import fmt_ci, higher_is_better, t_interval, text_table

PARAMS = {"lr": float, "epochs": float, "lora_r": int, "lora_alpha": float, "batch_size": int, "max_steps": int,
          "lora_dropout": float, "weight_decay": float}
RANDOM_SPACE = {"lr": ("log", 5e-5, 1e-3), "epochs": ("choice", (1.0, 2.0, 3.0)), "lora_r": ("choice", (4, 8, 16))}


def parse_grid(text: str) -> dict[str, list]:
    """`"lr=1e-4,3e-4;epochs=1,2;lora_r=4,8"` -> {"lr": [1e-4, 3e-4], ...}."""
    grid: dict[str, list] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, eq, values = part.partition("=")
        name = name.strip()
        if not eq or name not in PARAMS:
            raise UsageError(f"--grid: bad entry {part!r}; use NAME=V1,V2 with NAME one of {', '.join(PARAMS)}")
        if name in grid:
            raise UsageError(f"--grid: {name} given twice")
        try:
            grid[name] = [PARAMS[name](v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--grid: {name} takes {PARAMS[name].__name__} values, got {values!r}") from None
        if not grid[name]:
            raise UsageError(f"--grid: {name} has no values")
    if not grid:
        raise UsageError("--grid is empty; e.g. --grid \"lr=1e-4,3e-4;lora_r=4,8\"")
    return grid


def grid_trials(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def random_trials(n: int, seed: int | None = 0, space: dict | None = None) -> list[dict]:
    """`n` configs drawn from `space` (default: lr log-uniform 5e-5..1e-3, epochs 1-3, rank 4/8/16)."""
    if not isinstance(n, int) or n < 1:
        raise UsageError(f"--random needs a positive number of trials, got {n!r}")
    rng = make_rng(seed)
    space = space or RANDOM_SPACE
    trials = []
    for _ in range(n):
        trial = {}
        for name, (kind, *args) in space.items():
            if kind == "log":
                trial[name] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
            else:
                trial[name] = args[0][int(rng.integers(len(args[0])))]
        trials.append(trial)
    return trials


def apply_params(config, params: dict[str, Any]):
    """`config` with the trial's params; an epochs value clears max_steps unless the trial sets it."""
    changes = dict(params)
    if "epochs" in changes and "max_steps" not in changes:
        changes["max_steps"] = None
    return replace(config, **changes)


def sweep(pool, trials: list[dict], *, config=None, data: str = "full", seeds: int = 1, seed: int = 0,
          metric: str = "auto", eval_data=None, holdout: float | None = 0.1, label_field: str | None = None,
          group_field: str | None = None, model=None, tokenizer=None, model_path: str | None = None,
          tie_tol: float = 1e-3, progress=None, command: str = "",
          device: str = "auto") -> dict:
    """Train every trial config on `data` (an arm spec: full, a selection file, random@B)
    for `seeds` seeds and return the `sweep` results dict."""
    from thresher.train.arms import parse_arm
    from thresher.train.setup import evaluate, prepare, reported
    from thresher.train.curve import _pick_metric
    from thresher.train.lora import TrainConfig, fine_tune

    config = config or TrainConfig()
    if not trials:
        raise UsageError("no trials to run")
    arm = parse_arm(data)
    if arm.kind not in ("full", "random", "bootstrap", "file"):
        raise UsageError(f"sweep data must be full, random@BUDGET or a selection file, got {data!r}")
    setup = prepare(pool, config=config, eval_data=eval_data, holdout=holdout, seed=seed, label_field=label_field,
                    group_field=group_field, model=model, tokenizer=tokenizer, model_path=model_path,
                    device=device, validation=None)
    metric = _pick_metric(metric, setup.metrics)
    configs = [apply_params(config, t) for t in trials]  # validates every trial before training
    out = []
    for k, (params, cfg) in enumerate(zip(trials, configs)):
        runs = []
        for i in range(seeds):
            drawn = setup.data.draw(arm, seed + i)
            with reported(progress, f"trial {k + 1}/{len(trials)} {params} seed {seed + i}") as step:
                result = fine_tune(drawn.examples, None, replace(cfg, seed=seed + i), model=setup.model,
                                   tokenizer=setup.tokenizer, progress=step)
                metrics = evaluate(setup, result.model, cfg.template)["metrics"]
            runs.append({"seed": seed + i, "metrics": metrics,
                         "train_seconds": round(result.seconds, 3), "train_tokens": int(result.train_tokens),
                         "steps": int(result.steps)})
        out.append({"params": params, "metrics": {m: t_interval([r["metrics"][m] for r in runs])
                                                  for m in setup.metrics},
                    "train_tokens": float(np.mean([r["train_tokens"] for r in runs])),
                    "train_seconds": float(np.mean([r["train_seconds"] for r in runs])), "runs": runs})
    best = pick_best(out, metric, tie_tol)
    return {"kind": "sweep", "metric": metric, "data": data, "trials": out, "best": best,
            "eval_rows": len(setup.eval), "train_rows": len(setup.data),
            "config": {"train": config.to_dict(), "seeds": seeds, "tie_tol": tie_tol, **setup.info},
            "command": command}


def pick_best(trials: list[dict], metric: str, tie_tol: float = 1e-3) -> dict:
    """The best trial by mean `metric`; trials within `tie_tol` of it go to the
    cheapest (fewest training tokens, then seconds)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    scores = np.array([sign * t["metrics"][metric]["mean"] for t in trials])
    top = np.nanmax(scores)
    tied = [k for k in range(len(trials)) if scores[k] >= top - tie_tol]
    k = min(tied, key=lambda j: (trials[j]["train_tokens"], trials[j]["train_seconds"], j))
    return {"index": k, "params": trials[k]["params"], "metrics": trials[k]["metrics"], "tied": len(tied)}


def sweep_table(results: dict) -> str:
    metric = results["metric"]
    names = sorted({n for t in results["trials"] for n in t["params"]})
    rows = []
    for k, t in enumerate(results["trials"]):
        mark = "*" if k == results["best"]["index"] else ""
        rows.append([mark + str(k + 1)] + [t["params"].get(n, "-") for n in names]
                    + [fmt_ci(t["metrics"][metric]), f"{t['train_tokens']:.0f}", f"{t['train_seconds']:.1f}"])
    text = text_table(["trial"] + names + [metric, "train tokens", "train s"], rows)
    best = results["best"]
    return text + (f"\nbest (*): {best['params']}  {metric} {fmt_ci(best['metrics'][metric])}"
                   f"{' (ties broken by cost)' if best['tied'] > 1 else ''}; scored on the held-out rows that "
                   "chose it, so optimistic\n")

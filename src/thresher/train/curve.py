"""`thresher curve`: learning curve on nested subsets, a saturating power-law
fit, extrapolation to more data with a bootstrap interval, and a plain
recommendation.

The fitted error is the loss, or 1 - metric for accuracy / macro-F1. Each
seed draws its own nested subsets (10 % inside 20 % inside ...), stratified by
a field when asked, and trains with that seed. The interval of a predicted
gain comes from `powerlaw.bootstrap_fit` (values resampled within each size
across seeds, or residuals with a single seed).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from thresher.errors import UsageError
from thresher.train.powerlaw import bootstrap_fit
from thresher.train.results import fmt_ci, higher_is_better, text_table

DEFAULT_FRACTIONS = (0.1, 0.2, 0.4, 0.8, 1.0)
FACTORS = (2, 5, 10)
METRIC_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy", "loss": "eval loss", "perplexity": "perplexity"}


def curve(pool, *, config=None, fractions: Sequence[float] = DEFAULT_FRACTIONS, seeds: int = 3, seed: int = 0,
          metric: str = "auto", by: str | None = None, eval_data=None, holdout: float | None = 0.1,
          label_field: str | None = None, group_field: str | None = None, model=None, tokenizer=None,
          model_path: str | None = None, n_boot: int = 1000, plateau_tol: float = 0.01,
          progress=None, command: str = "",
          device: str = "auto") -> dict:
    """Train on nested fractions of the pool for `seeds` seeds, fit
    `err(n) = a n^-b + c`, and return the `curve` results dict."""
    from thresher.train.setup import evaluate, prepare, reported
    from thresher.train.lora import TrainConfig, fine_tune
    from thresher.train.split import nested_subsets

    config = config or TrainConfig()
    fractions = sorted({float(f) for f in fractions})
    if len(fractions) < 3:
        raise UsageError(f"a learning curve needs at least 3 fractions, got {fractions}")
    if not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"seeds must be a positive integer, got {seeds!r}")
    setup = prepare(pool, config=config, eval_data=eval_data, holdout=holdout, seed=seed, label_field=label_field,
                    group_field=group_field, model=model, tokenizer=tokenizer, model_path=model_path,
                    device=device, validation=None)
    metric = _pick_metric(metric, setup.metrics)
    strata = np.asarray(setup.data.pool.categorical([by])[0]) if by else None
    n = len(setup.data)
    points = []
    for i in range(seeds):
        s = seed + i
        for frac, rows in zip(fractions, nested_subsets(n, fractions, s, strata)):
            with reported(progress, f"seed {s}: {frac:g} of the pool ({len(rows)} rows)") as step:
                result = fine_tune(setup.data.examples.take(rows), None, replace(config, seed=s),
                                   model=setup.model, tokenizer=setup.tokenizer, progress=step)
                value = evaluate(setup, result.model, config.template)["metrics"][metric]
            points.append({"fraction": frac, "rows": int(len(rows)), "seed": s, "value": float(value),
                           "train_seconds": round(result.seconds, 3), "train_tokens": int(result.train_tokens)})
    out = analyze(points, metric, n, n_boot=n_boot, seed=seed, plateau_tol=plateau_tol)
    out.update(eval_rows=len(setup.eval), pool_rows=setup.info["pool_rows"], train_rows=n,
               config={"train": config.to_dict(), "seeds": seeds, "fractions": fractions, "by": by, **setup.info},
               command=command)
    return out


def analyze(points: list[dict], metric: str, full_rows: int, *, n_boot: int = 1000, seed: int = 0,
            plateau_tol: float = 0.01, factors: Sequence[int] = FACTORS) -> dict:
    """Fit, extrapolation and recommendation from curve points ({"rows", "value", ...})."""
    rows = np.array([p["rows"] for p in points], dtype=np.float64)
    values = np.array([p["value"] for p in points], dtype=np.float64)
    higher = higher_is_better(metric)
    err = 1.0 - values if higher else values
    fit = bootstrap_fit(rows, err, n_boot=n_boot, seed=seed)
    to_metric = (lambda e: 1.0 - e) if higher else (lambda e: e)
    now = float(to_metric(fit.predict([full_rows])[0]))
    boot_now = _boot_predict(fit, full_rows)
    extrapolation = []
    for k in factors:
        target = full_rows * k
        boot_then = _boot_predict(fit, target)
        gain = boot_now - boot_then  # error reduction = metric gain (score) or loss drop
        lo, hi = np.percentile(to_metric(boot_then), [2.5, 97.5])
        g_lo, g_hi = np.percentile(gain, [2.5, 97.5])
        extrapolation.append({"factor": k, "rows": int(target), "value": float(to_metric(fit.predict([target])[0])),
                              "ci_low": float(min(lo, hi)), "ci_high": float(max(lo, hi)),
                              "gain": float(fit.predict([full_rows])[0] - fit.predict([target])[0]),
                              "gain_low": float(g_lo), "gain_high": float(g_hi)})
    two = extrapolation[0]
    plateaued = bool(two["gain_high"] < plateau_tol * max(abs(now), 1e-12))
    ci = fit.param_intervals()
    return {"kind": "curve", "metric": metric, "points": points,
            "fit": {"a": fit.a, "b": fit.b, "c": fit.c, "a_ci": list(ci["a"]), "b_ci": list(ci["b"]),
                    "c_ci": list(ci["c"]), "error": "1 - " + metric if higher else metric, "rss": fit.rss,
                    "current": now},
            "extrapolation": extrapolation, "plateaued": plateaued,
            "recommendation": recommendation(metric, two, plateaued, plateau_tol)}


def recommendation(metric: str, two: dict, plateaued: bool, plateau_tol: float) -> str:
    """One plain sentence about collecting 2x more data."""
    name = METRIC_NAMES.get(metric, metric)
    verb = "improve" if higher_is_better(metric) else "reduce"
    text = (f"collecting {two['factor']}x more data ({two['rows']} rows) is expected to {verb} {name} by "
            f"{two['gain']:.3g} [{two['gain_low']:.3g}, {two['gain_high']:.3g}]; ")
    if plateaued:
        return text + (f"the curve has plateaued (even the optimistic end is under {plateau_tol:.0%} of the "
                       "current value): more of the same data is unlikely to pay; work on quality, "
                       "selection or the task instead")
    return text + "the curve has not plateaued: more data is likely to help"


def _boot_predict(fit, n: float) -> np.ndarray:
    b = fit.boot
    return b[:, 0] * np.power(float(n), -b[:, 1]) + b[:, 2]


def _pick_metric(metric: str, available: list[str]) -> str:
    if metric == "auto":
        return "macro_f1" if "macro_f1" in available else "loss"
    if metric not in available:
        raise UsageError(f"metric {metric!r} is not available here; choose one of {', '.join(available)} "
                         "(accuracy and macro_f1 need label-like responses in the held-out rows)")
    return metric


def curve_table(results: dict) -> str:
    """Points (mean over seeds per fraction), the fit and the extrapolation, as text."""
    from thresher.train.results import t_interval

    metric = results["metric"]
    by_frac: dict[float, list] = {}
    for p in results["points"]:
        by_frac.setdefault(p["fraction"], []).append(p)
    rows = [[f"{f:g}", ps[0]["rows"], fmt_ci(t_interval([p["value"] for p in ps]))] for f, ps in sorted(by_frac.items())]
    for e in results["extrapolation"]:
        rows.append([f"{e['factor']}x (predicted)", e["rows"],
                     fmt_ci({"mean": e["value"], "ci_low": e["ci_low"], "ci_high": e["ci_high"], "n": 2})])
    f = results["fit"]
    text = text_table(["fraction", "rows", metric], rows)
    text += (f"\nfit: {f['error']} = {f['a']:.4g} * n^-{f['b']:.3g} + {f['c']:.4g}  "
             f"(c in [{f['c_ci'][0]:.3g}, {f['c_ci'][1]:.3g}])\n")
    return text + results["recommendation"] + "\n"

"""One registry: step name -> class. The CLI `--method`, recipe step names and
the Python API all resolve through it, so a new selector is one class plus
one line here."""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from thresher.core.budget import Budget
from thresher.errors import UsageError

# name -> "module:Class"; imported on use so `thresher --help` stays fast
STEPS: dict[str, str] = {
    "quality": "thresher.selection.quality:QualityFilter",
    "dedup": "thresher.selection.dedup:DedupSelector",
    "ifd": "thresher.selection.ifd:IFDSelector",
    "superfilter": "thresher.selection.ifd:SuperfilterSelector",
    "deita": "thresher.selection.deita:DeitaSelector",
    "balance": "thresher.balance.resample:Balance",
    "kcenter": "thresher.selection.kcenter:KCenterSelector",
    "facility": "thresher.selection.facility:FacilityLocationSelector",
    "target": "thresher.selection.target:TargetSelector",
    "mixture": "thresher.selection.mixture:MixtureSelector",
    "rds": "thresher.selection.rds:RDSSelector",
    "length": "thresher.selection.length:LengthSelector",
    "sample": "thresher.pipeline.registry:SampleStep",
}
BUDGET_KEYS = ("n", "fraction", "tokens")


def step_class(name: str) -> type:
    if name not in STEPS:
        raise UsageError(f"unknown step {name!r}; choose one of {', '.join(sorted(STEPS))}")
    module, cls = STEPS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def accepted_params(cls: type) -> set[str] | None:
    """Constructor parameter names (None when it takes **kwargs and checks them itself)."""
    sig = inspect.signature(cls.__init__)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {p for p in sig.parameters if p != "self"}


def build_step(name: str, params: dict[str, Any] | None, seed: int | None) -> tuple[Any, Budget | None]:
    """An instance of step `name` and its budget (from n / fraction / tokens in `params`)."""
    params = dict(params or {})
    budget_args = {k: params.pop(k) for k in BUDGET_KEYS if k in params}
    budget = Budget.parse(**budget_args) if budget_args else None
    cls = step_class(name)
    accepted = accepted_params(cls)
    unknown = sorted(set(params) - accepted) if accepted is not None else []
    if unknown:
        raise UsageError(f"step {name!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(sorted(accepted | set(BUDGET_KEYS)))}")
    if (accepted is None or "random_state" in accepted) and "random_state" not in params:
        params["random_state"] = seed
    try:
        step = cls(**params)
    except TypeError as err:
        raise UsageError(f"step {name!r}: {err}") from None
    if budget is None and getattr(step, "needs_budget", True):
        raise UsageError(f"step {name!r} needs a budget: n, fraction or tokens")
    return step, budget


def run_step(step: Any, ds, budget: Budget | None, features: dict, seed: int | None):
    """Call a step's `select` with what its signature takes."""
    sig = inspect.signature(step.select).parameters
    kwargs = {}
    if "features" in sig:
        kwargs["features"] = features
    if "seed" in sig:
        kwargs["seed"] = seed
    return step.select(ds, budget, **kwargs)


def requirements(step: Any) -> list[str]:
    req = getattr(step, "requires", [])
    return list(req() if callable(req) else req)


class SampleStep:
    """A probability design as a recipe step: `{sample: {design: stratified, by: [task], n: 500}}`."""

    name = "sample"
    needs_budget = True
    requires: list[str] = []

    def __init__(self, design: str = "random", random_state: int | None = None, **params: Any):
        from thresher.sampling.designs import DESIGNS

        if design not in DESIGNS:
            raise UsageError(f"sample: unknown design {design!r}; choose one of {', '.join(sorted(DESIGNS))}")
        if isinstance(params.get("by"), str):
            params["by"] = [p.strip() for p in params["by"].split(",")]
        try:
            self.design = DESIGNS[design](random_state=random_state, **params)
        except TypeError as err:
            raise UsageError(f"sample ({design}): {err}") from None

    def select(self, ds, budget: Budget):
        return self.design.select(ds, budget)

"""The registry of probability designs: CLI `--design`, recipe steps and the
Python API resolve names here."""
from __future__ import annotations

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.cluster import ClusterSampler
from thresher.sampling.pps import PPSSampler
from thresher.sampling.random import RandomSampler
from thresher.sampling.stratified import StratifiedSampler
from thresher.sampling.systematic import SystematicSampler

DESIGNS = {
    "random": RandomSampler,
    "stratified": StratifiedSampler,
    "cluster": ClusterSampler,
    "systematic": SystematicSampler,
    "pps": PPSSampler,
}


def make_design(design: str, **params):
    """A design by registry name, with its parameters (validated by the design)."""
    if design not in DESIGNS:
        raise UsageError(f"unknown design {design!r}; choose one of {', '.join(sorted(DESIGNS))}")
    return DESIGNS[design](**params)


def sample(ds: Dataset, design: str = "random", n: int | None = None, fraction: float | None = None,
           seed: int | None = None, **params) -> Selection:
    """Draw a probability sample: `thresher.sample(ds, "stratified", n=1000, by=["task"], seed=0)`."""
    budget = Budget.parse(n=n, fraction=fraction)
    return make_design(design, random_state=seed, **params).select(ds, budget)

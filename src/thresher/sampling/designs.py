"""The registry of probability designs: CLI `--design`, recipe steps and the
Python API resolve names here."""
from __future__ import annotations

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

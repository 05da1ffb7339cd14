"""Core types shared by every stage: Selection, Budget, seeded RNG."""
from thresher.core.budget import Budget
from thresher.core.rng import make_rng
from thresher.core.selection import Selection

__all__ = ["Budget", "Selection", "make_rng"]

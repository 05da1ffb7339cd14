"""Sample-size calculator: how many rows a simple random sample needs so that
an estimated proportion or mean is within a margin of error at a confidence.

Formulas (Cochran, *Sampling Techniques*, 1977, ch. 4):

- proportion: ``n0 = z**2 * p * (1 - p) / e**2``
- mean:       ``n0 = z**2 * sd**2 / e**2``
- finite population of N rows: ``n_fpc = n0 / (1 + (n0 - 1) / N)``
- design effect (clustered / weighted designs): ``n_deff = deff * n_fpc``
  (the order used by OpenEpi and Epi Info).

``z`` is the two-sided normal quantile of ``confidence``. The chain is
computed on unrounded values and only the final n is rounded up (and capped at
the population); the reported stages n0, n_fpc and n_deff are each that
stage's value rounded up, so ``ceil(deff * n_fpc)`` can exceed n by one.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Mapping

from scipy.stats import norm

from thresher.errors import UsageError

__all__ = ["SizeResult", "StrataSizeResult", "sample_size", "sample_size_per_stratum"]

# Products such as 1.5 * 370.0 must not round up to the next row because of
# floating-point noise in the last bits.
_CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class SizeResult:
    """A computed sample size and the inputs that produced it.

    n: rows to sample (``n_deff`` capped at the population).
    n0: size for an infinite population. n_fpc: after the finite-population
    correction (equals n0 when the population is infinite). n_deff: after the
    design effect. z: the normal quantile used. target: "proportion" or "mean".
    """

    n: int
    n0: int
    n_fpc: int
    n_deff: int
    target: str
    margin: float
    confidence: float
    z: float
    population: int | None
    proportion: float | None
    sd: float | None
    deff: float

    def to_json(self) -> dict:
        """Plain JSON types, fixed key order."""
        return asdict(self)


@dataclass(frozen=True)
class StrataSizeResult:
    """Per-stratum sample sizes (each stratum gets its own margin) and the total."""

    strata: dict[str, SizeResult]
    total: int

    @property
    def sizes(self) -> dict[str, int]:
        """Rows to sample per stratum."""
        return {k: r.n for k, r in self.strata.items()}

    def to_json(self) -> dict:
        """Plain JSON types, fixed key order (strata in the order given)."""
        return {"total": self.total, "strata": {k: r.to_json() for k, r in self.strata.items()}}


def sample_size(
    population: int | None = None,
    *,
    margin: float,
    confidence: float = 0.95,
    proportion: float | None = None,
    sd: float | None = None,
    deff: float = 1.0,
) -> SizeResult:
    """Rows needed to estimate a proportion (default) or a mean within ``margin``.

    population: pool size N (None or ``math.inf`` for an infinite population).
    margin: half-width of the confidence interval; a share in (0, 1) for a
        proportion, a positive value in the field's units for a mean.
    confidence: two-sided confidence level in (0, 1).
    proportion: expected share p in (0, 1); 0.5 (the default when ``sd`` is not
        given) is the most conservative choice.
    sd: expected standard deviation of the field; giving it sizes for a mean.
    deff: design effect >= 1 of the sampling design (1 for simple random).

    Examples: ``sample_size(margin=0.05).n == 385``,
    ``sample_size(10_000, margin=0.05).n == 370``,
    ``sample_size(margin=1, sd=10).n == 385``.
    """
    target, p, sd = _target(proportion, sd)
    _check_margin(margin, target)
    z = _z(confidence)
    _check_deff(deff)
    big_n = _population(population)
    spread = p * (1 - p) if target == "proportion" else sd**2
    n0 = z**2 * spread / margin**2
    n_fpc = n0 if big_n is None else n0 / (1 + (n0 - 1) / big_n)
    n_deff = n_fpc * deff
    n = _ceil(n_deff)
    if big_n is not None:
        n = min(n, big_n)
    return SizeResult(
        n=max(n, 1),
        n0=_ceil(n0),
        n_fpc=_ceil(n_fpc),
        n_deff=_ceil(n_deff),
        target=target,
        margin=float(margin),
        confidence=float(confidence),
        z=float(z),
        population=big_n,
        proportion=p,
        sd=sd,
        deff=float(deff),
    )


def sample_size_per_stratum(
    strata_sizes: Mapping[str, int],
    *,
    margin: float | Mapping[str, float],
    confidence: float = 0.95,
    proportion: float | Mapping[str, float] | None = None,
    sd: float | Mapping[str, float] | None = None,
    deff: float | Mapping[str, float] = 1.0,
) -> StrataSizeResult:
    """Each stratum's own sample size for a margin *within that stratum*, and the total.

    strata_sizes: stratum label -> rows in the pool for that stratum.
    margin, proportion, sd, deff: one value for every stratum, or a mapping
    stratum -> value (it must name exactly the strata given). See
    ``sample_size`` for their meaning.
    """
    if not strata_sizes:
        raise UsageError("strata_sizes is empty; give at least one stratum and its pool size")
    labels = list(strata_sizes)
    per = {
        name: _per_stratum(value, labels, name)
        for name, value in (("margin", margin), ("proportion", proportion), ("sd", sd), ("deff", deff))
    }
    results: dict[str, SizeResult] = {}
    for label in labels:
        try:
            results[label] = sample_size(
                strata_sizes[label],
                margin=per["margin"][label],
                confidence=confidence,
                proportion=per["proportion"][label],
                sd=per["sd"][label],
                deff=per["deff"][label],
            )
        except UsageError as exc:
            raise UsageError(f"stratum {label!r}: {exc}") from None
    return StrataSizeResult(strata=results, total=sum(r.n for r in results.values()))


def _per_stratum(value, labels: list[str], name: str) -> dict:
    if not isinstance(value, Mapping):
        return dict.fromkeys(labels, value)
    missing = [k for k in labels if k not in value]
    extra = [k for k in value if k not in set(labels)]
    if missing or extra:
        raise UsageError(
            f"{name} per stratum must name exactly the strata given; "
            f"missing: {missing or 'none'}, unknown: {extra or 'none'}"
        )
    return dict(value)


def _target(proportion: float | None, sd: float | None) -> tuple[str, float | None, float | None]:
    if proportion is not None and sd is not None:
        raise UsageError("give either proportion (to size for a share) or sd (to size for a mean), not both")
    if sd is not None:
        if not (_is_number(sd) and math.isfinite(sd) and sd > 0):
            raise UsageError(f"sd must be a positive number (the field's expected standard deviation), got {sd!r}")
        return "mean", None, float(sd)
    p = 0.5 if proportion is None else proportion
    if not (_is_number(p) and 0 < p < 1):
        raise UsageError(f"proportion must be in (0, 1), got {p!r}; use 0.5 when unknown (the most conservative)")
    return "proportion", float(p), None


def _check_margin(margin: float, target: str) -> None:
    if target == "proportion" and not (_is_number(margin) and 0 < margin < 1):
        raise UsageError(
            f"margin must be a share in (0, 1) for a proportion, got {margin!r}; e.g. 0.05 for +/- 5 points"
        )
    if target == "mean" and not (_is_number(margin) and math.isfinite(margin) and margin > 0):
        raise UsageError(f"margin must be a positive number in the field's units for a mean, got {margin!r}")


def _z(confidence: float) -> float:
    if not (_is_number(confidence) and 0 < confidence < 1):
        raise UsageError(f"confidence must be in (0, 1), got {confidence!r}; e.g. 0.95")
    return float(norm.ppf(0.5 + confidence / 2))


def _check_deff(deff: float) -> None:
    if not (_is_number(deff) and math.isfinite(deff) and deff >= 1):
        raise UsageError(f"deff (design effect) must be >= 1, got {deff!r}; use 1 for simple random sampling")


def _population(population: int | float | None) -> int | None:
    if population is None or (_is_number(population) and population == math.inf):
        return None
    if not (_is_number(population) and float(population).is_integer() and population >= 1):
        raise UsageError(f"population must be a whole number >= 1 (rows in the pool), got {population!r}")
    return int(population)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _ceil(x: float) -> int:
    return int(math.ceil(x - _CEIL_SLACK * max(1.0, abs(x))))

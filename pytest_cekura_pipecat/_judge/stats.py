"""Pass rates compared statistically: one session's runs of a case against the baseline's.

A case with ``repeat`` runs has a pass rate; so has the same case in the baseline report.
Whether the drop from one to the other is a regression or noise is Fisher's exact test,
one-sided: the probability, if both sessions had the same pass rate, of the current session
passing this few runs or fewer given the passes of both together (the hypergeometric tail).

- ``regression``: that probability (the p-value) is at most ``alpha`` (0.05);
- ``no change``: the current pass rate is not lower than the baseline's;
- ``inconclusive``: lower, but not by enough for these numbers of runs to tell.

Runs that errored (no evaluation: a bot that did not join, a timeout) are not passes or
failures of the agent: they are left out of both counts, and named. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ALPHA = 0.05

Comparison = Literal["regression", "no change", "inconclusive"]


@dataclass(frozen=True)
class Counts:
    """A session's runs of a case: ``passed`` of ``runs`` counted (errored runs left out)."""

    passed: int
    runs: int

    def __post_init__(self) -> None:
        if not 0 <= self.passed <= self.runs:
            raise ValueError(f"passed={self.passed} is not within 0..runs={self.runs}")

    @property
    def rate(self) -> float:
        return self.passed / self.runs if self.runs else 0.0

    def __str__(self) -> str:
        return f"{self.passed}/{self.runs}"


def fisher_lower(before: Counts, now: Counts) -> float:
    """One-sided p-value of Fisher's exact test that ``now`` passes less often than
    ``before``: P(X <= now.passed) for X hypergeometric (``now.runs`` runs drawn from all
    runs, ``before.passed + now.passed`` of them passes)."""
    total = before.runs + now.runs
    passes = before.passed + now.passed
    fails = total - passes
    ways = math.comb(total, now.runs)
    if ways == 0:
        return 1.0
    low = max(0, now.runs - fails)
    tail = sum(
        math.comb(passes, x) * math.comb(fails, now.runs - x) for x in range(low, now.passed + 1)
    )
    return min(tail / ways, 1.0)


@dataclass(frozen=True)
class RateComparison:
    """The comparison of a case's pass rate now against the baseline's."""

    verdict: Comparison
    p_value: float
    before: Counts
    now: Counts

    def describe(self) -> str:
        """One line: the verdict, the p-value and both counts."""
        return (
            f"{self.verdict}: passed {self.now} runs against {self.before} in the baseline "
            f"(Fisher's exact test, one-sided p = {self.p_value:.3g})"
        )


def compare_rates(before: Counts, now: Counts, alpha: float = ALPHA) -> RateComparison:
    """``regression``, ``no change`` or ``inconclusive`` (see the module's docstring). With
    no counted run on either side nothing can be told: ``inconclusive``, p = 1."""
    if before.runs == 0 or now.runs == 0:
        return RateComparison("inconclusive", 1.0, before, now)
    p_value = fisher_lower(before, now)
    if p_value <= alpha:
        verdict: Comparison = "regression"
    elif now.passed * before.runs >= before.passed * now.runs:
        verdict = "no change"
    else:
        verdict = "inconclusive"
    return RateComparison(verdict, p_value, before, now)

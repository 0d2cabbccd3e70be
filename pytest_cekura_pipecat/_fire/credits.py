"""What a session may cost, in Cekura credits: the forecast, the cap, the actual estimate.

Pure arithmetic over plain values (no I/O): the scenarios are read elsewhere (``spend.py``).
Every figure is an estimate from Cekura's documented pricing (about 5 credits a voice minute
and 0.2 an LLM metric; both overridable), never Cekura's own bill.

- A run's **worst case** is its scenario's ``max_duration`` in minutes times the credits a
  minute, plus its metric count times the credits a metric: no call can cost more.
- Its **estimate** assumes the call lasts ``TYPICAL_SHARE`` of ``max_duration`` (a call
  usually ends well before its limit), every metric counted.
- A case's figures are its run's times ``repeat`` (an adaptive case's top-ups included).
- The cap admits cases in a stable order, higher ``priority`` first, then collection order,
  while the cumulative worst case fits; the first case that does not fit and every case
  after it are left out (a prefix, so the order alone decides what runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from .._api.run import CekuraRun

CREDITS_PER_MINUTE = 5.0  # Cekura's documented price of a voice minute
CREDITS_PER_METRIC = 0.2  # ...and of an LLM metric
TYPICAL_SHARE = 0.5  # of max_duration, the length of call the estimate assumes
UNKNOWN_DURATION = 3600.0  # seconds assumed for a scenario not read: Cekura's longest call


@dataclass(frozen=True)
class Pricing:
    per_minute: float = CREDITS_PER_MINUTE
    per_metric: float = CREDITS_PER_METRIC

    def label(self) -> str:
        return f"{self.per_minute:g} credits a voice minute, {self.per_metric:g} an LLM metric"


@dataclass(frozen=True)
class ScenarioCost:
    """What the plugin knows of a scenario's price: ``max_duration`` in seconds (None: not
    known, ``UNKNOWN_DURATION`` is assumed) and its metric count."""

    scenario: int
    max_duration: float | None
    metrics: int

    def seconds(self) -> float:
        return self.max_duration if self.max_duration is not None else UNKNOWN_DURATION

    def worst(self, pricing: Pricing) -> float:
        return self.seconds() / 60 * pricing.per_minute + self.metrics * pricing.per_metric

    def estimate(self, pricing: Pricing) -> float:
        minutes = self.seconds() * TYPICAL_SHARE / 60
        return minutes * pricing.per_minute + self.metrics * pricing.per_metric


@dataclass(frozen=True)
class CaseCost:
    """One selected case's forecast: its runs and their worst case and estimate each."""

    nodeid: str
    name: str
    runs: int
    run_worst: float
    run_estimate: float
    priority: int = 0

    @property
    def worst(self) -> float:
        return self.runs * self.run_worst

    @property
    def estimate(self) -> float:
        return self.runs * self.run_estimate


@dataclass(frozen=True)
class Forecast:
    """The selected cases' cost before anything is fired, and what the cap admitted.
    Crosses process boundaries inside the plan (plain fields only)."""

    pricing: Pricing
    cases: tuple[CaseCost, ...]
    cap: float | None = None
    left_out: tuple[str, ...] = ()  # node ids the cap did not admit
    unread: tuple[int, ...] = ()  # scenarios whose max_duration is not known
    credits_left: float | None = None  # billing/info's credits_remaining, when read

    @property
    def admitted(self) -> tuple[CaseCost, ...]:
        out = set(self.left_out)
        return tuple(c for c in self.cases if c.nodeid not in out)

    @property
    def runs(self) -> int:
        return sum(c.runs for c in self.admitted)

    @property
    def estimate(self) -> float:
        return sum(c.estimate for c in self.admitted)

    @property
    def worst(self) -> float:
        return sum(c.worst for c in self.admitted)

    def run_worst(self, nodeid: str) -> float | None:
        """The worst case of one run of a case (for a rerun's share of the cap)."""
        for case in self.cases:
            if case.nodeid == nodeid:
                return case.run_worst
        return None

    def line(self) -> str:
        """One line for the terminal: runs, estimate, worst case, cap, pricing."""
        text = (
            f"cekura: spend forecast (estimates): {self.runs} run(s), about "
            f"{credits(self.estimate)} credits, worst case {credits(self.worst)} credits"
        )
        if self.cap is not None:
            text += f"; credit cap {credits(self.cap)}"
            if self.left_out:
                text += f": {len(self.left_out)} case(s) left out"
        if self.credits_left is not None:
            text += f"; {credits(self.credits_left)} credits left"
        return f"{text} ({self.pricing.label()})"

    def to_json(self) -> SpendJson:
        return SpendJson(
            estimate=True,
            runs=self.runs,
            estimated_credits=round(self.estimate, 2),
            worst_case_credits=round(self.worst, 2),
            max_credits=self.cap,
            cases_left_out=len(self.left_out),
            credits_left=self.credits_left,
            credits_per_minute=self.pricing.per_minute,
            credits_per_metric=self.pricing.per_metric,
            unread_scenarios=list(self.unread),
            selected_runs=sum(c.runs for c in self.cases),
            selected_worst_case_credits=round(sum(c.worst for c in self.cases), 2),
        )


class SpendJson(TypedDict):
    """The report's ``spend`` object (``report.schema.json``)."""

    estimate: bool  # always true: every figure is an estimate, not Cekura's bill
    runs: int
    estimated_credits: float
    worst_case_credits: float
    max_credits: float | None
    cases_left_out: int
    credits_left: float | None
    credits_per_minute: float
    credits_per_metric: float
    unread_scenarios: list[int]
    selected_runs: int  # every selected case's, before the cap
    selected_worst_case_credits: float


def credits(value: float) -> str:
    """A figure of credits as shown: at most two decimals, no trailing zeros."""
    return f"{round(value, 2):g}" if abs(value) < 1e6 else f"{value:,.0f}"


def admission_order(cases: Sequence[CaseCost]) -> list[CaseCost]:
    """Higher ``priority`` first, then the order given (collection order): stable."""
    return sorted(cases, key=lambda c: -c.priority)


def admit(cases: Sequence[CaseCost], cap: float | None) -> tuple[str, ...]:
    """The node ids the cap leaves out: the first case (in ``admission_order``) whose worst
    case does not fit beside those before it, and every case after it."""
    if cap is None:
        return ()
    total = 0.0
    ordered = admission_order(cases)
    for index, case in enumerate(ordered):
        total += case.worst
        if total > cap + 1e-9:
            return tuple(c.nodeid for c in ordered[index:])
    return ()


def capped_reason(cap: float, case: CaseCost, before: float) -> str:
    """The error of a case the cap left out: one line, naming the cap."""
    return (
        f"not fired: credit cap ({credits(cap)}): this case's worst case, "
        f"{credits(case.worst)} credits (estimated), does not fit after the "
        f"{credits(before)} credits of the cases admitted before it (raise "
        "--cekura-max-credits, or give the case a higher priority)"
    )


def cents(value: float) -> int:
    """Credits as whole hundredths, for the session's shared counter (rounded up: a share
    of the cap is never under-counted)."""
    return math.ceil(round(value * 100, 6))


def run_credits(seconds: float | None, metrics: int, pricing: Pricing) -> float | None:
    """The estimated cost of one finished run from its duration and evaluated metrics;
    None when its duration is unknown (a run that never started costs nothing: 0)."""
    if seconds is None:
        return None
    return max(seconds, 0.0) / 60 * pricing.per_minute + metrics * pricing.per_metric


@dataclass(frozen=True)
class ActualCredits:
    """What a case's finished runs cost, estimated from their durations and evaluated
    metrics at the forecast's pricing. ``unknown`` runs started but reported no duration
    (not counted in ``credits``)."""

    credits: float
    runs: int
    unknown: int = 0


def actual(runs: Sequence[CekuraRun], pricing: Pricing) -> ActualCredits:
    total = 0.0
    started = unknown = 0
    for run in runs:
        if run.run_id is None:
            continue  # never started: nothing billed
        started += 1
        cost = run_credits(run.duration, len(run.metrics), pricing)
        if cost is None:
            unknown += 1
        else:
            total += cost
    return ActualCredits(round(total, 4), started, unknown)

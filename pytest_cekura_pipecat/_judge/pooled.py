"""Pooled thresholds: a figure over the turns of every run of a case, not per run.

``"latency_p95_ms (pooled)" = "<= 1500"`` takes every agent turn's response latency (the gap
from the end of the caller's turn it answers to its start) in every run of the case, and its
95th percentile (nearest rank) must hold; ``first_word_ms`` takes each run's time to the
agent's first word. With fewer samples than the case's ``min_samples`` the case errors as
inconclusive: too little data never passes. Runs without a conversation add no sample. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .._api.conversation import first_word_ms, response_latencies_ms
from .._api.run import CekuraRun
from .._config.case import Case
from .._config.thresholds import Threshold, pooled_figure
from .verdict import CaseVerdict


@dataclass(frozen=True)
class PooledCheck:
    threshold: Threshold
    samples: int
    runs: int  # runs that gave samples
    measured: float | None
    held: bool

    @property
    def where(self) -> str:
        source, _ = pooled_figure(self.threshold.key) or ("", "")
        runs = f"{self.runs:,} run" + ("" if self.runs == 1 else "s")
        if source == "first_word":
            return runs
        turns = f"{self.samples:,} turn" + ("" if self.samples == 1 else "s")
        return f"{turns}, {runs}"


def _statistic(values: Sequence[float], stat: str) -> float:
    ordered = sorted(values)
    if stat == "mean":
        return sum(ordered) / len(ordered)
    if stat == "max":
        return ordered[-1]
    if stat == "min":
        return ordered[0]
    rank = math.ceil(int(stat[1:]) / 100 * len(ordered))  # nearest rank
    return ordered[max(rank, 1) - 1]


def _samples(source: str, run: CekuraRun) -> list[float]:
    if run.turns_or_none() is None:
        return []
    if source == "first_word":
        first = first_word_ms(run)
        return [] if first is None else [first]
    return [ms for _, ms in response_latencies_ms(run)]


def check_pooled(threshold: Threshold, runs: Sequence[CekuraRun]) -> PooledCheck:
    source, stat = pooled_figure(threshold.key) or ("latency", "p95")
    per_run = [_samples(source, run) for run in runs]
    values = [v for samples in per_run for v in samples]
    giving = sum(1 for samples in per_run if samples)
    if not values:
        return PooledCheck(threshold, 0, giving, None, False)
    measured = _statistic(values, stat)
    return PooledCheck(threshold, len(values), giving, measured, threshold.holds_number(measured))


def apply_pooled(case: Case, runs: Sequence[CekuraRun], verdict: CaseVerdict) -> CaseVerdict:
    """The verdict with the case's pooled thresholds applied: a passing case fails when one
    is broken and errors when one has fewer than ``min_samples`` samples; a case that did
    not pass keeps its outcome, with the pooled figures added to its message."""
    pooled = [t for t in case.thresholds if t.pooled]
    if not pooled:
        return verdict
    checks = [check_pooled(t, runs) for t in pooled]
    short = [c for c in checks if c.samples < case.min_samples]
    broken = [c for c in checks if c not in short and not c.held]
    reasons = [
        f"inconclusive: threshold '{c.threshold.text}' has {c.where}, fewer samples than "
        f"min_samples = {case.min_samples}"
        for c in short
    ] + [
        f"threshold '{c.threshold.text}' not met: measured {c.measured:,.0f} ms over {c.where}"
        for c in broken
    ]
    if not reasons:
        held = "; ".join(f"{c.threshold.text}: {c.measured:,.0f} ms over {c.where}" for c in checks)
        return replace(verdict, message=f"{verdict.message}\n  pooled: {held}")
    outcome = verdict.outcome
    if outcome == "passed":
        outcome = "error" if short else "failed"
    lines = "".join(f"\n  {r}" for r in reasons)
    if verdict.outcome == "passed":
        return replace(
            verdict,
            outcome=outcome,
            message=f"{reasons[0]}\n  {verdict.message}{lines}",
            first_reason=reasons[0],
        )
    return replace(verdict, message=f"{verdict.message}{lines}")

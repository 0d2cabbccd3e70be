"""What a run and a case mean, in pytest's terms. Pure functions over public models."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .case import Case
from .models import TERMINAL_STATUSES, Run

Outcome = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class MetricResult:
    name: str
    passed: bool | None
    explanation: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExpectedOutcomeResult:
    score: float | None = None
    explanation: tuple[str, ...] = ()


def parse_duration(value: str | None) -> float | None:
    """Cekura's ``"MM:SS"`` (or ``"H:MM:SS"``) as seconds."""
    if not value or not re.fullmatch(r"\d+(:\d{1,2}){1,2}(\.\d+)?", value.strip()):
        return None
    seconds = 0.0
    for part in value.strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


@dataclass(frozen=True)
class CekuraRun:
    """One Cekura run as the plugin saw it at the end: the public, immutable view.

    ``passed`` is the verdict of this run alone. A run that never started (the start
    request was refused, a variable was missing) has ``run_id`` None and status
    ``not_started``. ``transcript`` and ``recording_url`` are fetched lazily, in bulk,
    by the plugin when first asked for.
    """

    scenario_id: int
    status: str
    success: bool | None = None
    run_id: int | None = None
    result_id: int | None = None
    scenario_name: str = ""
    error_message: str = ""
    expected_outcome: ExpectedOutcomeResult = ExpectedOutcomeResult()
    metrics: tuple[MetricResult, ...] = ()
    duration: float | None = None
    dashboard_url: str | None = None
    transcript: str | None = field(default=None, repr=False)
    recording_url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def verdict(self) -> Outcome:
        if self.status == "completed" and self.success is True:
            return "passed"
        if self.status == "completed" and self.success is False:
            return "failed"
        return "error"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    @classmethod
    def from_api(
        cls, run: Run, result_id: int, raw: Mapping[str, Any], dashboard_url: str | None
    ) -> CekuraRun:
        return cls(
            scenario_id=run.scenario or 0,
            status=run.status,
            success=run.success,
            run_id=run.id,
            result_id=result_id,
            scenario_name=run.scenario_name,
            # Without a message, Cekura's metadata.ended_reason is the best reason there is.
            error_message=run.error_message
            or (
                f"ended: {run.ended_reason}"
                if run.ended_reason and run.status != "completed"
                else ""
            ),
            expected_outcome=ExpectedOutcomeResult(
                run.expected_outcome.score, tuple(run.expected_outcome.explanation)
            ),
            metrics=tuple(
                MetricResult(m.name, m.passed, tuple(m.explanation)) for m in run.evaluation.metrics
            ),
            duration=parse_duration(run.duration),
            dashboard_url=dashboard_url,
            raw=MappingProxyType(raw),  # a read-only view of the snapshot's own dict
        )


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def run_reasons(run: CekuraRun) -> list[str]:
    """Why a run did not pass, one reason a line (empty for a pass)."""
    verdict = run.verdict
    if verdict == "passed":
        return []
    if verdict == "error":
        if run.error_message:
            return [run.error_message]
        if run.status == "completed":
            return ["the run completed without a verdict (success is null)"]
        return [f"the run ended with status {run.status}"]
    reasons: list[str] = []
    outcome = run.expected_outcome
    if outcome.score is not None and outcome.score < 100:
        text = " ".join(outcome.explanation)
        reasons.append(
            f"expected outcome: score {outcome.score:g}/100" + (f": {text}" if text else "")
        )
    for metric in run.metrics:
        if metric.passed is False:
            text = " ".join(metric.explanation)
            reasons.append(f"metric '{metric.name}' did not pass" + (f": {text}" if text else ""))
    return reasons or ["Cekura marked the run unsuccessful without a reason"]


@dataclass(frozen=True)
class CaseVerdict:
    outcome: Outcome
    message: str
    first_reason: str
    runs: tuple[CekuraRun, ...]


def _run_id(run: CekuraRun) -> str:
    if run.run_id is None:
        return "run (not started)"
    where = f"run {run.run_id}"
    return where + (f", result {run.result_id}" if run.result_id is not None else "")


def decide(case: Case, runs: Sequence[CekuraRun], override: bool | None = None) -> CaseVerdict:
    """The case's verdict from its runs. ``override`` comes from ``pytest_cekura_verdict``."""
    passes = sum(run.passed for run in runs)
    errors = sum(run.verdict == "error" for run in runs)
    outcome: Outcome
    if override is not None:
        outcome = "passed" if override else "failed"
    elif passes >= case.min_passes:
        outcome = "passed"
    elif passes + errors >= case.min_passes:
        outcome = "error"  # the errored runs leave the case undecided
    else:
        outcome = "failed"
    name = next((r.scenario_name for r in runs if r.scenario_name), "")
    title = f"scenario {case.scenario}" + (f" '{name}'" if name else "")
    first = next((reasons[0] for run in runs if (reasons := run_reasons(run))), "")
    links = sorted({r.dashboard_url for r in runs if r.dashboard_url})
    lines: list[str]
    if len(runs) == 1:
        run = runs[0]
        reasons = run_reasons(run)
        if outcome == "passed":
            head = f"{title} passed"
        elif outcome == "failed":
            head = f"{title} failed its evaluation"
        else:
            head = f"{title} errored"
        if reasons:
            head += f": {reasons[0]}"
        lines = [head, *(f"  {r}" for r in reasons[1:]), f"  {_run_id(run)}"]
    else:
        lines = [f"{title}: {passes} of {len(runs)} runs passed, {case.min_passes} required"]
        for run in runs:
            reasons = run_reasons(run)
            lines.append(
                f"  {_run_id(run)}: {run.verdict}" + (f": {'; '.join(reasons)}" if reasons else "")
            )
    if override is not None:
        lines.append(f"  verdict overridden by a pytest_cekura_verdict hook: {outcome}")
    lines.extend(f"  dashboard: {link}" for link in links)
    return CaseVerdict(outcome, "\n".join(lines), first, tuple(runs))

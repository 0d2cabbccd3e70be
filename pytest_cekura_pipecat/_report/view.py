"""What the history and the HTML page read of a report's case, as typed values.

The one place that reads a case of a report document (a ``dict`` from the JSON report or
from ``json_document``): the history file and the page never index a case themselves, so a
change of the case record's shape is a change here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .record import CaseRecord, number
from .summary import BAD, cekura_summary, display_reason

Kind = Literal["pass", "fail", "infra", "skip"]


@dataclass(frozen=True)
class MetricView:
    name: str
    explanation: tuple[str, ...]


@dataclass(frozen=True)
class RunView:
    run_id: int | None
    status: str
    verdict: str
    score: float | None
    error_message: str
    failed_metrics: tuple[MetricView, ...]
    dashboard_url: str | None
    # Not in the report's schema today (a run's transcript and recording link stay out of
    # it); shown by the page when a report carries them.
    transcript: str
    recording_url: str | None


@dataclass(frozen=True)
class QuarantineView:
    until: str
    reason: str
    owner: str | None
    active: bool


@dataclass(frozen=True)
class CaseView:
    nodeid: str
    name: str
    scenario: int
    outcome: str | None
    verdict: str | None
    reason: str  # the case's own account first (display_reason), Cekura's summary after
    summary: str
    score: float | None  # the lowest expected-outcome score of its runs
    dashboard_url: str | None
    quarantine: QuarantineView | None
    evaluator_changed: bool
    runs: tuple[RunView, ...]

    @property
    def kind(self) -> Kind:
        return kind(self.verdict, self.outcome)

    @property
    def bad(self) -> bool:
        return self.outcome in BAD


def is_toml_case(nodeid: str) -> bool:
    """Declared in a ``cekura.toml`` (else by a marker on a test function)."""
    return "cekura.toml::" in nodeid


def kind(verdict: str | None, outcome: str | None) -> Kind:
    """The session's result for a case, for its history: an evaluation that failed (or a
    test body that failed after it passed) is a failure; an evaluation that could not be
    made (an error: not fired, not evaluated, timed out) is an infra error, counted apart;
    a case never evaluated (skipped) does not count."""
    if verdict == "error" or (verdict is None and outcome == "error"):
        return "infra"
    if verdict is None:
        return "skip"
    if verdict == "failed" or outcome == "failed":
        return "fail"
    if outcome == "error":
        return "infra"
    return "pass"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _run(run: Mapping[str, Any]) -> RunView:
    metrics = tuple(
        MetricView(
            _str(m.get("name")),
            tuple(e for e in m.get("explanation") or () if isinstance(e, str)),
        )
        for m in run.get("failed_metrics") or ()
        if isinstance(m, Mapping)
    )
    run_id = run.get("run_id")
    return RunView(
        run_id=run_id if isinstance(run_id, int) else None,
        status=_str(run.get("status")),
        verdict=_str(run.get("verdict")),
        score=number(run.get("score")),
        error_message=_str(run.get("error_message")),
        failed_metrics=metrics,
        dashboard_url=_str(run.get("dashboard_url")) or None,
        transcript=_str(run.get("transcript")),
        recording_url=_str(run.get("recording_url")) or None,
    )


def _quarantine(value: Any) -> QuarantineView | None:
    if not isinstance(value, Mapping):
        return None
    owner = value.get("owner")
    return QuarantineView(
        until=_str(value.get("until")),
        reason=_str(value.get("reason")),
        owner=owner if isinstance(owner, str) else None,
        active=value.get("active") is True,
    )


def case_view(case: Mapping[str, Any]) -> CaseView:
    """A report's case (``cases[i]`` of the document) as a typed value."""
    runs = tuple(_run(r) for r in case.get("runs") or () if isinstance(r, Mapping))
    scores = [r.score for r in runs if r.score is not None]
    scenario = case.get("scenario")
    record = CaseRecord.from_json(case)
    return CaseView(
        nodeid=_str(case.get("nodeid")),
        name=_str(case.get("name")),
        scenario=scenario if isinstance(scenario, int) else 0,
        outcome=case.get("outcome") if isinstance(case.get("outcome"), str) else None,
        verdict=case.get("verdict") if isinstance(case.get("verdict"), str) else None,
        reason=display_reason(record),
        summary=cekura_summary(record) if case.get("verdict") in BAD else "",
        score=min(scores) if scores else None,
        dashboard_url=_str(case.get("dashboard_url")) or None,
        quarantine=_quarantine(case.get("quarantine")),
        evaluator_changed=case.get("baseline") == "evaluator_changed",
        runs=runs,
    )


def case_views(document: Mapping[str, Any]) -> list[CaseView]:
    cases = document.get("cases")
    if not isinstance(cases, list):
        return []
    return [case_view(c) for c in cases if isinstance(c, Mapping)]

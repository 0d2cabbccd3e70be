"""A Cekura run as the plugin hands it on: ``CekuraRun`` and its parts, plain immutable data
built from the API models (reading one never fetches anything)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from .conversation import Turn, conversation_of, parse_turns
from .models import TERMINAL_STATUSES, Run, Snapshot

Outcome = Literal["passed", "failed", "error"]

_REVIEWED_SUCCESS = "reviewed_success"
_REVIEWED_FAILURE = "reviewed_failure"
_MAX_EXPLANATION = 300  # characters of an explanation in one reason line


_EMPTY: Mapping[str, Any] = MappingProxyType({})  # read-only: one is enough for every run


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True)
class MetricResult:
    """One evaluation metric of a run. ``passed`` is None when the metric has no pass/fail
    (numeric scores such as latency, enum values) and the API did not say."""

    name: str
    passed: bool | None
    explanation: tuple[str, ...] = ()
    type: str = ""
    score: float | None = None
    value: Any = None
    enum: Any = None
    extra: Mapping[str, Any] = field(default_factory=_empty)
    id: int | str | None = None


@dataclass(frozen=True)
class RubricResult:
    """One rubric rule of a run: ``conditions`` (``"value lte 1500"``) held for ``value``?"""

    metric_name: str
    passed: bool | None
    value: Any = None
    conditions: str = ""
    explanation: tuple[str, ...] = ()
    metric_id: int | str | None = None


@dataclass(frozen=True)
class ExpectedOutcomeResult:
    score: float | None = None
    explanation: tuple[str, ...] = ()


_NO_OUTCOME = ExpectedOutcomeResult()
_DURATION = re.compile(r"\d+(:\d{1,2}){1,2}(\.\d+)?")


def parse_duration(value: str | None) -> float | None:
    """Cekura's ``"MM:SS"`` (or ``"H:MM:SS"``) as seconds; anything else is None."""
    if not isinstance(value, str) or not _DURATION.fullmatch(value.strip()):
        return None
    seconds = 0.0
    for part in value.strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


@dataclass(frozen=True)
class CekuraRun:
    """One Cekura run as the plugin saw it at the end: the public, immutable view. Plain
    data: reading it never fetches anything.

    ``verdict`` is the verdict of this run alone. A run that never started (the start
    request was refused, a variable was missing) has ``run_id`` None and status
    ``not_started``. ``transcript`` and ``recording_url`` are None until the plugin fills
    them in (they come from a separate request). ``raw`` is the run as Cekura sent it.
    """

    scenario_id: int
    status: str
    success: bool | None = None
    run_id: int | None = None
    result_id: int | None = None
    scenario_name: str = ""
    error_message: str = ""
    expected_outcome: ExpectedOutcomeResult = _NO_OUTCOME
    metrics: tuple[MetricResult, ...] = ()
    duration: float | None = None
    dashboard_url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty, repr=False)
    # Transcripts and signed recording links may echo secrets: kept out of repr.
    transcript: str | None = field(default=None, repr=False)
    recording_url: str | None = field(default=None, repr=False)
    # The conversation, ``transcript_object`` as JSON text (from ``runs/bulk``): read
    # through ``turns``.
    conversation: str | None = field(default=None, repr=False)
    is_reviewed: bool = False
    evaluation_status: str = ""
    rubric: tuple[RubricResult, ...] = ()
    mocked_tool_names: tuple[str, ...] | None = None
    trace_id: str | None = None
    # Cekura's own account of a run that did not pass: its result's ``ai_summary`` and the
    # ``failed_reasons`` that name the run (empty when Cekura wrote none in time).
    ai_summary: str = ""
    failed_reasons: tuple[str, ...] = ()
    # How its start request was recovered after its answer was lost ("recovered after
    # ..."); "" when Cekura answered it.
    recovered: str = ""
    # The version of the agent the run called, as Cekura's run (or its result) says.
    agent_version: str | None = None

    def released(self) -> CekuraRun:
        """What is kept of this run once its test is over: its ids, status, error message
        and other scalars (what deciding on a rerun reads), without the snapshot,
        transcript, outcome, metrics and rubric. Thousands of finished runs held to the end
        with their metrics would sit in every garbage collection left."""
        # One released copy per run, whoever asks (the board and the verdict both do): not
        # a field, so equality, repr and replace() never see it.
        kept: CekuraRun | None = self.__dict__.get("_released")
        if kept is None:
            if self._bare():
                return self
            kept = replace(
                self,
                raw=_EMPTY,
                transcript=None,
                conversation=None,
                expected_outcome=_NO_OUTCOME,
                metrics=(),
                rubric=(),
                mocked_tool_names=None,
            )
            object.__setattr__(self, "_released", kept)
        return kept

    def _bare(self) -> bool:
        return (
            not self.raw
            and self.transcript is None
            and self.conversation is None
            and self.expected_outcome == _NO_OUTCOME
            and not self.metrics
            and not self.rubric
            and self.mocked_tool_names is None
        )

    def turns_or_none(self) -> tuple[Turn, ...] | None:
        """The conversation's turns, None when Cekura sent no ``transcript_object``."""
        data: Any = None
        if self.conversation is not None:
            try:
                data = json.loads(self.conversation)
            except ValueError:
                data = None
        elif self.raw:
            data = self.raw.get("transcript_object")
        return parse_turns(data)

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The conversation, turn by turn (role, text, times, tool calls). Raises
        ``NoConversation`` (a ``CekuraError`` naming the run) when Cekura sent none."""
        return conversation_of(self)

    @property
    def reviewed(self) -> bool:
        """A human gave the verdict on the Cekura dashboard; it decides over ``success``.
        ``evaluation_status`` ``reviewed_*`` is the review itself (it exists only once
        reviewed), so it counts even where ``is_reviewed`` is missing."""
        return self.status == "completed" and self.evaluation_status in (
            _REVIEWED_SUCCESS,
            _REVIEWED_FAILURE,
        )

    @property
    def never_connected(self) -> bool:
        """Completed and unsuccessful with an ``error_message`` and no evaluation evidence
        at all: the call never happened, so nothing was evaluated (an error, not a fail)."""
        return (
            self.status == "completed"
            and self.success is False
            and not self.reviewed
            and bool(self.error_message)
            and self.expected_outcome.score is None
            and not any(metric.passed is False for metric in self.metrics)
            and not any(rule.passed is False for rule in self.rubric)
        )

    @property
    def verdict(self) -> Outcome:
        if self.status != "completed":
            return "error"
        if self.reviewed:
            return "passed" if self.evaluation_status == _REVIEWED_SUCCESS else "failed"
        if self.success is True:
            return "passed"
        if self.success is False:
            return "error" if self.never_connected else "failed"
        return "error"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    @property
    def error_reason(self) -> str | None:
        """The ``error_message`` of an errored run (what a circuit breaker counts), or None."""
        return self.error_message if self.verdict == "error" and self.error_message else None

    @classmethod
    def from_api(
        cls,
        run: Run,
        result_id: int,
        raw: Mapping[str, Any],
        dashboard_url: str | None,
        *,
        scenario_id: int = 0,
        agent_version: str | None = None,
    ) -> CekuraRun:
        """The run as read from a result; ``scenario_id``: the scenario to name when the
        run does not say; ``agent_version``: the result's, when the run does not say."""
        return cls(
            scenario_id=run.scenario or scenario_id,
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
                MetricResult(
                    name=m.name,
                    passed=m.passed,
                    explanation=tuple(m.explanation),
                    type=m.kind,
                    score=m.score,
                    value=m.value,
                    enum=m.enum,
                    extra=MappingProxyType(m.extra) if m.extra else _EMPTY,
                    id=m.id,
                )
                for m in run.evaluation.metrics
            ),
            duration=parse_duration(run.duration),
            dashboard_url=dashboard_url,
            raw=Snapshot(raw),
            transcript=run.transcript,
            recording_url=run.voice_recording_url,
            is_reviewed=run.is_reviewed,
            evaluation_status=run.evaluation_status,
            rubric=tuple(
                RubricResult(
                    metric_name=r.metric_name,
                    passed=r.passed,
                    value=r.value,
                    conditions=r.conditions,
                    explanation=tuple(r.explanation),
                    metric_id=r.metric_id,
                )
                for r in run.rubric
            ),
            mocked_tool_names=(
                None if run.mocked_tool_names is None else tuple(run.mocked_tool_names)
            ),
            trace_id=run.trace_id,
            agent_version=run.agent_version or agent_version,
        )


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES

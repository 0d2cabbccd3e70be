"""What a run and a case mean, in pytest's terms. Pure functions over public models."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from ._case import Case
from ._models import TERMINAL_STATUSES, Run, Snapshot, short_text
from ._text import visible
from ._thresholds import SCORE, Threshold

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
            and self.expected_outcome == _NO_OUTCOME
            and not self.metrics
            and not self.rubric
            and self.mocked_tool_names is None
        )

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
    ) -> CekuraRun:
        """The run as read from a result; ``scenario_id``: the scenario to name when the
        run does not say."""
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
        )


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def _show(value: Any) -> str:
    """A measured value, short: 2100.0 as 2100, containers bounded."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        text = str(value)
        return text if len(text) <= 80 else text[:79] + "…"
    return short_text(value)


def _explained(head: str, explanation: Sequence[str]) -> str:
    text = " ".join(part.strip() for part in explanation if part.strip())
    if len(text) > _MAX_EXPLANATION:
        text = text[: _MAX_EXPLANATION - 1] + "…"
    return head + (f": {text}" if text else "")


def _metric_reason(metric: MetricResult) -> str:
    name = visible(metric.name, one_line=True) or (
        f"#{metric.id}" if metric.id is not None else "(unnamed)"
    )
    head = f"metric '{name}' did not pass"
    if not metric.type.startswith("binary"):  # a number or a choice says more than "failed"
        if metric.score is not None:
            head += f" with score {_show(metric.score)}"
        elif metric.value is not None:
            head += f" with value {_show(metric.value)}"
    return _explained(head, metric.explanation)


def _rubric_reason(rule: RubricResult) -> str:
    name = visible(rule.metric_name, one_line=True) or (
        f"#{rule.metric_id}" if rule.metric_id is not None else ""
    )
    head = f"rubric rule '{name}'" if name else "a rubric rule"
    if rule.conditions:
        head += f" ({rule.conditions})"
    head += " did not hold"
    if rule.value is not None:
        head += f" with value {_show(rule.value)}"
    return _explained(head, rule.explanation)


def _evaluation_reasons(run: CekuraRun) -> list[str]:
    """Every piece of evaluation evidence against the run: outcome, metrics, rubric."""
    reasons: list[str] = []
    outcome = run.expected_outcome
    if outcome.score is not None and outcome.score < 100:
        reasons.append(
            _explained(f"expected outcome: score {outcome.score:g}/100", outcome.explanation)
        )
    reasons.extend(_metric_reason(m) for m in run.metrics if m.passed is False)
    reasons.extend(_rubric_reason(r) for r in run.rubric if r.passed is False)
    return reasons


def review_note(run: CekuraRun) -> str | None:
    """How a human review decided the run, or None when nobody reviewed it."""
    if not run.reviewed:
        return None
    marked = "passed" if run.evaluation_status == _REVIEWED_SUCCESS else "failed"
    return f"reviewed on the Cekura dashboard: marked {marked} by a human"


def cekura_account(run: CekuraRun) -> list[str]:
    """Cekura's own account of a run that did not pass, one line each: the failed reasons
    that name it, then its result's summary."""
    lines = [_explained("Cekura's failed reason", (reason,)) for reason in run.failed_reasons]
    if run.ai_summary:
        lines.append(_explained("Cekura's summary", (run.ai_summary,)))
    return lines


def run_reasons(run: CekuraRun) -> list[str]:
    """Why a run did not pass, one reason a line (empty for a pass). The first reason is
    the most direct one: the review, the failing check, or the error message; Cekura's
    own account (``cekura_account``) comes last."""
    if run.verdict == "passed":
        return []
    return [*_direct_reasons(run), *cekura_account(run)]


def _direct_reasons(run: CekuraRun) -> list[str]:
    if run.verdict == "error":
        if run.error_message:
            return [run.error_message]
        if run.status == "completed":
            return ["the run completed without a verdict (success is null)"]
        return [f"the run ended with status {run.status}"]
    reasons = _evaluation_reasons(run)
    note = review_note(run)
    if note:
        return [note, *reasons]
    outcome = run.expected_outcome
    if not reasons and outcome.score is None and outcome.explanation:
        # An expected outcome sent as a plain string has no score, only its explanation.
        return [_explained("expected outcome", outcome.explanation)]
    return reasons or ["Cekura marked the run unsuccessful without a reason"]


@dataclass(frozen=True)
class ThresholdCheck:
    """A threshold against one run: ``state`` held, broken, or missing (the run does not
    carry the score or metric, or carries no value the threshold can compare)."""

    threshold: Threshold
    state: Literal["held", "broken", "missing"]
    measured: Any = None
    problem: str = ""

    @property
    def reason(self) -> str:
        if self.state == "missing":
            return f"threshold '{self.threshold.text}': {self.problem}"
        return f"threshold '{self.threshold.text}' not met: measured {_show(self.measured)}"

    def to_json(self) -> dict[str, Any]:
        measured = self.measured
        if not (measured is None or isinstance(measured, bool | int | float | str)):
            measured = _show(measured)
        return {
            "threshold": self.threshold.text,
            "state": self.state,
            "measured": measured,
        }


def _find_metric(run: CekuraRun, name: str) -> MetricResult | None:
    exact = next((m for m in run.metrics if m.name == name), None)
    if exact is not None:
        return exact
    folded = name.strip().casefold()
    return next((m for m in run.metrics if m.name.strip().casefold() == folded), None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check_threshold(threshold: Threshold, run: CekuraRun) -> ThresholdCheck:
    """Does ``run`` meet ``threshold``? Fail-closed: what the run does not carry is missing."""
    if threshold.key == SCORE:
        score = run.expected_outcome.score
        if score is None:
            return ThresholdCheck(
                threshold, "missing", problem="the run has no expected-outcome score"
            )
        held = threshold.holds_number(score)
        return ThresholdCheck(threshold, "held" if held else "broken", score)
    metric = _find_metric(run, threshold.key)
    if metric is None:
        return ThresholdCheck(
            threshold, "missing", problem=f"the run has no metric '{threshold.key}'"
        )
    if threshold.op == "pass":
        if metric.passed is None:
            return ThresholdCheck(
                threshold, "missing", problem=f"metric '{metric.name}' has no pass/fail"
            )
        return ThresholdCheck(
            threshold, "held" if metric.passed else "broken", "pass" if metric.passed else "fail"
        )
    if threshold.op == "in":
        label = next((v for v in (metric.enum, metric.value, metric.score) if v is not None), None)
        if label is None or isinstance(label, dict | list):
            return ThresholdCheck(
                threshold, "missing", problem=f"metric '{metric.name}' has no value"
            )
        return ThresholdCheck(
            threshold, "held" if threshold.holds_choice(label) else "broken", label
        )
    number = metric.score if metric.score is not None else _number(metric.value)
    if number is None:
        return ThresholdCheck(
            threshold, "missing", problem=f"metric '{metric.name}' has no numeric value"
        )
    return ThresholdCheck(threshold, "held" if threshold.holds_number(number) else "broken", number)


def evaluated_nothing(run: CekuraRun) -> bool:
    """Completed, successful, not reviewed, and no score, metric or rubric rule at all."""
    return (
        run.status == "completed"
        and run.success is True
        and not run.reviewed
        and run.expected_outcome.score is None
        and not run.metrics
        and not run.rubric
    )


@dataclass(frozen=True)
class RunJudgement:
    """A run under the case's gate: Cekura's verdict, then the thresholds and the rule that
    a run nothing evaluated is not a pass."""

    outcome: Outcome
    reasons: tuple[str, ...]
    checks: tuple[ThresholdCheck, ...] = ()


def judge_run(case: Case, run: CekuraRun) -> RunJudgement:
    verdict = run.verdict
    reasons = run_reasons(run)
    if verdict == "error":
        return RunJudgement("error", tuple(reasons))
    checks = tuple(check_threshold(t, run) for t in case.thresholds)
    missing = [c.reason for c in checks if c.state == "missing"]
    broken = [c.reason for c in checks if c.state == "broken"]
    if verdict == "failed":
        account = cekura_account(run)  # Cekura's own words close the list
        direct = reasons[: len(reasons) - len(account)]
        return RunJudgement("failed", (*direct, *broken, *missing, *account), checks)
    if evaluated_nothing(run) and not case.allow_unevaluated:
        nothing = (
            "Cekura evaluated nothing for this run (attach an expected outcome or metrics to "
            f"scenario {case.scenario}, or set allow_unevaluated = true)"
        )
        return RunJudgement("error", (nothing, *missing), checks)
    if missing:
        return RunJudgement("error", tuple(missing + broken), checks)
    if broken:
        return RunJudgement("failed", tuple(broken), checks)
    return RunJudgement("passed", (), checks)


@dataclass(frozen=True)
class CaseVerdict:
    outcome: Outcome
    message: str
    first_reason: str
    runs: tuple[CekuraRun, ...]
    judged: tuple[RunJudgement, ...] = ()  # per run, in order; empty: Cekura's verdicts

    def released(self) -> CaseVerdict:
        """The verdict as kept once its test is over: its outcome, message and runs as
        ``CekuraRun.released`` keeps them, without the per-run judgements (read only for
        the case's record, made before)."""
        return replace(self, runs=tuple(run.released() for run in self.runs), judged=())

    @property
    def duration(self) -> float | None:
        """Seconds the evaluation took: its run's duration, the longest one with repeats
        (they run side by side); None when no run reported one."""
        known = [run.duration for run in self.runs if run.duration is not None]
        return max(known) if known else None


def _run_id(run: CekuraRun) -> str:
    if run.run_id is None:
        return "run (not started)"
    where = f"run {run.run_id}"
    return where + (f", result {run.result_id}" if run.result_id is not None else "")


HEADLINE_LIMIT = 200  # characters of the reason on a failure's first line


def _headline(reasons: Sequence[str], override: bool | None) -> tuple[str, list[str]]:
    """A failure's first line, the reason itself and short (pytest's short summary, JUnit's
    ``message``, an annotation show just that line), and the reasons for the lines after
    it: all but the first, or all of them when the first had to be cut."""
    if not reasons:
        hook = "a pytest_cekura_verdict hook failed the case"
        return (hook if override is False else "no reason given"), []
    lines = reasons[0].splitlines() or [""]
    first = lines[0].strip()
    if len(first) > HEADLINE_LIMIT:
        return first[: HEADLINE_LIMIT - 1] + "…", list(reasons)
    if len(lines) > 1:
        return first, ["\n    ".join(line.rstrip() for line in lines[1:]), *reasons[1:]]
    return first, list(reasons[1:])


def adaptive_need(case: Case, runs: Sequence[CekuraRun]) -> int:
    """How many more runs an adaptive case fires after ``runs``: one per run short of
    ``min_passes`` while ``min_passes`` can still be reached within ``repeat``, else 0. The
    verdict over the runs fired is then what all ``repeat`` runs would give."""
    if not case.adaptive:
        return 0
    passes = sum(judge_run(case, run).outcome == "passed" for run in runs)
    need = case.min_passes - passes
    if need <= 0 or need > case.repeat - len(runs):
        return 0
    if any(run.run_id is None or run.error_message.startswith("circuit breaker") for run in runs):
        return 0  # a start of unknown fate or a tripped breaker: never fire again
    return need


def decide(case: Case, runs: Sequence[CekuraRun], override: bool | None = None) -> CaseVerdict:
    """The case's verdict from its runs. ``override`` comes from ``pytest_cekura_verdict``.
    A run counts as passed when Cekura passed it and it meets every threshold of the case
    (``judge_run``)."""
    judged = [judge_run(case, run) for run in runs]
    passes = sum(j.outcome == "passed" for j in judged)
    errors = sum(j.outcome == "error" for j in judged)
    outcome: Outcome
    if override is not None:
        outcome = "passed" if override else "failed"
    elif passes >= case.min_passes:
        outcome = "passed"
    elif passes + errors >= case.min_passes:
        outcome = "error"  # the errored runs leave the case undecided
    else:
        outcome = "failed"
    name = visible(next((r.scenario_name for r in runs if r.scenario_name), ""), one_line=True)
    title = f"scenario {case.scenario}" + (f" '{name}'" if name else "")
    first = next((j.reasons[0] for j in judged if j.reasons), "")
    links = sorted({r.dashboard_url for r in runs if r.dashboard_url})
    lines: list[str]
    if len(runs) == 1:
        run, judgement = runs[0], judged[0]
        reasons = list(judgement.reasons)
        if outcome == "passed":
            head = f"{title} passed"
        elif outcome == "failed":
            head = f"{title} failed its evaluation"
        else:
            head = f"{title} errored"
        if judgement.outcome == "passed" and (note := review_note(run)):
            # Say what the human overruled, if Cekura's own evaluation had found anything.
            reasons = [note, *(f"overruled: {r}" for r in _evaluation_reasons(run))]
        if outcome == "passed":
            if reasons:
                head += f": {reasons[0]}"
            lines = [head, *(f"  {r}" for r in reasons[1:]), f"  {_run_id(run)}"]
        else:
            headline, rest = _headline(reasons, override)
            lines = [headline, f"  {head}", *(f"  {r}" for r in rest), f"  {_run_id(run)}"]
    else:
        count = f"{title}: {passes} of {len(runs)} runs passed, {case.min_passes} required"
        if outcome == "passed":
            lines = [count]
        else:
            lines = [_headline([first] if first else [], override)[0], f"  {count}"]
        for run, judgement in zip(runs, judged, strict=True):
            reasons = list(judgement.reasons)
            if judgement.outcome == "passed" and (note := review_note(run)):
                reasons = [note]
            lines.append(
                f"  {_run_id(run)}: {judgement.outcome}"
                + (f": {'; '.join(reasons)}" if reasons else "")
            )
    if case.adaptive:
        saved = max(case.repeat - len(runs), 0)
        lines.append(f"  adaptive: {len(runs)} of {case.repeat} runs fired, {saved} saved")
    if override is not None:
        lines.append(f"  verdict overridden by a pytest_cekura_verdict hook: {outcome}")
    lines.extend(f"  {why}" for why in dict.fromkeys(r.recovered for r in runs if r.recovered))
    lines.extend(f"  dashboard: {link}" for link in links)
    return CaseVerdict(outcome, "\n".join(lines), first, tuple(runs), tuple(judged))

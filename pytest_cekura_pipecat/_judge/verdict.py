"""What a run and a case mean, in pytest's terms. Pure functions over public models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._api.models import short_text
from .._api.run import (
    _REVIEWED_SUCCESS,
    CekuraRun,
    MetricResult,
    Outcome,
    RubricResult,
)
from .._config.case import Case
from .._config.thresholds import SCORE, Threshold
from .._text import visible

_MAX_EXPLANATION = 300  # characters of an explanation in one reason line


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
    checks = tuple(check_threshold(t, run) for t in case.thresholds if not t.pooled)
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
    outcome = _case_outcome(case, judged, override)
    name = visible(next((r.scenario_name for r in runs if r.scenario_name), ""), one_line=True)
    title = f"scenario {case.scenario}" + (f" '{name}'" if name else "")
    first = next((j.reasons[0] for j in judged if j.reasons), "")
    if len(runs) == 1:
        lines = _one_run_lines(title, outcome, runs[0], judged[0], override)
    else:
        count = f"{title}: {passes} of {len(runs)} runs passed, {case.min_passes} required"
        lines = _runs_lines(count, outcome, runs, judged, first, override)
    lines += _notes(case, runs, outcome, override)
    return CaseVerdict(outcome, "\n".join(lines), first, tuple(runs), tuple(judged))


def _case_outcome(case: Case, judged: Sequence[RunJudgement], override: bool | None) -> Outcome:
    """Passed with ``min_passes`` passed runs; an error when the errored runs leave the case
    undecided; else failed. A verdict hook's ``override`` wins."""
    if override is not None:
        return "passed" if override else "failed"
    passes = sum(j.outcome == "passed" for j in judged)
    unknown = max(0, case.repeat - len(judged))  # runs never judged leave the case undecided
    errors = sum(j.outcome == "error" for j in judged) + unknown
    if passes >= case.min_passes:
        return "passed"
    if passes + errors >= case.min_passes:
        return "error"
    return "failed"


def _one_run_lines(
    title: str, outcome: Outcome, run: CekuraRun, judgement: RunJudgement, override: bool | None
) -> list[str]:
    """A case of one run: its reasons in full, the run's id last."""
    reasons = list(judgement.reasons)
    if judgement.outcome == "passed" and (note := review_note(run)):
        # Say what the human overruled, if Cekura's own evaluation had found anything.
        reasons = [note, *(f"overruled: {r}" for r in _evaluation_reasons(run))]
    if outcome == "passed":
        head = f"{title} passed" + (f": {reasons[0]}" if reasons else "")
        return [head, *(f"  {r}" for r in reasons[1:]), f"  {_run_id(run)}"]
    head = f"{title} failed its evaluation" if outcome == "failed" else f"{title} errored"
    headline, rest = _headline(reasons, override)
    return [headline, f"  {head}", *(f"  {r}" for r in rest), f"  {_run_id(run)}"]


def _runs_lines(
    count: str,
    outcome: Outcome,
    runs: Sequence[CekuraRun],
    judged: Sequence[RunJudgement],
    first: str,
    override: bool | None,
) -> list[str]:
    """A case of several runs: the count, then one line per run."""
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
    return lines


def _notes(
    case: Case, runs: Sequence[CekuraRun], outcome: Outcome, override: bool | None
) -> list[str]:
    """The lines under every verdict: runs saved, an override, recoveries, dashboards."""
    lines = []
    if case.adaptive:
        saved = max(case.repeat - len(runs), 0)
        lines.append(f"  adaptive: {len(runs)} of {case.repeat} runs fired, {saved} saved")
    if override is not None:
        lines.append(f"  verdict overridden by a pytest_cekura_verdict hook: {outcome}")
    lines.extend(f"  {why}" for why in dict.fromkeys(r.recovered for r in runs if r.recovered))
    lines.extend(
        f"  dashboard: {link}"
        for link in sorted({r.dashboard_url for r in runs if r.dashboard_url})
    )
    return lines

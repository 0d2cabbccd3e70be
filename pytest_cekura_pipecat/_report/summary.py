"""The final outcome of each case, the counts, and the terminal table: the session's
``Summary`` gathers the records pytest's reports carry; ``Totals`` counts them once for
every output."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from .._fire.credits import credits
from .._judge.gating import REPORT_SCHEMA_VERSION
from .._text import visible
from .record import CaseRecord, ComparisonRecord

if TYPE_CHECKING:
    import pytest

    from .._fire.credits import Forecast

SCHEMA_VERSION = REPORT_SCHEMA_VERSION
VERDICTS = ("passed", "failed", "error")
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
BAD = ("failed", "error")  # outcomes that fail the session
_ORDER = {"failed": 0, "error": 1, "xpassed": 2, "passed": 3, "xfailed": 4, "skipped": 5}
_LABEL = {
    "passed": "PASSED",
    "failed": "FAILED",
    "error": "ERROR",
    "skipped": "SKIPPED",
    "xfailed": "XFAIL",
    "xpassed": "XPASS",
}
BASELINE_KINDS = ("new", "known", "fixed", "evaluator_changed")
COMPARISONS = ("regression", "no change", "inconclusive")  # a pass rate against the baseline


def baseline_class(case: CaseRecord) -> str | None:
    """The case's class against the baseline (new, known, fixed, evaluator_changed); None
    for a case judged on its pass rate instead (``comparison``), or not gated."""
    return None if case.comparison is not None else case.baseline


def _phase_outcome(report: pytest.TestReport) -> str | None:
    """What one phase report says about the test, in pytest's own terms (None: nothing)."""
    if report.outcome not in ("passed", "failed", "skipped"):
        return None  # e.g. pytest-rerunfailures' "rerun": a later attempt decides
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpassed" if xfail else "passed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "failed"
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


def _failure_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    text = message if isinstance(message, str) else report.longreprtext
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


@dataclass(frozen=True)
class Totals:
    """Counts over the final records, computed here only: pytest's outcomes (they equal
    pytest's own for these tests), the runs fired, the evaluations' verdicts, the pass rate
    over the cases not skipped, and the gate (baseline classes, quarantines)."""

    records: tuple[CaseRecord, ...]

    @property
    def cases(self) -> int:
        return len(self.records)

    @cached_property
    def runs(self) -> int:
        return sum(c.runs_fired for c in self.records)

    @cached_property
    def outcomes(self) -> dict[str, int]:
        return {k: sum(c.outcome == k for c in self.records) for k in OUTCOMES}

    @property
    def passed(self) -> int:
        return self.outcomes["passed"]

    @property
    def failed(self) -> int:
        return self.outcomes["failed"]

    @property
    def error(self) -> int:
        return self.outcomes["error"]

    @property
    def blocking(self) -> int:
        """Cases that fail the session."""
        return self.failed + self.error

    @property
    def excused(self) -> int:
        """Cases reported as pytest's xfail (quarantined, known failures, marked xfail)."""
        return self.outcomes["xfailed"]

    @property
    def pass_rate(self) -> float | None:
        ran = self.cases - self.outcomes["skipped"]
        return round(100 * self.passed / ran, 1) if ran else None

    @cached_property
    def verdicts(self) -> dict[str, int]:
        return {k: sum(c.verdict == k for c in self.records) for k in VERDICTS}

    @cached_property
    def baseline(self) -> dict[str, int]:
        return {k: sum(baseline_class(c) == k for c in self.records) for k in BASELINE_KINDS}

    @property
    def compared(self) -> dict[str, int]:
        """Cases judged on their pass rate against the baseline, by verdict ("no change" is
        ``no_change``); empty when none was."""
        verdicts = [c.comparison.verdict for c in self.records if c.comparison is not None]
        if not verdicts:
            return {}
        return {v.replace(" ", "_"): verdicts.count(v) for v in COMPARISONS}

    @property
    def quarantined(self) -> int:
        return sum(c.quarantine is not None for c in self.records)

    @property
    def flaky(self) -> int:
        """Failing cases a confirmation run passed (confirm = N): they do not block."""
        return sum(c.confirm is not None and c.confirm.verdict == "flaky" for c in self.records)

    @property
    def gated(self) -> bool:
        """Some case was gated by a baseline, a quarantine or confirmation runs."""
        return any(
            c.baseline is not None or c.quarantine is not None or c.confirm is not None
            for c in self.records
        )

    @property
    def text(self) -> str:
        """'2 passed, 1 failed, 1 error' plus the other outcomes that occurred."""
        parts = [f"{self.passed} passed", f"{self.failed} failed", f"{self.error} error"]
        parts += [
            f"{self.outcomes[k]} {k}" for k in ("skipped", "xfailed", "xpassed") if self.outcomes[k]
        ]
        return ", ".join(parts)

    @cached_property
    def credits(self) -> float | None:
        """What every case's runs cost, estimated (None: no case knows)."""
        known = [c.credits for c in self.records if c.credits is not None]
        return round(sum(known), 2) if known else None

    @property
    def credits_text(self) -> str:
        """' · about 12.5 credits (estimate)', or '' when no case knows."""
        if self.credits is None:
            return ""
        return f" · about {credits(self.credits)} credits (estimate)"

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "cases": self.cases,
            "runs": self.runs,
            **self.outcomes,
            "pass_rate": self.pass_rate,
            "verdicts": dict(self.verdicts),
        }
        if self.credits is not None:
            data["credits"] = self.credits
        return data

    def gate_json(self) -> dict[str, int] | None:
        """The report's ``gate``, or None when no case was gated."""
        if not self.gated:
            return None
        flaky = {"flaky": self.flaky} if any(c.confirm for c in self.records) else {}
        return {**self.baseline, "quarantined": self.quarantined, **flaky, **self.compared}


@dataclass
class Summary:
    """Records by node id, each test's final pytest outcome, and the session's notes."""

    records: dict[str, CaseRecord] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    forecast: Forecast | None = None  # the spend pre-flight's (the report's ``spend``)
    # Runs fired per case over every attempt (reruns too): a run id, or the attempt and
    # place of a run whose start was sent but whose id is unknown.
    fired: dict[str, set[int | str]] = field(default_factory=dict)
    _cases: tuple[CaseRecord, ...] | None = field(default=None, init=False, repr=False)

    def add(self, report: pytest.TestReport) -> None:
        """A phase report: its record (the ``cekura`` attribute, plain builtins so that it
        survives ``-n``), and what it says of the test's outcome."""
        self._cases = None
        data = getattr(report, "cekura", None)
        if isinstance(data, dict) and "nodeid" in data:
            record = CaseRecord.from_json(data)
            self.note(*record.notes)
            record = replace(record, notes=())
            self.records[record.nodeid] = record
            self._count_fired(record)
        if report.nodeid in self.records:
            self._track(report)

    def _count_fired(self, record: CaseRecord) -> None:
        """A record per attempt: a rerun that fired adds its runs; one that did not (the
        old verdict stands) brings the same run ids again and adds nothing."""
        fired = self.fired.setdefault(record.nodeid, set())
        for place, run in enumerate(record.runs):
            if run.run_id is not None:
                fired.add(run.run_id)
            elif run.status != "not_started":
                fired.add(f"{record.rerun}:{place}")

    def _track(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if report.when == "setup":  # a new attempt (pytest-rerunfailures) starts afresh
            self.outcomes.pop(nodeid, None)
            self.failures.pop(nodeid, None)
        outcome = _phase_outcome(report)
        if outcome is None:
            return
        if report.when == "teardown" and self.outcomes.get(nodeid) in BAD:
            return  # the first failure stands
        self.outcomes[nodeid] = outcome
        if outcome in BAD:
            self.failures[nodeid] = _failure_line(report)

    def note(self, *notes: str) -> None:
        """Notes from this process and from xdist workers (they ride on records), once each."""
        self.notes.extend(n for n in notes if n not in self.notes)

    def cases(self) -> tuple[CaseRecord, ...]:
        """Every case's final record, by node id (built once per change: the terminal
        table and the outputs read the same records)."""
        if self._cases is None:
            self._cases = tuple(
                replace(
                    r,
                    outcome=self.outcomes.get(r.nodeid),
                    failure=self.failures.get(r.nodeid, ""),
                    fired=len(self.fired.get(r.nodeid, ())),
                )
                for r in sorted(self.records.values(), key=lambda r: r.nodeid)
            )
        return self._cases

    def lines(self, width: int | None = None, every: bool = False) -> list[str]:
        return terminal_lines(self.cases(), self.notes, width, every)


# -- shared helpers ------------------------------------------------------------------------


def display_reason(case: CaseRecord) -> str:
    """Why the case is what it is: the evaluation's reason when the evaluation did not pass,
    else pytest's own failure (a body assertion), else the evaluation's note, if any."""
    if case.verdict in BAD and case.reason:
        return case.reason
    return case.failure or case.reason or ""


def cekura_summary(case: CaseRecord) -> str:
    """Cekura's own account of the case's runs that did not pass: the failed reasons that
    name them and their results' summaries, each once ("" when Cekura wrote none)."""
    parts: list[str] = []
    for run in case.runs:
        if run.verdict == "passed":
            continue
        for text in [*run.failed_reasons, run.ai_summary]:
            if text and text not in parts:
                parts.append(text)
    return " ".join(parts)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def failed_metrics(case: CaseRecord) -> list[str]:
    names: list[str] = []
    for run in case.runs:
        for metric in run.failed_metrics:
            if metric.name not in names:
                names.append(metric.name)
    return names


def sort_key(case: CaseRecord) -> tuple[int, str]:
    return (_ORDER.get(case.outcome or "", 9), case.nodeid)


# -- terminal ------------------------------------------------------------------------------


def label(case: CaseRecord) -> str:
    text = _LABEL.get(case.outcome, "UNKNOWN") if case.outcome else "UNKNOWN"
    return text + (f" (rerun {case.rerun})" if case.rerun else "")


def scenario_text(case: CaseRecord) -> str:
    """The scenario's id and name, on one line."""
    name = visible(case.scenario_name, one_line=True)
    return f"{case.scenario} {name}" if name else str(case.scenario)


PASSED_ROWS = 50  # passed cases listed one per row up to this many (-v: always)


@dataclass(frozen=True)
class _Widths:
    label: int
    name: int
    scenario: int


def terminal_lines(
    cases: Sequence[CaseRecord], notes: Sequence[str], width: int | None, every: bool = False
) -> list[str]:
    """The table: failures first; pytest's outcome, case, scenario, the evaluation's verdict,
    runs passed/total, lowest expected-outcome score, duration, the reason's first line (cut
    to the width), dashboard link. Every case that did not pass has its row; passed cases
    have theirs when there are at most ``PASSED_ROWS`` of them, or ``every`` (``-v``)."""
    width = width or shutil.get_terminal_size((120, 20)).columns
    everything = sorted(cases, key=sort_key)
    totals = Totals(tuple(everything))
    unlisted = 0 if every or totals.passed <= PASSED_ROWS else totals.passed
    rows = [c for c in everything if c.outcome != "passed"] if unlisted else everything
    widths = _Widths(
        label=max((len(label(r)) for r in rows), default=6),
        name=min(max((len(r.name) for r in rows), default=4), 32),  # the user's names
        scenario=min(max((len(scenario_text(r)) for r in rows), default=8), 36),
    )
    out: list[str] = []
    if rows:  # no header over no row (every case passed, and they are not listed)
        out.append(
            f"{'':<{widths.label}} {'case':<{widths.name}}  {'scenario':<{widths.scenario}}  "
            f"{'eval':<6}  {'runs':>5}  {'score':>5}  {'time':>5}  first reason"
        )
    for r in rows:
        out.extend(_row_lines(r, widths, width))
    if unlisted:
        out.append(f"{unlisted:,} passed case(s) not listed, one row each with -v")
    rate = f" · pass rate {totals.pass_rate:.0f}%" if totals.pass_rate is not None else ""
    spent = totals.credits_text
    out.append(f"{totals.cases} case(s), {totals.runs} run(s): {totals.text}{rate}{spent}")
    out.extend(gate_lines(everything))
    out.extend(notes)
    return out


def _row_lines(r: CaseRecord, widths: _Widths, width: int) -> list[str]:
    """A case's row, its reason on the next line when the row leaves too little room, and
    the dashboard link of a case that did not pass."""
    scores = [d.score for d in r.runs if d.score is not None]
    passed = f"{sum(d.verdict == 'passed' for d in r.runs)}/{len(r.runs)}"
    score = f"{min(scores):g}" if scores else "-"
    duration = "-" if r.duration is None else f"{r.duration:.0f}s"
    head = (
        f"{label(r):<{widths.label}} {r.name[: widths.name]:<{widths.name}}  "
        f"{scenario_text(r)[: widths.scenario]:<{widths.scenario}}  {r.verdict or '-':<6}  "
        f"{passed:>5}  {score:>5}  {duration:>5}"
    )
    out: list[str] = []
    reason = visible(first_line(display_reason(r)), one_line=True)
    room = width - len(head) - 2
    if reason and room >= 40:
        head += "  " + (reason if len(reason) <= room else reason[: room - 1] + "…")
    elif reason:
        out.append(head)
        head = "       " + (reason if len(reason) <= width - 8 else reason[: width - 9] + "…")
    out.append(head)
    if r.dashboard_url and r.outcome != "passed":
        out.append(f"       {r.dashboard_url}")
    return out


def gate_lines(cases: Sequence[CaseRecord]) -> list[str]:
    """Terminal lines under the table: new / known / fixed (and failures under a changed
    evaluator, apart), and the quarantined cases."""
    lines: list[str] = []
    if any(c.baseline for c in cases):
        groups = {k: [c.name for c in cases if baseline_class(c) == k] for k in BASELINE_KINDS}
        lines.append(
            "baseline: "
            + ", ".join(
                f"{len(names)} {kind}" + (f" ({', '.join(names)})" if names else "")
                for kind, names in (
                    ("new failure(s)", groups["new"]),
                    ("known failure(s)", groups["known"]),
                    ("fixed", groups["fixed"]),
                )
            )
        )
        changed = [c for c in cases if baseline_class(c) == "evaluator_changed"]
        if changed:
            lines.append(
                f"baseline: {len(changed)} failure(s) under a changed evaluator (scenario "
                "version or metric definitions not those of the baseline, where they passed): "
                + ", ".join(f"{c.name} ({c.outcome or 'unknown'})" for c in changed)
            )
    for c in cases:
        q = c.quarantine
        if q is None:
            continue
        state = "active" if q.active else "EXPIRED"
        owner = f", owner {q.owner}" if q.owner else ""
        issue = f" ({q.issue})" if q.issue else ""
        lines.append(
            f"quarantined: {c.name} ({c.outcome or 'unknown'}): until {q.until} "
            f"[{state}]{owner}: {q.reason}{issue}"
        )
    return lines + second_look_lines(cases)


def second_look_lines(cases: Sequence[CaseRecord]) -> list[str]:
    """Lines for the failing cases confirmed or compared: flaky (a confirmation run
    passed: it does not block) and each pass rate compared with the baseline's."""
    lines: list[str] = []
    flaky = [c for c in cases if c.confirm is not None and c.confirm.verdict == "flaky"]
    if flaky:
        lines.append(
            f"flaky on confirmation ({len(flaky)}, not blocking): "
            + ", ".join(
                f"{c.name} ({c.confirm.passed}/{c.confirm.fired})" for c in flaky if c.confirm
            )
        )
    lines.extend(
        f"confirmed failure: {c.name} (0/{c.confirm.fired} confirmation runs passed)"
        for c in cases
        if c.confirm is not None and c.confirm.verdict == "confirmed"
    )
    lines.extend(
        f"pass rate of {c.name}: {describe_comparison(c.comparison)}"
        for c in cases
        if c.comparison is not None
    )
    return lines


def describe_comparison(c: ComparisonRecord) -> str:
    """One line: the comparison's verdict, both counts, the p-value, runs left out."""
    errored = f"; errored, left out: {', '.join(c.errored)}" if c.errored else ""
    return (
        f"{c.verdict}: {c.passed}/{c.runs} against {c.baseline_passed}/{c.baseline_runs} in "
        f"the baseline (Fisher's exact test, one-sided p = {c.p_value:.3g}){errored}"
    )

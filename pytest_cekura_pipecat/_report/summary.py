"""The per-case records pytest reports carry, the final outcome of each case, and the
terminal table: what every other output is rendered from."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._text import visible

if TYPE_CHECKING:
    import pytest

    from .._fire.credits import Forecast
    from .._judge.verdict import CaseVerdict


SCHEMA_VERSION = 2
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

Case = dict[str, Any]  # one entry of the document's "cases" (see report.schema.json)
Document = dict[str, Any]


def record(
    name: str,
    nodeid: str,
    scenario: int,
    verdict: CaseVerdict | None,
    *,
    path: str | None = None,
    line: int | None = None,
    agent: int | None = None,
) -> dict[str, Any]:
    """A case's record. ``verdict`` None: the case was never evaluated (skipped by a mark).
    ``path`` (relative to the rootdir) and ``line`` (1-based) point at the case's
    declaration; left None, they are taken from the test report's location."""
    runs = verdict.runs if verdict is not None else ()
    judged = verdict.judged if verdict is not None and verdict.judged else (None,) * len(runs)
    return {
        "name": name,
        "nodeid": nodeid,
        "path": path,
        "line": line,
        "scenario": scenario,
        "agent": agent,
        "scenario_name": next((r.scenario_name for r in runs if r.scenario_name), ""),
        "verdict": verdict.outcome if verdict is not None else None,
        "reason": verdict.first_reason if verdict is not None else "",
        "run_details": [
            {
                "run_id": r.run_id,
                "result_id": r.result_id,
                "status": r.status,
                "success": r.success,
                "verdict": j.outcome if j is not None else r.verdict,
                "score": r.expected_outcome.score,
                "failed_metrics": [
                    {"name": m.name, "explanation": list(m.explanation)}
                    for m in r.metrics
                    if m.passed is False
                ],
                "error_message": r.error_message,
                "duration": r.duration,
                "dashboard_url": r.dashboard_url,
                **({"thresholds": [c.to_json() for c in j.checks]} if j and j.checks else {}),
                **({"ai_summary": r.ai_summary} if r.ai_summary else {}),
                **({"failed_reasons": list(r.failed_reasons)} if r.failed_reasons else {}),
            }
            for r, j in zip(runs, judged, strict=True)
        ],
    }


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


@dataclass
class Summary:
    """Records by node id, each test's final pytest outcome, and the session's notes."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    forecast: Forecast | None = None  # the spend pre-flight's (the report's ``spend``)
    # Runs fired per case over every attempt (reruns too): a run id, or the attempt and
    # place of a run whose start was sent but whose id is unknown.
    fired: dict[str, set[int | str]] = field(default_factory=dict)
    _cases: list[Case] | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, report: pytest.TestReport) -> None:
        self._cases = None
        data = getattr(report, "cekura", None)
        if isinstance(data, dict) and "nodeid" in data:
            if data.get("path") is None and report.location:
                data["path"] = report.location[0]
                lineno = report.location[1]
                data["line"] = None if lineno is None else lineno + 1
            self.records[data["nodeid"]] = data
            self._count_fired(data)
            self.note(*data.get("notes", []))
        if report.nodeid in self.records:
            self._track(report)

    def _count_fired(self, data: dict[str, Any]) -> None:
        """A record per attempt: a rerun that fired adds its runs; one that did not (the
        old verdict stands) brings the same run ids again and adds nothing."""
        fired = self.fired.setdefault(data["nodeid"], set())
        for place, run in enumerate(data.get("run_details", [])):
            if run.get("run_id") is not None:
                fired.add(run["run_id"])
            elif run.get("status") != "not_started":
                fired.add(f"{data.get('rerun', 0)}:{place}")

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

    def cases(self) -> list[Case]:
        """Every case in the document's shape, by node id (built once per change: the
        terminal table and the outputs read the same list)."""
        if self._cases is None:
            records = sorted(self.records.values(), key=lambda r: r["nodeid"])
            self._cases = [self._case(r) for r in records]
        return self._cases

    def _case(self, r: dict[str, Any]) -> Case:
        details = r.get("run_details", [])
        durations = [d["duration"] for d in details if d.get("duration") is not None]
        case: Case = {
            "name": r["name"],
            "nodeid": r["nodeid"],
            "path": r.get("path"),
            "line": r.get("line"),
            "scenario": r["scenario"],
            "agent": r.get("agent"),
            "scenario_name": r.get("scenario_name", ""),
            "verdict": r.get("verdict"),
            "outcome": self.outcomes.get(r["nodeid"]),
            "reason": r.get("reason", ""),
            "failure": self.failures.get(r["nodeid"], ""),
            "rerun": r.get("rerun", 0),
            "fired": len(self.fired.get(r["nodeid"], ())),
            "duration": max(durations) if durations else None,
            "dashboard_url": next(
                (d["dashboard_url"] for d in details if d.get("dashboard_url")), None
            ),
            "runs": details,
        }
        if "baseline" in r:
            case["baseline"] = r["baseline"]
        if "quarantine" in r:
            case["quarantine"] = r["quarantine"]
        if "adaptive" in r:
            case["adaptive"] = r["adaptive"]
        return case

    def lines(self, width: int | None = None, every: bool = False) -> list[str]:
        return terminal_lines(self.cases(), self.notes, width, every)


# -- shared helpers ------------------------------------------------------------------------


def display_reason(case: Case) -> str:
    """Why the case is what it is: the evaluation's reason when the evaluation did not pass,
    else pytest's own failure (a body assertion), else the evaluation's note, if any."""
    if case.get("verdict") in ("failed", "error") and case.get("reason"):
        return str(case["reason"])
    return str(case.get("failure") or case.get("reason") or "")


def cekura_summary(case: Case) -> str:
    """Cekura's own account of the case's runs that did not pass: the failed reasons that
    name them and their results' summaries, each once ("" when Cekura wrote none)."""
    parts: list[str] = []
    for run in case.get("runs", []):
        if run.get("verdict") == "passed":
            continue
        for text in [*(run.get("failed_reasons") or []), run.get("ai_summary") or ""]:
            if text and text not in parts:
                parts.append(text)
    return " ".join(parts)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def failed_metrics(case: Case) -> list[str]:
    names: list[str] = []
    for run in case.get("runs", []):
        for metric in run.get("failed_metrics") or []:
            if metric["name"] not in names:
                names.append(metric["name"])
    return names


def sort_key(case: Case) -> tuple[int, str]:
    return (_ORDER.get(case.get("outcome") or "", 9), case["nodeid"])


def totals(cases: Sequence[Case]) -> dict[str, Any]:
    """Counts of final pytest outcomes (they equal pytest's for these tests), the runs, the
    evaluations' verdicts, and the pass rate over the cases that were not skipped."""
    counts = {k: sum(c.get("outcome") == k for c in cases) for k in OUTCOMES}
    ran = len(cases) - counts["skipped"]
    return {
        "cases": len(cases),
        "runs": sum(c.get("fired", len(c.get("runs", []))) for c in cases),
        **counts,
        "pass_rate": round(100 * counts["passed"] / ran, 1) if ran else None,
        "verdicts": {k: sum(c.get("verdict") == k for c in cases) for k in VERDICTS},
    }


def counts_text(t: dict[str, Any]) -> str:
    """'2 passed, 1 failed, 1 error' plus the other outcomes that occurred."""
    parts = [f"{t['passed']} passed", f"{t['failed']} failed", f"{t['error']} error"]
    parts += [f"{t[k]} {k}" for k in ("skipped", "xfailed", "xpassed") if t.get(k)]
    return ", ".join(parts)


# -- terminal ------------------------------------------------------------------------------


def label(case: Case) -> str:
    outcome = case.get("outcome")
    label = _LABEL.get(outcome, "UNKNOWN") if outcome else "UNKNOWN"
    return label + (f" (rerun {case['rerun']})" if case.get("rerun") else "")


def scenario_text(case: Case) -> str:
    """The scenario's id and name, on one line."""
    name = visible(str(case.get("scenario_name") or ""), one_line=True)
    return f"{case['scenario']} {name}" if name else str(case["scenario"])


PASSED_ROWS = 50  # passed cases listed one per row up to this many (-v: always)


def terminal_lines(
    cases: Sequence[Case], notes: Sequence[str], width: int | None, every: bool = False
) -> list[str]:
    """The table: failures first; pytest's outcome, case, scenario, the evaluation's verdict,
    runs passed/total, lowest expected-outcome score, duration, the reason's first line (cut
    to the width), dashboard link. Every case that did not pass has its row; passed cases
    have theirs when there are at most ``PASSED_ROWS`` of them, or ``every`` (``-v``)."""
    width = width or shutil.get_terminal_size((120, 20)).columns
    everything = sorted(cases, key=sort_key)
    passed_count = sum(c.get("outcome") == "passed" for c in everything)
    unlisted = 0 if every or passed_count <= PASSED_ROWS else passed_count
    rows = [c for c in everything if c.get("outcome") != "passed"] if unlisted else everything
    name_w = min(max((len(r["name"]) for r in rows), default=4), 32)  # the user's names
    scen_w = min(max((len(scenario_text(r)) for r in rows), default=8), 36)
    label_w = max((len(label(r)) for r in rows), default=6)
    out: list[str] = []
    if rows:  # no header over no row (every case passed, and they are not listed)
        out.append(
            f"{'':<{label_w}} {'case':<{name_w}}  {'scenario':<{scen_w}}  {'eval':<6}  "
            f"{'runs':>5}  {'score':>5}  {'time':>5}  first reason"
        )
    for r in rows:
        runs = r.get("runs", [])
        scores = [d["score"] for d in runs if d.get("score") is not None]
        passed = f"{sum(d.get('verdict') == 'passed' for d in runs)}/{len(runs)}"
        score = f"{min(scores):g}" if scores else "-"
        duration = "-" if r.get("duration") is None else f"{r['duration']:.0f}s"
        head = (
            f"{label(r):<{label_w}} {r['name'][:name_w]:<{name_w}}  "
            f"{scenario_text(r)[:scen_w]:<{scen_w}}  {r.get('verdict') or '-':<6}  "
            f"{passed:>5}  {score:>5}  {duration:>5}"
        )
        reason = visible(first_line(display_reason(r)), one_line=True)
        room = width - len(head) - 2
        if reason and room >= 40:
            head += "  " + (reason if len(reason) <= room else reason[: room - 1] + "…")
        elif reason:
            out.append(head)
            head = "       " + (reason if len(reason) <= width - 8 else reason[: width - 9] + "…")
        out.append(head)
        if r.get("dashboard_url") and r.get("outcome") != "passed":
            out.append(f"       {r['dashboard_url']}")
    if unlisted:
        out.append(f"{unlisted:,} passed case(s) not listed, one row each with -v")
    t = totals(everything)
    rate = f" · pass rate {t['pass_rate']:.0f}%" if t["pass_rate"] is not None else ""
    out.append(f"{t['cases']} case(s), {t['runs']} run(s): {counts_text(t)}{rate}")
    from .._judge.gating import gate_lines

    out.extend(gate_lines(everything))
    out.extend(notes)
    return out

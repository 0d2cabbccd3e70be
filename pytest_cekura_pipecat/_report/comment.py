"""A pull-request comment body (``--cekura-pr-comment=PATH``), rendered from a report. The
first line is a marker a workflow can find to update its comment in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .document import Report
from .markdown import (
    MD_TABLE_HEAD,
    Budget,
    md_case_row,
    md_code,
    md_link,
    md_quarantine_row,
    md_text,
)
from .record import CaseRecord
from .summary import BAD, baseline_class, describe_comparison, sort_key

MARKER = "<!-- pytest-cekura-pipecat -->"
COMMENT_LIMIT = 65536  # GitHub refuses a longer comment body
_LIMIT = COMMENT_LIMIT - 1024  # characters may be more than bytes: stay well under

Section = tuple[str, list[CaseRecord]]


def _provenance_line(provenance: Mapping[str, object]) -> str:
    parts = []
    if provenance.get("commit"):
        parts.append(f"commit {md_code(str(provenance['commit'])[:12])}")
    if provenance.get("branch"):
        parts.append(f"branch {md_code(str(provenance['branch']))}")
    run_url = provenance.get("run_url")
    link = md_link("CI run", run_url if isinstance(run_url, str) else None)
    if link:
        parts.append(link)
    attempt = provenance.get("attempt")
    if isinstance(attempt, int | float) and attempt > 1:
        parts.append(f"attempt {int(attempt)}")
    return " · ".join(parts)


_CLASSED = ("new", "known", "evaluator_changed")  # failures listed by their baseline class


def _sections(cases: Sequence[CaseRecord]) -> list[Section]:
    """The groups the comment lists: failing cases (new / known when the cases carry a
    ``baseline``), fixed cases, and quarantined cases that did not pass."""
    failing = [c for c in cases if c.outcome in BAD]
    excused = [c for c in cases if c.outcome == "xfailed"]
    sections: list[Section] = []
    if any(c.baseline is not None for c in cases):
        kind = baseline_class
        sections += [
            ("New failures", [c for c in failing if kind(c) == "new"]),
            ("Known failures", [c for c in failing + excused if kind(c) == "known"]),
            ("Evaluator changed", [c for c in failing + excused if kind(c) == "evaluator_changed"]),
            ("Failing cases", [c for c in failing if kind(c) not in _CLASSED]),
            ("Fixed", [c for c in cases if kind(c) == "fixed"]),
        ]
    else:
        sections.append(("Failing cases", failing))
    quarantined = [
        c for c in excused if c.quarantine is not None and baseline_class(c) not in _CLASSED
    ]
    sections.append(("Quarantined", quarantined))
    flaky = [c for c in excused if c.confirm is not None and c.confirm.verdict == "flaky"]
    sections.append(("Flaky on confirmation, not blocking", flaky))
    sections.append(("Pass rates against the baseline", [c for c in cases if c.comparison]))
    return sections


def _rows(title: str, group: list[CaseRecord], out: Budget) -> list[str]:
    if title == "Fixed":
        return [f"- {md_code(c.name)} (scenario {c.scenario})" for c in group]
    if title == "Quarantined":
        return [md_quarantine_row(c) for c in group]
    if title.startswith("Pass rates"):
        return [
            f"- {md_code(c.name)}: {md_text(describe_comparison(c.comparison))}"
            for c in group
            if c.comparison is not None
        ]
    if title.startswith("Flaky"):
        return [
            f"- {md_code(c.name)} (scenario {c.scenario}): "
            f"{c.confirm.passed} of {c.confirm.fired} confirmation run(s) passed"
            for c in group
            if c.confirm is not None
        ]
    out.force(*MD_TABLE_HEAD)
    return [md_case_row(c, reason_limit=200) for c in group]


def _head(report: Report, failing: bool, out: Budget) -> None:
    t = report.totals
    icon = "❌" if failing else "✅"
    out.force(MARKER, f"### {icon} Cekura evaluations: {t.text} of {t.cases} case(s)")
    if t.credits is not None:
        out.force("", f"Spend{t.credits_text.removeprefix(' ·')}.")
    if report.simulated:
        out.force("", "**SIMULATED**: verdicts came from the local server, not from Cekura.")
    where = _provenance_line(report.provenance)
    if where:
        out.force("", where)
    out.force("")


def pr_comment(report: Report, limit: int = _LIMIT, history: Sequence[str] = ()) -> str:
    """Markdown: totals, the failing cases with reasons and links (split into new / known
    failures and fixed cases when the cases carry a ``baseline``), quarantined cases that did
    not pass, under ``limit`` bytes; ``history``: the flaky cases' lines."""
    cases = sorted(report.cases, key=sort_key)
    failing = report.totals.blocking > 0
    out = Budget(limit)
    _head(report, failing, out)
    out.force(*history)
    sections = _sections(cases)
    if not failing and not any(title != "Failing cases" and group for title, group in sections):
        out.force("All cases passed." if cases else "No Cekura cases ran.")
        return out.text()

    left = 0  # cases not shown once the budget is spent
    for title, group in sections:
        if not group:
            continue
        if left or not out.add(f"#### {title} ({len(group)})", ""):
            left += len(group)
            continue
        rows = _rows(title, group, out)
        for i, row in enumerate(rows):
            if not out.add(row):
                left += len(rows) - i
                break
        out.force("")
    if left:
        out.force(f"… {left} more, see the report" + _report_hint(report))
    return out.text()


def _report_hint(report: Report) -> str:
    run_url = report.provenance.get("run_url")
    link = md_link("CI run", run_url if isinstance(run_url, str) else None)
    return f" ({link})" if link else ""

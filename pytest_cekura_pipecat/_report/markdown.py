"""Markdown rendering shared by the step summary and the PR comment: escaping, links, a
byte budget."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import quote

from .._text import cap, markdown_inert, visible
from .document import Report
from .record import CaseRecord
from .summary import (
    BAD,
    baseline_class,
    cekura_summary,
    display_reason,
    failed_metrics,
    scenario_text,
    second_look_lines,
    sort_key,
)

STEP_SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a larger step summary
CODE_LIMIT = 200  # characters of a name in code
_MD_PUNCTUATION = set("\\`*_[]{}()#+-.!~")
_URL_SAFE = ":/?#[]@!$&'*+,;=%~"


def _one_line(text: str, limit: int | None = None) -> str:
    """Outside text on one line, capped, control characters visible (``_text``)."""
    text = visible(" ".join(text.split()))
    return text if limit is None else cap(text, limit)


def md_text(text: str, limit: int | None = None, *, ours: bool = False) -> str:
    """Plain text as Markdown that renders as exactly that text on one line, also inside a
    table cell: HTML and pipes as entities, Markdown punctuation backslash-escaped, control
    characters as visible escapes, no mention or cross-reference (unless the text is
    ``ours``: the user's own, from ``cekura.toml``); at most ``limit`` characters of
    ``text`` ("… N more characters")."""
    text = _one_line(text, limit)
    out = []
    for ch in text:
        if ch in _MD_PUNCTUATION:
            out.append("\\" + ch)
        elif ch == "|":
            out.append("&#124;")
        else:
            out.append(html.escape(ch, quote=False))
    return "".join(out) if ours else markdown_inert("".join(out))


def md_code(text: str) -> str:
    """Inline code that holds any text (backticks, pipes, HTML) safely."""
    code = html.escape(_one_line(text, CODE_LIMIT)).replace("|", "&#124;")
    return "<code>" + markdown_inert(code) + "</code>"


def md_link(label: str, url: str | None) -> str:
    if not url or not url.startswith(("https://", "http://")):
        return ""
    return f"[{label}]({quote(url, safe=_URL_SAFE)})"


def md_case_row(case: CaseRecord, *, reason_limit: int = 300) -> str:
    metrics = ", ".join(failed_metrics(case))
    reason = md_text(display_reason(case), reason_limit)
    summary = cekura_summary(case) if case.verdict in BAD else ""
    if summary:
        reason += "<br>" + md_text(f"Cekura's summary: {summary}", reason_limit)
    return (
        f"| {case.outcome or 'unknown'} | {case.verdict or '-'} "
        f"| {md_code(case.name)} | {md_text(scenario_text(case), 120)} "
        f"| {md_text(metrics, 200)} | {reason} "
        f"| {md_link('dashboard', case.dashboard_url)} |"
    )


def md_quarantine_row(case: CaseRecord) -> str:
    """``- name (scenario N): until 2026-12-31, owner @ana: reason, issue link``: the
    user's own words (``cekura.toml``), so the owner's mention pings."""
    q = case.quarantine
    if q is None:
        return f"- {md_code(case.name)} (scenario {case.scenario})"
    state = "" if q.active else " (EXPIRED)"
    owner = f", owner {md_text(q.owner, 80, ours=True)}" if q.owner else ""
    issue = md_link("issue", q.issue)
    until = md_text(q.until, ours=True)
    reason = md_text(q.reason, 200, ours=True)
    return (
        f"- {md_code(case.name)} (scenario {case.scenario}): until "
        f"{until}{state}{owner}: {reason}" + (f" {issue}" if issue else "")
    )


def md_gate_lines(report: Report) -> list[str]:
    """Baseline counts and the quarantined cases, for the step summary."""
    totals = report.totals
    if not totals.gated:
        return []
    cases = report.cases
    lines: list[str] = []
    if any(c.baseline for c in cases):
        counts = totals.baseline
        lines.append(
            f"**Against the baseline:** {counts['new']} new failure(s), {counts['known']} known "
            f"failure(s), {counts['fixed']} fixed"
        )
        if counts["evaluator_changed"]:
            lines[-1] += (
                f"; {counts['evaluator_changed']} failure(s) under a changed evaluator "
                "(scenario version or metric definitions)"
            )
        kinds = (
            ("new", "New"),
            ("known", "Known"),
            ("fixed", "Fixed"),
            ("evaluator_changed", "Evaluator changed"),
        )
        for kind, title in kinds:
            names = [md_code(c.name) for c in cases if baseline_class(c) == kind]
            if names:
                lines.append(f"- {title}: " + ", ".join(names[:50]))
        lines.append("")
    quarantined = [c for c in cases if c.quarantine is not None]
    if quarantined:
        lines.append(f"**Quarantined ({len(quarantined)}):**")
        lines.extend(
            md_quarantine_row(c) + f": {md_text(c.outcome or 'unknown')}" for c in quarantined[:100]
        )
        lines.append("")
    second = second_look_lines(cases[:100])
    if second:
        lines.extend(f"- {md_text(line)}" for line in second)
        lines.append("")
    return lines


MD_TABLE_HEAD = [
    "| outcome | evaluation | case | scenario | failed metrics | reason | link |",
    "|---|---|---|---|---|---|---|",
]


class Budget:
    """Lines kept under a byte limit, with room reserved for what closes the text."""

    def __init__(self, limit: int, reserve: int = 2048) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.limit = limit - reserve

    def add(self, *lines: str) -> bool:
        size = sum(len(line.encode("utf-8")) + 1 for line in lines)
        if self.size + size > self.limit:
            return False
        self.lines.extend(lines)
        self.size += size
        return True

    def force(self, *lines: str) -> None:
        self.lines.extend(lines)
        self.size += sum(len(line.encode("utf-8")) + 1 for line in lines)

    def rows(self, rows: Iterable[str], more: Callable[[int], str]) -> bool:
        """Add rows while they fit; if some do not, a line saying how many. True if all fit."""
        pending = list(rows)
        for i, row in enumerate(pending):
            if not self.add(row):
                self.force(more(len(pending) - i))
                return False
        return True

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def step_summary(
    report: Report, limit: int = STEP_SUMMARY_LIMIT, history: Sequence[str] = ()
) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: totals, a table of failing cases, the rest
    collapsed; under ``limit`` bytes however many cases there are. ``history``: the flaky
    cases' lines (``history.markdown_lines``)."""
    cases = sorted(report.cases, key=sort_key)
    t = report.totals
    bad = [c for c in cases if c.outcome in BAD]
    good = [c for c in cases if c.outcome == "passed"]
    other = [c for c in cases if c.outcome not in (*BAD, "passed")]
    title = "## Cekura evaluations"
    if report.simulated:
        title += " (SIMULATED: local server, not Cekura)"
    out = Budget(limit)
    out.force(title, "", f"**{t.text}** of {t.cases} case(s){t.credits_text}", "")
    out.force(*md_gate_lines(report))
    out.force(*history)
    more = "… {} more cases, see the JSON report".format
    complete = True
    if bad:
        out.force(*MD_TABLE_HEAD)
        complete = out.rows((md_case_row(c) for c in bad), lambda n: "\n" + more(n))
        out.force("")
    for title, group in (("Passed cases", good), ("Skipped and expected failures", other)):
        if not group or not complete:
            if group:
                out.force(more(len(group)), "")
            continue
        out.force(f"<details><summary>{title} ({len(group)})</summary>", "")
        complete = out.rows(
            (
                f"- {md_code(c.name)} (scenario {c.scenario})"
                + (f": {c.outcome or 'unknown'}" if group is other else "")
                for c in group
            ),
            lambda n: "\n" + more(n),
        )
        out.force("", "</details>", "")
    return out.text()

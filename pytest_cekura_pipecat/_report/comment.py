"""A pull-request comment body (``--cekura-pr-comment=PATH``), rendered from a report
document. The first line is a marker a workflow can find to update its comment in place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .markdown import MD_TABLE_HEAD, Budget, md_case_row, md_code, md_link, md_quarantine_row
from .summary import BAD, Case, Document, counts_text, sort_key, totals

MARKER = "<!-- pytest-cekura-pipecat -->"
COMMENT_LIMIT = 65536  # GitHub refuses a longer comment body
_LIMIT = COMMENT_LIMIT - 1024  # characters may be more than bytes: stay well under


def _provenance_line(provenance: dict[str, Any]) -> str:
    parts = []
    if provenance.get("commit"):
        parts.append(f"commit {md_code(str(provenance['commit'])[:12])}")
    if provenance.get("branch"):
        parts.append(f"branch {md_code(str(provenance['branch']))}")
    link = md_link("CI run", provenance.get("run_url"))
    if link:
        parts.append(link)
    if provenance.get("attempt") and provenance["attempt"] > 1:
        parts.append(f"attempt {int(provenance['attempt'])}")
    return " · ".join(parts)


def pr_comment(document: Document, limit: int = _LIMIT, history: Sequence[str] = ()) -> str:
    """Markdown: totals, the failing cases with reasons and links (split into new / known
    failures and fixed cases when the cases carry a ``baseline``), quarantined cases that did
    not pass, under ``limit`` bytes; ``history``: the flaky cases' lines."""
    cases = sorted(document["cases"], key=sort_key)
    t = document.get("totals") or totals(cases)
    failing = [c for c in cases if c.get("outcome") in BAD]
    out = Budget(limit)
    icon = "❌" if failing else "✅"
    out.force(MARKER, f"### {icon} Cekura evaluations: {counts_text(t)} of {t['cases']} case(s)")
    if document.get("simulated"):
        out.force("", "**SIMULATED**: verdicts came from the local server, not from Cekura.")
    where = _provenance_line(document.get("provenance") or {})
    if where:
        out.force("", where)
    out.force("")
    out.force(*history)

    sections: list[tuple[str, list[Case]]] = []
    excused = [c for c in cases if c.get("outcome") == "xfailed"]
    if any("baseline" in c for c in cases):
        sections += [
            ("New failures", [c for c in failing if c.get("baseline") == "new"]),
            ("Known failures", [c for c in failing + excused if c.get("baseline") == "known"]),
            ("Failing cases", [c for c in failing if c.get("baseline") not in ("new", "known")]),
            ("Fixed", [c for c in cases if c.get("baseline") == "fixed"]),
        ]
    else:
        sections.append(("Failing cases", failing))
    quarantined = [c for c in excused if c.get("quarantine") and c.get("baseline") != "known"]
    sections.append(("Quarantined", quarantined))
    if not failing and not any(title != "Failing cases" and group for title, group in sections):
        out.force("All cases passed." if cases else "No Cekura cases ran.")
        return out.text()

    left = 0  # cases not shown once the budget is spent
    for title, group in sections:
        if not group:
            continue
        if left:
            left += len(group)
            continue
        if not out.add(f"#### {title} ({len(group)})", ""):
            left += len(group)
            continue
        if title == "Fixed":
            rows = [f"- {md_code(c['name'])} (scenario {c['scenario']})" for c in group]
        elif title == "Quarantined":
            rows = [md_quarantine_row(c) for c in group]
        else:
            out.force(*MD_TABLE_HEAD)
            rows = [md_case_row(c, reason_limit=200) for c in group]
        for i, row in enumerate(rows):
            if not out.add(row):
                left += len(rows) - i
                break
        out.force("")
    if left:
        out.force(f"… {left} more, see the report" + _report_hint(document))
    return out.text()


def _report_hint(document: Document) -> str:
    link = md_link("CI run", (document.get("provenance") or {}).get("run_url"))
    return f" ({link})" if link else ""

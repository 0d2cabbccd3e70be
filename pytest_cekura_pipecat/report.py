"""The terminal summary, built from plain records that ride on test reports.

A record is attached to the report of the phase in which a case's verdict became known
(``report.cekura``, plain builtins, so it survives pytest-xdist's serialization) and
collected wherever reports are logged: the only process that writes the terminal.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

import pytest

from .verdict import CaseVerdict

_ORDER = {"failed": 0, "error": 1, "passed": 2}
_LABEL = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR"}


def record(name: str, nodeid: str, scenario: int, verdict: CaseVerdict) -> dict[str, Any]:
    durations = [run.duration for run in verdict.runs if run.duration is not None]
    return {
        "name": name,
        "nodeid": nodeid,
        "scenario": scenario,
        "scenario_name": next((r.scenario_name for r in verdict.runs if r.scenario_name), ""),
        "outcome": verdict.outcome,
        "runs": [r.run_id for r in verdict.runs],
        "passed_runs": sum(r.passed for r in verdict.runs),
        "duration": max(durations) if durations else None,
        "reason": verdict.first_reason,
        "dashboard": next((r.dashboard_url for r in verdict.runs if r.dashboard_url), None),
        "run_details": [
            {
                "run_id": r.run_id,
                "result_id": r.result_id,
                "status": r.status,
                "success": r.success,
                "verdict": r.verdict,
                "score": r.expected_outcome.score,
                "failed_metrics": [
                    {"name": m.name, "explanation": list(m.explanation)}
                    for m in r.metrics
                    if m.passed is False
                ],
                "error_message": r.error_message,
                "duration": r.duration,
                "dashboard_url": r.dashboard_url,
            }
            for r in verdict.runs
        ],
    }


@dataclass
class Summary:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, report: pytest.TestReport) -> None:
        data = getattr(report, "cekura", None)
        if isinstance(data, dict) and "nodeid" in data:
            self.records[data["nodeid"]] = data
            self.note(*data.get("notes", []))

    def note(self, *notes: str) -> None:
        """Notes from this process and from xdist workers (they ride on records), once each."""
        self.notes.extend(n for n in notes if n not in self.notes)

    def lines(self, width: int | None = None) -> list[str]:
        """The table: failures first; verdict, case, scenario, runs passed/total, lowest
        expected-outcome score, duration, first reason (cut to the width), dashboard link."""
        width = width or shutil.get_terminal_size((120, 20)).columns
        rows = sorted(
            self.records.values(), key=lambda r: (_ORDER.get(r["outcome"], 3), r["nodeid"])
        )
        name_w = min(max((len(r["name"]) for r in rows), default=4), 32)
        scen_w = min(max((len(_scenario(r)) for r in rows), default=8), 36)
        label_w = max((len(_label(r)) for r in rows), default=6)
        out: list[str] = [
            f"{'':<{label_w}} {'case':<{name_w}}  {'scenario':<{scen_w}}  {'runs':>5}  {'score':>5}  "
            f"{'time':>5}  first reason"
        ]
        for r in rows:
            details = r.get("run_details", [])
            scores = [d["score"] for d in details if d.get("score") is not None]
            passed = f"{r['passed_runs']}/{len(r['runs'])}"
            score = f"{min(scores):g}" if scores else "-"
            duration = "-" if r["duration"] is None else f"{r['duration']:.0f}s"
            head = (
                f"{_label(r):<{label_w}} {r['name'][:name_w]:<{name_w}}  {_scenario(r)[:scen_w]:<{scen_w}}  "
                f"{passed:>5}  {score:>5}  {duration:>5}"
            )
            reason = r["reason"].splitlines()[0] if r["reason"] else ""
            room = width - len(head) - 2
            if reason and room >= 40:
                head += "  " + (reason if len(reason) <= room else reason[: room - 1] + "…")
            elif reason:
                out.append(head)
                head = "       " + (
                    reason if len(reason) <= width - 8 else reason[: width - 9] + "…"
                )
            out.append(head)
            if r["dashboard"] and r["outcome"] != "passed":
                out.append(f"       {r['dashboard']}")
        counts = {k: sum(r["outcome"] == k for r in rows) for k in _ORDER}
        total_runs = sum(len(r["runs"]) for r in rows)
        rate = f" · pass rate {100 * counts['passed'] / len(rows):.0f}%" if rows else ""
        out.append(
            f"{len(rows)} case(s), {total_runs} run(s): {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['error']} error{rate}"
        )
        out.extend(self.notes)
        return out


def _label(record: dict[str, Any]) -> str:
    label = str(_LABEL.get(record["outcome"], record["outcome"]))
    return label + (f" (rerun {record['rerun']})" if record.get("rerun") else "")


def _scenario(record: dict[str, Any]) -> str:
    name = record["scenario_name"]
    return f"{record['scenario']} {name}" if name else str(record["scenario"])


SCHEMA_VERSION = 1


def json_document(
    summary: Summary, *, plugin_version: str, api_url: str, simulated: bool
) -> dict[str, Any]:
    """The ``--cekura-report`` document (schema: ``report.schema.json`` in the package)."""
    cases = []
    for r in sorted(summary.records.values(), key=lambda r: r["nodeid"]):
        cases.append(
            {
                "name": r["name"],
                "nodeid": r["nodeid"],
                "scenario": r["scenario"],
                "scenario_name": r["scenario_name"],
                "verdict": r["outcome"],
                "reason": r["reason"],
                "runs": r["run_details"],
            }
        )
    counts = {k: sum(c["verdict"] == k for c in cases) for k in _ORDER}
    return {
        "schema_version": SCHEMA_VERSION,
        "plugin_version": plugin_version,
        "api_version": "v1",
        "api_url": api_url,
        "simulated": simulated,
        "totals": {
            "cases": len(cases),
            "runs": sum(len(c["runs"]) for c in cases),
            **counts,
            "pass_rate": round(100 * counts["passed"] / len(cases), 1) if cases else None,
        },
        "cases": cases,
        "notes": summary.notes,
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def step_summary(summary: Summary, simulated: bool) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: totals, failed cases, passed ones collapsed."""
    rows = sorted(
        summary.records.values(), key=lambda r: (_ORDER.get(r["outcome"], 3), r["nodeid"])
    )
    bad = [r for r in rows if r["outcome"] != "passed"]
    good = [r for r in rows if r["outcome"] == "passed"]
    lines = [
        "## Cekura evaluations" + (" (SIMULATED: local server, not Cekura)" if simulated else ""),
        "",
        f"**{len(good)} passed, {sum(r['outcome'] == 'failed' for r in rows)} failed, "
        f"{sum(r['outcome'] == 'error' for r in rows)} error** of {len(rows)} case(s)",
        "",
    ]
    if bad:
        lines += ["| verdict | case | scenario | reason | link |", "|---|---|---|---|---|"]
        for r in bad:
            link = f"[dashboard]({r['dashboard']})" if r["dashboard"] else ""
            lines.append(
                f"| {r['outcome']} | `{_cell(r['name'])}` | {r['scenario']} {_cell(r['scenario_name'])} "
                f"| {_cell(r['reason'][:300])} | {link} |"
            )
        lines.append("")
    if good:
        lines += ["<details><summary>Passed cases</summary>", ""]
        lines += [f"- `{r['name']}` (scenario {r['scenario']})" for r in good]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def write_outputs(
    summary: Summary, settings: Any, redact: Any, simulated: bool, terminalreporter: Any
) -> None:
    """The JSON report (``--cekura-report``) and the GitHub step summary."""
    import json
    import os
    from pathlib import Path

    from . import __version__

    if settings.report:
        document = json_document(
            summary, plugin_version=__version__, api_url=settings.api_url, simulated=simulated
        )
        path = Path(settings.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(redact(json.dumps(document, indent=2)), encoding="utf-8")
        terminalreporter.write_line(f"cekura: report written to {path}")
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target and settings.step_summary:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(redact(step_summary(summary, simulated)))

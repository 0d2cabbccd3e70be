"""The results structure and every output built from it.

A record is attached to the report of the phase in which a case's verdict became known
(``report.cekura``, plain builtins, so it survives pytest-xdist's serialization) and
collected wherever reports are logged: the only process that writes the outputs. Beside
each record, :class:`Summary` tracks the test's final pytest outcome from its setup, call
and teardown reports, so that every output agrees with pytest.

The JSON document (:func:`json_document`, schema ``report.schema.json``) is the one results
structure: the terminal table, the step summary, the PR comment (``_comment``) and the
GitHub annotations (``_ci``) are all rendered from its cases, and ``python -m
pytest_cekura_pipecat.report merge`` renders the same outputs from merged shard reports.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import pytest

    from .verdict import CaseVerdict

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
STEP_SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a larger step summary
_REQUIRED = ("schema_version", "plugin_version", "api_version", "api_url", "simulated", "cases")

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
) -> dict[str, Any]:
    """A case's record. ``verdict`` None: the case was never evaluated (skipped by a mark).
    ``path`` (relative to the rootdir) and ``line`` (1-based) point at the case's
    declaration; left None, they are taken from the test report's location."""
    runs = verdict.runs if verdict is not None else ()
    return {
        "name": name,
        "nodeid": nodeid,
        "path": path,
        "line": line,
        "scenario": scenario,
        "scenario_name": next((r.scenario_name for r in runs if r.scenario_name), ""),
        "verdict": verdict.outcome if verdict is not None else None,
        "reason": verdict.first_reason if verdict is not None else "",
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
            for r in runs
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

    def add(self, report: pytest.TestReport) -> None:
        data = getattr(report, "cekura", None)
        if isinstance(data, dict) and "nodeid" in data:
            if data.get("path") is None and report.location:
                data["path"] = report.location[0]
                lineno = report.location[1]
                data["line"] = None if lineno is None else lineno + 1
            self.records[data["nodeid"]] = data
            self.note(*data.get("notes", []))
        if report.nodeid in self.records:
            self._track(report)

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
        """Every case in the document's shape, by node id."""
        return [self._case(r) for r in sorted(self.records.values(), key=lambda r: r["nodeid"])]

    def _case(self, r: dict[str, Any]) -> Case:
        details = r.get("run_details", [])
        durations = [d["duration"] for d in details if d.get("duration") is not None]
        case: Case = {
            "name": r["name"],
            "nodeid": r["nodeid"],
            "path": r.get("path"),
            "line": r.get("line"),
            "scenario": r["scenario"],
            "scenario_name": r.get("scenario_name", ""),
            "verdict": r.get("verdict"),
            "outcome": self.outcomes.get(r["nodeid"]),
            "reason": r.get("reason", ""),
            "failure": self.failures.get(r["nodeid"], ""),
            "rerun": r.get("rerun", 0),
            "duration": max(durations) if durations else None,
            "dashboard_url": next(
                (d["dashboard_url"] for d in details if d.get("dashboard_url")), None
            ),
            "runs": details,
        }
        if "baseline" in r:
            case["baseline"] = r["baseline"]
        return case

    def lines(self, width: int | None = None) -> list[str]:
        return terminal_lines(self.cases(), self.notes, width)


# -- shared helpers ------------------------------------------------------------------------


def display_reason(case: Case) -> str:
    """Why the case is what it is: the evaluation's reason when the evaluation did not pass,
    else pytest's own failure (a body assertion), else the evaluation's note, if any."""
    if case.get("verdict") in ("failed", "error") and case.get("reason"):
        return str(case["reason"])
    return str(case.get("failure") or case.get("reason") or "")


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
        "runs": sum(len(c.get("runs", [])) for c in cases),
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


def _label(case: Case) -> str:
    outcome = case.get("outcome")
    label = _LABEL.get(outcome, "UNKNOWN") if outcome else "UNKNOWN"
    return label + (f" (rerun {case['rerun']})" if case.get("rerun") else "")


def _scenario(case: Case) -> str:
    name = case.get("scenario_name")
    return f"{case['scenario']} {name}" if name else str(case["scenario"])


def terminal_lines(cases: Sequence[Case], notes: Sequence[str], width: int | None) -> list[str]:
    """The table: failures first; pytest's outcome, case, scenario, the evaluation's verdict,
    runs passed/total, lowest expected-outcome score, duration, the reason's first line (cut
    to the width), dashboard link."""
    width = width or shutil.get_terminal_size((120, 20)).columns
    rows = sorted(cases, key=sort_key)
    name_w = min(max((len(r["name"]) for r in rows), default=4), 32)
    scen_w = min(max((len(_scenario(r)) for r in rows), default=8), 36)
    label_w = max((len(_label(r)) for r in rows), default=6)
    out: list[str] = [
        f"{'':<{label_w}} {'case':<{name_w}}  {'scenario':<{scen_w}}  {'eval':<6}  {'runs':>5}  "
        f"{'score':>5}  {'time':>5}  first reason"
    ]
    for r in rows:
        runs = r.get("runs", [])
        scores = [d["score"] for d in runs if d.get("score") is not None]
        passed = f"{sum(d.get('verdict') == 'passed' for d in runs)}/{len(runs)}"
        score = f"{min(scores):g}" if scores else "-"
        duration = "-" if r.get("duration") is None else f"{r['duration']:.0f}s"
        head = (
            f"{_label(r):<{label_w}} {r['name'][:name_w]:<{name_w}}  "
            f"{_scenario(r)[:scen_w]:<{scen_w}}  {r.get('verdict') or '-':<6}  "
            f"{passed:>5}  {score:>5}  {duration:>5}"
        )
        reason = first_line(display_reason(r))
        room = width - len(head) - 2
        if reason and room >= 40:
            head += "  " + (reason if len(reason) <= room else reason[: room - 1] + "…")
        elif reason:
            out.append(head)
            head = "       " + (reason if len(reason) <= width - 8 else reason[: width - 9] + "…")
        out.append(head)
        if r.get("dashboard_url") and r.get("outcome") != "passed":
            out.append(f"       {r['dashboard_url']}")
    t = totals(rows)
    rate = f" · pass rate {t['pass_rate']:.0f}%" if t["pass_rate"] is not None else ""
    out.append(f"{t['cases']} case(s), {t['runs']} run(s): {counts_text(t)}{rate}")
    out.extend(notes)
    return out


# -- the JSON document ---------------------------------------------------------------------


def json_document(
    summary: Summary,
    *,
    plugin_version: str,
    api_url: str,
    simulated: bool,
    provenance: dict[str, Any] | None = None,
) -> Document:
    """The ``--cekura-report`` document (schema: ``report.schema.json`` in the package)."""
    cases = summary.cases()
    return build_document(
        cases,
        plugin_version=plugin_version,
        api_url=api_url,
        simulated=simulated,
        notes=list(summary.notes),
        provenance=provenance,
    )


def build_document(
    cases: list[Case],
    *,
    plugin_version: str,
    api_url: str,
    simulated: bool,
    notes: list[str],
    provenance: dict[str, Any] | None,
) -> Document:
    document: Document = finite(
        {
            "schema_version": SCHEMA_VERSION,
            "plugin_version": plugin_version,
            "api_version": "v1",
            "api_url": api_url,
            "simulated": simulated,
            "provenance": provenance or {},
            "totals": totals(cases),
            "cases": cases,
            "notes": notes,
        }
    )
    return document


def finite(value: Any) -> Any:
    """A copy with NaN and infinities as None: the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(document: Document) -> str:
    return json.dumps(finite(document), indent=2, allow_nan=False)


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write through a temporary file in the same directory and ``os.replace``: a reader
    never sees half a file, a failed write leaves the old one. Raises OSError."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# -- Markdown ------------------------------------------------------------------------------

_MD_PUNCTUATION = set("\\`*_[]{}()#+-.!~")
_URL_SAFE = ":/?#[]@!$&'*+,;=%~"


def md_text(text: str, limit: int | None = None) -> str:
    """Plain text as Markdown that renders as exactly that text on one line, also inside a
    table cell: HTML and pipes as entities, Markdown punctuation backslash-escaped."""
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    out = []
    for ch in text:
        if ch in _MD_PUNCTUATION:
            out.append("\\" + ch)
        elif ch == "|":
            out.append("&#124;")
        else:
            out.append(html.escape(ch, quote=False))
    return "".join(out)


def md_code(text: str) -> str:
    """Inline code that holds any text (backticks, pipes, HTML) safely."""
    return "<code>" + html.escape(" ".join(text.split())).replace("|", "&#124;") + "</code>"


def md_link(label: str, url: str | None) -> str:
    if not url or not url.startswith(("https://", "http://")):
        return ""
    return f"[{label}]({quote(url, safe=_URL_SAFE)})"


def md_case_row(case: Case, *, reason_limit: int = 300) -> str:
    metrics = ", ".join(failed_metrics(case))
    return (
        f"| {case.get('outcome') or 'unknown'} | {case.get('verdict') or '-'} "
        f"| {md_code(case['name'])} | {md_text(_scenario(case), 120)} "
        f"| {md_text(metrics, 200)} | {md_text(display_reason(case), reason_limit)} "
        f"| {md_link('dashboard', case.get('dashboard_url'))} |"
    )


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


def step_summary(document: Document, limit: int = STEP_SUMMARY_LIMIT) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: totals, a table of failing cases, the rest
    collapsed; under ``limit`` bytes however many cases there are."""
    cases = sorted(document["cases"], key=sort_key)
    t = document.get("totals") or totals(cases)
    bad = [c for c in cases if c.get("outcome") in BAD]
    good = [c for c in cases if c.get("outcome") == "passed"]
    other = [c for c in cases if c.get("outcome") not in (*BAD, "passed")]
    title = "## Cekura evaluations"
    if document.get("simulated"):
        title += " (SIMULATED: local server, not Cekura)"
    out = Budget(limit)
    out.force(title, "", f"**{counts_text(t)}** of {t['cases']} case(s)", "")
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
                f"- {md_code(c['name'])} (scenario {c['scenario']})"
                + (f": {c.get('outcome') or 'unknown'}" if group is other else "")
                for c in group
            ),
            lambda n: "\n" + more(n),
        )
        out.force("", "</details>", "")
    return out.text()


# -- merging shard reports -----------------------------------------------------------------


class MergeError(ValueError):
    """One line: a bad input file or a case reported twice."""


def check(document: Any, where: str) -> Document:
    """A light structural check of a report (jsonschema is not a runtime dependency)."""
    if not isinstance(document, dict):
        raise MergeError(f"{where}: not a pytest-cekura-pipecat report (not a JSON object)")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MergeError(
            f"{where}: schema_version {version!r} is not {SCHEMA_VERSION} "
            "(write the reports with the same plugin version)"
        )
    missing = [k for k in _REQUIRED if k not in document]
    if missing:
        raise MergeError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(document["cases"], list):
        raise MergeError(f"{where}: cases is not a list")
    for i, case in enumerate(document["cases"]):
        if not isinstance(case, dict) or not isinstance(case.get("nodeid"), str):
            raise MergeError(f"{where}: cases[{i}] has no nodeid")
        for key, kinds in (("name", str), ("scenario", int), ("runs", list)):
            if not isinstance(case.get(key), kinds):
                raise MergeError(f"{where}: cases[{i}] ({case['nodeid']}): bad or missing {key}")
        if case.get("outcome") not in (*OUTCOMES, None):
            raise MergeError(f"{where}: cases[{i}] ({case['nodeid']}): bad outcome")
        if case.get("verdict") not in (*VERDICTS, None):
            raise MergeError(f"{where}: cases[{i}] ({case['nodeid']}): bad verdict")
    provenance = document.get("provenance", {})
    if not isinstance(provenance, dict):
        raise MergeError(f"{where}: provenance is not an object")
    return document


def _attempt(document: Document) -> int:
    attempt = (document.get("provenance") or {}).get("attempt")
    return attempt if isinstance(attempt, int) else 0


def merge(documents: Sequence[tuple[str, Document]]) -> Document:
    """One document from shard reports: every case once. A case in reports of different CI
    attempts comes from the latest; in two reports of the same attempt it is an error."""
    chosen: dict[str, tuple[int, str, Case]] = {}
    for where, document in documents:
        attempt = _attempt(document)
        for case in document["cases"]:
            nodeid = case["nodeid"]
            previous = chosen.get(nodeid)
            if previous is not None and previous[0] == attempt:
                raise MergeError(
                    f"case {nodeid} is in both {previous[1]} and {where} (same attempt): "
                    "the shards overlap"
                )
            if previous is None or attempt > previous[0]:
                chosen[nodeid] = (attempt, where, case)
    latest = max((d for _, d in documents), key=_attempt, default={})
    notes: list[str] = []
    for _, document in documents:
        notes.extend(n for n in document.get("notes", []) if n not in notes)
    return build_document(
        [chosen[k][2] for k in sorted(chosen)],
        plugin_version=str(latest.get("plugin_version", "")),
        api_url=str(latest.get("api_url", "")),
        simulated=any(bool(d.get("simulated")) for _, d in documents),
        notes=notes,
        provenance=latest.get("provenance") or {},
    )


def _load(path: str) -> Document:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MergeError(f"{path}: not JSON: {exc}") from None
    return check(document, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_cekura_pipecat.report",
        description="Tools for pytest-cekura-pipecat JSON reports.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    merge_cmd = commands.add_parser(
        "merge", help="merge shard reports (--cekura-report of each shard) into one"
    )
    merge_cmd.add_argument("out", metavar="OUT.json")
    merge_cmd.add_argument("inputs", metavar="IN.json", nargs="+")
    merge_cmd.add_argument(
        "--step-summary",
        action="store_true",
        help="append the merged summary to $GITHUB_STEP_SUMMARY",
    )
    merge_cmd.add_argument(
        "--pr-comment", metavar="PATH", help="write a pull-request comment body to PATH"
    )
    args = parser.parse_args(argv)
    from ._comment import pr_comment

    loaded, problems = [], []
    for path in args.inputs:
        try:
            loaded.append((path, _load(path)))
        except MergeError as exc:
            problems.append(str(exc))
    try:
        if problems:
            raise MergeError("\n".join(problems))  # one line per bad file
        merged = merge(loaded)
    except MergeError as exc:
        for line in str(exc).splitlines():
            print(f"report merge: {line}", file=sys.stderr)
        return 1
    status = 0
    try:
        write_atomic(args.out, dumps(merged))
    except OSError as exc:
        print(f"report merge: could not write {args.out}: {exc}", file=sys.stderr)
        status = 1
    if args.step_summary:
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if not target:
            print("report merge: --step-summary: GITHUB_STEP_SUMMARY is not set", file=sys.stderr)
            status = 1
        else:
            try:
                with open(target, "a", encoding="utf-8") as handle:
                    handle.write(step_summary(merged))
            except OSError as exc:
                print(f"report merge: could not append to {target}: {exc}", file=sys.stderr)
                status = 1
    if args.pr_comment:
        try:
            write_atomic(args.pr_comment, pr_comment(merged))
        except OSError as exc:
            print(f"report merge: could not write {args.pr_comment}: {exc}", file=sys.stderr)
            status = 1
    if status == 0:
        t = merged["totals"]
        print(f"report merge: {t['cases']} case(s) from {len(args.inputs)} report(s) -> {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())


def write_outputs(
    summary: Summary,
    settings: Any,
    redact: Callable[[str], str],
    simulated: bool,
    terminalreporter: Any,
) -> bool:
    """The controller's outputs, all from one document: the JSON report, the PR comment,
    the GitHub step summary and annotations. A failed write is one line and makes this
    return False; it skips none of the other outputs."""
    from . import __version__, _ci
    from ._comment import pr_comment

    document = json_document(
        summary,
        plugin_version=__version__,
        api_url=settings.api_url,
        simulated=simulated,
        provenance=_ci.provenance(),
    )
    ok = True
    writes: list[tuple[str, str | None, Callable[[], str]]] = [
        ("report", settings.report, lambda: dumps(document)),
        ("PR comment", settings.pr_comment, lambda: pr_comment(document)),
    ]
    for what, target, render in writes:
        if not target:
            continue
        try:
            path = write_atomic(target, redact(render()))
        except OSError as exc:
            terminalreporter.write_line(
                f"cekura: could not write an output: the {what} {target}: {exc}", red=True
            )
            ok = False
        else:
            terminalreporter.write_line(f"cekura: {what} written to {path}")
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path and settings.step_summary:
        try:
            with open(summary_path, "a", encoding="utf-8") as handle:
                handle.write(redact(step_summary(document)))
        except OSError as exc:
            terminalreporter.write_line(
                f"cekura: could not write an output: the step summary: {exc}", red=True
            )
            ok = False
    if settings.annotations and _ci.in_github_actions():
        for line in _ci.github_annotations(document["cases"]):
            terminalreporter.write_line(redact(line))
    return ok

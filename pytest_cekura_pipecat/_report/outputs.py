"""The controller's outputs at the end of the session, all from one document."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .._redact import Redactor
from .._text import plain
from .._version import __version__
from . import ci as _ci
from .comment import pr_comment
from .document import Report, dumps, session_report, write_atomic
from .history import HistoryView, markdown_lines, session_history, terminal_lines
from .html import page
from .markdown import step_summary
from .summary import Summary


def write_outputs(
    summary: Summary,
    settings: Any,
    redact: Redactor,
    simulated: bool,
    terminalreporter: Any,
    annotated_elsewhere: frozenset[str] = frozenset(),
) -> bool:
    """The controller's outputs, all from one document: the JSON report, the PR comment,
    the GitHub step summary and annotations (but for the outcomes another plugin annotates
    already). A failed write is one line and makes this return False; it skips none of the
    other outputs."""
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY") if settings.step_summary else None
    annotate = settings.annotations and _ci.in_github_actions()
    asked = settings.report or settings.pr_comment or settings.html or settings.history
    if not (asked or summary_path or annotate):
        return True  # nothing asked for: no document to build

    # Masked as data, before JSON, Markdown or XML escaping can split a secret (a token
    # with a quote, a backslash or a pipe); the rendered text is masked once more.
    document = redact.tree(
        session_report(
            summary,
            plugin_version=__version__,
            api_url=settings.api_url,
            simulated=simulated,
            provenance=_ci.provenance(),
        ).to_json()
    )
    report = Report.from_json(document)  # what every other output renders: masked too
    history = _history(document, settings, redact, terminalreporter)
    flaky = markdown_lines(history) if history is not None else []
    ok = True
    writes: list[tuple[str, str | None, Callable[[], str]]] = [
        ("report", settings.report, lambda: dumps(document)),
        ("PR comment", settings.pr_comment, lambda: pr_comment(report, history=flaky)),
        ("HTML page", settings.html, lambda: page(document, history)),
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
    if summary_path:
        try:
            with open(summary_path, "a", encoding="utf-8") as handle:
                handle.write(redact(step_summary(report, history=flaky)))
        except OSError as exc:
            terminalreporter.write_line(
                f"cekura: could not write an output: the step summary: {exc}", red=True
            )
            ok = False
    if annotate:
        for line in _ci.github_annotations(report.cases, elsewhere=annotated_elsewhere):
            terminalreporter.write_line(redact(line))
    return ok


def _history(
    document: dict[str, Any], settings: Any, redact: Redactor, terminalreporter: Any
) -> HistoryView | None:
    """``--cekura-history``: its lines in the terminal, its view for the other outputs."""
    if not settings.history:
        return None
    view, problem = session_history(
        settings.history, settings.history_window, document, datetime.now(UTC)
    )
    lines = terminal_lines(view) if view is not None else [problem or ""]
    for line in lines:
        terminalreporter.write_line(plain(redact(line)), yellow=view is None)
    return view

"""The ``history`` and ``html`` commands of ``python -m pytest_cekura_pipecat.report``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from .document import MergeError, load_document, write_atomic
from .history import (
    DEFAULT_WINDOW,
    HistoryError,
    fold,
    history_view,
    markdown_lines,
    read_history,
    session_history,
)
from .html import page


def _window(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def add_tools(commands: Any) -> None:
    history = commands.add_parser(
        "history",
        help="fold reports (--cekura-report) into a history file (JSON lines, append-only; "
        "a report folded twice adds nothing)",
    )
    history.add_argument("history", metavar="HISTORY.jsonl")
    history.add_argument("inputs", metavar="REPORT.json", nargs="+")
    page_cmd = commands.add_parser(
        "html", help="write one self-contained HTML page of a report (no external request)"
    )
    page_cmd.add_argument("out", metavar="OUT.html")
    page_cmd.add_argument("input", metavar="REPORT.json")
    page_cmd.add_argument(
        "--history", metavar="PATH", help="a history file: a trend chart per case, flaky cases"
    )
    page_cmd.add_argument(
        "--history-window",
        metavar="N",
        type=_window,
        default=DEFAULT_WINDOW,
        help=f"sessions of each case the figures are over (default {DEFAULT_WINDOW})",
    )


def run_tool(args: argparse.Namespace) -> int:
    try:
        if args.command == "history":
            return _history(args.history, args.inputs)
        return _page(args.out, args.input, args.history, args.history_window)
    except (MergeError, HistoryError) as exc:
        for line in str(exc).splitlines():
            print(f"report {args.command}: {line}", file=sys.stderr)
        return 1


def _load_all(paths: list[str]) -> list[dict[str, Any]]:
    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append(load_document(path))
        except MergeError as exc:
            problems.append(str(exc))
    if problems:
        raise MergeError("\n".join(problems))  # one line per bad file; nothing folded
    return loaded


def _history(path: str, inputs: list[str]) -> int:
    documents = _load_all(inputs)
    added = fold(path, documents, datetime.now(UTC))
    print(
        f"report history: {added} session(s) added to {path}"
        + (f" ({len(documents) - added} folded already)" if added < len(documents) else "")
    )
    return 0


def _page(out: str, path: str, history_path: str | None, window: int) -> int:
    document = _load_all([path])[0]
    view = None
    if history_path:
        view = history_view(
            read_history(history_path),
            document,
            source=history_path,
            window=window,
            now=datetime.now(UTC),
        )
    try:
        write_atomic(out, page(document, view))
    except OSError as exc:
        raise HistoryError(f"could not write {out}: {exc}") from None
    print(f"report html: {path} -> {out}")
    return 0


def flaky_lines(path: str, document: dict[str, Any]) -> list[str]:
    """``merge --history``: the flaky cases' Markdown lines of a merged report (a history
    that cannot be read is said on stderr and lists none)."""
    view, problem = session_history(path, DEFAULT_WINDOW, document, datetime.now(UTC))
    if view is None:
        print(f"report merge: {problem}", file=sys.stderr)
        return []
    return markdown_lines(view)

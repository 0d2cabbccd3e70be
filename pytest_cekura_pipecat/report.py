"""Command-line tools for JSON reports: ``python -m pytest_cekura_pipecat.report merge
OUT.json IN.json...`` merges shard reports and renders the same outputs as one session;
``history HISTORY.jsonl REPORT.json...`` folds reports into a history file; ``html OUT.html
REPORT.json`` writes a page of a report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._report.comment import pr_comment
from ._report.document import MergeError, Report, dumps, load_report, merge, write_atomic
from ._report.markdown import step_summary
from ._report.tools import add_tools, flaky_lines, run_tool


def _parser() -> argparse.ArgumentParser:
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
    merge_cmd.add_argument(
        "--history",
        metavar="PATH",
        help="a history file: list flaky cases in the step summary and the PR comment",
    )
    add_tools(commands)
    return parser


def _problem(line: str) -> int:
    print(f"report merge: {line}", file=sys.stderr)
    return 1


def _merged(inputs: Sequence[str]) -> Report | None:
    """The inputs merged, or None once every problem is said (one line each)."""
    loaded, problems = [], []
    for path in inputs:
        try:
            loaded.append((path, load_report(path)))
        except MergeError as exc:
            problems.append(str(exc))
    try:
        if problems:
            raise MergeError("\n".join(problems))  # one line per bad file
        return merge(loaded)
    except MergeError as exc:
        for line in str(exc).splitlines():
            _problem(line)
        return None


def _append_step_summary(merged: Report, flaky: Sequence[str]) -> int:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return _problem("--step-summary: GITHUB_STEP_SUMMARY is not set")
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(step_summary(merged, history=flaky))
    except OSError as exc:
        return _problem(f"could not append to {target}: {exc}")
    return 0


def _write(path: str, text: str) -> int:
    try:
        write_atomic(path, text)
    except OSError as exc:
        return _problem(f"could not write {path}: {exc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "merge":
        return run_tool(args)
    merged = _merged(args.inputs)
    if merged is None:
        return 1
    document = merged.to_json()
    flaky = flaky_lines(args.history, document) if args.history else []
    status = _write(args.out, dumps(document))
    if args.step_summary:
        status |= _append_step_summary(merged, flaky)
    if args.pr_comment:
        status |= _write(args.pr_comment, pr_comment(merged, history=flaky))
    if status == 0:
        cases = merged.totals.cases
        print(f"report merge: {cases} case(s) from {len(args.inputs)} report(s) -> {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())

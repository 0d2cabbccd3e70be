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
from ._report.document import MergeError, dumps, load_report, merge, write_atomic
from ._report.markdown import step_summary
from ._report.tools import add_tools, flaky_lines, run_tool


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
    merge_cmd.add_argument(
        "--history",
        metavar="PATH",
        help="a history file: list flaky cases in the step summary and the PR comment",
    )
    add_tools(commands)
    args = parser.parse_args(argv)
    if args.command != "merge":
        return run_tool(args)

    loaded, problems = [], []
    for path in args.inputs:
        try:
            loaded.append((path, load_report(path)))
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
    flaky = flaky_lines(args.history, merged) if args.history else []
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
                    handle.write(step_summary(merged, history=flaky))
            except OSError as exc:
                print(f"report merge: could not append to {target}: {exc}", file=sys.stderr)
                status = 1
    if args.pr_comment:
        try:
            write_atomic(args.pr_comment, pr_comment(merged, history=flaky))
        except OSError as exc:
            print(f"report merge: could not write {args.pr_comment}: {exc}", file=sys.stderr)
            status = 1
    if status == 0:
        t = merged["totals"]
        print(f"report merge: {t['cases']} case(s) from {len(args.inputs)} report(s) -> {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())

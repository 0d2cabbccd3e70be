"""The plugin's public hooks, as a team would use them.

Against the real service, ``pytest_cekura_room`` is where you create a Daily room (or start
a Pipecat Cloud session) for each run; here the rooms in cekura.toml are used as they are.
"""

import os

from pytest_cekura_pipecat import Case, CekuraRun

FINISHED: list[CekuraRun] = []


def pytest_cekura_entry(case: Case, entry: dict) -> None:
    # Tell the bot which commit it is being evaluated for.
    message = dict(entry.get("publish_data_message") or {})
    message["git_sha"] = os.environ.get("GITHUB_SHA", "local")
    entry["publish_data_message"] = message


def pytest_cekura_verdict(case: Case, runs: tuple[CekuraRun, ...]) -> bool | None:
    # Accept a near miss on the opening-hours answer: a score of 80 is good enough there.
    if case.scenario == 104:
        return all((run.expected_outcome.score or 0) >= 80 or run.passed for run in runs)
    return None  # everything else: the default rule


def pytest_cekura_run_finished(case: Case, run: CekuraRun) -> None:
    FINISHED.append(run)


def pytest_terminal_summary(terminalreporter) -> None:
    if FINISHED:
        terminalreporter.write_line(f"example conftest saw {len(FINISHED)} finished run(s)")

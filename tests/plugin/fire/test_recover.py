"""A start request whose answer was lost is never sent again, but the result it created is
found in Cekura's results list and adopted; two results that could be it: neither is."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import FOUR_CASES, Suite, no_traceback

from pytest_cekura_pipecat._api.models import ListedResult, Result
from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._fire.ledger import Ledger, fingerprint
from pytest_cekura_pipecat._fire.plan import Slot
from pytest_cekura_pipecat._fire.recover import SKEW, Sent, may_be, same_runs
from pytest_cekura_pipecat._owner import Owner

RECOVERED = "recovered after the start request failed ("
# FOUR_CASES in requests of two entries: [101, 102], [103, 104], [104].
FIRST_BATCH = ("books-a-table", "late-booking")


def _lose(suite: Suite, fault: str, times: int = 1) -> None:
    if fault == "post_202_non_result":
        suite.sim.faults.post_non_result = times
        suite.sim.faults.post_non_result_status = 202
    elif fault == "post_200_non_result":
        suite.sim.faults.post_non_result = times
    else:
        setattr(suite.sim.faults, fault, times)


def _recovered(suite: Suite, name: str) -> str:
    return dict(suite.properties(name)).get("cekura_recovered", "")


@pytest.mark.parametrize(
    "fault",
    [
        "post_500_after_create",
        "post_200_non_result",
        "post_202_non_result",
        "reset_posts",
        "drop_connection_on_post",
    ],
)
def test_a_lost_start_is_recovered_and_firing_goes_on(suite: Suite, fault: str) -> None:
    _lose(suite, fault)
    suite.toml(FOUR_CASES)
    result = suite.run("-n", "0", "--cekura-batch-size=2")
    result.assert_outcomes(passed=2, failed=1, errors=1)  # every verdict is the real one
    result.stdout.fnmatch_lines(["*metric 'Respects opening hours' did not pass*"])
    assert len(suite.posts()) == 3  # the lost one was not sent again; the later ones were
    assert suite.sim.entries_fired() == 5  # no entry twice
    for name in FIRST_BATCH:
        assert _recovered(suite, name).startswith(RECOVERED), suite.properties(name)
    assert _recovered(suite, "cancels") == ""  # its request was answered
    out = result.stdout.str()
    assert "its result 5001 was found in Cekura's results list" in out  # the failing case
    assert no_traceback(out)


@pytest.mark.parametrize("xdist", [False, True])
def test_two_lost_starts_are_both_recovered(suite: Suite, xdist: bool) -> None:
    """The first request and one of the two sent together next lose their answers: each
    search waits for the other request on the wire, and each finds its own result."""
    if xdist:
        pytest.importorskip("xdist")
    suite.sim.faults.post_500_after_create = 2
    suite.toml(FOUR_CASES)
    result = suite.run("-n", "2" if xdist else "0", "--cekura-batch-size=2")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    assert [r.status for r in suite.posts()].count(500) == 2
    assert len(suite.posts()) == 3 and suite.sim.entries_fired() == 5
    recovered = [n for n in (*FIRST_BATCH, "cancels", "opening-hours") if _recovered(suite, n)]
    assert recovered[: len(FIRST_BATCH)] == list(FIRST_BATCH)
    assert len(recovered) >= 3, recovered  # the first batch and one of the next two
    assert no_traceback(result.stdout.str())


def test_two_results_that_could_be_it_adopt_neither(suite: Suite) -> None:
    """Another pipeline fired the same scenarios at the same moment: which result is ours
    cannot be told. Nothing is adopted or ended, one line says so, the cases error as
    before and nothing more is fired."""
    suite.sim.faults.post_500_after_create = 1
    suite.sim.faults.post_twin = 1
    suite.toml(FOUR_CASES)
    result = suite.run("-n", "0", "--cekura-batch-size=2")
    result.assert_outcomes(errors=4)
    assert len(suite.posts()) == 1 and suite.sim.entries_fired() == 2
    assert [r for r in suite.sim.requests if "end_call" in r.path] == []
    out = result.stdout.str()
    lines = [line for line in result.outlines if "results with the same scenarios" in line]
    assert lines and "(5002, 5001; another pipeline?)" in lines[0], out
    assert "none was adopted or ended" in lines[0]
    assert "runs may already exist and were not re-sent" in out
    assert "not fired: an earlier start request's fate is unknown (" in out
    assert RECOVERED not in out
    assert no_traceback(out)


def test_two_lost_starts_of_the_same_scenarios_adopt_neither(suite: Suite) -> None:
    """Three requests of the same two entries all lose their answers. The first goes alone:
    its result is the only one, and is adopted. The next two were on the wire together:
    each result could be either's, so neither is adopted and nothing more is fired."""
    suite.sim.faults.post_500_after_create = 3
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "c{i}"\nscenario = 101\n' for i in range(6))
    )
    result = suite.run("-n", "0", "--cekura-batch-size=2")
    result.assert_outcomes(passed=2, errors=4)
    assert len(suite.posts()) == 3 and suite.sim.entries_fired() == 6
    assert [_recovered(suite, f"c{i}") != "" for i in range(6)] == [True] * 2 + [False] * 4
    lines = [line for line in result.outlines if "lost their answers" in line]
    assert lines and "2 start requests with the same scenarios" in lines[0]  # said once
    assert [r for r in suite.sim.requests if "end_call" in r.path] == []
    assert no_traceback(result.stdout.str())


def test_a_lost_start_that_created_nothing_errors_as_before(suite: Suite) -> None:
    suite.sim.faults.post_500_before_create = 1
    suite.toml(FOUR_CASES)
    result = suite.run("-n", "0", "--cekura-batch-size=2")
    result.assert_outcomes(errors=4)
    assert len(suite.posts()) == 1 and suite.sim.entries_fired() == 0
    listed = suite.gets("/v2/results/")
    assert [r.path for r in listed] == ["/test_framework/v2/results/"] * 6  # READS polls
    out = result.stdout.str()
    assert "no result of it was found in Cekura's results list" in out
    assert no_traceback(out)


# -- what matches -----------------------------------------------------------------------------

SENT = 1_800_000_000.0
LOST = Sent(7, (101, 101, 102), SENT, "HTTP 500")


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


def _summary(**fields: object) -> ListedResult:
    item = {
        "id": 5001,
        "agent": 7,
        "created_at": _iso(SENT),
        "scenarios": [101, 102],
        "total_runs_count": 3,
        **fields,
    }
    summary = ListedResult.read(item)
    assert summary is not None
    return summary


def test_a_listed_result_may_be_the_lost_ones() -> None:
    assert may_be(_summary(), LOST, set())
    assert may_be(_summary(created_at=_iso(SENT - SKEW)), LOST, set())  # clocks may differ
    assert may_be(_summary(created_at=_iso(SENT - 1)[:-1]), LOST, set())  # no zone: UTC
    assert may_be(_summary(scenarios=[{"id": 102}, {"id": 101}], total_runs_count="3"), LOST, ())
    assert may_be(_summary(agent=None, scenarios=None, total_runs_count=None), LOST, ())
    assert not may_be(_summary(), LOST, {5001})  # known to this session
    assert not may_be(_summary(created_at=_iso(SENT - SKEW - 1)), LOST, ())
    assert not may_be(_summary(created_at=None), LOST, ())
    assert not may_be(_summary(agent=8), LOST, ())
    assert not may_be(_summary(scenarios=[101]), LOST, ())
    assert not may_be(_summary(total_runs_count=2), LOST, ())


def test_its_runs_must_be_the_entries_sent() -> None:
    def result(*scenarios: int, agent: int = 7) -> Result:
        runs = [{"id": 90001 + i, "scenario": s} for i, s in enumerate(scenarios)]
        return Result.model_validate({"id": 5001, "agent": agent, "runs": runs})

    assert same_runs(result(102, 101, 101), LOST)
    assert not same_runs(result(101, 102, 102), LOST)  # the multiplicity counts
    assert not same_runs(result(101, 102), LOST)
    assert not same_runs(result(101, 101, 102, agent=8), LOST)


# -- a killed session's successor --------------------------------------------------------------

TWO_SLOW_CASES = """
pipecat_room_url = "https://acme.daily.co/room-abc"

[[case]]
name = "slow-pass"
scenario = 108

[[case]]
name = "late-booking"
scenario = 102
"""


def _ledger_files(root: Path) -> list[Path]:
    return sorted((root / ".pytest_cache" / "d" / "cekura").glob("ledger-*.json"))


def _kill_while_sending(suite: Suite, created: int = 2) -> None:
    """Run pytest (with its cache) in a subprocess whose start request created its runs
    but whose answer drips, and SIGKILL it once the request is in the ledger and on the
    server: the answer never arrives."""
    suite.sim.faults.drip_posts = 1
    suite.sim.faults.drip_interval = 1.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist"],
        cwd=suite.pytester.path,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120  # a hang, not a margin: the condition ends the wait
        while len(_ledger_files(suite.pytester.path)) < 2 or not suite.posts():
            assert time.monotonic() < deadline, "the request never left"
            assert proc.poll() is None, "pytest ended before it was killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert suite.sim.entries_fired() == created


def test_a_killed_sessions_unanswered_start_is_found_by_the_next(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES)
    _kill_while_sending(suite)
    result = suite.pytester.runpytest("--junitxml=junit.xml", "-n", "0")
    result.assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 1 and suite.sim.entries_fired() == 2  # nothing sent again
    out = result.stdout.str()
    assert "re-attached to runs started at " in out
    assert "The agent booked 23:30" in out  # the verdict of the original run
    for name in ("slow-pass", "late-booking"):
        assert _recovered(suite, name).startswith("recovered after the session that sent")
    assert _ledger_files(suite.pytester.path) == []  # judged: nothing left to resume
    assert [r for r in suite.sim.requests if "end_call" in r.path] == []


def test_a_killed_sessions_start_that_created_nothing_is_fired_afresh(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES)
    suite.sim.faults.post_500_before_create = 1
    _kill_while_sending(suite, created=0)
    result = suite.pytester.runpytest("--junitxml=junit.xml", "-n", "0")
    result.assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 2 and suite.sim.entries_fired() == 2
    out = result.stdout.str()
    assert "sent by a session that ended before its answer was not recovered (no result" in out
    assert _recovered(suite, "slow-pass") == ""


def test_the_ledger_keeps_an_unanswered_request_for_the_next_session(tmp_path: Path) -> None:
    """Written before it leaves: a killed session's unanswered request names its entries;
    the next session gives the slots the runs it found and re-attaches them, and drops the
    slots it did not find (nothing to end, nothing to re-attach: fired afresh)."""
    killed = Owner("0ld5e55i0n", socket.gethostname(), os.getpid(), "1")
    cases = [
        (f"id{i}", Case(f"c{i}", s, "cekura.toml", pipecat_room_url="https://a.daily.co/r"))
        for i, s in enumerate((101, 102))
    ]
    sent = Sent(None, (101, 102), time.time())
    fired = [(case, fingerprint(n, case, {}), Slot(n, 0, case.scenario, 60.0)) for n, case in cases]
    assert Ledger(tmp_path, killed).record_sending(fired, sent) is None
    requests, known = Ledger(tmp_path).unanswered()
    assert known == set()
    assert [(r.sent, sorted(r.slots)) for r in requests] == [(sent, [("id0", 0, 0), ("id1", 0, 1)])]

    resumed = Ledger(tmp_path).resume(cases, {}, found={("id0", 0): (5001, 90001)})
    assert [(s.key, s.result_id, s.run_id) for s in resumed.attached.values()] == [
        ("0:0:id0", 5001, 90001)
    ]
    assert resumed.end_runs == [] and resumed.end_results == []
    assert len(list(tmp_path.iterdir())) == 1  # id0's, now this session's; id1's is gone
    assert Ledger(tmp_path).unanswered() == ([], {5001})


def test_an_answered_request_replaces_its_unanswered_record(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    case = Case("c", 101, "cekura.toml", pipecat_room_url="https://a.daily.co/r")
    mark = fingerprint("id", case, {})
    ledger.record_sending([(case, mark, Slot("id", 0, 101, 60.0))], Sent(None, (101,), 1.0))
    answered = Slot("id", 0, 101, 60.0, fired_at=2.0, result_id=7, run_id=70)
    ledger.record([(case, mark, answered)])
    (path,) = tmp_path.iterdir()
    (slot,) = json.loads(path.read_text())["slots"]
    assert (slot["result_id"], slot["run_id"], slot["sent"]) == (7, 70, None)

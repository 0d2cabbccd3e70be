"""Never bill by accident: firing stops at the first start request of unknown fate, a killed
session is resumed from the ledger instead of fired again, and odd numbers in one run never
make the JSON report invalid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import API_KEY, START, Suite, no_traceback

from pytest_cekura_pipecat._case import Case
from pytest_cekura_pipecat._ledger import Ledger, fingerprint
from pytest_cekura_pipecat._owner import Owner
from pytest_cekura_pipecat._plan import Slot
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

# -- firing stops at the first unknown ------------------------------------------------------


def test_a_start_of_unknown_fate_stops_every_later_start(suite: Suite) -> None:
    """A 200 whose body is not a result: runs were created, nobody knows which. 300 runs in
    six requests would have been sent; exactly one is."""
    suite.sim.configure(start_non_result=True)
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "c{i}"\nscenario = 101\nrepeat = 100\n' for i in range(3))
    )
    result = suite.run("--cekura-report=report.json")
    result.assert_outcomes(errors=3)
    assert len(suite.posts()) == 1
    assert suite.sim.entries_fired() == 50  # one batch: cekura_batch_size's default
    out = result.stdout.str()
    assert "not fired: an earlier start request's fate is unknown (" in out
    assert "a body that is not a result" in out
    assert no_traceback(out)


def test_repeat_above_cekuras_cap_is_a_config_error_naming_case_and_file(suite: Suite) -> None:
    suite.toml('[[case]]\nname = "too-many"\nscenario = 101\nrepeat = 101\n')
    result = suite.run()
    out = result.stdout.str()
    line = next(line for line in result.outlines if "repeat" in line and "100" in line)
    assert "cekura.toml" in line and "too-many" in line, out
    assert suite.posts() == []
    assert no_traceback(out)


# -- the ledger -------------------------------------------------------------------------------

TWO_SLOW_CASES = """
pipecat_room_url = "https://acme.daily.co/room-abc"
pipecat_token = "${ROOM_TOKEN}"

[[case]]
name = "slow-pass"
scenario = 108

[[case]]
name = "late-booking"
scenario = 102
"""


def _ledger_files(root: Path) -> list[Path]:
    return sorted((root / ".pytest_cache" / "d" / "cekura").glob("ledger-*.json"))


def _kill_after_firing(suite: Suite, *args: str, cases: int = 2) -> None:
    """Run pytest (with its cache) in a subprocess and SIGKILL it, xdist workers and all
    (as a cancelled CI job is), once every case's answered start request is in the ledger:
    no verdict, no ending of calls."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=suite.pytester.path,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len(_ledger_files(suite.pytester.path)) < cases:
            assert time.monotonic() < deadline, "the ledger was never written"
            assert proc.poll() is None, "pytest ended before it was killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(suite.posts()) == 1
    assert suite.ended() == [] and _end_call_posts(suite) == []


def _end_call_posts(suite: Suite) -> list[str]:
    return [r.path for r in suite.sim.requests if r.path.endswith("/end_call/")]


def _rerun(suite: Suite, *args: str) -> pytest.RunResult:
    # With pytest's cache (the ledger lives there), unlike Suite.run.
    return suite.pytester.runpytest("--junitxml=junit.xml", "-rA", *args)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_a_killed_session_is_resumed_not_fired_again(suite: Suite, workers: list[str]) -> None:
    if workers:
        pytest.importorskip("xdist")
    suite.toml(TWO_SLOW_CASES)
    _kill_after_firing(suite, *workers)
    fired = suite.sim.entries_fired()

    result = _rerun(suite, *workers)
    result.assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 1  # nothing fired again...
    assert suite.sim.entries_fired() == fired
    out = result.stdout.str()
    assert "re-attached to runs started at " in out  # ...and the summary says why
    assert "The agent booked 23:30" in out  # the verdict of the original run
    assert _ledger_files(suite.pytester.path) == []  # judged: nothing left to resume
    assert _end_call_posts(suite) == [] and suite.ended() == []

    if not workers:
        _rerun(suite).assert_outcomes(passed=1, failed=1)  # a third run fires anew
        assert len(suite.posts()) == 2


def test_a_reattached_run_holds_its_place_in_its_room(suite: Suite) -> None:
    """A run re-attached from the ledger is still live in its static room: a case that must
    go there waits for it to end (the server refuses a second caller in a live room)."""
    one = (
        TWO_SLOW_CASES.split("[[case]]")[0]
        + 'room_concurrency = 1\n[[case]]\nname = "slow-pass"\nscenario = 108\n'
    )
    suite.toml(one)
    _kill_after_firing(suite, cases=1)
    suite.sim.configure(room_exclusive=True)
    suite.toml(one + '[[case]]\nname = "newcomer"\nscenario = 104\n')

    result = _rerun(suite)
    result.assert_outcomes(passed=2)
    assert "re-attached to runs started at " in result.stdout.str()
    first, second = suite.posts()
    assert second.status == 200 and [e["scenario"] for e in second.body["scenarios"]] == [104]
    assert second.at >= first.at + 2.5  # after the re-attached run (2.5 s) ended


def test_a_changed_case_is_not_reattached_its_calls_are_ended(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES)
    _kill_after_firing(suite)
    (old,) = suite.posts()
    suite.toml(TWO_SLOW_CASES.replace("scenario = 102", "scenario = 102\nrepeat = 2\n"))

    result = _rerun(suite)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "re-attached to runs started at " in out  # slow-pass did not change
    assert "1 case(s) fired by an earlier session were never judged" in out
    # late-booking was fired again (twice now), and its old run's call was ended.
    new = suite.posts()[1:]
    assert [[e["scenario"] for e in p.body["scenarios"]] for p in new] == [[102, 102]]
    assert len(_end_call_posts(suite)) == 1
    assert len(old.body["scenarios"]) == 2


def test_fresh_ignores_the_ledger_and_ends_what_it_left(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES)
    _kill_after_firing(suite)
    result = _rerun(suite, "--cekura-fresh")
    result.assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 2
    assert len(_end_call_posts(suite)) == 2
    assert "re-attached to runs" not in result.stdout.str()
    assert "(--cekura-fresh): their calls are ended" in result.stdout.str()


def test_runs_past_their_timeout_are_ended_not_reattached(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES)
    _kill_after_firing(suite)
    for path in _ledger_files(suite.pytester.path):  # fired an hour ago
        entry = json.loads(path.read_text())
        for slot in entry["slots"]:
            slot["fired_at"] -= 3600
        entry["timeout"] = 60
        path.write_text(json.dumps(entry))
    suite.toml(TWO_SLOW_CASES.replace("[[case]]", "[[case]]\ntimeout = 60"))
    result = _rerun(suite)
    result.assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 2
    assert len(_end_call_posts(suite)) == 2
    assert "the case changed or its runs are too old" in result.stdout.str()


def test_without_the_cache_provider_the_ledger_is_off_and_says_so(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES.replace("108", "101"))
    result = suite.run()  # -p no:cacheprovider
    result.assert_outcomes(passed=1, failed=1)
    notes = [line for line in result.outlines if "no ledger of fired runs" in line]
    assert len(notes) == 1, result.stdout.str()
    assert "-p no:cacheprovider" in notes[0]


def _killed() -> Owner:
    """A session that no longer runs: this process's pid, reused (it started later)."""
    return Owner("0ld5e55i0n", socket.gethostname(), os.getpid(), "1")


def test_the_ledger_holds_no_secret(suite: Suite, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, _killed())
    case = Case("c", 101, "cekura.toml", pipecat_room_url="https://a.daily.co/r?t=${T}")
    env = {"T": "query-SECRET-1234"}
    mark = fingerprint("id", case, env)
    slot = Slot("id", 0, 101, 60.0, fired_at=time.time(), result_id=7, run_id=70)
    ledger.record([(case, mark, slot)])
    (path,) = tmp_path.iterdir()
    assert "SECRET" not in path.read_text() and API_KEY not in path.read_text()
    # The same case, same values: re-attached; another token: not.
    assert list(Ledger(tmp_path).resume([("id", case)], env).attached) == ["0:0:id"]
    for path in tmp_path.iterdir():  # re-attached: now the (live) new session's entry
        path.unlink()
    ledger.record([(case, mark, slot)])
    other = Ledger(tmp_path).resume([("id", case)], {"T": "query-SECRET-9999"})
    assert other.attached == {} and other.end_runs == [70]
    assert list(tmp_path.iterdir()) == []


# -- one odd number harms one field ---------------------------------------------------------


@pytest.fixture
def odd_sim() -> Iterator[Simulator]:
    scripts = [
        ScenarioScript(121, "Infinite duration", "pass", 0.3, non_finite="duration"),
        ScenarioScript(122, "NaN score", "pass", 0.3, non_finite="score"),
        ScenarioScript(123, "Plain", "pass", 0.3),
    ]
    with Simulator(scripts, api_key=API_KEY) as simulator:
        yield simulator


def test_infinity_and_nan_leave_the_report_strict_json(
    pytester: pytest.Pytester, odd_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeini(
        f"[pytest]\ncekura_api_url = {odd_sim.url}\ncekura_poll_interval = 0.1\ncekura_room_concurrency = 100\n"
    )
    pytester.makefile(
        ".toml",
        cekura='pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f"[[case]]\nscenario = {s}\n" for s in (121, 122, 123)),
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--cekura-report=report.json")
    posts = [r for r in odd_sim.requests if r.method == "POST" and r.path == START]
    assert len(posts) == 1  # the three runs share one result
    result.assert_outcomes(passed=3)  # an absurd field is unknown, not an error
    assert no_traceback(result.stdout.str())
    raw = (pytester.path / "report.json").read_text()

    def strict(name: str) -> object:
        raise ValueError(f"not strict JSON: {name}")

    report = json.loads(raw, parse_constant=strict)
    runs = {c["scenario"]: c["runs"][0] for c in report["cases"]}
    assert runs[121]["duration"] is None and runs[123]["verdict"] == "passed"


def test_an_interrupted_session_ends_its_calls_and_leaves_nothing_to_resume(
    suite: Suite,
) -> None:
    """SIGTERM (a cancelled job) ends the live calls: a later session must not re-attach to
    ended calls, so the interrupted session forgets them."""
    suite.toml(TWO_SLOW_CASES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=suite.pytester.path,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while len(_ledger_files(suite.pytester.path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert suite.ended(), out  # the live calls were ended...
    assert _ledger_files(suite.pytester.path) == [], out  # ...and forgotten
    _rerun(suite).assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 2

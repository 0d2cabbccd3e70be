"""Never bill by accident: firing stops at the first start request of unknown fate, a killed
session is resumed from the ledger instead of fired again, and odd numbers in one run never
make the JSON report invalid."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import API_KEY, ROOM_TOKEN, START, Suite, no_traceback

from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._fire.ledger import Ledger, fingerprint
from pytest_cekura_pipecat._fire.plan import Slot
from pytest_cekura_pipecat._owner import Owner
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

# -- firing stops at the first unknown ------------------------------------------------------


def test_a_start_of_unknown_fate_stops_every_later_start(suite: Suite) -> None:
    """A 500 from a start request: runs may exist, and none is found in the results list
    (test_recover.py has those that are). 300 runs in six requests would have been sent;
    exactly one request is."""
    suite.sim.faults.post_500_before_create = 1
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "c{i}"\nscenario = 101\nrepeat = 100\n' for i in range(3))
    )
    result = suite.run("--cekura-report=report.json")
    result.assert_outcomes(errors=3)
    assert len(suite.posts()) == 1
    assert suite.sim.entries_fired() == 0
    out = result.stdout.str()
    assert "not fired: an earlier start request's fate is unknown (" in out
    assert "failed after it was sent (HTTP 500)" in out
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


def _answered(root: Path) -> int:
    """Ledger entries whose start requests were all answered (each is written once before
    its request leaves, then again with the answer)."""
    count = 0
    for path in _ledger_files(root):
        with contextlib.suppress(OSError, ValueError):
            slots = json.loads(path.read_text())["slots"]
            count += all(slot.get("result_id") is not None for slot in slots)
    return count


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
        while _answered(suite.pytester.path) < cases:
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
    while _answered(suite.pytester.path) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert suite.ended(), out  # the live calls were ended...
    assert _ledger_files(suite.pytester.path) == [], out  # ...and forgotten
    _rerun(suite).assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 2


# -- the ledger belongs to sessions -----------------------------------------------------------

FOUR = TWO_SLOW_CASES.split("[[case]]")[0] + "".join(
    f'[[case]]\nname = "c{i}"\nscenario = {scenario}\n'
    for i, scenario in enumerate((101, 104, 101, 104))
)
FOUR_SLOW = FOUR.replace("scenario = 101", "scenario = 108").replace(
    "scenario = 104", "scenario = 108"
)

# A session that judges nothing: it stops in its first verdict, with every entry written.
STALL = """
import os
import threading
from pathlib import Path


def pytest_cekura_run_finished(case, run):
    if os.environ.get("CEKURA_TEST_STALL"):
        Path("stalled").touch()
        threading.Event().wait()
"""


def _session(suite: Suite, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """pytest with its cache, in a subprocess leading a process group of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=suite.pytester.path,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120  # a hang, not a margin: the condition ends the wait
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _touched(suite: Suite, since: int) -> set[int]:
    """The runs that requests from ``since`` on polled or ended (by run or result id)."""
    by_result: dict[int, set[int]] = {}
    for run in suite.sim.runs():
        by_result.setdefault(int(run["result_id"]), set()).add(int(run["id"]))
    ids: set[int] = set()
    for request in suite.sim.requests[since:]:
        for value in request.query.get("run_ids", []):
            ids.update(int(i) for i in value.split(",") if i)
        if match := re.search(r"/runs-external/(\d+)/", request.path):
            ids.add(int(match[1]))
        if match := re.search(r"/results/(\d+)/", request.path):
            ids.update(by_result.get(int(match[1]), set()))
    return ids


def test_two_sessions_in_one_directory_keep_their_own_entries(suite: Suite) -> None:
    """Two CI jobs on one runner: the one that finishes forgets only what it judged; the
    one SIGKILLed after firing is re-attached by the next session, not fired again."""
    suite.toml(FOUR)
    suite.pytester.makeconftest(STALL)
    killed = _session(suite, CEKURA_TEST_STALL="1")
    other = None
    try:
        _until(lambda: (suite.pytester.path / "stalled").exists(), "the first session fired")
        other = _session(suite)
        _until(lambda: suite.sim.entries_fired() == 8, "the second session fired")
        os.killpg(killed.pid, signal.SIGKILL)
        assert other.wait(120) == 0
    finally:
        _end_group(killed)
        if other is not None:
            _end_group(other)
    first = min(int(run["result_id"]) for run in suite.sim.runs())
    left = {int(run["id"]) for run in suite.sim.runs() if run["result_id"] == first}
    assert len(left) == 4 and len(_ledger_files(suite.pytester.path)) == 4
    since = len(suite.sim.requests)

    result = _rerun(suite)
    result.assert_outcomes(passed=4)
    assert suite.sim.entries_fired() == 8 and len(suite.posts()) == 2
    assert "re-attached to runs started at " in result.stdout.str()
    assert "(4 case(s)," in result.stdout.str()
    assert left <= _touched(suite, since)  # the killed session's runs, judged now
    assert _ledger_files(suite.pytester.path) == []


def test_a_killed_controller_leaves_its_runs_to_the_next_session(suite: Suite) -> None:
    """SIGKILL of the xdist controller (timeout -s KILL, the OOM killer): its orphaned
    workers end without judging, and remove nothing; the rerun judges the 4 runs."""
    pytest.importorskip("xdist")
    suite.toml(FOUR_SLOW)
    proc = _session(suite, "-n", "2")
    try:
        _until(lambda: _answered(suite.pytester.path) == 4, "the ledger was written")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)  # reaped: a zombie still counts as a member of its group
        _until(lambda: not _group_alive(proc.pid), "the orphaned workers ended")
    finally:
        _end_group(proc)
    assert len(_ledger_files(suite.pytester.path)) == 4

    result = _rerun(suite, "-n", "2")
    result.assert_outcomes(passed=4)
    assert suite.sim.entries_fired() == 4 and len(suite.posts()) == 1
    assert "re-attached to runs started at " in result.stdout.str()
    assert _ledger_files(suite.pytester.path) == []


def test_a_reused_pid_is_not_taken_for_a_live_session(suite: Suite) -> None:
    """The killed session's pid now belongs to another process (this one): its start time
    tells them apart, so the runs are re-attached, not fired again."""
    suite.toml(TWO_SLOW_CASES)
    _kill_after_firing(suite)
    for path in _ledger_files(suite.pytester.path):
        entry = json.loads(path.read_text())
        entry["owner"]["pid"] = os.getpid()
        entry["owner"]["started"] = "1"  # long before this process started
        path.write_text(json.dumps(entry))

    result = _rerun(suite)
    result.assert_outcomes(passed=1, failed=1)
    assert len(suite.posts()) == 1
    assert "re-attached to runs started at " in result.stdout.str()


# Writes a line to the terminal when the first entry is built, right before the first start
# request leaves.
ENTRY_MARK = """
CONFIGS = []


def pytest_configure(config):
    CONFIGS.append(config)


def pytest_cekura_entry(case, entry):
    reporter = CONFIGS[-1].pluginmanager.get_plugin("terminalreporter")
    if not getattr(reporter, "cekura_marked", False):
        reporter.cekura_marked = True
        reporter.write_line("FIRST-START-REQUEST")
"""


# pytest's own cache warns that it cannot write (the project's filterwarnings makes it an error)
READ_ONLY_CACHE = ("-W", "ignore::pytest.PytestCacheWarning")


def _unwritable_ledger(root: Path) -> Path:
    """The ledger's directory made unwritable: a read-only ``.pytest_cache`` (root writes
    there anyway: then a file where the directory would be)."""
    cache = root / ".pytest_cache"
    if os.geteuid() == 0:
        (cache / "d").mkdir(parents=True)
        (cache / "d" / "cekura").write_text("")
    else:
        cache.mkdir()
        cache.chmod(0o555)
    return cache / "d" / "cekura"


def test_a_ledger_that_cannot_be_written_is_said_before_firing(suite: Suite) -> None:
    suite.toml(TWO_SLOW_CASES.replace("108", "101"))
    suite.pytester.makeconftest(ENTRY_MARK)
    directory = _unwritable_ledger(suite.pytester.path)
    try:
        result = _rerun(suite, *READ_ONLY_CACHE)
    finally:
        (suite.pytester.path / ".pytest_cache").chmod(0o755)
    result.assert_outcomes(passed=1, failed=1)
    lines = result.outlines
    said = [i for i, line in enumerate(lines) if "cannot write the ledger of fired runs" in line]
    assert len(said) == 1, result.stdout.str()
    assert str(directory) in lines[said[0]] and "re-attach" in lines[said[0]]
    assert said[0] < lines.index("FIRST-START-REQUEST")
    assert "-p no:cacheprovider" not in result.stdout.str()


def test_under_xdist_the_controller_says_it_before_any_worker_starts(suite: Suite) -> None:
    pytest.importorskip("xdist")
    suite.toml(TWO_SLOW_CASES.replace("108", "101"))
    directory = _unwritable_ledger(suite.pytester.path)
    try:
        result = _rerun(suite, "-n", "2", *READ_ONLY_CACHE)
    finally:
        (suite.pytester.path / ".pytest_cache").chmod(0o755)
    result.assert_outcomes(passed=1, failed=1)
    lines = result.outlines
    said = [i for i, line in enumerate(lines) if "cannot write the ledger of fired runs" in line]
    assert len(said) == 1 and str(directory) in lines[said[0]], result.stdout.str()
    # Said in pytest_configure_node, before any worker runs pytest (let alone fires): before
    # the workers report their collection.
    collected = [i for i, line in enumerate(lines) if re.match(r"2 workers \[", line)]
    assert collected and said[0] < collected[0], result.stdout.str()


def test_a_killed_session_leaves_no_secret_in_the_temporary_directory(
    suite: Suite, tmp_path: Path
) -> None:
    """The shared directory of a SIGKILLed -n 2 session stays behind (nobody removes it at
    its end): it never held a secret in clear, and the next session removes it."""
    pytest.importorskip("xdist")
    temp = tmp_path / "temp"
    temp.mkdir()
    suite.toml(TWO_SLOW_CASES)
    killed = _session(suite, "-n", "2", TMPDIR=str(temp))
    try:
        _until(lambda: _answered(suite.pytester.path) == 2, "the ledger was written")
    finally:
        _end_group(killed)
    (left,) = temp.glob("pytest-cekura-*")
    assert (left / "secrets").stat().st_size > 0
    secrets = (API_KEY.encode(), ROOM_TOKEN.encode(), b"SECRET")

    def leaked() -> list[Path]:
        files = [p for p in temp.rglob("*") if p.is_file()]
        return [p for p in files if any(s in p.read_bytes() for s in secrets)]

    assert leaked() == []
    after = _session(suite, "-n", "2", TMPDIR=str(temp))
    try:
        _until(lambda: not left.exists(), "the next session removed what the killed one left")
        assert leaked() == []
        assert after.wait(120) == 1  # late-booking fails
    finally:
        _end_group(after)
    assert leaked() == []


def test_a_shared_directory_that_cannot_be_made_is_said_before_any_worker_starts(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full temporary directory: the controller (in this process) cannot make it."""
    pytest.importorskip("xdist")
    import errno
    import tempfile

    from pytest_cekura_pipecat import _owner, plugin

    def full(owner: _owner.Owner) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plugin, "make_shared_dir", full)
    suite.toml(TWO_SLOW_CASES.replace("108", "101"))
    result = suite.run("-n", "2")
    result.assert_outcomes(errors=2)
    lines = result.outlines
    said = [i for i, line in enumerate(lines) if line.startswith("cekura: cannot create the")]
    assert len(said) == 1 and tempfile.gettempdir() in lines[said[0]], result.stdout.str()
    assert "No space left on device" in lines[said[0]]
    collected = [i for i, line in enumerate(lines) if re.match(r"2 workers \[", line)]
    assert collected and said[0] < collected[0], result.stdout.str()
    assert suite.posts() == []
    assert "not fired: cannot create the directory the xdist workers share" in result.stdout.str()
    assert no_traceback(result.stdout.str())


def test_a_dead_sessions_entry_is_re_attached_by_one_session_only(tmp_path: Path) -> None:
    """Two sessions starting at once after a killed one: the first to claim an entry
    re-attaches it; the other neither re-attaches nor ends those runs."""
    case = Case("c", 101, "cekura.toml", pipecat_room_url="https://a.daily.co/r")
    mark = fingerprint("id", case, {})
    slot = Slot("id", 0, 101, 60.0, fired_at=time.time(), result_id=7, run_id=70)
    Ledger(tmp_path, _killed()).record([(case, mark, slot)])
    first, second = Ledger(tmp_path), Ledger(tmp_path)
    left = second._left()  # read before the first claims it: the race
    assert list(first.resume([("id", case)], {}).attached) == ["0:0:id"]
    assert not second._claim(*left[0])
    late = second.resume([("id", case)], {})
    assert late.attached == {} and late.end_runs == [] and late.end_results == []
    (path,) = tmp_path.iterdir()  # the first session's now: it forgets it once judged
    first.forget("id")
    assert not path.exists()


def test_an_entry_written_before_sessions_owned_it_is_still_resumed(tmp_path: Path) -> None:
    """An upgrade loses no billed run: a first-version entry (owned by a pid) is read."""
    case = Case("c", 101, "cekura.toml", pipecat_room_url="https://a.daily.co/r")
    old = {
        "version": 1,
        "nodeid": "id",
        "fingerprint": fingerprint("id", case, {}),
        "timeout": 60.0,
        "host": socket.gethostname(),
        "pid": 2**22 + 1,  # above Linux's pid_max: no process has it
        "slots": [
            {
                "index": 0,
                "scenario": 101,
                "fired_at": time.time(),
                "result_id": 7,
                "run_id": 70,
                "dashboard_url": None,
            }
        ],
    }
    (tmp_path / "ledger-0123456789abcdef01234567.json").write_text(json.dumps(old))
    assert list(Ledger(tmp_path).resume([("id", case)], {}).attached) == ["0:0:id"]

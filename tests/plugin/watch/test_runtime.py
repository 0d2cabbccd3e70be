"""The runtime's promises (issue 10): outages, dripping answers, pytest-timeout, idle cost, a
dead firing worker. Each session must end in bounded time with every case saying why."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from xml.etree import ElementTree as ET

import pytest
from helpers import API_KEY, ROOM_TOKEN, Suite, no_traceback

from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'
FOUR = ROOM + "".join(f'[[case]]\nname = "c{i}"\nscenario = 101\n' for i in range(4))


def _when_started(suite: Suite, then: object) -> threading.Thread:
    """Call ``then()`` once a start request has been answered (in a thread)."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(r.status == 200 for r in suite.posts()):
                then()  # type: ignore[operator]
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _outage_run(suite: Suite, *args: str) -> tuple[pytest.RunResult, str, float]:
    """Run the suite through an outage: every case an error, no traceback; the output and
    how long the session took."""
    started = time.monotonic()
    result = suite.run(*args)
    elapsed = time.monotonic() - started
    result.assert_outcomes(errors=4)
    out = result.stdout.str()
    assert no_traceback(out)
    return result, out, elapsed


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["5xx", "refused"])
def test_an_outage_from_the_first_poll_costs_one_retry_window(suite: Suite, outage: str) -> None:
    suite.toml(FOUR)
    if outage == "5xx":
        suite.sim.faults.get_5xx_every = 1
    else:
        _when_started(suite, suite.sim.stop)
    # A case timeout far past the window: ending at the window, not at the timeout, shows
    # whatever the machine's load.
    _, out, elapsed = _outage_run(suite, "--cekura-timeout=120", "--cekura-retry-window=10")
    assert out.count("unreachable since") >= 4, out
    assert elapsed < 60, elapsed


@pytest.mark.slow
def test_an_outage_at_the_default_poll_interval_is_named_and_costs_one_window(
    suite: Suite,
) -> None:
    """Polls every 3 s back off 3, 6, 12 s: the give-up comes when the retry window ends, not
    one back-off past it (which would be after the case timeout, saying only "no verdict")."""
    suite.toml(FOUR)
    _when_started(suite, suite.sim.stop)
    _, out, elapsed = _outage_run(
        suite,
        "--cekura-timeout=120",
        "--cekura-retry-window=10",
        "--cekura-poll-interval=3",
        "--cekura-poll-max-interval=30",
    )
    assert out.count("unreachable since") >= 4, out
    assert "no verdict after" not in out, out
    assert elapsed < 60, elapsed  # the window (10 s), not the case timeout (120 s)


def test_an_outage_stops_the_later_waves_of_a_shared_room(suite: Suite) -> None:
    """Runs sharing a room go one after another. The service goes down under the first wave:
    its reads wait out the retry window; the second wave's start, made in the same outage,
    gets one try, not a window of its own; the waves after it are not sent."""
    suite.toml(FOUR)
    down: list[float] = []

    def outage() -> None:
        down.append(time.monotonic())
        suite.sim.stop()

    _when_started(suite, outage)
    result, out, _ = _outage_run(suite, "--cekura-room-concurrency=1", "--cekura-retry-window=20")
    # Timed from the outage, not from the start: a loaded machine's start-up is not in it.
    since_outage = time.monotonic() - down[0]
    result.stdout.fnmatch_lines(["*not started: Cekura at * unreachable since *"])
    assert out.count("not fired: Cekura at") >= 2, out  # the third and fourth waves
    assert since_outage < 2 * 20, since_outage  # one window, not two (or four)
    assert len(set(re.findall(r"unreachable since (\d\d:\d\d:\d\dZ)", out))) == 1, out  # one outage


@pytest.mark.slow
def test_a_dripping_result_read_cannot_outlive_the_case_timeout(suite: Suite) -> None:
    """The GET answers one byte a second: the HTTP deadline (120 s here) is longer than the
    case timeout, so the watcher's own deadline must end the wait at 15 s."""
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    faults = suite.sim.faults

    class DripAfterThePreflight:  # its reads of the scenario and the credits answer at once
        def pytest_cekura_entry(self, case: object, entry: object) -> None:
            faults.drip_gets = 1
            faults.drip_interval = 1.0

    started = time.monotonic()
    result = suite.pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--cekura-timeout=15",
        "--cekura-http-timeout=120",
        plugins=[DripAfterThePreflight()],
    )
    elapsed = time.monotonic() - started
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no verdict after 15 s*"])
    assert 15 <= elapsed < 60, elapsed  # the case timeout, not the 120 s HTTP deadline
    assert no_traceback(result.stdout.str())


SIX_SECONDS = [
    ScenarioScript(201, "Slow pass", "pass", 6),
    ScenarioScript(
        202, "Slow fail", "fail", 6, reasons=("Booked too late",), failed_metrics=("Hours",)
    ),
    ScenarioScript(203, "Slow error", "error", 6, reasons=("Bot did not join the room",)),
]


@pytest.fixture
def slow_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Suite]:
    monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
    monkeypatch.setenv("ROOM_TOKEN", ROOM_TOKEN)
    for name in ("CEKURA_API_URL", "CEKURA_DASHBOARD_URL", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    with Simulator(SIX_SECONDS, api_key=API_KEY) as sim:
        pytester.makeini(
            f"""
            [pytest]
            cekura_api_url = {sim.url}
            cekura_poll_interval = 0.2
            cekura_poll_max_interval = 0.5
            cekura_room_concurrency = 100
            """
        )
        yield Suite(pytester, sim)


@pytest.mark.slow
def test_pytest_timeout_does_not_cut_the_wait_for_a_verdict(slow_suite: Suite) -> None:
    pytest.importorskip("pytest_timeout")
    slow_suite.toml(
        ROOM + "".join(f'[[case]]\nname = "t{s}"\nscenario = {s}\n' for s in (201, 202, 203))
    )
    slow_suite.pytester.makepyfile(
        test_marked="""
        import time
        import pytest

        @pytest.mark.cekura(scenario=201, pipecat_room_url="https://acme.daily.co/r")
        def test_marked_pass(cekura_run):
            assert cekura_run.passed

        @pytest.mark.cekura(scenario=202, pipecat_room_url="https://acme.daily.co/r")
        def test_marked_fail():
            pass

        @pytest.mark.cekura(scenario=201, pipecat_room_url="https://acme.daily.co/r")
        def test_marked_slow_body():
            time.sleep(5)
        """
    )
    started = time.monotonic()
    result = slow_suite.run("--timeout=3", "-p", "no:randomly")
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=2, failed=3, errors=1)
    verdicts = {case.get("name"): _outcome(case) for case in slow_suite.junit().iter("testcase")}
    expected = {
        "t201": "passed",
        "t202": "failure: Failed: expected outcome: score 40/100",
        "t203": 'error: failed on setup with "pytest_cekura_pipecat.NotEvaluated: Bot did not',
        "test_marked_pass": "passed",
        "test_marked_fail": "failure: Failed: expected outcome: score 40/100",
        # The one body that outlives --timeout is cut by pytest-timeout, as without the plugin.
        "test_marked_slow_body": "failure: Failed: Timeout (>3.0s) from pytest-timeout.",
    }
    assert verdicts.keys() == expected.keys()
    assert all(verdicts[name].startswith(expected[name]) for name in expected), verdicts
    assert elapsed < 30, elapsed


HEAVY = (
    "httpx",
    "pydantic",
    "tenacity",
    "pytest_cekura_pipecat._api.client",
    "pytest_cekura_pipecat._api.models",
)


def test_a_project_without_cases_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    probe = (
        "import sys, pytest\n"
        "code = pytest.main(['-q', '-p', 'no:cacheprovider'])\n"
        "print('CODE', int(code))\n"
        "print('CEKURA', 'pytest_cekura_pipecat.plugin' in sys.modules)\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEKURA_", "PYTEST_"))}
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout
    assert "CODE 0" in out, out + proc.stderr
    assert "CEKURA True" in out  # the plugin was loaded (entry point)...
    assert "HEAVY []" in out, out  # ...and stayed light


@pytest.mark.slow
def test_a_killed_firing_worker_is_reported_in_seconds(suite: Suite) -> None:
    pytest.importorskip("xdist")
    pidfile = suite.firer_pidfile()
    suite.toml(FOUR)
    # The first batch is sent alone and answered; the second hangs on the wire...
    suite.sim.faults.drip_posts = 1
    suite.sim.faults.drip_posts_after = 1
    suite.sim.faults.drip_interval = 1.0

    def kill() -> None:  # ...while the other was answered: then the firing worker dies
        deadline = time.monotonic() + 20
        while len(suite.posts()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    started = time.monotonic()
    result = suite.run("-n", "2", "--cekura-batch-size=2", "--cekura-timeout=120")
    elapsed = time.monotonic() - started
    killer.join(1)
    out = result.stdout.str()
    assert elapsed < 30, (elapsed, out)
    assert "died while its start request was in flight" in out, out
    # Two cases were in the dripping request: one is the item the firing worker was on when
    # it died (xdist reports that crash), the other says its runs' fate is unknown. The two
    # of the answered request pass.
    outcomes = sorted(_outcome(case) for case in suite.junit().iter("testcase"))
    assert len(outcomes) == 4, out
    assert outcomes.count("passed") >= 1, outcomes
    for outcome in outcomes:
        assert (
            outcome == "passed"
            or "crashed while running" in outcome
            or ("died while its start request was in flight" in outcome)
        ), outcomes
    assert suite.sim.entries_fired() == 4


def _outcome(case: ET.Element) -> str:
    """'passed', or the tag and first line of a testcase's failure/error message."""
    for child in case:
        if child.tag in ("failure", "error"):
            return f"{child.tag}: {(child.get('message') or '').splitlines()[0]}"
    return "passed"

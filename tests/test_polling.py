"""Polling back-off with a fake clock, and interrupts under xdist."""

from __future__ import annotations

import time

import pytest
from conftest import API_KEY, SCRIPTS, Suite

from pytest_cekura_pipecat.case import Case
from pytest_cekura_pipecat.coordinator import LocalCoordinator
from pytest_cekura_pipecat.session import CekuraSession, next_interval
from pytest_cekura_pipecat.simulator import Simulator


def test_next_interval() -> None:
    assert next_interval(4.0, True, 1.0, 30.0) == 1.0
    assert next_interval(4.0, False, 1.0, 30.0) == 6.0
    assert next_interval(25.0, False, 1.0, 30.0) == 30.0


def test_back_off_while_nothing_changes_then_time_out(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    sleeps: list[float] = []

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
    with Simulator(SCRIPTS, api_key=API_KEY, clock=clock) as sim:
        config = pytester.parseconfigure(
            f"--cekura-api-url={sim.url}",
            "--cekura-poll-interval=1",
            "--cekura-poll-max-interval=8",
        )
        session = CekuraSession.of(config)
        session.clock, session._sleep = clock, sleep
        session.coordinator = LocalCoordinator(clock=clock)
        case = Case("stuck", 105, "t", pipecat_room_url="https://a.daily.co/r", timeout=100)
        session.register("t::stuck", case)
        session.coordinator.start(lambda: session._fire([("t::stuck", case)]))
        verdict = session.verdict("t::stuck")
        gets = [r for r in sim.requests if "/results/" in r.path and r.method == "GET"]
        ended = [r for r in sim.requests if r.path.endswith("/end_call/")]
    # pending at t=0, running at t=1 (a change: stay at 1 s), then x1.5 up to the 8 s ceiling.
    assert sleeps[:7] == [1, 1, 1.5, 2.25, 3.375, 5.0625, 7.59375]
    assert set(sleeps[7:-1]) == {8}
    assert 99 <= sum(sleeps) <= 101
    # One GET per tick, never more (the last, short sleep finds a fresh snapshot).
    assert len(sleeps) <= len(gets) <= len(sleeps) + 1
    assert verdict.outcome == "error"
    assert "no verdict after 100 s (last status: running)" in verdict.message
    assert len(ended) == 1


def test_sigterm_under_xdist_ends_live_calls_once(suite: Suite) -> None:
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "s{i}"\nscenario = 105\n' for i in range(4))
    )
    code, out = suite.sigterm_after_start("-n", "2", "--cekura-timeout=120", settle=1.0)
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert len(suite.posts()) == 1
    assert len(suite.ended()) == 1, out
    assert "ended the live calls of result(s)" in out

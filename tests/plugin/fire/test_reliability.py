"""Faults: never fire twice, never hang, never leak a secret, one clear line per problem."""

from __future__ import annotations

import time

import pytest
from helpers import API_KEY, FOUR_CASES, ROOM_TOKEN, START, Suite, no_traceback

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'


def verdicts_are_exact(result: pytest.RunResult) -> None:
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*metric 'Respects opening hours' did not pass*"])
    result.stdout.fnmatch_lines(["*Bot did not join the room*"])


def test_5xx_every_second_get_and_throttled_first_post(suite: Suite) -> None:
    # Every second GET, not every third: these runs last 0.3 s and polls come every 0.1 s,
    # so a loaded machine that delays the polls can end the session after two GETs.
    suite.sim.faults.get_5xx_every = 2
    suite.sim.faults.post_429 = 1
    suite.sim.faults.retry_after = "1"
    suite.toml(FOUR_CASES)
    started = time.monotonic()
    verdicts_are_exact(suite.run())
    statuses = [r.status for r in suite.posts()]
    assert statuses == [429, 200]  # retried once, after Retry-After, one result created
    assert suite.posts()[1].at - suite.posts()[0].at >= 0.9
    assert suite.sim.entries_fired() == 5
    assert any(r.status == 503 for r in suite.gets())
    assert time.monotonic() - started < 30


def test_non_json_bodies_and_latency_are_ridden_out(suite: Suite) -> None:
    suite.sim.faults.get_non_json_every = 2
    suite.sim.faults.latency = 0.05
    suite.toml(FOUR_CASES)
    verdicts_are_exact(suite.run())
    assert suite.sim.entries_fired() == 5


@pytest.mark.parametrize("fault", ["post_500_after_create", "drop_connection_on_post"])
def test_post_whose_fate_is_unknown_is_never_resent(suite: Suite, fault: str) -> None:
    """The runs exist on the server side: they are found in the results list and judged
    (test_recover.py), never fired twice."""
    setattr(suite.sim.faults, fault, 1)
    suite.toml(FOUR_CASES)
    result = suite.run()
    verdicts_are_exact(result)
    assert len(suite.posts()) == 1
    assert suite.sim.entries_fired() == 5
    assert "runs may already exist and were not re-sent" not in result.stdout.str()
    assert no_traceback(result.stdout.str())


@pytest.mark.parametrize("shape", ["entry", "field"])
def test_one_unknown_scenario_errors_only_its_case(suite: Suite, shape: str) -> None:
    """A 400 created nothing: the batch is sent again without the refused entry (named by
    the 400, or isolated by halving when the 400 names none). The pre-flight found every
    scenario; the entry hook sends one Cekura does not know (as a scenario deleted between
    the pre-flight and the start request would be)."""
    suite.sim.configure(unknown_scenario_400=shape)
    suite.pytester.makeconftest(
        """
        def pytest_cekura_entry(case, entry):
            if case.name == "c2":
                entry["scenario"] = 999
        """
    )
    suite.toml(
        ROOM
        + "".join(
            f'[[case]]\nname = "c{i}"\nscenario = {s}\n'
            for i, s in enumerate([101, 104, 101, 101, 104])
        )
    )
    result = suite.run()
    result.assert_outcomes(passed=4, errors=1)
    out = result.stdout.str()
    assert "Cekura refused scenario 101 of case c2 (HTTP 400)" in out
    assert no_traceback(out)
    assert suite.sim.entries_fired() == 4


def test_402_is_a_clear_systemic_error(suite: Suite) -> None:
    suite.sim.faults.credit_exhausted = True
    suite.toml(FOUR_CASES)
    result = suite.run("--cekura-batch-size=2")
    result.assert_outcomes(errors=4)
    assert result.stdout.str().count("insufficient credit") >= 4
    # The first refusal stops the others: no more than the concurrent batches were sent.
    assert len(suite.posts()) <= 3


def test_gets_give_up_after_the_retry_window(suite: Suite) -> None:
    suite.sim.faults.get_5xx_every = 1
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    started = time.monotonic()
    result = suite.run("--cekura-retry-window=1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*Cekura at http://127.0.0.1:* unreachable since *: last error HTTP 503*"]
    )
    assert time.monotonic() - started < 15


def test_dry_run_prints_redacted_plan_and_fires_nothing(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run("--cekura-dry-run")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            f"POST {START} (request 1 of 1, 5 run(s))",
            '*"pipecat_token": "***"*',
            "cekura dry run: 5 run(s) in 1 request(s) would be started and billed; nothing was fired",
            "cekura dry run: spend forecast (estimates): 5 run(s), about 62.5 credits, worst "
            "case 125 credits; 1,000,000 credits left (5 credits a voice minute, 0.2 an LLM metric)",
        ]
    )
    # Only reads that cost nothing: the scenarios (once each) and the credits left.
    paths = sorted(r.path for r in suite.sim.requests)
    assert all(r.method == "GET" for r in suite.sim.requests)
    assert paths == [
        "/test_framework/billing/info/",
        *(f"/test_framework/v1/scenarios/{s}/" for s in (101, 102, 103, 104)),
    ]
    assert ROOM_TOKEN not in suite.artifacts(result)


def test_max_runs_refuses_before_anything_is_sent(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run("--cekura-max-runs=4")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(["*this session would start 5 runs, more than cekura_max_runs=4*"])
    assert suite.sim.requests == []


def test_circuit_breaker_trips_on_identical_errors(suite: Suite) -> None:
    cases = "".join(f'[[case]]\nname = "err{i}"\nscenario = 103\n' for i in range(3))
    cases += "".join(f'[[case]]\nname = "stuck{i}"\nscenario = 105\n' for i in range(3))
    suite.toml(ROOM + cases)
    started = time.monotonic()
    result = suite.run("--cekura-breaker-after=3", "--cekura-timeout=60", "-p", "no:randomly")
    result.assert_outcomes(errors=6)
    assert time.monotonic() - started < 20
    result.stdout.fnmatch_lines(
        [
            "*circuit breaker: the first 3 finished runs all errored with 'Bot did not join the room'*"
        ]
    )
    assert [r for r in suite.sim.requests if r.path.endswith("/end_calls/")]


def test_secrets_appear_in_no_artifact(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run(
        "--log-level=DEBUG",
        "-o",
        "junit_logging=all",
        "-o",
        "log_cli=true",
        "-rA",
        "-vv",
        "--cekura-dry-run",
    )
    assert ROOM_TOKEN not in suite.artifacts(result)
    result = suite.run(
        "--log-level=DEBUG", "-o", "junit_logging=all", "-o", "log_cli=true", "-rA", "-vv"
    )
    text = suite.artifacts(result)
    assert "HTTP Request" in text  # httpx's debug log did reach the artifacts
    assert API_KEY not in text
    assert ROOM_TOKEN not in text


def test_sigterm_ends_live_calls_once(suite: Suite) -> None:
    suite.toml(ROOM + '[[case]]\nscenario = 105\n[[case]]\nname = "b"\nscenario = 105\n')
    code, out = suite.sigterm_after_start("-q", "--cekura-timeout=120", settle=0.3)
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert len(suite.ended()) == 1
    assert "ended the live calls of result(s)" in out

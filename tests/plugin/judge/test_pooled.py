"""Pooled latency thresholds (issue 33 item 2): a figure over the turns of every run of a
case, with the sample count in the message and ``min_samples`` below which the case errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import API_KEY, Suite

from pytest_cekura_pipecat import CekuraRun
from pytest_cekura_pipecat._config.thresholds import parse_threshold, pooled_figure
from pytest_cekura_pipecat._judge.pooled import check_pooled
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

LATENCIES_MS = [400, 500, 600, 700, 800, 900, 1000, 1200, 1730]


def conversation(latencies: list[int], first_word: float = 0.8) -> list[dict[str, Any]]:
    """An agent greeting, then a caller turn and the agent's answer per latency."""
    turns: list[dict[str, Any]] = [
        {"role": "Main Agent", "content": "Hello", "start_time": first_word, "end_time": 1.5}
    ]
    t = 2.0
    for ms in latencies:
        turns.append({"role": "Testing Agent", "content": "Q", "start_time": t, "end_time": t + 1})
        start = t + 1 + ms / 1000
        turns.append(
            {"role": "Main Agent", "content": "A", "start_time": start, "end_time": start + 1}
        )
        t = start + 2
    return turns


def run(latencies: list[int], first_word: float = 0.8) -> CekuraRun:
    return CekuraRun(
        scenario_id=101,
        status="completed",
        success=True,
        conversation=json.dumps(conversation(latencies, first_word)),
    )


def test_the_pooled_keys() -> None:
    assert pooled_figure("latency_p95_ms (pooled)") == ("latency", "p95")
    assert pooled_figure("latency_ms (pooled)") == ("latency", "p95")
    assert pooled_figure("first_word_max_ms (pooled)") == ("first_word", "max")
    assert pooled_figure("latency_p95_ms") is None
    with pytest.raises(ValueError, match="a pooled threshold is latency_ms or first_word_ms"):
        parse_threshold("latency_p100_ms (pooled)", "<= 1")
    with pytest.raises(ValueError, match="a pooled figure is a number"):
        parse_threshold("latency_p95_ms (pooled)", "pass")


def test_p95_over_every_turn_of_every_run() -> None:
    threshold = parse_threshold("latency_p95_ms (pooled)", "<= 1500")
    check = check_pooled(threshold, [run(LATENCIES_MS)] * 3)
    assert (check.samples, check.runs, check.measured, check.held) == (27, 3, 1730, False)
    assert check.where == "27 turns, 3 runs"
    # p50 of the same turns: the 14th of 27 (nearest rank) is 800 ms.
    median = check_pooled(
        parse_threshold("latency_p50_ms (pooled)", "<= 1500"), [run(LATENCIES_MS)] * 3
    )
    assert (median.measured, median.held) == (800, True)
    first = check_pooled(
        parse_threshold("first_word_ms (pooled)", "<= 2000"), [run([], 0.8), run([], 2.5)]
    )
    assert (first.samples, first.measured, first.held, first.where) == (2, 2500, False, "2 runs")


def test_runs_without_a_conversation_add_no_sample() -> None:
    bare = CekuraRun(scenario_id=101, status="completed", success=True)
    check = check_pooled(parse_threshold("latency_p95_ms (pooled)", "<= 1500"), [bare, run([300])])
    assert (check.samples, check.runs, check.measured) == (1, 1, 300)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    script = ScenarioScript(
        101, "Books a table", "pass", 0.3, turns=tuple(conversation(LATENCIES_MS))
    )
    with Simulator([script], api_key=API_KEY) as simulator:
        yield simulator


CASE = """
pipecat_room_url = "https://acme.daily.co/room"

[[case]]
name = "books-a-table"
scenario = 101
repeat = 3
thresholds = {{ "latency_p95_ms (pooled)" = "<= {bound}" }}
{extra}
"""


def test_a_pooled_threshold_fails_the_case_naming_its_samples(suite: Suite) -> None:
    suite.toml(CASE.format(bound=1500, extra=""))
    result = suite.run("-n", "0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*threshold 'latency_p95_ms (pooled) <= 1500' not met: measured 1,730 ms over 27 turns, 3 runs*"
        ]
    )


def test_a_pooled_threshold_that_holds_passes(suite: Suite) -> None:
    suite.toml(CASE.format(bound=2000, extra=""))
    suite.run("-n", "0").assert_outcomes(passed=1)


def test_too_few_samples_error_and_never_pass(suite: Suite) -> None:
    suite.toml(CASE.format(bound=2000, extra="min_samples = 30"))
    result = suite.run("-n", "2")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*inconclusive: threshold 'latency_p95_ms (pooled) <= 2000' has 27 turns, 3 runs, fewer samples than min_samples = 30*"
        ]
    )

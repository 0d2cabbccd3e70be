"""Tolerant API models and the verdict rules: every documented variant of a Cekura answer."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_cekura_pipecat.case import Case
from pytest_cekura_pipecat.client import parse_rejection, parse_retry_after
from pytest_cekura_pipecat.firing import assign_runs
from pytest_cekura_pipecat.models import Metric, Result, Run
from pytest_cekura_pipecat.verdict import (
    CekuraRun,
    ExpectedOutcomeResult,
    MetricResult,
    decide,
    is_terminal,
    parse_duration,
    run_reasons,
)

RUN: dict[str, Any] = {
    "id": 90001,
    "status": "completed",
    "success": True,
    "scenario": 101,
    "scenario_name": "Books a table",
    "expected_outcome": {"score": 100, "explanation": ["Met."]},
    "evaluation": {"metrics": [{"id": 1, "name": "Polite", "eval_type": "binary", "passed": True}]},
    "error_message": "",
    "duration": "01:30",
}


def _run(**changes: Any) -> Run:
    return Run.model_validate({**RUN, **changes})


# -- Result and Run --------------------------------------------------------------------------


def test_runs_as_a_dict_keyed_by_string_id_without_id_inside() -> None:
    inside = {k: v for k, v in RUN.items() if k != "id"}
    result = Result.model_validate(
        {"id": 7, "status": "running", "runs": {"90001": inside, "90002": {**inside, "id": 90002}}}
    )
    assert [run.id for run in result.runs] == [90001, 90002]
    assert all(run.scenario == 101 for run in result.runs)


def test_runs_as_a_list() -> None:
    result = Result.model_validate({"id": 7, "runs": [RUN, {**RUN, "id": 90002}]})
    assert [run.id for run in result.runs] == [90001, 90002]


@pytest.mark.parametrize("runs", [None, [], {}])
def test_no_runs_yet(runs: Any) -> None:
    assert Result.model_validate({"id": "7", "runs": runs}).runs == []


def test_counts_as_strings_and_unknown_fields_are_accepted() -> None:
    result = Result.model_validate(
        {
            "id": "7",
            "agent": "12",
            "status": "completed",
            "total_runs_count": "3",
            "success_runs_count": "2",
            "success_rate": "66.7",
            "something_new": {"x": 1},
            "runs": [],
        }
    )
    assert (result.id, result.agent, result.status) == (7, 12, "completed")


@pytest.mark.parametrize(
    ("scenario", "expected_id", "expected_name"),
    [
        (101, 101, "Books a table"),
        ({"id": 102, "name": "Late booking"}, 102, "Late booking"),
        ({"id": 103, "name": None}, 103, ""),
        (None, None, "Books a table"),
    ],
)
def test_scenario_as_int_or_object(
    scenario: Any, expected_id: int | None, expected_name: str
) -> None:
    raw = {**RUN, "scenario": scenario}
    if isinstance(scenario, dict):
        del raw["scenario_name"]
    run = Run.model_validate(raw)
    assert (run.scenario, run.scenario_name) == (expected_id, expected_name)


def test_scenario_object_does_not_override_a_given_scenario_name() -> None:
    run = _run(scenario={"id": 102, "name": "From the object"}, scenario_name="From the run")
    assert (run.scenario, run.scenario_name) == (102, "From the run")


@pytest.mark.parametrize(
    ("raw", "status", "terminal"),
    [
        ("canceled", "cancelled", True),
        ("CANCELED", "cancelled", True),
        ("cancelled", "cancelled", True),
        (" Completed ", "completed", True),
        ("failed", "failed", True),
        ("timeout", "timeout", True),
        ("in_queue", "in_queue", False),
        ("scaling_up", "scaling_up", False),
        ("evaluating", "evaluating", False),
        ("warming_up", "warming_up", False),
        ("", "pending", False),
        (None, "pending", False),
    ],
)
def test_statuses(raw: Any, status: str, terminal: bool) -> None:
    run = _run(status=raw)
    result = Result.model_validate({"id": 1, "status": raw})
    assert (run.status, run.terminal, is_terminal(run.status)) == (status, terminal, terminal)
    assert result.status == status


@pytest.mark.parametrize("outcome", [{}, None])
def test_empty_expected_outcome_and_evaluation(outcome: Any) -> None:
    run = _run(expected_outcome=outcome, evaluation=outcome)
    assert run.expected_outcome.score is None
    assert run.expected_outcome.explanation == []
    assert run.evaluation.metrics == []


def test_expected_outcome_explanation_as_a_string() -> None:
    run = _run(expected_outcome={"score": 40, "explanation": "Booked too late."})
    assert (run.expected_outcome.score, run.expected_outcome.explanation) == (
        40,
        ["Booked too late."],
    )


def test_null_metrics_are_no_metrics() -> None:
    assert _run(evaluation={"metrics": None}).evaluation.metrics == []


@pytest.mark.parametrize(
    ("metric", "passed"),
    [
        ({"name": "m", "eval_type": "binary", "passed": True}, True),
        ({"name": "m", "eval_type": "binary", "passed": False}, False),
        ({"name": "m", "type": "binary", "score": 5}, True),
        ({"name": "m", "type": "binary", "score": 0}, False),
        ({"name": "m", "type": "binary", "score": 5.0, "passed": None}, True),
        ({"name": "m", "type": "numeric", "score": 5}, None),
        ({"name": "m", "type": "binary", "score": True}, None),
        ({"name": "m"}, None),
    ],
)
def test_metric_variants(metric: dict[str, Any], passed: bool | None) -> None:
    assert Metric.model_validate(metric).passed is passed


def test_metric_explanation_and_unknown_fields() -> None:
    metric = Metric.model_validate(
        {
            "id": 3,
            "name": "Hours",
            "eval_type": "binary",
            "passed": False,
            "explanation": ["Closed at 22:00", None, ""],
            "extra": [1],
        }
    )
    assert metric.explanation == ["Closed at 22:00"]


@pytest.mark.parametrize("value", [None, ""])
def test_null_error_message_and_scenario_name(value: Any) -> None:
    run = _run(error_message=value, scenario_name=value)
    assert (run.error_message, run.scenario_name) == ("", "")


def test_ended_reason_comes_from_metadata() -> None:
    assert _run(metadata={"ended_reason": "silence-timeout"}).ended_reason == "silence-timeout"
    assert _run(metadata=None).ended_reason == ""


def test_a_full_run_becomes_a_public_cekura_run() -> None:
    raw = {
        **RUN,
        "success": False,
        "duration": "02:05",
        "expected_outcome": {"score": 40, "explanation": ["Booked 23:30."]},
        "evaluation": {"metrics": [{"name": "Hours", "type": "binary", "score": 0}]},
    }
    run = CekuraRun.from_api(Run.model_validate(raw), 7, raw, "https://d/1/results/7")
    assert run == CekuraRun(
        scenario_id=101,
        status="completed",
        success=False,
        run_id=90001,
        result_id=7,
        scenario_name="Books a table",
        expected_outcome=ExpectedOutcomeResult(40, ("Booked 23:30.",)),
        metrics=(MetricResult("Hours", False),),
        duration=125.0,
        dashboard_url="https://d/1/results/7",
        raw=run.raw,
    )
    assert dict(run.raw) == raw
    assert run.verdict == "failed"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:00", 0.0),
        ("01:30", 90.0),
        ("1:02:03", 3723.0),
        (" 02:05 ", 125.0),
        ("12:34.5", 754.5),
        ("90", None),
        ("abc", None),
        ("1:2:3:4", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_duration(value: str | None, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


# -- verdicts --------------------------------------------------------------------------------


def _cekura(status: str = "completed", success: bool | None = True, **kw: Any) -> CekuraRun:
    kw.setdefault("run_id", 90001)
    kw.setdefault("result_id", 7)
    return CekuraRun(scenario_id=101, status=status, success=success, **kw)


@pytest.mark.parametrize(
    ("status", "success", "verdict"),
    [
        ("completed", True, "passed"),
        ("completed", False, "failed"),
        ("completed", None, "error"),
        ("failed", None, "error"),
        ("failed", True, "error"),
        ("timeout", None, "error"),
        ("timeout", False, "error"),
        ("cancelled", None, "error"),
        ("cancelled", True, "error"),
        ("not_started", None, "error"),
    ],
)
def test_run_verdict(status: str, success: bool | None, verdict: str) -> None:
    run = _cekura(status, success)
    assert run.verdict == verdict
    assert run.passed is (verdict == "passed")


def test_run_reasons() -> None:
    assert run_reasons(_cekura()) == []
    assert run_reasons(_cekura("failed", None, error_message="Bot did not join")) == [
        "Bot did not join"
    ]
    assert run_reasons(_cekura("timeout", None)) == ["the run ended with status timeout"]
    assert run_reasons(_cekura("completed", None)) == [
        "the run completed without a verdict (success is null)"
    ]
    failed = _cekura(
        "completed",
        False,
        expected_outcome=ExpectedOutcomeResult(40, ("Booked", "23:30.")),
        metrics=(
            MetricResult("Polite", True),
            MetricResult("Hours", False, ("Closed at 22:00",)),
            MetricResult("Unscored", None),
        ),
    )
    assert run_reasons(failed) == [
        "expected outcome: score 40/100: Booked 23:30.",
        "metric 'Hours' did not pass: Closed at 22:00",
    ]
    assert run_reasons(_cekura("completed", False)) == [
        "Cekura marked the run unsuccessful without a reason"
    ]


def _case(repeat: int, min_passes: int) -> Case:
    return Case(
        name="books", scenario=101, source="cekura.toml", repeat=repeat, min_passes=min_passes
    )


PASS = ("completed", True)
FAIL = ("completed", False)
ERROR = ("failed", None)


@pytest.mark.parametrize(
    ("runs", "min_passes", "outcome"),
    [
        ([PASS, PASS, FAIL], 2, "passed"),
        ([PASS, FAIL, PASS], 2, "passed"),
        ([PASS, PASS, PASS], 3, "passed"),
        ([PASS, ERROR, FAIL], 2, "error"),
        ([ERROR, ERROR, FAIL], 2, "error"),
        ([PASS, FAIL, FAIL], 2, "failed"),
        ([FAIL, FAIL, FAIL], 1, "failed"),
        ([FAIL, ERROR, FAIL], 3, "failed"),
        ([ERROR, FAIL, FAIL], 1, "error"),
        ([PASS, ERROR, ERROR], 1, "passed"),
    ],
)
def test_decide_with_repeat_and_min_passes(
    runs: list[tuple[str, bool | None]], min_passes: int, outcome: str
) -> None:
    ran = [_cekura(s, ok, run_id=90001 + i) for i, (s, ok) in enumerate(runs)]
    verdict = decide(_case(len(runs), min_passes), ran)
    assert verdict.outcome == outcome
    passes = sum(r.passed for r in ran)
    first, *rest = verdict.message.splitlines()
    assert first == f"scenario 101: {passes} of {len(runs)} runs passed, {min_passes} required"
    assert rest == [
        f"  run {run.run_id}, result 7: {run.verdict}"
        + ("" if run.passed else f": {run_reasons(run)[0]}")
        for run in ran
    ]
    assert verdict.runs == tuple(ran)


def test_decide_message_lists_every_run_and_its_reasons() -> None:
    runs = [
        _cekura(run_id=1, scenario_name="Books a table", dashboard_url="https://d/1/results/7"),
        _cekura("timeout", None, run_id=2, error_message="Call exceeded 10 minutes"),
        _cekura(
            "completed",
            False,
            run_id=3,
            expected_outcome=ExpectedOutcomeResult(40, ("Too late.",)),
            metrics=(MetricResult("Hours", False),),
        ),
        CekuraRun(scenario_id=101, status="not_started", error_message="ROOM is not set"),
    ]
    verdict = decide(_case(4, 2), runs)
    assert verdict.outcome == "error"
    assert verdict.first_reason == "Call exceeded 10 minutes"
    assert verdict.message.splitlines() == [
        "scenario 101 'Books a table': 1 of 4 runs passed, 2 required",
        "  run 1, result 7: passed",
        "  run 2, result 7: error: Call exceeded 10 minutes",
        "  run 3, result 7: failed: expected outcome: score 40/100: Too late.; "
        "metric 'Hours' did not pass",
        "  run (not started): error: ROOM is not set",
        "  dashboard: https://d/1/results/7",
    ]


@pytest.mark.parametrize(
    ("run", "outcome", "head"),
    [
        (_cekura(), "passed", "scenario 101 passed"),
        (
            _cekura("completed", False, metrics=(MetricResult("Hours", False),)),
            "failed",
            "scenario 101 failed its evaluation: metric 'Hours' did not pass",
        ),
        (
            _cekura("cancelled", None),
            "error",
            "scenario 101 errored: the run ended with status cancelled",
        ),
    ],
)
def test_decide_one_run(run: CekuraRun, outcome: str, head: str) -> None:
    verdict = decide(_case(1, 1), [run])
    assert verdict.outcome == outcome
    assert verdict.message.splitlines() == [head, "  run 90001, result 7"]


@pytest.mark.parametrize("override", [True, False])
def test_decide_override_wins_and_says_so(override: bool) -> None:
    verdict = decide(_case(1, 1), [_cekura("completed", not override)], override=override)
    assert verdict.outcome == ("passed" if override else "failed")
    assert verdict.message.splitlines()[-1] == (
        f"  verdict overridden by a pytest_cekura_verdict hook: {verdict.outcome}"
    )


# -- start rejections, Retry-After -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "by_entry", "general"),
    [
        ({"scenarios": ["This field is required."]}, {}, ["scenarios: This field is required."]),
        (
            {"scenarios[2].scenario": ['Invalid pk "9".'], "agent": "Not found."},
            {2: ['scenario: Invalid pk "9".']},
            ["agent: Not found."],
        ),
        (
            {"scenarios[0]": "Room is busy.", "scenarios[1].pipecat_room_url": ["Bad", "URL"]},
            {0: ["Room is busy."], 1: ["pipecat_room_url: Bad", "pipecat_room_url: URL"]},
            [],
        ),
        (["Insufficient credit."], {}, ["Insufficient credit."]),
        ("Bad request", {}, ["Bad request"]),
        (
            {"scenarios": [{}, {"scenario": ['Invalid pk "9".']}, {}]},
            {1: ['scenario: Invalid pk "9".']},
            [],
        ),
        ({"non_field_errors": ["No agent."]}, {}, ["non_field_errors: No agent."]),
        (None, {}, []),
        ("", {}, []),
    ],
    ids=[
        "field-dict",
        "location-keys",
        "entry-key",
        "bare-list",
        "string",
        "drf-nested",
        "non-field",
        "null",
        "empty",
    ],
)
def test_parse_rejection(body: Any, by_entry: dict[int, list[str]], general: list[str]) -> None:
    assert parse_rejection(body) == (by_entry, general)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: do not wait
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = 1445412470.0  # 2015-10-21 07:27:50 UTC
    assert parse_retry_after(value, now=lambda: now) == seconds


# -- runs back to entries ---------------------------------------------------------------------


def _runs(*pairs: tuple[int, int | None]) -> list[Run]:
    return [Run(id=run_id, scenario=scenario) for run_id, scenario in pairs]


@pytest.mark.parametrize(
    ("scenarios", "runs", "expected"),
    [
        ([101, 102, 101], _runs((1, 101), (2, 102), (3, 101)), [1, 2, 3]),
        ([101, 102, 101], _runs((3, 102), (1, 101), (2, 101)), [1, 3, 2]),
        ([101, 101], _runs((5, 101)), [5, None]),
        ([101, 102], _runs((1, 101), (2, 999)), [1, None]),
        ([101, 102, 103], _runs((7, None), (8, None), (9, None)), [7, 8, 9]),
        ([101], [], [None]),
    ],
    ids=["in-order", "shuffled", "missing-run", "unknown-scenario", "no-scenario", "no-runs"],
)
def test_assign_runs(scenarios: list[int], runs: list[Run], expected: list[int | None]) -> None:
    assert assign_runs(scenarios, runs) == expected

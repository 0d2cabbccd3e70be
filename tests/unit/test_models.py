"""Tolerant API models: every documented variant of a Cekura answer, and absurd ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pytest_cekura_pipecat._api.client import parse_rejection, parse_retry_after
from pytest_cekura_pipecat._api.models import ListedResult, Metric, Result, Run
from pytest_cekura_pipecat._api.run import CekuraRun, is_terminal
from pytest_cekura_pipecat._fire.firing import assign_runs
from pytest_cekura_pipecat._judge.verdict import run_reasons

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


@pytest.mark.parametrize("value", [None, ""])
def test_null_error_message_and_scenario_name(value: Any) -> None:
    run = _run(error_message=value, scenario_name=value)
    assert (run.error_message, run.scenario_name) == ("", "")


def test_ended_reason_comes_from_metadata() -> None:
    assert _run(metadata={"ended_reason": "silence-timeout"}).ended_reason == "silence-timeout"
    assert _run(metadata=None).ended_reason == ""


# -- metric formats --------------------------------------------------------------------------

# As v1 reads still serve them: legacy binary metrics, ``type`` binary_* and score 5/0.
V1_RESULT: dict[str, Any] = {
    "id": 4242,
    "agent": 12,
    "status": "completed",
    "total_runs_count": "2",
    "success_runs_count": "1",
    "runs": {
        "90001": {
            "status": "completed",
            "success": False,
            "scenario": 101,
            "scenario_name": "Books a table",
            "expected_outcome": {"score": 100, "explanation": ["Booked for 19:00."]},
            "evaluation": {
                "metrics": [
                    {
                        "id": 501,
                        "name": "Respects opening hours",
                        "type": "binary_workflow_adherence",
                        "score": 0,
                        "score_normalized": 0.0,
                        "explanation": ["Offered 23:30 although the venue closes at 22:00."],
                        "extra": {},
                    },
                    {
                        "id": 502,
                        "name": "Polite",
                        "type": "binary_qualitative",
                        "score": 5,
                        "explanation": ["Greeted the caller."],
                    },
                    {"id": 503, "name": "Latency", "type": "numeric", "score": 2100.0},
                ]
            },
            "error_message": "",
            "metadata": {"ended_reason": "assistant-ended-call"},
            "duration": "02:05",
        },
        "90002": {
            "status": "completed",
            "success": True,
            "scenario": 101,
            "evaluation": {"metrics": []},
            "duration": "01:10",
        },
    },
}

# As the v2 routes advertise: canonical binary metrics, rubric, review, tracing.
V2_RUN: dict[str, Any] = {
    "id": 90003,
    "status": "completed",
    "success": "false",
    "scenario": {"id": 102, "name": "Late booking"},
    "expected_outcome": {"score": 100, "explanation": ["Met."], "outcome_alignments": []},
    "evaluation": {
        "metrics": [
            {
                "id": 601,
                "name": "Confirms the booking",
                "eval_type": "binary",
                "passed": False,
                "explanation": ["Never repeated the time back."],
            },
            {"id": 602, "name": "Tone", "type": "enum", "enum": ["warm", "cold"], "value": "cold"},
        ]
    },
    "rubric": [
        {
            "metric_id": 503,
            "metric_name": "Latency",
            "value": 2100,
            "explanation": ["p95 latency was 2.1 s."],
            "passed": False,
            "conditions": "value lte 1500",
            "expected_conditions": {"operator": "lte", "value": 1500},
        },
        {"metric_id": 504, "metric_name": "Interruptions", "value": 0, "passed": True},
    ],
    "is_reviewed": False,
    "evaluation_status": "failure",
    "mocked_tool_names": ["book_table"],
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "result_id": 4243,
    "duration": 95,
}


def test_legacy_metrics_on_a_v1_result() -> None:
    result = Result.model_validate(V1_RESULT)
    assert (result.id, result.status, result.unreadable) == (4242, "completed", {})
    run = result.runs[0]
    hours, polite, latency = run.evaluation.metrics
    assert (hours.passed, hours.type, hours.score, hours.id) == (
        False,
        "binary_workflow_adherence",
        0.0,
        501,
    )
    assert hours.explanation == ["Offered 23:30 although the venue closes at 22:00."]
    assert (polite.passed, polite.kind) == (True, "binary_qualitative")
    assert (latency.passed, latency.score) == (None, 2100.0)
    assert run.ended_reason == "assistant-ended-call"
    assert result.raw_runs[90001] == {**V1_RESULT["runs"]["90001"], "id": "90001"}


def test_canonical_metrics_rubric_and_run_fields_on_v2() -> None:
    run = Run.model_validate(V2_RUN)
    assert (run.success, run.scenario, run.scenario_name) == (False, 102, "Late booking")
    confirms, tone = run.evaluation.metrics
    assert (confirms.passed, confirms.kind) == (False, "binary")
    assert (tone.passed, tone.value, tone.enum) == (None, "cold", ["warm", "cold"])
    latency, interruptions = run.rubric
    assert (latency.metric_name, latency.passed, latency.value) == ("Latency", False, 2100)
    assert latency.conditions == "value lte 1500"
    assert latency.expected_conditions == {"operator": "lte", "value": 1500}
    assert latency.explanation == ["p95 latency was 2.1 s."]
    assert (interruptions.passed, interruptions.explanation) == (True, [])
    assert (run.is_reviewed, run.evaluation_status) == (False, "failure")
    assert run.mocked_tool_names == ["book_table"]
    assert run.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert run.duration == "01:35"


@pytest.mark.parametrize(
    ("metric", "passed"),
    [
        ({"name": "m", "eval_type": "binary", "passed": True}, True),
        ({"name": "m", "eval_type": "binary", "passed": False}, False),
        ({"name": "m", "eval_type": "binary", "passed": "false"}, False),
        ({"name": "m", "type": "binary_workflow_adherence", "score": 5}, True),
        ({"name": "m", "type": "binary_workflow_adherence", "score": 0}, False),
        ({"name": "m", "type": "binary_qualitative", "score": "0", "score_normalized": 0.0}, False),
        ({"name": "m", "type": "binary_qualitative", "score_normalized": 1.0}, True),
        ({"name": "m", "type": "binary_qualitative", "score": 5.0, "passed": None}, True),
        ({"name": "m", "type": "binary_qualitative", "score": 0, "passed": True}, True),
        ({"name": "m", "type": "binary", "score": 0}, False),
        ({"name": "m", "type": "numeric", "score": 5}, None),
        ({"name": "m", "type": "numeric", "score": 95, "passed": False}, False),
        ({"name": "m", "type": "enum", "value": "cold", "enum": ["warm", "cold"]}, None),
        ({"name": "m", "type": "binary_qualitative", "score": True}, None),
        ({"name": "m", "type": "binary_qualitative", "score": float("nan")}, None),
        ({"name": "m"}, None),
    ],
)
def test_metric_variants(metric: dict[str, Any], passed: bool | None) -> None:
    assert Metric.model_validate(metric).passed is passed


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf"), "NaN", "x", [5]])
def test_an_absurd_score_is_unknown(score: Any) -> None:
    run = _run(
        success=False,
        expected_outcome={"score": score, "explanation": ["?"]},
        evaluation={"metrics": [{"name": "Latency", "type": "numeric", "score": score}]},
    )
    assert run.expected_outcome.score is None
    assert run.evaluation.metrics[0].score is None
    assert run.expected_outcome.explanation == ["?"]


def test_absurd_scores_arrive_from_json_too() -> None:
    raw = json.loads(
        '{"id": 1, "status": "completed", "duration": Infinity,'
        ' "expected_outcome": {"score": NaN}, "evaluation": {"metrics": [{"score": -Infinity}]}}'
    )
    run = Run.model_validate(raw)
    assert (run.duration, run.expected_outcome.score, run.evaluation.metrics[0].score) == (
        None,
        None,
        None,
    )


def test_metric_explanation_and_unknown_fields() -> None:
    metric = Metric.model_validate(
        {
            "id": 3,
            "name": "Hours",
            "eval_type": "binary",
            "passed": False,
            "explanation": ["Closed at 22:00", None, "", {"detail": "late"}],
            "extra": {"threshold": 5},
            "something_new": 1,
        }
    )
    assert metric.explanation == ["Closed at 22:00", "{'detail': 'late'}"]
    assert metric.extra == {"threshold": 5}


@pytest.mark.parametrize(
    ("metrics", "names"),
    [
        ([{"name": "a"}, "garbage", 7, None, {"name": "b", "extra": [1], "id": [2]}], ["a", "b"]),
        ("not a list", []),
        ({"name": "a"}, []),
    ],
)
def test_odd_metrics_cost_only_themselves(metrics: Any, names: list[str]) -> None:
    run = _run(evaluation={"metrics": metrics})
    assert [m.name for m in run.evaluation.metrics] == names


@pytest.mark.parametrize(
    ("rubric", "count"), [(None, 0), ("odd", 0), ([{"metric_name": "x"}, "odd", 3], 1)]
)
def test_odd_rubric_costs_only_itself(rubric: Any, count: int) -> None:
    assert len(_run(rubric=rubric).rubric) == count


def test_rubric_explanation_and_conditions_in_other_shapes() -> None:
    (rule,) = _run(
        rubric=[{"name": "Latency", "passed": "false", "explanation": "slow", "conditions": None}]
    ).rubric
    assert (rule.metric_name, rule.passed, rule.explanation, rule.conditions) == (
        "Latency",
        False,
        ["slow"],
        "",
    )


# -- other run fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "success"),
    [
        (True, True),
        (False, False),
        ("true", True),
        (" False ", False),
        ("TRUE", True),
        (1, True),
        (0, False),
        (None, None),
        ("maybe", None),
        (2, None),
        ([True], None),
    ],
)
def test_success_variants(value: Any, success: bool | None) -> None:
    assert _run(success=value).success is success


def test_expected_outcome_as_a_plain_string() -> None:
    run = _run(expected_outcome="The caller was told the venue closes at 22:00.")
    assert run.expected_outcome.score is None
    assert run.expected_outcome.explanation == ["The caller was told the venue closes at 22:00."]


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        ("01:30", "01:30"),
        (125, "02:05"),
        (125.7, "02:05"),
        (0, "00:00"),
        (float("inf"), None),
        (float("nan"), None),
        (-5, None),
        (True, None),
        ([1], None),
        ({"s": 1}, None),
        ("", None),
        (None, None),
        (10**400, None),
    ],
)
def test_durations(duration: Any, expected: str | None) -> None:
    assert _run(duration=duration).duration == expected


@pytest.mark.parametrize(
    ("reviewed", "status", "expected"),
    [
        (True, "reviewed_success", (True, "reviewed_success")),
        ("true", " Reviewed_Failure ", (True, "reviewed_failure")),
        (None, None, (False, "")),
        ("nope", 3, (False, "3")),
    ],
)
def test_review_fields(reviewed: Any, status: Any, expected: tuple[bool, str]) -> None:
    run = _run(is_reviewed=reviewed, evaluation_status=status)
    assert (run.is_reviewed, run.evaluation_status) == expected


@pytest.mark.parametrize(
    ("tools", "expected"),
    [(None, None), ([], []), (["a", None, 3], ["a", "3"]), ("a", None)],
)
def test_mocked_tool_names(tools: Any, expected: list[str] | None) -> None:
    assert _run(mocked_tool_names=tools).mocked_tool_names == expected


@pytest.mark.parametrize(
    ("scenario", "expected"), [("101", 101), (101.0, 101), (1.5, None), ([101], None), (True, None)]
)
def test_odd_scenario_ids_are_unknown(scenario: Any, expected: int | None) -> None:
    assert _run(scenario=scenario).scenario == expected


# -- absurd input: one field, one run, never the result --------------------------------------


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


@pytest.mark.parametrize(
    "field",
    [
        "status",
        "scenario",
        "error_message",
        "transcript",
        "metadata",
        "evaluation",
        "expected_outcome",
        "rubric",
        "success",
        "duration",
        "id",
    ],
)
def test_a_run_nested_absurdly_deep_does_not_break_the_result(field: str) -> None:
    deep = _deep(100_000)
    odd = {**RUN, "id": 90002, field: deep}
    result = Result.model_validate({"id": 7, "status": "completed", "runs": [RUN, odd]})
    assert result.runs[0].id == 90001
    if field == "id":
        assert len(result.runs) == 1  # no id to file it under: it is dropped
    else:
        # The absurd field is read as unknown (or as bounded text); the run itself survives.
        assert [run.id for run in result.runs] == [90001, 90002]
        assert result.unreadable == {}


def test_deep_metric_explanation_is_bounded_text() -> None:
    run = _run(evaluation={"metrics": [{"name": "m", "explanation": [_deep(50_000)]}]})
    (text,) = run.evaluation.metrics[0].explanation
    assert len(text) < 300


def test_an_unreadable_run_is_named_with_its_reason() -> None:
    result = Result.model_validate(
        {"id": 7, "runs": {"90001": RUN, "1e3": {"status": "completed"}, "ninety": {}, "x": 5}}
    )
    assert [run.id for run in result.runs] == [90001]
    assert list(result.unreadable) == [1000]  # "ninety" is no run id to file a reason under
    assert result.unreadable[1000].startswith("id: ")


def test_a_run_that_blows_the_stack_is_unreadable_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validate = Run.model_validate

    def fragile(obj: Any, *args: Any, **kwargs: Any) -> Run:
        if isinstance(obj, dict) and obj.get("id") == 90002:
            raise RecursionError("maximum recursion depth exceeded")
        return validate(obj, *args, **kwargs)

    monkeypatch.setattr(Run, "model_validate", fragile)
    result = Result.model_validate({"id": 7, "runs": [RUN, {**RUN, "id": 90002}]})
    assert [run.id for run in result.runs] == [90001]
    assert result.unreadable == {90002: "(run): nested too deeply to read"}


# Values Cekura should never send, often: hypothesis would rarely draw them by chance.
_ABSURD = st.sampled_from(
    [
        *(float("inf"), float("-inf"), float("nan"), "Infinity", "NaN", "", " ", "true"),
        *(-1, 0, 5, 10**400, -(10**400), "99:99", "1e400", True, "completed", "canceled"),
    ]
)
_JSON = st.recursive(
    _ABSURD
    | st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_FIELD = _ABSURD | _JSON
_KEYS = [
    "id",
    "status",
    "success",
    "scenario",
    "scenario_name",
    "expected_outcome",
    "evaluation",
    "rubric",
    "error_message",
    "metadata",
    "duration",
    "is_reviewed",
    "evaluation_status",
    "mocked_tool_names",
    "trace_id",
    "transcript",
    "voice_recording_url",
]
_METRIC = st.fixed_dictionaries(
    {},
    optional={
        **{
            k: _FIELD
            for k in ("id", "name", "type", "eval_type", "passed", "score", "explanation", "extra")
        },
        "type": st.sampled_from(["binary_qualitative", "binary", "numeric"]) | _FIELD,
    },
)
_RUN = st.fixed_dictionaries(
    {},
    optional={
        **{k: _FIELD for k in _KEYS},
        "id": st.integers(1, 10**6) | _FIELD,
        "evaluation": st.fixed_dictionaries({"metrics": st.lists(_METRIC, max_size=3)}) | _FIELD,
    },
)


@settings(max_examples=150, deadline=None)
@given(
    runs=st.lists(_RUN, max_size=4) | st.dictionaries(st.text(max_size=6), _RUN, max_size=3),
    status=_FIELD,
)
def test_result_only_ever_raises_validation_error(runs: Any, status: Any) -> None:
    try:
        result = Result.model_validate({"id": 7, "status": status, "runs": runs})
    except ValidationError:
        return
    for run in result.runs:  # whatever was read can be judged and explained
        public = CekuraRun.from_api(run, result.id, result.raw_runs[run.id], None)
        assert public.verdict in ("passed", "failed", "error")
        assert all(isinstance(reason, str) and reason for reason in run_reasons(public))


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


# -- a result's end and Cekura's own summary (issue 29) --------------------------------------


def _ended(status: str | None, *run_statuses: str) -> bool:
    data: dict[str, Any] = {
        "id": 1,
        "runs": [{"id": i, "status": s} for i, s in enumerate(run_statuses)],
    }
    if status is not None:
        data["status"] = status
    return Result.model_validate(data).ended


def test_a_result_ends_by_either_published_reading() -> None:
    assert _ended("completed", "completed", "failed")
    assert not _ended("completed", "completed", "in_progress")  # the older reading
    assert not _ended("evaluating", "completed")
    assert _ended("failed", "completed", "running")  # runs left live: they will not move
    assert _ended(None, "completed", "cancelled") and not _ended(None, "completed", "pending")


@pytest.mark.parametrize(
    ("run", "ready"),
    [
        ({"status": "completed", "success": None}, False),
        ({"status": "completed", "success": False}, False),
        ({"status": "completed", "success": True}, False),
        ({"status": "completed", "success": False, "error_message": "no join"}, True),
        ({"status": "completed", "success": True, "expected_outcome": {"score": 100}}, True),
        ({"status": "completed", "success": False, "rubric": [{"passed": False}]}, True),
        ({"status": "completed", "success": None, "evaluation_status": "reviewed_success"}, True),
        ({"status": "failed"}, True),
        ({"status": "evaluating", "success": True, "expected_outcome": {"score": 100}}, False),
    ],
)
def test_a_verdict_is_ready_once_its_evaluation_landed(run: dict[str, Any], ready: bool) -> None:
    result = Result.model_validate({"id": 1, "status": "evaluating", "runs": [{"id": 5, **run}]})
    assert result.verdict_ready(result.runs[0]) is ready


@pytest.mark.parametrize(
    ("failed_reasons", "named", "general"),
    [
        ({"5": ["No slot"], "7": "Hung up"}, {5: ["No slot"], 7: ["Hung up"]}, []),
        ([{"run_id": 5, "reason": "No slot"}, "Latency high"], {5: ["No slot"]}, ["Latency high"]),
        ({"Latency": "too slow"}, {}, ["Latency: too slow"]),
        ("One thing failed", {}, ["One thing failed"]),
        (None, {}, []),
        (42, {}, ["42"]),
    ],
)
def test_failed_reasons_are_read_in_every_plausible_shape(
    failed_reasons: Any, named: dict[int, list[str]], general: list[str]
) -> None:
    result = Result.model_validate({"id": 1, "failed_reasons": failed_reasons})
    assert (result.failed_reasons, result.general_reasons) == (named, general)


def test_cekuras_account_of_a_run() -> None:
    result = Result.model_validate(
        {
            "id": 1,
            "ai_summary": {"summary": "Two runs failed."},
            "ai_summary_status": "COMPLETED",
            "failed_reasons": [{"run_id": 5, "reason": "No slot"}, "Latency high"],
        }
    )
    assert not result.summary_pending
    assert result.cekura_reasons(5) == ("Two runs failed.", ("No slot", "Latency high"))
    assert result.cekura_reasons(6) == ("Two runs failed.", ("Latency high",))


def _entry(item: dict[str, Any]) -> ListedResult:
    read = ListedResult.read(item)
    assert read is not None
    return read


def test_a_results_list_entry_is_read_with_its_counts_and_when_it_ended() -> None:
    item = {"id": "5001", "status": "Completed", "total_runs_count": "3", "completed_runs_count": 2}
    assert _entry(item) == ListedResult(5001, "completed", 3, None, None, 2)
    assert not _entry(item).ended  # completed, with a run still to end: the older reading
    assert _entry({**item, "completed_runs_count": "3"}).ended
    assert _entry({"id": 1, "status": "failed"}).ended
    assert not _entry({"id": 1, "status": "evaluating"}).ended
    assert ListedResult.read({"status": "completed"}) is None
    assert ListedResult.read(["not", "a", "result"]) is None

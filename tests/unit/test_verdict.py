"""The verdict rules: what passed means for one run and for a case, and why it did not."""

from __future__ import annotations

import dataclasses
import gc
import json
from typing import Any

import pytest

from pytest_cekura_pipecat._api.models import Result, Run, Snapshot
from pytest_cekura_pipecat._api.run import (
    CekuraRun,
    ExpectedOutcomeResult,
    MetricResult,
    RubricResult,
    parse_duration,
)
from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._judge.verdict import (
    HEADLINE_LIMIT,
    decide,
    review_note,
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
NOT_JOINED = "Failed to join the Daily room: the room does not exist"


def _judged(**changes: Any) -> CekuraRun:
    """A run as Cekura sends it, read and made public like the plugin does."""
    raw = {**RUN, **changes}
    return CekuraRun.from_api(Run.model_validate(raw), 7, raw, "https://d/1/results/7")


def test_a_full_run_becomes_a_public_cekura_run() -> None:
    raw = {
        **RUN,
        "success": False,
        "duration": "02:05",
        "expected_outcome": {"score": 40, "explanation": ["Booked 23:30."]},
        "evaluation": {
            "metrics": [
                {"id": 5, "name": "Hours", "type": "binary_workflow_adherence", "score": 0},
                {"id": 6, "name": "Latency", "type": "numeric", "score": 2100, "extra": {"p": 95}},
            ]
        },
        "rubric": [
            {
                "metric_id": 6,
                "metric_name": "Latency",
                "value": 2100,
                "explanation": ["Slow."],
                "passed": False,
                "conditions": "value lte 1500",
                "expected_conditions": {"operator": "lte", "value": 1500},
            }
        ],
        "is_reviewed": False,
        "evaluation_status": "failure",
        "mocked_tool_names": ["book_table"],
        "trace_id": "4bf92f3577b34da6",
        "transcript": "Agent: Hello",
        "voice_recording_url": "https://rec/90001.wav",
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
        metrics=(
            MetricResult("Hours", False, type="binary_workflow_adherence", score=0.0, id=5),
            MetricResult("Latency", None, type="numeric", score=2100.0, extra={"p": 95}, id=6),
        ),
        duration=125.0,
        dashboard_url="https://d/1/results/7",
        raw=run.raw,
        transcript="Agent: Hello",
        recording_url="https://rec/90001.wav",
        evaluation_status="failure",
        rubric=(RubricResult("Latency", False, 2100, "value lte 1500", ("Slow.",), 6),),
        mocked_tool_names=("book_table",),
        trace_id="4bf92f3577b34da6",
    )
    assert dict(run.raw) == raw
    assert run.verdict == "failed"


def test_a_cekura_run_is_plain_frozen_data() -> None:
    run = _judged()
    assert run.transcript is None and run.recording_url is None  # nothing fetched on read
    filled = dataclasses.replace(run, transcript="Agent: Hi", recording_url="https://rec/1.wav")
    assert (filled.transcript, filled.recording_url) == ("Agent: Hi", "https://rec/1.wav")
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "failed"  # type: ignore[misc]
    assert not any(callable(getattr(run, f.name)) for f in dataclasses.fields(run))


def test_repr_shows_neither_raw_nor_transcript_nor_recording() -> None:
    secret = "sk-live-0123456789"
    run = dataclasses.replace(
        _judged(note=secret),
        transcript=f"User: my key is {secret}",
        recording_url=f"https://rec/1.wav?token={secret}",
    )
    assert secret in str(dict(run.raw))
    assert secret not in repr(run)
    assert "run_id=90001" in repr(run)


def test_a_run_holds_cekura_s_snapshot_as_text_until_it_is_read() -> None:
    """Thousands of finished runs wait for their tests to report: each snapshot is one
    object of text, nothing a garbage collection walks, read only when asked for."""
    raw = {**RUN, "evaluation": {"metrics": [{"name": "Hours", "passed": False, "extra": {}}]}}
    run = CekuraRun.from_api(Run.model_validate(raw), 7, raw, None)
    assert run.raw and len(run.raw) == len(raw)  # asking its size decodes nothing
    assert run.released().raw == {}
    held = [o for o in gc.get_referents(run.raw) if not isinstance(o, type)]
    assert not [o for o in held if gc.is_tracked(o)]
    assert run.raw == raw and dict(run.raw) == raw
    assert run.raw["evaluation"]["metrics"][0]["name"] == "Hours"
    with pytest.raises(TypeError):
        run.raw["status"] = "failed"  # type: ignore[index]
    assert run == CekuraRun.from_api(Run.model_validate(raw), 7, raw, None)
    odd = {"id": 1, "note": "half a pair \ud800", "score": float("inf")}  # not UTF-8
    assert Snapshot(odd) == odd


def test_a_run_is_released_once_whoever_asks() -> None:
    """The board and the verdict both keep a finished run without its snapshot: one copy,
    not one each (20,000 runs kept twice were 400,000 more references for every garbage
    collection to walk)."""
    run = dataclasses.replace(_judged(), transcript="Agent: Hi")
    assert run.metrics and run.expected_outcome.explanation
    kept = run.released()
    assert kept is run.released()
    assert not kept.raw and kept.transcript is None
    # What a rerun decision reads stays; nothing a garbage collection would walk does.
    assert (kept.run_id, kept.result_id, kept.status, kept.success, kept.error_message) == (
        run.run_id,
        run.result_id,
        run.status,
        run.success,
        run.error_message,
    )
    assert not kept.metrics and not kept.rubric and not kept.expected_outcome.explanation
    # The containers it still holds are the ones every released run shares.
    shared = vars(dataclasses.replace(_judged(id=90002), transcript="Hi").released()).values()
    own = [v for v in vars(kept).values() if gc.is_tracked(v)]
    assert own and all(any(v is w for w in shared) for v in own)
    assert kept.released() is kept
    # The memo is not a field: equality, repr and replace() do not see it.
    assert "_released" not in repr(run)
    assert "_released" not in {f.name for f in dataclasses.fields(run)}
    assert run == dataclasses.replace(run)


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
    if success is True:  # a pass carries evidence: a run nothing evaluated is an error
        kw.setdefault("expected_outcome", ExpectedOutcomeResult(100.0))
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
    lines = verdict.message.splitlines()
    count = f"scenario 101: {passes} of {len(runs)} runs passed, {min_passes} required"
    if outcome == "passed":
        assert lines[0] == count
        rest = lines[1:]
    else:  # the first line is the first reason itself, the counts follow
        first_bad = next(run for run in ran if not run.passed)
        assert lines[:2] == [run_reasons(first_bad)[0], "  " + count]
        rest = lines[2:]
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
        "Call exceeded 10 minutes",
        "  scenario 101 'Books a table': 1 of 4 runs passed, 2 required",
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
        (_cekura(), "passed", ["scenario 101 passed"]),
        (
            _cekura("completed", False, metrics=(MetricResult("Hours", False),)),
            "failed",
            ["metric 'Hours' did not pass", "  scenario 101 failed its evaluation"],
        ),
        (
            _cekura("cancelled", None),
            "error",
            ["the run ended with status cancelled", "  scenario 101 errored"],
        ),
    ],
)
def test_decide_one_run(run: CekuraRun, outcome: str, head: list[str]) -> None:
    verdict = decide(_case(1, 1), [run])
    assert verdict.outcome == outcome
    assert verdict.message.splitlines() == [*head, "  run 90001, result 7"]


@pytest.mark.parametrize("override", [True, False])
def test_decide_override_wins_and_says_so(override: bool) -> None:
    verdict = decide(_case(1, 1), [_cekura("completed", not override)], override=override)
    assert verdict.outcome == ("passed" if override else "failed")
    assert verdict.message.splitlines()[-1] == (
        f"  verdict overridden by a pytest_cekura_verdict hook: {verdict.outcome}"
    )


# -- every format names its failure ---------------------------------------------------------

V1_LEGACY_FAILURE: dict[str, Any] = {  # GET /test_framework/v1/results/{id}/ runs["90001"]
    "status": "completed",
    "success": False,
    "scenario": 101,
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
            },
            {"id": 502, "name": "Polite", "type": "binary_qualitative", "score": 5},
            {"id": 503, "name": "Tone", "type": "binary_qualitative", "score_normalized": 0.0},
            {"id": 504, "name": "Latency", "type": "numeric", "score": 2100},
        ]
    },
    "error_message": "",
}

V2_CANONICAL_FAILURE: dict[str, Any] = {  # GET /test_framework/v2/results/{id}/
    "id": 90003,
    "status": "completed",
    "success": "false",
    "scenario": {"id": 101, "name": "Books a table"},
    "expected_outcome": {"score": 60, "explanation": ["Booked,", "but for the wrong day."]},
    "evaluation": {
        "metrics": [
            {
                "id": 601,
                "name": "Confirms the booking",
                "eval_type": "binary",
                "passed": False,
                "explanation": ["Never repeated the time back."],
            },
            {"id": 602, "name": "Polite", "eval_type": "binary", "passed": True},
            {"id": 603, "name": "CSAT", "type": "numeric", "score": 35, "passed": False},
            {"id": 604, "name": "Tone", "type": "enum", "value": "cold", "passed": False},
            {"id": 605, "name": "Pace", "type": "numeric", "score": 80},
        ]
    },
    "rubric": [
        {
            "metric_id": 606,
            "metric_name": "Latency",
            "value": 2100,
            "explanation": ["p95 latency was 2.1 s."],
            "passed": False,
            "conditions": "value lte 1500",
            "expected_conditions": {"operator": "lte", "value": 1500},
        },
        {"metric_id": 607, "metric_name": "Interruptions", "value": 0, "passed": True},
    ],
    "error_message": "",
}


def test_legacy_metrics_on_v1_name_their_failure() -> None:
    result = Result.model_validate({"id": 7, "runs": {"90001": V1_LEGACY_FAILURE}})
    (read,) = result.runs
    run = CekuraRun.from_api(read, result.id, result.raw_runs[read.id], None)
    assert run.verdict == "failed"
    assert run_reasons(run) == [
        "metric 'Respects opening hours' did not pass: "
        "Offered 23:30 although the venue closes at 22:00.",
        "metric 'Tone' did not pass",
    ]


def test_canonical_metrics_and_rubric_on_v2_all_named() -> None:
    run = _judged(**V2_CANONICAL_FAILURE)
    assert run.verdict == "failed"
    assert run_reasons(run) == [
        "expected outcome: score 60/100: Booked, but for the wrong day.",
        "metric 'Confirms the booking' did not pass: Never repeated the time back.",
        "metric 'CSAT' did not pass with score 35",
        "metric 'Tone' did not pass with value cold",
        "rubric rule 'Latency' (value lte 1500) did not hold with value 2100: "
        "p95 latency was 2.1 s.",
    ]


def test_a_failed_rubric_rule_can_be_the_only_reason() -> None:
    run = _judged(
        success=False,
        rubric=[{"metric_id": 9, "value": 1.75, "passed": False, "conditions": "value lte 1.5"}],
    )
    assert run_reasons(run) == ["rubric rule '#9' (value lte 1.5) did not hold with value 1.75"]


def test_numeric_metrics_without_a_verdict_are_no_reason() -> None:
    run = _judged(
        success=False,
        evaluation={"metrics": [{"name": "Latency", "type": "numeric", "score": 9000}]},
    )
    assert run.metrics[0].passed is None
    assert run_reasons(run) == ["Cekura marked the run unsuccessful without a reason"]


def test_a_long_explanation_is_cut_in_the_reason_not_in_the_data() -> None:
    long = "The agent kept talking. " * 200
    run = _judged(
        success=False,
        evaluation={"metrics": [{"name": "Hours", "eval_type": "binary", "passed": False}]},
        rubric=[{"metric_name": "Latency", "passed": False, "explanation": [long]}],
    )
    first, second = run_reasons(run)
    assert first == "metric 'Hours' did not pass"
    assert second.startswith("rubric rule 'Latency' did not hold: The agent kept talking.")
    assert len(second) < 400 and second.endswith("…")
    assert run.rubric[0].explanation == (long,)


# -- a call that never connected ------------------------------------------------------------


def test_a_call_that_never_connected_is_an_error() -> None:
    run = _judged(
        success=False,
        expected_outcome={},
        evaluation={"metrics": []},
        error_message=NOT_JOINED,
    )
    assert (run.verdict, run.never_connected, run.error_reason) == ("error", True, NOT_JOINED)
    assert run_reasons(run) == [NOT_JOINED]
    verdict = decide(_case(1, 1), [run])
    assert verdict.outcome == "error"
    assert verdict.first_reason == NOT_JOINED
    assert verdict.message.splitlines() == [
        NOT_JOINED,
        "  scenario 101 'Books a table' errored",
        "  run 90001, result 7",
        "  dashboard: https://d/1/results/7",
    ]


@pytest.mark.parametrize(
    "evidence",
    [
        {"expected_outcome": {"score": 0, "explanation": ["Nobody answered."]}},
        {"evaluation": {"metrics": [{"name": "Hours", "type": "binary_qualitative", "score": 0}]}},
        {"rubric": [{"metric_name": "Latency", "passed": False}]},
    ],
    ids=["outcome-score", "failed-metric", "failed-rubric"],
)
def test_with_evaluation_evidence_it_is_a_failure(evidence: dict[str, Any]) -> None:
    changes = {"expected_outcome": {}, "evaluation": {}, **evidence}
    run = _judged(success=False, error_message="Transfer tool timed out", **changes)
    assert (run.verdict, run.never_connected, run.error_reason) == ("failed", False, None)
    assert "Transfer tool timed out" not in run_reasons(run)


def test_a_timed_out_run_with_a_message_counts_for_the_breaker() -> None:
    run = _judged(status="timeout", success=None, error_message="Call exceeded 10 minutes")
    assert (run.verdict, run.never_connected) == ("error", False)
    assert run.error_reason == "Call exceeded 10 minutes"
    assert _judged(status="timeout", success=None).error_reason is None


# -- human review -----------------------------------------------------------------------------


def test_a_human_success_review_wins_over_a_failed_evaluation() -> None:
    run = _judged(
        **{**V2_CANONICAL_FAILURE, "is_reviewed": True, "evaluation_status": "reviewed_success"}
    )
    assert (run.success, run.verdict, run_reasons(run)) == (False, "passed", [])
    verdict = decide(_case(1, 1), [run])
    lines = verdict.message.splitlines()
    assert verdict.outcome == "passed"
    assert lines[0] == (
        "scenario 101 'Books a table' passed: "
        "reviewed on the Cekura dashboard: marked passed by a human"
    )
    assert lines[1] == (
        "  overruled: expected outcome: score 60/100: Booked, but for the wrong day."
    )
    assert lines[-2:] == ["  run 90003, result 7", "  dashboard: https://d/1/results/7"]


def test_a_human_failure_review_wins_over_a_successful_evaluation() -> None:
    run = _judged(is_reviewed="true", evaluation_status="reviewed_failure")
    assert (run.success, run.verdict) == (True, "failed")
    assert run_reasons(run) == ["reviewed on the Cekura dashboard: marked failed by a human"]
    verdict = decide(_case(1, 1), [run])
    assert verdict.first_reason == "reviewed on the Cekura dashboard: marked failed by a human"
    assert verdict.message.splitlines()[:2] == [
        "reviewed on the Cekura dashboard: marked failed by a human",
        "  scenario 101 'Books a table' failed its evaluation",
    ]


def test_a_failure_review_lists_the_evidence_after_it() -> None:
    run = _judged(
        success=False,
        error_message=NOT_JOINED,
        evaluation={"metrics": [{"name": "Hours", "eval_type": "binary", "passed": False}]},
        is_reviewed=True,
        evaluation_status="reviewed_failure",
    )
    assert run_reasons(run) == [
        "reviewed on the Cekura dashboard: marked failed by a human",
        "metric 'Hours' did not pass",
    ]


def test_a_review_decides_even_a_call_that_never_connected() -> None:
    run = _judged(
        success=False,
        expected_outcome={},
        error_message=NOT_JOINED,
        is_reviewed=True,
        evaluation_status="reviewed_success",
    )
    assert (run.verdict, run.never_connected) == ("passed", False)


@pytest.mark.parametrize(
    ("status", "evaluation_status", "success", "verdict"),
    [
        ("completed", "success", False, "failed"),  # not reviewed: success decides
        ("completed", "failure", True, "passed"),
        ("completed", "reviewed_success", None, "passed"),
        ("failed", "reviewed_success", None, "error"),  # a review does not undo a crash
        ("timeout", "reviewed_failure", None, "error"),
    ],
)
def test_review_only_decides_a_completed_run(
    status: str, evaluation_status: str, success: bool | None, verdict: str
) -> None:
    run = _cekura(status, success, evaluation_status=evaluation_status, is_reviewed=True)
    assert run.verdict == verdict
    reviewed = status == "completed" and evaluation_status.startswith("reviewed")
    assert (review_note(run) is not None) is reviewed


def test_many_runs_say_which_was_reviewed() -> None:
    runs = [
        _cekura(run_id=1, success=False, evaluation_status="reviewed_success"),
        _cekura(run_id=2, success=False, metrics=(MetricResult("Hours", False),)),
    ]
    assert decide(_case(2, 1), runs).message.splitlines() == [
        "scenario 101: 1 of 2 runs passed, 1 required",
        "  run 1, result 7: passed: reviewed on the Cekura dashboard: marked passed by a human",
        "  run 2, result 7: failed: metric 'Hours' did not pass",
    ]


# -- odd values: one field, not the verdict --------------------------------------------------


def test_a_plain_string_expected_outcome_is_the_reason_when_nothing_else_is() -> None:
    run = _judged(success=False, expected_outcome="The caller was not told the closing time.")
    assert run.expected_outcome == ExpectedOutcomeResult(
        None, ("The caller was not told the closing time.",)
    )
    assert run_reasons(run) == ["expected outcome: The caller was not told the closing time."]


def test_infinity_duration_and_nan_score_from_json() -> None:
    raw = json.loads(
        '{"id": 90001, "status": "completed", "success": false, "scenario": 101,'
        ' "duration": Infinity, "expected_outcome": {"score": NaN, "explanation": ["?"]},'
        ' "evaluation": {"metrics": [{"name": "Hours", "eval_type": "binary",'
        ' "passed": false, "score": NaN}]}}'
    )
    run = CekuraRun.from_api(Run.model_validate(raw), 7, raw, None)
    assert (run.duration, run.expected_outcome.score, run.metrics[0].score) == (None, None, None)
    assert run.verdict == "failed"
    assert run_reasons(run) == ["metric 'Hours' did not pass"]


@pytest.mark.parametrize(
    ("success", "verdict"), [("true", "passed"), ("false", "failed"), ("perhaps", "error")]
)
def test_success_as_a_string(success: str, verdict: str) -> None:
    assert _judged(success=success).verdict == verdict


def test_canceled_is_cancelled() -> None:
    run = _judged(status="canceled", success=None)
    assert (run.status, run.verdict) == ("cancelled", "error")
    assert run_reasons(run) == ["the run ended with status cancelled"]


# -- the first line of a failure is its reason ------------------------------------------------


def test_a_long_reason_is_cut_on_the_first_line_and_given_in_full_after() -> None:
    long = "Call exceeded 10 minutes " + "x" * 400
    verdict = decide(_case(1, 1), [_cekura("timeout", None, error_message=long)])
    first, *rest = verdict.message.splitlines()
    assert len(first) == HEADLINE_LIMIT and first.endswith("…")
    assert first.startswith("Call exceeded 10 minutes x")
    assert rest == ["  scenario 101 errored", f"  {long}", "  run 90001, result 7"]


def test_a_multi_line_error_message_keeps_its_first_line_first() -> None:
    message = "the bot exited with code 3\n--- last lines of bot.log\nFatal: no key"
    verdict = decide(_case(2, 1), [_cekura("failed", None, error_message=message, run_id=1)] * 2)
    lines = verdict.message.splitlines()
    assert lines[0] == "the bot exited with code 3"
    assert lines[1] == "  scenario 101: 0 of 2 runs passed, 1 required"


def test_a_hook_that_fails_passing_runs_says_so_first() -> None:
    verdict = decide(_case(1, 1), [_cekura()], override=False)
    assert verdict.outcome == "failed"
    assert verdict.message.splitlines()[:2] == [
        "a pytest_cekura_verdict hook failed the case",
        "  scenario 101 failed its evaluation",
    ]


@pytest.mark.parametrize(
    ("runs", "repeat", "min_passes", "outcome"),
    [
        ([ERROR], 2, 2, "error"),  # one run judged of two: undecided, never a failure
        ([FAIL], 3, 2, "error"),  # the two unjudged runs could still make it pass
        ([FAIL, FAIL], 3, 2, "failed"),  # no unjudged run can make it pass
        ([PASS], 3, 1, "passed"),
    ],
)
def test_runs_never_judged_leave_the_case_undecided(
    runs: list[tuple[str, bool | None]], repeat: int, min_passes: int, outcome: str
) -> None:
    ran = [_cekura(s, ok, run_id=90001 + i) for i, (s, ok) in enumerate(runs)]
    assert decide(_case(repeat, min_passes), ran).outcome == outcome

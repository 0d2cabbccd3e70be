"""Issue 14: thresholds that fail closed, nothing evaluated is not a pass, quarantine, and
gating against a baseline report. Suites run against the local simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import API_KEY, Suite, no_traceback

import pytest_cekura_pipecat
from pytest_cekura_pipecat._api.run import CekuraRun, ExpectedOutcomeResult, MetricResult
from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._config.thresholds import (
    Quarantine,
    Threshold,
    merge_thresholds,
    parse_date,
    parse_threshold,
)
from pytest_cekura_pipecat._fire.plan import Slot
from pytest_cekura_pipecat._judge import gating as _gating
from pytest_cekura_pipecat._judge.canary import canary_problem
from pytest_cekura_pipecat._judge.gating import Baseline, gate
from pytest_cekura_pipecat._judge.verdict import adaptive_need, check_threshold, decide
from pytest_cekura_pipecat._report.comment import pr_comment
from pytest_cekura_pipecat._report.document import Report
from pytest_cekura_pipecat._report.markdown import step_summary
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

SCHEMA = json.loads(
    (Path(pytest_cekura_pipecat.__file__).parent / "report.schema.json").read_text(encoding="utf-8")
)

SCRIPTS = [
    ScenarioScript(101, "Books a table", "pass", 0.1),
    ScenarioScript(102, "Refuses a late booking", "fail", 0.1, reasons=("Booked 23:30.",)),
    ScenarioScript(103, "Cancels a booking", "error", 0.1, reasons=("Bot did not join",)),
    ScenarioScript(105, "Hangs forever", "stuck", 0.1),
    ScenarioScript(
        201,
        "Scores 90",
        "pass",
        0.1,
        score=90,
        numeric_metrics=(("Latency (ms)", 1200),),
        enum_metrics=(("Sentiment", "neutral"),),
    ),
    ScenarioScript(202, "Nothing to check", "evaluated_nothing", 0.1),
]

ROOM = 'pipecat_room_url = "https://acme.daily.co/room-abc"\n'


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SCRIPTS, api_key=API_KEY) as simulator:
        yield simulator


def _toml(text: str) -> str:
    return ROOM + "\n".join(line.strip() for line in text.strip().splitlines()) + "\n"


# -- thresholds: parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("expected_outcome_score", ">= 80", Threshold("expected_outcome_score", ">=", 80.0)),
        ("Latency", "<=1500", Threshold("Latency", "<=", 1500.0)),
        ("Latency", "> 1.5", Threshold("Latency", ">", 1.5)),
        ("Latency", " < 2 ", Threshold("Latency", "<", 2.0)),
        ("Score", "== 5", Threshold("Score", "==", 5.0)),
        ("Tool Call Success", "pass", Threshold("Tool Call Success", "pass")),
        (
            "Sentiment",
            "in [positive, 'neutral']",
            Threshold("Sentiment", "in", choices=("positive", "neutral")),
        ),
    ],
)
def test_parse_threshold_forms(key: str, text: str, expected: Threshold) -> None:
    assert parse_threshold(key, text) == expected


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [
        ("Latency", "1500", "want '>= N', '<= N'"),
        ("Latency", ">= fast", "'fast' is not a number"),
        ("Latency", ">= nan", "is not a number"),
        ("Latency", "=> 5", "want '>= N'"),
        ("Sentiment", "in [a, ]", "an empty choice"),
        ("expected_outcome_score", "pass", "the score is a number"),
        ("expected_outcome_score", "in [1, 2]", "the score is a number"),
        (" ", ">= 1", "a key is empty"),
    ],
)
def test_parse_threshold_rejects(key: str, text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_threshold(key, text)
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


def test_merge_thresholds_case_key_replaces_suite_key() -> None:
    suite = (Threshold("A", ">=", 1.0), Threshold("B", "pass"))
    case = (Threshold("A", ">=", 5.0),)
    assert merge_thresholds(suite, case) == (Threshold("B", "pass"), Threshold("A", ">=", 5.0))


def _run(**kw: Any) -> CekuraRun:
    kw.setdefault("run_id", 1)
    kw.setdefault("success", True)
    kw.setdefault("status", "completed")
    return CekuraRun(scenario_id=201, **kw)


def test_check_threshold_states() -> None:
    run = _run(
        expected_outcome=ExpectedOutcomeResult(90.0),
        metrics=(
            MetricResult("Latency (ms)", None, type="numeric", score=1200.0),
            MetricResult("Sentiment", None, type="enum", enum="Neutral"),
            MetricResult("Task completed", True, type="binary"),
            MetricResult("Vibes", None, type="enum"),
        ),
    )

    def state(key: str, text: str) -> tuple[str, Any]:
        got = check_threshold(parse_threshold(key, text), run)
        return got.state, got.measured

    assert state("expected_outcome_score", ">= 95") == ("broken", 90.0)
    assert state("expected_outcome_score", "> 89") == ("held", 90.0)
    assert state("latency (ms)", "<= 1500") == ("held", 1200.0)  # names: case-insensitive
    assert state("Latency (ms)", "< 1000") == ("broken", 1200.0)
    assert state("Sentiment", "in [positive, neutral]") == ("held", "Neutral")
    assert state("Sentiment", "in [positive]") == ("broken", "Neutral")
    assert state("Task completed", "pass") == ("held", "pass")
    assert state("Sentiment", "pass")[0] == "missing"  # no pass/fail on an enum
    assert state("Vibes", "in [x]")[0] == "missing"  # no value at all
    assert state("Task completed", ">= 1")[0] == "missing"  # no number
    missing = check_threshold(parse_threshold("Politeness", ">= 3"), run)
    assert missing.reason == "threshold 'Politeness >= 3': the run has no metric 'Politeness'"


def test_decide_counts_runs_that_pass_both_under_min_passes() -> None:
    case = Case(
        "c",
        201,
        "cekura.toml",
        repeat=3,
        min_passes=2,
        thresholds=(parse_threshold("expected_outcome_score", ">= 80"),),
    )
    runs = [
        _run(run_id=1, expected_outcome=ExpectedOutcomeResult(90.0)),
        _run(run_id=2, expected_outcome=ExpectedOutcomeResult(70.0)),  # Cekura: passed
        _run(run_id=3, success=False, expected_outcome=ExpectedOutcomeResult(95.0)),
    ]
    verdict = decide(case, runs)
    assert verdict.outcome == "failed"
    assert "1 of 3 runs passed, 2 required" in verdict.message
    assert "run 2: failed: threshold 'expected_outcome_score >= 80' not met: measured 70" in (
        verdict.message
    )
    assert [j.outcome for j in verdict.judged] == ["passed", "failed", "failed"]
    runs[1] = _run(run_id=2, expected_outcome=ExpectedOutcomeResult(85.0))
    assert decide(case, runs).outcome == "passed"


def test_nothing_evaluated_is_an_error_unless_allowed() -> None:
    case = Case("c", 202, "cekura.toml")
    verdict = decide(case, [_run()])
    assert verdict.outcome == "error"
    assert verdict.first_reason.startswith(
        "Cekura evaluated nothing for this run (attach an expected outcome or metrics to "
        "scenario 202"
    )
    allowed = Case("c", 202, "cekura.toml", allow_unevaluated=True)
    assert decide(allowed, [_run()]).outcome == "passed"
    reviewed = _run(is_reviewed=True, evaluation_status="reviewed_success")
    assert decide(case, [reviewed]).outcome == "passed"  # a human evaluated it


# -- thresholds and nothing evaluated: suites ----------------------------------------------


def test_score_threshold_fails_naming_threshold_and_measured_value(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "strict-score"
        scenario = 201
        thresholds = { expected_outcome_score = ">= 95" }
        [[case]]
        name = "latency-ok"
        scenario = 201
        thresholds = { "Latency (ms)" = "<= 1500", "Sentiment" = "in [positive, neutral]", "Task completed" = "pass" }
        """)
    )
    result = suite.run("-rA", "--cekura-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "threshold 'expected_outcome_score >= 95' not met: measured 90",
            "*scenario 201 'Scores 90' failed its evaluation",
        ]
    )
    report = json.loads((suite.pytester.path / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    by_name = {c["name"]: c for c in report["cases"]}
    run = by_name["strict-score"]["runs"][0]
    assert run["verdict"] == "failed"
    assert run["thresholds"] == [
        {"threshold": "expected_outcome_score >= 95", "state": "broken", "measured": 90}
    ]
    assert [t["state"] for t in by_name["latency-ok"]["runs"][0]["thresholds"]] == ["held"] * 3
    assert no_traceback(result.stdout.str())


def test_missing_metric_errors_and_top_level_thresholds_apply(suite: Suite) -> None:
    suite.toml(
        _toml("""
        thresholds = { "Politeness" = ">= 3" }
        [[case]]
        name = "no-such-metric"
        scenario = 201
        [[case]]
        name = "failing-anyway"
        scenario = 102
        [[case]]
        name = "override"
        scenario = 201
        thresholds = { "Politeness" = "<= 1e9", "Latency (ms)" = "< 100" }
        """)
    )
    result = suite.run("-rA")
    result.assert_outcomes(failed=1, errors=2)
    out = result.stdout.str()
    assert "ERROR at setup of cekura case no-such-metric" in out
    result.stdout.fnmatch_lines(
        [
            "threshold 'Politeness >= 3': the run has no metric 'Politeness'",
            "*scenario 201 'Scores 90' errored",
        ]
    )
    # A Cekura fail stays a fail; the missing metric is one more reason.
    result.stdout.fnmatch_lines(
        [
            "*cekura case failing-anyway (scenario 102)*",
            "expected outcome: score 40/100*",
            "*'Refuses a late booking' failed its evaluation",
            "*metric 'Task completed' did not pass*",
            "*threshold 'Politeness >= 3': the run has no metric 'Politeness'",
        ],
        consecutive=True,
    )
    # The case's key replaces the suite's (still missing: an error); its other keys add.
    result.stdout.fnmatch_lines(
        [
            "threshold 'Politeness <= 1e+09': the run has no metric*",
            "*'Scores 90' errored",
            "*threshold 'Latency (ms) < 100' not met: measured 1200*",
        ]
    )


def test_thresholds_as_marker_kwargs_with_repeat(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_bot="""
        import pytest

        ROOM = "https://acme.daily.co/room-abc"

        @pytest.mark.cekura(scenario=201, pipecat_room_url=ROOM, repeat=2, min_passes=1,
                            thresholds={"expected_outcome_score": ">= 90"})
        def test_meets():
            pass

        @pytest.mark.cekura(scenario=201, pipecat_room_url=ROOM, repeat=2,
                            thresholds={"Latency (ms)": "<= 1000"})
        def test_too_slow():
            pass

        @pytest.mark.cekura(scenario=102, pipecat_room_url=ROOM,
                            quarantine={"until": "2099-01-01", "reason": "flaky", "owner": "@bo"})
        def test_quarantined():
            pass
        """
    )
    result = suite.run("-rA")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    assert "quarantined: test_quarantined (xfailed): until 2099-01-01 [active], owner @bo" in (
        result.stdout.str()
    )
    result.stdout.fnmatch_lines(
        [
            "*scenario 201 'Scores 90': 0 of 2 runs passed, 2 required*",
            "*: failed: threshold 'Latency (ms) <= 1000' not met: measured 1200*",
        ]
    )


def test_evaluated_nothing_errors_and_allow_unevaluated_passes(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "nothing"
        scenario = 202
        [[case]]
        name = "nothing-allowed"
        scenario = 202
        allow_unevaluated = true
        """)
    )
    result = suite.run("-rA")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*Cekura evaluated nothing for this run (attach an expected outcome or metrics to "
            "scenario 202*"
        ]
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            'thresholds = { "Latency" = "fast" }',
            "cekura.toml: case c: thresholds: 'Latency': 'fast': want '>= N'",
        ),
        (
            'thresholds = { "Latency" = 1500 }',
            "cekura.toml: case c: thresholds.Latency: Input should be a valid string",
        ),
        (
            'quarantine = { until = "2026-12-31" }',
            "cekura.toml: case c: quarantine.reason: required",
        ),
        (
            'quarantine = { until = "soon", reason = "flaky" }',
            "cekura.toml: case c: quarantine.until: want a date, YYYY-MM-DD",
        ),
        (
            'quarantine = { until = 2026-12-31, reason = "flaky", ownr = "x" }',
            "cekura.toml: case c: unknown key 'quarantine.ownr'",
        ),
        ("allow_unevaluated = 1", "cekura.toml: case c: allow_unevaluated: Input should be"),
    ],
)
def test_gate_config_errors_are_one_line(suite: Suite, body: str, problem: str) -> None:
    suite.toml(_toml(f'[[case]]\nname = "c"\nscenario = 101\n{body}'))
    result = suite.run()
    out = result.stdout.str()
    assert problem in out, out
    assert result.ret != 0
    assert not suite.posts()


# -- quarantine ----------------------------------------------------------------------------


def test_gate_decisions_with_an_injected_day() -> None:
    q = Quarantine(date(2026, 12, 31), "flaky tool call", "@ana", "https://x/1")
    case = Case("c", 102, "cekura.toml", quarantine=q)
    on = gate(case, "n", False, None, date(2026, 12, 31))
    assert on.excuse == "quarantined until 2026-12-31, owner @ana: flaky tool call (https://x/1)"
    assert on.quarantine is q and on.quarantine_active is True
    off = gate(case, "n", False, None, date(2027, 1, 1))
    assert off.excuse is None
    assert off.note == "quarantine expired on 2026-12-31 (flaky tool call): this case blocks again"
    assert gate(case, "n", True, None, date(2026, 1, 1)).excuse is None
    baseline = Baseline("base.json", {"a": False, "b": True, "c": False})
    plain = Case("x", 101, "cekura.toml")
    assert gate(plain, "a", False, baseline, date.today()).baseline == "known"
    assert gate(plain, "a", False, baseline, date.today()).excuse is not None
    assert gate(plain, "b", False, baseline, date.today()).baseline == "new"
    assert gate(plain, "c", True, baseline, date.today()).baseline == "fixed"
    assert gate(plain, "z", False, baseline, date.today()).baseline is None
    strict = Baseline("base.json", {"a": False}, strict=True)
    assert gate(plain, "a", False, strict, date.today()).excuse is None
    assert parse_date("2026-12-31") == parse_date(date(2026, 12, 31))


def test_active_quarantine_does_not_block_and_a_pass_is_a_pass(suite: Suite) -> None:
    ini = suite.pytester.path / "tox.ini"  # as the project's own ini: xfail_strict
    ini.write_text(ini.read_text() + "\nxfail_strict = true\n")
    suite.toml(
        _toml("""
        [[case]]
        name = "late-booking"
        scenario = 102
        quarantine = { until = "2099-12-31", reason = "flaky tool call", owner = "@ana", issue = "https://github.com/acme/bot/issues/7" }
        [[case]]
        name = "cancels"
        scenario = 103
        quarantine = { until = 2099-12-31, reason = "room provider down" }
        [[case]]
        name = "books"
        scenario = 101
        quarantine = { until = "2099-12-31", reason = "was flaky" }
        """)
    )
    result = suite.run("-rA", "--cekura-report=report.json", "--cekura-pr-comment=c.md")
    result.assert_outcomes(passed=1, xfailed=2)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    assert "XPASS" not in out
    assert (
        "quarantined: late-booking (xfailed): until 2099-12-31 [active], owner @ana: "
        "flaky tool call (https://github.com/acme/bot/issues/7)"
    ) in out.splitlines()
    assert "quarantined: books (passed): until 2099-12-31 [active]: was flaky" in out
    report = json.loads((suite.pytester.path / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["gate"] == {
        "new": 0,
        "known": 0,
        "fixed": 0,
        "evaluator_changed": 0,
        "quarantined": 3,
    }
    assert report["totals"]["xfailed"] == 2
    comment = (suite.pytester.path / "c.md").read_text()
    assert "#### Quarantined (2)" in comment
    assert "owner @ana" in comment


def test_expired_quarantine_blocks_and_says_so(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "late-booking"
        scenario = 102
        quarantine = { until = "2020-01-31", reason = "flaky tool call" }
        """)
    )
    result = suite.run("-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*quarantine expired on 2020-01-31 (flaky tool call): this case blocks again*"]
    )
    assert "quarantined: late-booking (failed): until 2020-01-31 [EXPIRED]" in result.stdout.str()


def test_quarantine_from_the_injected_clock(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "late-booking"
        scenario = 102
        quarantine = { until = "2026-06-30", reason = "flaky" }
        """)
    )
    monkeypatch.setattr(_gating, "today", lambda: date(2026, 6, 30))
    suite.run().assert_outcomes(xfailed=1)
    monkeypatch.setattr(_gating, "today", lambda: date(2026, 7, 1))
    suite.run().assert_outcomes(failed=1)


# -- baseline ------------------------------------------------------------------------------

BASELINE_CASES = """
[[case]]
name = "A"
scenario = {a}
[[case]]
name = "B"
scenario = {b}
[[case]]
name = "C"
scenario = {c}
"""


def test_baseline_new_known_fixed(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    # The base branch: A fails, B passes, C fails.
    suite.toml(_toml(BASELINE_CASES.format(a=102, b=101, c=102)))
    base = suite.run("--cekura-report=base.json")
    base.assert_outcomes(passed=1, failed=2)
    # This branch: A and B fail, C passes; D is new (not in the baseline) and fails.
    suite.toml(
        _toml(BASELINE_CASES.format(a=102, b=102, c=101) + '[[case]]\nname = "D"\nscenario = 103')
    )
    summary = suite.pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = suite.run(
        "-rA", "--cekura-baseline=base.json", "--cekura-report=now.json", "--cekura-pr-comment=c.md"
    )
    result.assert_outcomes(passed=1, failed=1, xfailed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*new failure: it passed in the baseline *base.json*",
            "*baseline: 1 new failure(s) (B), 1 known failure(s) (A), 1 fixed (C)*",
        ]
    )
    # pytest 8.0 writes "XFAIL id - reason: …", later versions "XFAIL id - …"
    result.stdout.fnmatch_lines(
        ["XFAIL cekura.toml::A - *known failure: it did not pass in the baseline*"]
    )
    report = json.loads((suite.pytester.path / "now.json").read_text())
    jsonschema.validate(report, SCHEMA)
    by_name = {c["name"]: c for c in report["cases"]}
    assert {n: c.get("baseline") for n, c in by_name.items()} == {
        "A": "known",
        "B": "new",
        "C": "fixed",
        "D": None,
    }
    assert report["gate"] == {
        "new": 1,
        "known": 1,
        "fixed": 1,
        "evaluator_changed": 0,
        "quarantined": 0,
    }
    comment = (suite.pytester.path / "c.md").read_text()
    assert comment.index("New failures (1)") < comment.index("Known failures (1)")
    assert "Fixed (1)" in comment
    step = summary.read_text()
    assert "1 new failure(s), 1 known failure(s), 1 fixed" in step
    # Only B (new) and D (not in the baseline) block: with them passing, the gate is green.
    suite.toml(
        _toml(BASELINE_CASES.format(a=102, b=101, c=101) + '[[case]]\nname = "D"\nscenario = 101')
    )
    assert suite.run("--cekura-baseline=base.json").ret == pytest.ExitCode.OK
    strict = suite.run("--cekura-baseline=base.json", "--cekura-baseline-strict")
    strict.assert_outcomes(passed=3, failed=1)
    strict.stdout.fnmatch_lines(["*known failure (it did not pass in the baseline either)*"])


def test_baseline_from_the_ini_relative_to_it(suite: Suite) -> None:
    suite.toml(_toml(BASELINE_CASES.format(a=102, b=101, c=101)))
    suite.run("--cekura-report=reports/base.json").assert_outcomes(passed=2, failed=1)
    ini = suite.pytester.path / "tox.ini"
    ini.write_text(ini.read_text() + "\ncekura_baseline = reports/base.json\n")
    result = suite.run()
    result.assert_outcomes(passed=2, xfailed=1)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ('{"schema_version": 1}', "schema_version 1 is not 2"),
    ],
)
def test_unreadable_baseline_is_one_line_naming_the_file(
    suite: Suite, content: str | None, problem: str
) -> None:
    if content is not None:
        (suite.pytester.path / "base.json").write_text(content)
    suite.toml(_toml(BASELINE_CASES.format(a=101, b=101, c=101)))
    result = suite.run("--cekura-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if "--cekura-baseline" in line]
    assert len(lines) == 1, result.errlines
    assert "base.json" in lines[0] and problem in lines[0]
    assert no_traceback("\n".join(result.errlines))
    assert not suite.posts()


def test_markdown_shows_gate_for_documents() -> None:
    document: dict[str, Any] = {
        "simulated": False,
        "cases": [
            {
                "name": "q",
                "nodeid": "cekura.toml::q",
                "scenario": 1,
                "outcome": "xfailed",
                "verdict": "failed",
                "runs": [],
                "quarantine": {
                    "until": "2099-01-01",
                    "reason": "flaky | <b>",
                    "owner": "@ana",
                    "issue": "https://github.com/acme/bot/issues/7",
                    "active": True,
                },
            }
        ],
        "gate": {"new": 0, "known": 0, "fixed": 0, "quarantined": 1},
    }
    report = Report.from_json(document)
    text = step_summary(report)
    assert "**Quarantined (1):**" in text
    assert "flaky &#124; &lt;b&gt;" in text
    assert "[issue](https://github.com/acme/bot/issues/7)" in text
    assert "#### Quarantined (1)" in pr_comment(report)


# -- canary and adaptive repeats -----------------------------------------------------------


def test_canary_that_errors_leaves_exactly_one_entry_fired(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "bot-up"
        scenario = 103
        canary = true
        [[case]]
        name = "books"
        scenario = 101
        [[case]]
        name = "late"
        scenario = 102
        repeat = 2
        """)
    )
    result = suite.run("-rA")
    result.assert_outcomes(errors=3)
    entries = [e for post in suite.posts() for e in post.body["scenarios"]]
    assert [e["scenario"] for e in entries] == [103]
    result.stdout.fnmatch_lines(
        ["*not fired: canary bot-up errored: Bot did not join*"], consecutive=False
    )
    assert result.stdout.str().count("not fired: canary bot-up errored: Bot did not join") >= 2


def test_canary_that_passes_or_fails_lets_the_rest_fire(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "late"
        scenario = 102
        [[case]]
        name = "books"
        scenario = 101
        [[case]]
        name = "hours"
        scenario = 101
        """)
    )
    result = suite.run("--cekura-canary=late")
    result.assert_outcomes(passed=2, failed=1)
    posts = suite.posts()
    assert [[e["scenario"] for e in p.body["scenarios"]] for p in posts] == [[102], [101, 101]]
    assert suite.run("--cekura-canary=nope").ret == pytest.ExitCode.TESTS_FAILED
    assert len(suite.posts()) == 3  # no canary: one request for all


def test_a_canary_without_a_verdict_is_judged_by_the_watcher_s_deadline(suite: Suite) -> None:
    """The canary waits on the run the watcher publishes, as an item does: at its case's
    timeout the watcher ends the call and says the run's last status; nothing else fires."""
    suite.toml(
        _toml("""
        [[case]]
        name = "hangs"
        scenario = 105
        canary = true
        timeout = 1
        [[case]]
        name = "books"
        scenario = 101
        """)
    )
    result = suite.run("-rA")
    result.assert_outcomes(errors=2)
    assert [[e["scenario"] for e in p.body["scenarios"]] for p in suite.posts()] == [[105]]
    result.stdout.fnmatch_lines(
        [
            "*not fired: canary hangs errored: no verdict after 1 s (last status: *the call was ended*"
        ]
    )
    assert [r for r in suite.sim.requests if "end_call" in r.path]


def _canary(name: str, index: int, error: str | None = None) -> tuple[Case, Slot]:
    case = Case(name=name, scenario=101, source="cekura.toml")
    return case, Slot(f"test_{name}", index, 101, 60.0, fired_at=1.0, error=error)


def test_canary_problem_is_the_first_canary_that_errored() -> None:
    up, down = _canary("up", 0), _canary("down", 0)
    passed = CekuraRun(scenario_id=101, status="completed", success=True)
    failed = CekuraRun(scenario_id=101, status="completed", success=False)
    errored = CekuraRun(scenario_id=101, status="failed", error_message="Bot did not join")
    assert canary_problem([up, down], {}) is None  # nothing published yet: no problem yet
    assert canary_problem([up, down], {up[1].key: passed, down[1].key: failed}) is None
    problem = canary_problem([up, down], {up[1].key: passed, down[1].key: errored})
    assert problem == "canary down errored: Bot did not join"
    never = _canary("never", 1, error="not started: HTTP 503")
    assert canary_problem([up, never], {up[1].key: errored}) == (
        "canary never errored: not started: HTTP 503"  # a slot that never started comes first
    )


def test_adaptive_fires_only_what_can_change_the_verdict(suite: Suite) -> None:
    suite.toml(
        _toml("""
        adaptive = true
        [[case]]
        name = "books"
        scenario = 101
        repeat = 5
        min_passes = 3
        [[case]]
        name = "late"
        scenario = 102
        repeat = 5
        min_passes = 2
        """)
    )
    result = suite.run("-rA", "--cekura-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    entries = [e["scenario"] for post in suite.posts() for e in post.body["scenarios"]]
    # books: 3 pass, done. late: 2 fail, 2 more, both fail, 1 left cannot reach 2: stop.
    assert sorted(entries) == [101, 101, 101, 102, 102, 102, 102]
    result.stdout.fnmatch_lines(["*adaptive: 4 of 5 runs fired, 1 saved*"])
    report = json.loads((suite.pytester.path / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    by_name = {c["name"]: c for c in report["cases"]}
    assert by_name["books"]["adaptive"] == {"planned": 5, "fired": 3, "saved": 2}
    assert len(by_name["late"]["runs"]) == 4


def test_adaptive_need_matches_the_full_verdict() -> None:
    case = Case("c", 201, "cekura.toml", repeat=5, min_passes=3, adaptive=True)
    ok = _run(expected_outcome=ExpectedOutcomeResult(100.0))
    bad = _run(success=False, expected_outcome=ExpectedOutcomeResult(10.0))
    assert adaptive_need(case, [ok, ok, ok]) == 0
    assert adaptive_need(case, [ok, bad, ok]) == 1
    assert adaptive_need(case, [ok, bad, bad]) == 2
    assert adaptive_need(case, [ok, bad, bad, ok, bad]) == 0  # nothing left
    assert adaptive_need(case, [bad, bad, bad]) == 0  # 3 needed, 2 left: cannot pass
    assert adaptive_need(case, [ok, bad, _run(run_id=None, status="not_started")]) == 0
    assert decide(case, [ok, bad, ok, ok]).outcome == "passed"
    assert adaptive_need(replace(case, adaptive=False), [ok, bad, ok]) == 0


def test_canary_and_adaptive_under_xdist(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "bot-up"
        scenario = 101
        canary = true
        [[case]]
        name = "late"
        scenario = 102
        repeat = 3
        min_passes = 1
        adaptive = true
        [[case]]
        name = "books"
        scenario = 101
        repeat = 4
        min_passes = 2
        adaptive = true
        """)
    )
    result = suite.run("-n", "2", "--cekura-report=report.json")
    result.assert_outcomes(passed=2, failed=1)
    posts = [[e["scenario"] for e in p.body["scenarios"]] for p in suite.posts()]
    assert posts[0] == [101]  # the canary, alone
    assert sorted(s for p in posts for s in p) == [101, 101, 101, 102, 102, 102]
    report = json.loads((suite.pytester.path / "report.json").read_text())
    by_name = {c["name"]: c for c in report["cases"]}
    assert by_name["late"]["adaptive"] == {"planned": 3, "fired": 3, "saved": 0}
    assert by_name["books"]["adaptive"] == {"planned": 4, "fired": 2, "saved": 2}


def test_dry_run_plans_first_runs_and_canaries(suite: Suite) -> None:
    suite.toml(
        _toml("""
        [[case]]
        name = "bot-up"
        scenario = 101
        canary = true
        [[case]]
        name = "books"
        scenario = 101
        repeat = 5
        min_passes = 3
        adaptive = true
        """)
    )
    result = suite.run("--cekura-dry-run")
    out = result.stdout.str()
    assert "cekura dry run: 4 run(s) in 1 request(s) would be started" in out
    assert "adaptive case books: up to 2 more run(s) if runs do not pass" in out
    assert "canary bot-up: fired first and alone" in out
    assert not suite.posts()

"""Issue 32, item 3: confirmation runs before a failure blocks (confirm = N), and pass rates
compared with the baseline's by Fisher's exact test. Suites run against the local
simulator, whose scripts play a scenario's later runs with other outcomes (``then``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import jsonschema
import pytest
from helpers import API_KEY, Suite

import pytest_cekura_pipecat
from pytest_cekura_pipecat._api.run import CekuraRun, ExpectedOutcomeResult
from pytest_cekura_pipecat._config.case import Case, Defaults
from pytest_cekura_pipecat._config.schema import case_from_marker
from pytest_cekura_pipecat._errors import ConfigError
from pytest_cekura_pipecat._judge.confirm import compare_with, confirmation
from pytest_cekura_pipecat._judge.gating import gate
from pytest_cekura_pipecat._judge.stats import Counts
from pytest_cekura_pipecat._judge.verdict import judge_run
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

SCHEMA = json.loads(
    (Path(pytest_cekura_pipecat.__file__).parent / "report.schema.json").read_text(encoding="utf-8")
)

SCRIPTS = [
    ScenarioScript(101, "Books a table", "pass", 0.1),
    ScenarioScript(102, "Refuses a late booking", "fail", 0.1, reasons=("Booked 23:30.",)),
    ScenarioScript(110, "Flaky: fails once", "fail", 0.1, then=("pass",)),
    ScenarioScript(111, "Passes 7 of 10", "fail", 0.1, then=("fail", "fail", "pass")),
    ScenarioScript(112, "Passes 2 of 10", "fail", 0.1, then=("fail",) * 7 + ("pass",)),
]

ROOM = 'pipecat_room_url = "https://acme.daily.co/room-abc"\n'


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SCRIPTS, api_key=API_KEY) as simulator:
        yield simulator


def _fired(suite: Suite) -> Counter[int]:
    return Counter(e["scenario"] for post in suite.posts() for e in post.body["scenarios"])


def _report(suite: Suite, name: str = "report.json") -> dict[str, dict[str, object]]:
    report = json.loads((suite.pytester.path / name).read_text(encoding="utf-8"))
    jsonschema.validate(report, SCHEMA)
    return {case["name"]: case for case in report["cases"]} | {"": report}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
def test_confirm_makes_a_recovery_flaky_and_a_confirmed_failure_block(
    suite: Suite, workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.toml(
        ROOM
        + "confirm = 2\n"
        + '[[case]]\nname = "flaky"\nscenario = 110\n'
        + '[[case]]\nname = "broken"\nscenario = 102\n'
        + '[[case]]\nname = "fine"\nscenario = 101\n'
    )
    step = suite.pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = suite.run("-rA", "--cekura-report=report.json", "--cekura-pr-comment=c.md", *workers)
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # Exactly 2 more entries of each failing case, none of the passing one.
    assert _fired(suite) == {110: 3, 102: 3, 101: 1}
    assert suite.sim.entries_fired() == 7
    result.stdout.fnmatch_lines(
        [
            "*confirmed failure: none of 2 confirmation run(s) passed*",
            "*flaky on confirmation (1, not blocking): flaky (2/2)*",
            "*confirmed failure: broken (0/2 confirmation runs passed)*",
            "*XFAIL cekura.toml::flaky - flaky: 2 of 2 confirmation run(s) passed*",
        ],
        consecutive=False,
    )
    by_name = _report(suite)
    assert by_name["flaky"]["confirm"] == {"fired": 2, "passed": 2, "verdict": "flaky"}
    assert by_name["broken"]["confirm"] == {"fired": 2, "passed": 0, "verdict": "confirmed"}
    assert "confirm" not in by_name["fine"]
    assert len(by_name["flaky"]["runs"]) == 3  # type: ignore[arg-type]
    report = by_name[""]
    assert report["totals"]["runs"] == 7  # type: ignore[index]
    assert report["gate"]["flaky"] == 1  # type: ignore[index]
    comment = (suite.pytester.path / "c.md").read_text(encoding="utf-8")
    assert "Flaky on confirmation, not blocking" in comment
    assert "<code>flaky</code> (scenario 110): 2 of 2 confirmation run(s) passed" in comment
    assert r"- flaky on confirmation \(1, not blocking\)" in step.read_text(encoding="utf-8")


def test_confirm_runs_count_against_the_run_budget(suite: Suite) -> None:
    suite.toml(ROOM + '[[case]]\nname = "flaky"\nscenario = 110\nconfirm = 2\n')
    result = suite.run("-rA", "--cekura-max-runs=2")
    result.assert_outcomes(failed=1)
    assert suite.sim.entries_fired() == 1
    dry = suite.run("--cekura-dry-run")
    dry.stdout.fnmatch_lines(["*case flaky: up to 2 more run(s) if its failure would block*"])
    assert suite.sim.entries_fired() == 1
    result.stdout.fnmatch_lines(
        [
            "*not confirmed: 2 confirmation run(s) not fired: confirmation runs would start "
            "more than cekura_max_runs=2 runs*"
        ]
    )


def test_confirm_from_the_flag_and_the_marker_and_a_known_failure_is_not_confirmed(
    suite: Suite,
) -> None:
    suite.toml(ROOM + '[[case]]\nname = "broken"\nscenario = 102\n')
    suite.pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.cekura(scenario=102, confirm=1)
        def test_marked():
            pass
        """
    )
    suite.run("--cekura-report=base.json").assert_outcomes(failed=2)
    assert suite.sim.entries_fired() == 2 + 1  # the marked case confirmed once, broken not
    # Against the baseline both are known failures: nothing blocks, nothing is confirmed.
    suite.run("--cekura-confirm=3", "--cekura-baseline=base.json").assert_outcomes(xfailed=2)
    assert suite.sim.entries_fired() == 3 + 2
    # Without one, the flag confirms the file's case (3 more); the marker's 1 wins for its own.
    suite.run("--cekura-confirm=3").assert_outcomes(failed=2)
    assert _fired(suite) == {102: 5 + (1 + 3) + (1 + 1)}


# -- pass rates against the baseline -------------------------------------------------------


def test_pass_rates_against_the_baseline_are_compared_statistically(suite: Suite) -> None:
    suite.toml(ROOM + '[[case]]\nname = "R"\nscenario = 101\nrepeat = 10\n')
    suite.run("--cekura-report=base.json").assert_outcomes(passed=1)
    suite.toml(ROOM + '[[case]]\nname = "R"\nscenario = 111\nrepeat = 10\n')
    seven = suite.run(
        "-rA",
        "--cekura-baseline=base.json",
        "--cekura-report=seven.json",
        "--cekura-pr-comment=c.md",
    )
    seven.assert_outcomes(xfailed=1)
    assert seven.ret == pytest.ExitCode.OK
    seven.stdout.fnmatch_lines(
        [
            "*pass rate of R: inconclusive: 7/10 against 10/10 in the baseline*p = 0.105*",
            "*XFAIL cekura.toml::R - inconclusive: passed 7/10 runs against 10/10 in the "
            "baseline (Fisher's exact test, one-sided p = 0.105)*",
        ],
        consecutive=False,
    )
    comment = (suite.pytester.path / "c.md").read_text(encoding="utf-8")
    assert "#### Pass rates against the baseline (1)" in comment
    assert "inconclusive: 7/10 against 10/10 in the baseline" in comment
    compared = _report(suite, "seven.json")["R"]["comparison"]
    assert compared["verdict"] == "inconclusive"  # type: ignore[index]
    assert compared["p_value"] == pytest.approx(0.10526, abs=1e-5)  # type: ignore[index]
    # Judged on its pass rate instead of new/known: counted apart, in every output.
    seven.stdout.fnmatch_lines(["baseline: 0 new failure(s), 0 known failure(s), 0 fixed"])
    assert "New failures" not in comment
    gate = _report(suite, "seven.json")[""]["gate"]
    assert gate == {
        "new": 0,
        "known": 0,
        "fixed": 0,
        "evaluator_changed": 0,
        "quarantined": 0,
        "regression": 0,
        "no_change": 0,
        "inconclusive": 1,
    }

    suite.toml(ROOM + '[[case]]\nname = "R"\nscenario = 112\nrepeat = 10\n')
    two = suite.run("-rA", "--cekura-baseline=base.json", "--cekura-report=two.json")
    two.assert_outcomes(failed=1)
    two.stdout.fnmatch_lines(
        ["*regression: passed 2/10 runs against 10/10 in the baseline*p = 0.000357*"]
    )
    assert _report(suite, "two.json")["R"]["comparison"]["verdict"] == "regression"  # type: ignore[index]
    assert _report(suite, "two.json")[""]["gate"]["regression"] == 1  # type: ignore[index]


# -- pure pieces ---------------------------------------------------------------------------


def _passed(run_id: int) -> CekuraRun:
    return CekuraRun(
        scenario_id=101,
        run_id=run_id,
        status="completed",
        success=True,
        expected_outcome=ExpectedOutcomeResult(100.0),
    )


def test_gate_with_confirmation_runs() -> None:
    case = Case("c", 101, "cekura.toml", confirm=2)
    ok = _passed(2)
    bad = CekuraRun(scenario_id=101, run_id=3, status="completed", success=False)
    flaky = confirmation(case, [bad, ok])
    assert (flaky.fired, flaky.passed, flaky.verdict) == (2, 1, "flaky")
    confirmed = confirmation(case, [bad, bad])
    assert confirmed.verdict == "confirmed"
    gated = gate(case, "c", False, None, date.today(), confirmation=flaky)
    assert gated.excuse == "flaky: 1 of 2 confirmation run(s) passed after the failure"
    blocked = gate(case, "c", False, None, date.today(), confirmation=confirmed)
    assert blocked.excuse is None and "confirmed failure" in (blocked.note or "")


def test_confirm_is_validated_in_the_marker() -> None:
    with pytest.raises(ConfigError, match="confirm: Input should be greater than or equal to 0"):
        case_from_marker(
            {"scenario": 101, "confirm": -1, "pipecat_room_url": "https://a.daily.co/r"},
            name="t",
            source="test_x.py::t",
            file_defaults=None,
            defaults=Defaults(),
            have_room_provider=False,
        )


def test_errored_runs_are_left_out_of_the_comparison_and_named() -> None:
    case = Case("c", 101, "cekura.toml", repeat=4, min_passes=4)
    ok = _passed(1)
    bad = CekuraRun(scenario_id=101, run_id=2, status="completed", success=False)
    broken = CekuraRun(scenario_id=101, run_id=3, status="failed", error_message="no join")
    runs = [ok, bad, broken, ok]
    judged = [judge_run(case, run) for run in runs]
    compared = compare_with(case, runs, judged, Counts(4, 4), before_errored=1)
    assert compared is not None
    assert (compared.comparison.now, compared.errored) == (Counts(2, 3), ("run 3",))
    assert compared.describe().endswith(
        "; left out: errored run(s) run 3; 1 errored run(s) of the baseline"
    )
    assert compare_with(Case("c", 101, "cekura.toml"), [bad], judged[1:2], Counts(4, 4)) is None
    assert compare_with(case, runs, judged, None) is None

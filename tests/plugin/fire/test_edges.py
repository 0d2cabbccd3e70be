"""Edge cases found in review: billing twice, firing what never runs, crashes, hangs, leaks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import API_KEY, ROOM_TOKEN, START, Suite, no_traceback

from pytest_cekura_pipecat._api.models import Result
from pytest_cekura_pipecat._fire.plan import Slot
from pytest_cekura_pipecat._watch.watcher import claim_runs

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'
TWO_FAILING = ROOM + '[[case]]\nname = "a"\nscenario = 102\n[[case]]\nname = "b"\nscenario = 102\n'


# -- reruns never bill twice where a first POST may exist -----------------------------------


def test_rerun_after_unknown_fate_is_not_fired_again(suite: Suite) -> None:
    suite.sim.faults.post_500_before_create = 1  # and so no result of it is ever found
    suite.toml(TWO_FAILING)
    result = suite.run("--reruns=1")
    assert len(suite.posts()) == 1 and suite.sim.entries_fired() == 0
    result.stdout.fnmatch_lines(
        ["*was not fired again on rerun: a run of the first attempt never started*"]
    )


def test_rerun_after_a_rejected_key_is_not_fired_again(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEKURA_API_KEY", "sk-wrong-SECRET-000000")
    suite.toml(TWO_FAILING)
    suite.run("--reruns=1")
    assert len(suite.posts()) == 1


def test_reruns_respect_the_run_budget(suite: Suite) -> None:
    suite.toml(TWO_FAILING)
    result = suite.run("--reruns=1", "--cekura-max-runs=3")
    assert suite.sim.entries_fired() == 3  # 2 first runs + 1 rerun, then the budget says no
    result.stdout.fnmatch_lines(["*a rerun would start more than cekura_max_runs=3 runs*"])


# -- what will not run is not fired ---------------------------------------------------------


def test_skipped_tests_and_cases_are_not_fired(suite: Suite) -> None:
    suite.toml(
        ROOM
        + '[[case]]\nname = "skipped"\nscenario = 101\nmarks = ["skip"]\n[[case]]\nname = "runs"\nscenario = 104\n'
    )
    suite.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.skip(reason="not today")
        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_skip(): pass

        @pytest.mark.skipif(True, reason="never")
        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_skipif(): pass

        @pytest.mark.xfail(run=False)
        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_xfail_norun(): pass
        """
    )
    result = suite.run()
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert [e["scenario"] for p in suite.posts() for e in p.body["scenarios"]] == [104]


def test_a_skip_condition_is_evaluated_once_by_the_plugin(suite: Suite) -> None:
    """Firing a case and waiting for it read one decision of its skip marks: the plugin
    evaluates a condition once, pytest's skipping plugin once more at setup."""
    suite.pytester.makepyfile(
        """
        import pytest

        calls = []

        def counted():
            calls.append(1)
            return False

        @pytest.mark.skipif("counted()", reason="never")
        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_marked():
            assert len(calls) == 2
        """
    )
    result = suite.run()
    result.assert_outcomes(passed=1)
    assert suite.sim.entries_fired() == 1


@pytest.mark.parametrize("flag", ["--setup-plan", "--setup-only"])
def test_setup_plan_and_setup_only_fire_nothing(suite: Suite, flag: str) -> None:
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    suite.run(flag)
    assert suite.sim.requests == []


def test_dry_run_refuses_xdist(suite: Suite) -> None:
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    result = suite.run("--cekura-dry-run", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert suite.sim.requests == []


# -- interrupts during firing ---------------------------------------------------------------


def test_interrupt_during_firing_stops_firing_and_ends_what_started(suite: Suite) -> None:
    suite.sim.faults.latency = 0.5
    suite.toml(ROOM + "".join(f'[[case]]\nname = "s{i}"\nscenario = 105\n' for i in range(12)))
    code, out = suite.sigterm_after_start("--cekura-batch-size=1")
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert suite.sim.entries_fired() < 12  # the queued batches were never sent
    created = {run["result"] for run in suite.sim.runs()}
    ended = {
        int(r.path.split("/")[-3]) for r in suite.sim.requests if r.path.endswith("/end_calls/")
    }
    assert created and created <= ended, out


# -- run mapping ----------------------------------------------------------------------------


def test_claim_gives_each_unmapped_slot_its_own_run() -> None:
    result = Result.model_validate(
        {"id": 1, "runs": {"11": {"scenario": 7}, "10": {"scenario": 7}, "12": {"scenario": 8}}}
    )
    slots = [
        Slot("t::a", 0, 7, 60.0),
        Slot("t::a", 1, 7, 60.0),
        Slot("t::b", 0, 8, 60.0, run_id=12),
        Slot("t::c", 0, 9, 60.0),
    ]
    claim_runs(result, slots)
    assert [s.run_id for s in slots] == [10, 11, 12, None]


def test_a_rejected_batch_does_not_trip_the_breaker_for_healthy_batches(suite: Suite) -> None:
    # Batch 1 sends a scenario id Cekura does not know (the pre-flight read 101: the entry
    # hook changes it, as a scenario deleted after the pre-flight would be).
    suite.pytester.makeconftest(
        """
        def pytest_cekura_entry(case, entry):
            if case.name == "c00":
                entry["scenario"] = 999
        """
    )
    cases = [101] * 14
    suite.toml(
        ROOM
        + "".join(f'[[case]]\nname = "c{i:02d}"\nscenario = {s}\n' for i, s in enumerate(cases))
    )
    result = suite.run("--cekura-batch-size=7", "--cekura-breaker-after=3")
    # The 400 created nothing: the batch is sent again without the refused entry.
    result.assert_outcomes(passed=13, errors=1)
    assert "circuit breaker" not in result.stdout.str()
    assert not [r for r in suite.sim.requests if r.path.endswith("/end_calls/")]


# -- one line, never a crash ----------------------------------------------------------------


def test_marker_errors_under_xdist_are_errors_not_a_crash(suite: Suite) -> None:
    suite.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r", repet=2)
        def test_bad(): pass

        @pytest.mark.cekura(scenario=104, pipecat_room_url="https://acme.daily.co/r")
        def test_good(): pass
        """
    )
    result = suite.run("-n", "2")
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "KeyError" not in out
    assert no_traceback(out)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_bad*", "*unknown key 'repet' (did you mean 'repeat'?)*"]
    )
    assert suite.sim.requests == []


@pytest.mark.parametrize("call", ["pytest.skip('no rooms today')", "pytest.fail('no rooms')"])
def test_outcome_exceptions_in_room_hooks_error_the_case(suite: Suite, call: str) -> None:
    suite.pytester.makeconftest(
        f"import pytest\ndef pytest_cekura_room(case, config):\n    {call}\n"
    )
    suite.toml("[[case]]\nscenario = 101\n")
    result = suite.run()
    result.assert_outcomes(errors=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*preparing the entry failed*"])


def test_exceptions_in_verdict_hooks_are_one_line(suite: Suite) -> None:
    suite.pytester.makeconftest(
        "def pytest_cekura_run_finished(case, run):\n    raise ValueError('export down')\n"
    )
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    result = suite.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*a pytest_cekura_* hook raised ValueError: export down*"])
    assert no_traceback(result.stdout.str())


@pytest.mark.parametrize(
    "flag",
    [
        "--cekura-timeout=nan",
        "--cekura-poll-interval=nan",
        "--cekura-http-timeout=inf",
        "--cekura-api-url=api.cekura.ai",
    ],
)
def test_bad_option_values_are_usage_errors(suite: Suite, flag: str) -> None:
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    result = suite.run(flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert len([line for line in result.errlines if line.strip()]) == 1
    assert suite.sim.requests == []


def test_an_unwritable_report_is_one_line(suite: Suite) -> None:
    (suite.pytester.path / "afile").write_text("")
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    result = suite.run("--cekura-report=afile/report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cekura: could not write an output: *"])
    assert no_traceback(result.stdout.str())


# -- secrets and xdist ----------------------------------------------------------------------


def test_debug_trace_has_no_token(suite: Suite) -> None:
    suite.pytester.makeconftest("def pytest_cekura_entry(case, entry):\n    pass\n")
    suite.toml(ROOM + 'pipecat_token = "${ROOM_TOKEN}"\n[[case]]\nscenario = 101\n')
    suite.run("--debug=debug.log")
    log = (suite.pytester.path / "debug.log").read_text()
    assert "pytest_cekura_entry" in log
    assert ROOM_TOKEN not in log and API_KEY not in log


def test_step_summary_is_written_once_under_xdist(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    suite.toml(ROOM + "".join(f'[[case]]\nname = "c{i}"\nscenario = 101\n' for i in range(4)))
    suite.run("-n", "2")
    assert summary.read_text().count("## Cekura evaluations") == 1


def test_continue_on_collection_errors_under_xdist_fires_and_ends(suite: Suite) -> None:
    suite.pytester.makepyfile(test_broken="import nonexistent_module_xyz\n")
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    started = time.monotonic()
    result = suite.run("-n", "2", "--continue-on-collection-errors")
    assert time.monotonic() - started < 30
    result.assert_outcomes(passed=1, errors=1)
    assert suite.sim.entries_fired() == 1
    assert START


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_rerun_budget_holds_for_the_session_and_the_note_reaches_summary_and_report(
    suite: Suite, workers: list[str]
) -> None:
    suite.toml(TWO_FAILING)
    result = suite.run("--reruns=1", "--cekura-max-runs=3", "--cekura-report=report.json", *workers)
    assert suite.sim.entries_fired() == 3
    result.stdout.fnmatch_lines(
        ["*not fired again on rerun: a rerun would start more than cekura_max_runs=3 runs*"]
    )
    import json

    notes = json.loads((suite.pytester.path / "report.json").read_text())["notes"]
    assert any("not fired again on rerun" in note for note in notes)


def test_nothing_is_imported_once_a_sigterm_may_strike(suite: Suite) -> None:
    """A SIGTERM that strikes inside an import can fail it in compile() (CPython's
    SystemError, seen as an INTERNALERROR instead of an interrupt): every module the session
    needs later (progress line, records, outputs) is loaded before the handler is installed.
    The start request is built after it; nothing of the plugin may be imported from then on."""
    suite.toml(ROOM + "[[case]]\nscenario = 101\n")
    suite.pytester.makeconftest(
        """
        import sys

        state = {"firing": False, "late": set()}

        def audit(event, args):
            name = args[0] if event == "import" else ""
            if state["firing"] and name.startswith("pytest_cekura_pipecat") and name not in sys.modules:
                state["late"].add(name)

        sys.addaudithook(audit)

        def pytest_cekura_entry(case, entry):
            state["firing"] = True

        def pytest_unconfigure(config):
            print("late imports:", sorted(state["late"]) or "none")
        """
    )
    result = suite.pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--junitxml=junit.xml", "--cekura-report=report.json"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["late imports: none"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
def test_counts_after_reruns_are_the_servers_counts(suite: Suite, workers: list[str]) -> None:
    """Every attempt's runs are counted (the summary and the report), and a rerun that fires
    nothing again (the evaluation passed, the body failed) keeps its runs' scores."""
    suite.toml(TWO_FAILING + '[[case]]\nname = "c"\nscenario = 101\n')
    suite.pytester.makepyfile(
        test_bot="""
        import pytest

        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_body_fails():
            assert False, "the body's own check"
        """
    )
    result = suite.run("--reruns=2", "--cekura-report=report.json", *workers)
    fired = suite.sim.entries_fired()
    assert fired == 2 * 3 + 1 + 1  # a and b three times each, c once, the marked test once
    result.stdout.fnmatch_lines([f"4 case(s), {fired} run(s): 1 passed, 3 failed, 0 error*"])
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    assert doc["totals"]["runs"] == fired
    by_name = {case["name"]: case for case in doc["cases"]}
    assert by_name["a"]["fired"] == 3 and by_name["test_body_fails"]["fired"] == 1
    assert by_name["test_body_fails"]["runs"][0]["score"] == 100
    row = next(line for line in result.outlines if line.startswith("FAILED") and "body" in line)
    assert "100" in row, row

"""Issue 29 end to end: verdicts only from a finished evaluation, the read path's edges and
Cekura's own summary, the plugin (pytester) against the local simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import API_KEY, SCRIPTS, Suite, no_traceback

from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator, Variants

ROOM = "https://acme.daily.co/room-abc"
POLL = 0.1  # the suite's poll interval (conftest's ini)

LIFECYCLE_SCRIPTS = [
    *SCRIPTS,
    # The run reads completed for about three polls before its verdict lands; its result
    # reads evaluating meanwhile.
    ScenarioScript(301, "Late null", "pass", 0.2, verdict_after=3 * POLL),
    ScenarioScript(302, "Late false", "pass", 0.2, verdict_after=3 * POLL, early_success="false"),
    ScenarioScript(303, "Never judged", "no_verdict", 0.2),
    ScenarioScript(
        304,
        "Misses the slot",
        "fail",
        0.2,
        reasons=("The agent never offered a slot.",),
        failed_metrics=("Offers a slot",),
    ),
]


def cases(*scenarios: int) -> str:
    body = f'pipecat_room_url = "{ROOM}"\n'
    for scenario in scenarios:
        body += f'[[case]]\nname = "s{scenario}"\nscenario = {scenario}\n'
    return body


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """Overrides conftest's ``sim``; ``indirect`` parametrization passes keyword arguments."""
    options = getattr(request, "param", {})
    with Simulator(LIFECYCLE_SCRIPTS, api_key=API_KEY, **options) as simulator:
        yield simulator


def test_a_run_read_completed_before_its_evaluation_landed_passes(suite: Suite) -> None:
    suite.toml(cases(301, 302))
    result = suite.run("-rA")
    out = result.stdout.str()
    assert no_traceback(out), out
    result.assert_outcomes(passed=2)
    # The result was read while it still evaluated: the verdicts waited for it.
    evaluating = [r for r in suite.gets() if r.status == 200]
    assert len(evaluating) >= 3


def test_a_completed_run_without_a_verdict_in_an_ended_result_errors(suite: Suite) -> None:
    suite.toml(cases(303))
    result = suite.run("-rA")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the run completed without a verdict (success is null)*"])


@pytest.mark.parametrize("sim", [{"variants": Variants(post_status=202)}], indirect=True)
def test_a_start_answered_202_with_a_result_is_judged(suite: Suite) -> None:
    suite.toml(cases(101, 102))
    result = suite.run("-rA")
    out = result.stdout.str()
    assert no_traceback(out), out
    result.assert_outcomes(passed=1, failed=1)
    assert [r.status for r in suite.posts()] == [202]
    assert "fate is unknown" not in out and "may already exist" not in out


def test_a_new_result_answering_404_at_first_is_read_again_on_v2(suite: Suite) -> None:
    suite.sim.faults.get_404_new = 2  # its first read, v2 and then v1, answers 404
    suite.toml(cases(101))
    result = suite.run("-rA")
    out = result.stdout.str()
    assert no_traceback(out), out
    result.assert_outcomes(passed=1)
    reads = [r for r in suite.gets() if r.path.rstrip("/").split("/")[-1].isdigit()]
    assert [r.status for r in reads[:2]] == [404, 404]
    assert reads[2:] and all(r.path.startswith("/test_framework/v2/") for r in reads[2:])
    assert all(r.status == 200 for r in reads[2:])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])
@pytest.mark.parametrize("sim", [{"ai_summary_after": 0.3}], indirect=True)
def test_cekuras_summary_reaches_every_output(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: list[str]
) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    suite.toml(cases(101, 304))
    result = suite.run(
        "-rA", "--cekura-report=report.json", "--cekura-pr-comment=comment.md", *workers
    )
    out = result.stdout.str()
    assert no_traceback(out), out
    result.assert_outcomes(passed=1, failed=1)
    summary = "1 of 2 runs did not pass."
    reason = "The agent never offered a slot."
    # The failure text of the failing run.
    failure = suite.testcase("s304").find("failure")
    assert failure is not None
    assert f"Cekura's summary: {summary}" in (failure.text or "")
    assert f"Cekura's failed reason: {reason}" in (failure.text or "")
    assert "Cekura's summary" not in str(suite.testcase("s101").find("system-out"))
    # The JSON report.
    document = json.loads((suite.pytester.path / "report.json").read_text())
    by_name = {case["name"]: case for case in document["cases"]}
    (run,) = by_name["s304"]["runs"]
    assert run["ai_summary"].startswith(summary)
    assert run["failed_reasons"] == [reason]
    assert "ai_summary" not in by_name["s101"]["runs"][0]
    # The step summary and the PR comment (Markdown: punctuation escaped).
    escaped = "1 of 2 runs did not pass\\."
    assert escaped in step.read_text()
    assert escaped in (suite.pytester.path / "comment.md").read_text()


@pytest.mark.parametrize("sim", [{"early_completed": True}], indirect=True)
def test_the_older_reading_of_a_results_end_is_tolerated(suite: Suite) -> None:
    """The result reads completed once its first run completed (the older published
    reading), while another run still waits for its verdict and a third still runs: the
    waiting run is judged when its verdict lands, not errored."""
    suite.toml(cases(101, 301, 108))
    result = suite.run("-rA")
    out = result.stdout.str()
    assert no_traceback(out), out
    result.assert_outcomes(passed=3)

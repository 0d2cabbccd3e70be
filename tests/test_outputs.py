"""The JSON report and the GitHub step summary."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from conftest import API_KEY, FOUR_CASES, ROOM_TOKEN, Suite


def test_json_report_and_step_summary(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    suite.toml(FOUR_CASES)
    result = suite.run("--cekura-report=out/report.json")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    report_path = suite.pytester.path / "out" / "report.json"
    text = report_path.read_text()
    document = json.loads(text)
    schema = json.loads(
        resources.files("pytest_cekura_pipecat").joinpath("report.schema.json").read_text()
    )
    jsonschema.validate(document, schema)
    assert document["totals"] == {
        "cases": 4,
        "runs": 5,
        "passed": 2,
        "failed": 1,
        "error": 1,
        "pass_rate": 50.0,
    }
    by_name = {case["name"]: case for case in document["cases"]}
    assert set(by_name) == {"books-a-table", "late-booking", "cancels", "opening-hours"}
    run_ids = {run["run_id"] for case in document["cases"] for run in case["runs"]}
    assert len(run_ids) == 5 and None not in run_ids
    assert (
        by_name["late-booking"]["runs"][0]["failed_metrics"][0]["name"] == "Respects opening hours"
    )
    markdown = summary.read_text()
    assert "**2 passed, 1 failed, 1 error** of 4 case(s)" in markdown
    assert "`late-booking`" in markdown and "`cancels`" in markdown
    assert "<details><summary>Passed cases</summary>" in markdown
    for artifact in (text, markdown):
        assert API_KEY not in artifact and ROOM_TOKEN not in artifact


def test_step_summary_can_be_turned_off(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    suite.toml(FOUR_CASES)
    suite.run("--cekura-no-step-summary")
    assert not summary.exists()

"""The results structure: outcomes that agree with pytest, strict JSON, Markdown renderings
read by a real Markdown renderer, and merging shard reports."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import Suite
from markdown_it import MarkdownIt

from pytest_cekura_pipecat._report.comment import MARKER, pr_comment
from pytest_cekura_pipecat._report.document import Report, dumps, write_atomic
from pytest_cekura_pipecat._report.markdown import STEP_SUMMARY_LIMIT, step_summary
from pytest_cekura_pipecat._report.record import (
    AdaptiveRecord,
    CaseRecord,
    FailedMetric,
    QuarantineRecord,
    RunRecord,
    ThresholdResult,
    junit_properties,
)
from pytest_cekura_pipecat._report.summary import Totals

ROOM = "https://acme.daily.co/r"
SCHEMA = json.loads(
    resources.files("pytest_cekura_pipecat").joinpath("report.schema.json").read_text()
)


def render(markdown: str) -> str:
    """GitHub-flavoured enough: CommonMark with tables and inline HTML."""
    html: str = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return html  # markdown-it-py types render() as Any: its renderer is pluggable


def case(i: int, outcome: str = "failed", **extra: Any) -> dict[str, Any]:
    verdict = "failed" if outcome == "failed" else "passed"
    return {
        "name": f"case-{i:04d} <twice>",
        "nodeid": f"cekura.toml::case-{i:04d}",
        "path": "cekura.toml",
        "line": 3 + i,
        "scenario": 102,
        "scenario_name": "Refuses | a late booking",
        "verdict": verdict,
        "outcome": outcome,
        "reason": "The agent said <twice> the | same *thing*\nsecond line" * 3,
        "failure": "",
        "rerun": 0,
        "duration": 12.0,
        "dashboard_url": f"https://dashboard.cekura.ai/7/results/{i}",
        "runs": [
            {
                "run_id": i,
                "result_id": 5000 + i,
                "status": "completed",
                "success": outcome == "passed",
                "verdict": verdict,
                "score": 40.0,
                "failed_metrics": [{"name": "Respects <hours>", "explanation": ["x"]}],
                "error_message": "",
                "duration": 12.0,
                "dashboard_url": f"https://dashboard.cekura.ai/7/results/{i}",
            }
        ],
        **extra,
    }


def report(cases: list[dict[str, Any]], attempt: int | None = None) -> Report:
    return Report(
        tuple(CaseRecord.from_json(c) for c in cases),
        plugin_version="0.1.0",
        api_url="https://api.cekura.ai",
        simulated=False,
        provenance={"ci": "github", "commit": "abc", "attempt": attempt},
    )


def document(cases: list[dict[str, Any]], attempt: int | None = None) -> dict[str, Any]:
    return report(cases, attempt).to_json()


# -- outcomes agree with pytest ------------------------------------------------------------


MARKED = f"""
import pytest

@pytest.mark.cekura(scenario=101, pipecat_room_url="{ROOM}")
def test_passes():
    pass

@pytest.mark.cekura(scenario=101, pipecat_room_url="{ROOM}")
def test_body_fails():
    assert False, "body says <twice> | no"

@pytest.mark.xfail(reason="known bad")
@pytest.mark.cekura(scenario=102, pipecat_room_url="{ROOM}")
def test_xfails():
    pass

@pytest.mark.xfail(reason="should fail, does not")
@pytest.mark.cekura(scenario=104, pipecat_room_url="{ROOM}")
def test_xpasses():
    pass

@pytest.mark.cekura(scenario=104, pipecat_room_url="{ROOM}")
def test_skips_in_body():
    pytest.skip("not today")

@pytest.mark.cekura(scenario=103, pipecat_room_url="{ROOM}")
def test_errors():
    pass
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_every_output_shows_pytests_final_outcome(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: list[str]
) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    suite.pytester.makepyfile(test_bot=MARKED)
    result = suite.run("--cekura-report=report.json", *workers)
    outcomes = dict(passed=1, failed=1, xfailed=1, xpassed=1, skipped=1, errors=1)
    result.assert_outcomes(**outcomes)
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    by_name = {c["name"]: c for c in doc["cases"]}
    assert {name: (c["verdict"], c["outcome"]) for name, c in by_name.items()} == {
        "test_passes": ("passed", "passed"),
        "test_body_fails": ("passed", "failed"),
        "test_xfails": ("failed", "xfailed"),
        "test_xpasses": ("passed", "xpassed"),
        "test_skips_in_body": ("passed", "skipped"),
        "test_errors": ("error", "error"),
    }
    assert "body says <twice>" in by_name["test_body_fails"]["failure"]
    assert by_name["test_body_fails"]["path"] == "test_bot.py"
    assert by_name["test_body_fails"]["line"] == 7  # 1-based: the marker, where pytest puts it
    totals = doc["totals"]
    counted = {k: totals[k] for k in ("passed", "failed", "xfailed", "xpassed", "skipped")}
    assert counted | {"errors": totals["error"]} == outcomes
    assert totals["verdicts"] == {"passed": 4, "failed": 1, "error": 1}

    markdown = step.read_text()
    assert "**1 passed, 1 failed, 1 error, 1 skipped, 1 xfailed, 1 xpassed** of 6" in markdown
    page = render(markdown)
    row = next(r for r in page.split("<tr>") if "test_body_fails" in r)
    assert "<td>failed</td>\n<td>passed</td>" in row  # pytest's outcome, then the verdict
    assert "body says &lt;twice&gt; | no" in row  # text, not a tag; the pipe stays in its cell
    result.stdout.fnmatch_lines(
        ["FAILED *test_body_fails*passed*1/1*", "*AssertionError: body says <twice> | no"]
    )
    result.stdout.fnmatch_lines(["6 case(s), 6 run(s): 1 passed, 1 failed, 1 error, 1 skipped*"])


def test_a_rerun_counts_once_with_its_last_outcome(suite: Suite) -> None:
    pytest.importorskip("pytest_rerunfailures")
    suite.pytester.makepyfile(
        test_bot=f"""
        import pytest
        attempts = []

        @pytest.mark.cekura(scenario=101, pipecat_room_url="{ROOM}")
        def test_flaky_body():
            attempts.append(1)
            assert len(attempts) > 1
        """
    )
    result = suite.run("--reruns=1", "--cekura-report=report.json")
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    assert doc["totals"]["passed"] == 1 and doc["totals"]["failed"] == 0
    assert doc["cases"][0]["failure"] == ""


def test_a_failed_report_write_is_one_line_a_nonzero_exit_and_keeps_the_step_summary(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    (suite.pytester.path / "afile").write_text("")
    suite.toml(f'pipecat_room_url = "{ROOM}"\n[[case]]\nname = "ok"\nscenario = 101\n')
    result = suite.run("--cekura-report=afile/report.json")
    result.assert_outcomes(passed=1)
    assert result.ret != 0
    lines = [line for line in result.outlines if "could not write" in line]
    assert len(lines) == 1 and "afile/report.json" in lines[0]
    assert "Traceback" not in result.stdout.str()
    assert "<code>ok</code>" in step.read_text()


# -- strict JSON, atomic writes -------------------------------------------------------------


def test_the_report_is_strict_json() -> None:
    bad = case(1)
    bad["runs"][0]["score"] = float("nan")
    bad["runs"][0]["duration"] = float("inf")  # the case's duration is its longest run's
    text = dumps(document([bad]))
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text)
    assert parsed["cases"][0]["runs"][0]["score"] is None
    assert parsed["cases"][0]["duration"] is None
    jsonschema.validate(parsed, SCHEMA)


def test_atomic_write_keeps_the_old_file_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


# -- Markdown: escaped, tables render, bounded ----------------------------------------------


def test_step_summary_escapes_html_and_pipes_and_names_failed_metrics() -> None:
    text = step_summary(report([case(1), case(2, "passed")]))
    page = render(text)
    assert "<twice>" not in page and "&lt;twice&gt;" in page
    assert "<table>" in page and page.count("<tr>") == 2  # header + one failing case
    assert "Respects &lt;hours&gt;" in page
    assert "the | same *thing* second line" in page  # one line, emphasis shown as text
    assert "Refuses | a late booking" in page
    assert 'href="https://dashboard.cekura.ai/7/results/1"' in page
    assert "<summary>Passed cases (1)</summary>" in page


def test_a_huge_step_summary_stays_under_a_mebibyte() -> None:
    cases = [case(i) for i in range(6000)] + [case(i, "passed") for i in range(6000, 7000)]
    text = step_summary(report(cases))
    assert len(text.encode()) < STEP_SUMMARY_LIMIT
    assert "more cases, see the JSON report" in text
    shown = text.count("| failed | failed |")
    assert f"… {6000 - shown} more cases, see the JSON report" in text
    assert "… 1000 more cases, see the JSON report" in text  # the passed ones
    assert "<table>" in render(text)


def test_pr_comment_is_bounded_and_starts_with_the_marker() -> None:
    text = pr_comment(report([case(i) for i in range(300)]))
    assert text.startswith(MARKER + "\n")
    assert len(text.encode()) < 65536
    assert "more, see the report" in text
    page = render(text)
    assert "<table>" in page and "&lt;twice&gt;" in page and "<twice>" not in page
    assert "1 passed" not in text and "300 failed" in text


def test_pr_comment_sections_by_baseline() -> None:
    cases = [
        case(1, baseline="new"),
        case(2, baseline="known"),
        case(3, "passed", baseline="fixed"),
        case(4, "passed", baseline=None),
    ]
    text = pr_comment(report(cases))
    assert (
        text.index("New failures (1)") < text.index("Known failures (1)") < text.index("Fixed (1)")
    )
    assert "Failing cases" not in text
    assert "more, see the report" not in text


def test_pr_comment_when_all_pass() -> None:
    text = pr_comment(report([case(1, "passed")]))
    assert text.startswith(MARKER) and "All cases passed." in text


# -- typed records ---------------------------------------------------------------------------

RUN = RunRecord(
    run_id=7,
    result_id=5007,
    status="completed",
    success=False,
    verdict="failed",
    score=40.0,
    failed_metrics=(FailedMetric("Respects hours", ("closed at 22:00",)),),
    error_message="",
    duration=12.5,
    dashboard_url="https://dashboard.cekura.ai/7/results/7",
    thresholds=(ThresholdResult("expected_outcome_score >= 95", "broken", 40.0),),
    ai_summary="booked too late",
    failed_reasons=("Booked 23:30.",),
)


def test_a_record_crosses_processes_and_files_as_plain_json_unchanged() -> None:
    record = CaseRecord(
        "late",
        "cekura.toml::late",
        102,
        path="cekura.toml",
        line=4,
        agent=12,
        scenario_name="Refuses a late booking",
        verdict="failed",
        reason="booked too late",
        rerun=1,
        runs=(RUN, RunRecord(None, None, "not_started", None, "error")),
        baseline="known",
        quarantine=QuarantineRecord("2099-01-01", "flaky", "@ana", None, True),
        adaptive=AdaptiveRecord(5, 2, 3),
        notes=("cekura: a note",),
    )
    data = json.loads(json.dumps(record.to_json(), allow_nan=False))
    assert CaseRecord.from_json(data) == record
    assert data["duration"] == 12.5 and data["dashboard_url"] == RUN.dashboard_url
    # In the report (notes stay with the session), the case is a case of the schema.
    final = CaseRecord.from_json({**data, "notes": [], "outcome": "xfailed", "fired": 2})
    report = Report((final,), plugin_version="0", api_url="u", simulated=False)
    document = report.to_json()
    jsonschema.validate(document, SCHEMA)
    assert Report.from_json(json.loads(dumps(document))).to_json() == document


def test_totals_count_the_records_once_for_every_output() -> None:
    def rec(
        n: int, outcome: str | None, verdict: str | None = "failed", **extra: Any
    ) -> CaseRecord:
        return CaseRecord(f"c{n}", f"n{n}", 1, outcome=outcome, verdict=verdict, **extra)

    totals = Totals(
        (
            rec(1, "passed", "passed", runs=(RUN, RUN), fired=3),
            rec(2, "failed", baseline="new"),
            rec(3, "error", "error"),
            rec(4, "xfailed", quarantine=QuarantineRecord("2099-01-01", "flaky")),
            rec(5, "skipped", None),
            rec(6, None, runs=(RUN,)),
        )
    )
    assert (totals.cases, totals.runs, totals.blocking, totals.excused) == (6, 4, 2, 1)
    assert totals.pass_rate == 20.0  # 1 of the 5 not skipped
    assert totals.text == "1 passed, 1 failed, 1 error, 1 skipped, 1 xfailed"
    assert totals.verdicts == {"passed": 1, "failed": 3, "error": 1}
    assert totals.gate_json() == {
        "new": 1,
        "known": 0,
        "fixed": 0,
        "evaluator_changed": 0,
        "quarantined": 1,
    }
    assert Totals(()).gate_json() is None and Totals(()).pass_rate is None


def test_junit_properties_show_cekuras_own_verdict_of_each_run() -> None:
    run = RunRecord(7, None, "completed", True, "failed", scenario_id=201, cekura_verdict="passed")
    assert junit_properties([run]) == [
        ("cekura_scenario_id", "201"),
        ("cekura_result_id", ""),
        ("cekura_run_id", "7"),
        ("cekura_status", "completed"),
        ("cekura_verdict", "passed"),
    ]
    assert ("cekura_run_2_id", "7") in junit_properties([run, run], indexed=True)
    assert "scenario_id" not in run.to_json()  # JUnit only: the report has no place for it


# -- merge ----------------------------------------------------------------------------------


def merge(tmp_path: Path, *docs: dict[str, Any], extra: tuple[str, ...] = ()) -> Any:
    inputs = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"shard{i}.json"
        path.write_text(json.dumps(doc))
        inputs.append(str(path))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_cekura_pipecat.report",
            "merge",
            "merged.json",
            *inputs,
            *extra,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_merge_has_every_case_once_and_renders_the_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    done = merge(
        tmp_path,
        document([case(1), case(2, "passed")], attempt=1),
        document([case(3, "passed")], attempt=1),
        extra=("--step-summary", "--pr-comment", "comment.md"),
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / "merged.json").read_text())
    jsonschema.validate(merged, SCHEMA)
    assert [c["nodeid"] for c in merged["cases"]] == [
        "cekura.toml::case-0001",
        "cekura.toml::case-0002",
        "cekura.toml::case-0003",
    ]
    assert merged["totals"]["cases"] == 3 and merged["totals"]["passed"] == 2
    assert "**2 passed, 1 failed, 0 error** of 3 case(s)" in step.read_text()
    assert (tmp_path / "comment.md").read_text().startswith(MARKER)


def test_merge_refuses_a_case_in_two_shards_of_one_attempt(tmp_path: Path) -> None:
    done = merge(tmp_path, document([case(1)], attempt=1), document([case(1)], attempt=1))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "cekura.toml::case-0001" in done.stderr
    assert not (tmp_path / "merged.json").exists()


def test_merge_takes_the_latest_attempt(tmp_path: Path) -> None:
    done = merge(
        tmp_path,
        document([case(1), case(2)], attempt=2),
        document([case(1, "passed")], attempt=3),
        document([case(2, "passed")], attempt=1),
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert [c["outcome"] for c in merged["cases"]] == ["passed", "failed"]
    assert merged["provenance"]["attempt"] == 3


def test_merge_keeps_the_latest_provenance_and_every_agent(tmp_path: Path) -> None:
    first = document([case(1, agent=12)], attempt=1)
    second = document([case(2, agent=13), case(3, agent=12)], attempt=2)
    second["provenance"].update(commit="def", run_url="https://github.com/a/b/actions/runs/9")
    done = merge(tmp_path, first, second)
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / "merged.json").read_text())
    jsonschema.validate(merged, SCHEMA)
    assert merged["provenance"] == {
        "ci": "github",
        "commit": "def",
        "attempt": 2,
        "run_url": "https://github.com/a/b/actions/runs/9",
        "agents": [12, 13],
    }
    assert "cekura: merged reports of different commits: abc, def" in merged["notes"]
    same = merge(tmp_path, document([case(1)], attempt=1), document([case(2)], attempt=1))
    assert same.returncode == 0, same.stderr
    assert json.loads((tmp_path / "merged.json").read_text())["notes"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"schema_version": 1, "cases": []}', "schema_version 1 is not 2"),
        ("[]", "not a JSON object"),
    ],
)
def test_merge_names_a_bad_input_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(document([case(1)])))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_cekura_pipecat.report",
            "merge",
            "out.json",
            str(good),
            "bad.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "bad.json" in line and message in line


def test_merge_names_every_bad_input(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("[]")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_cekura_pipecat.report",
            "merge",
            "o.json",
            "a.json",
            "b.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert [line.split(":")[1].strip() for line in done.stderr.splitlines()] == ["a.json", "b.json"]

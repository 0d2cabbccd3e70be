"""The JSON report and the GitHub step summary."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from helpers import API_KEY, DATA, FOUR_CASES, ROOM_TOKEN, Suite


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
        "skipped": 0,
        "xfailed": 0,
        "xpassed": 0,
        "pass_rate": 50.0,
        "verdicts": {"passed": 2, "failed": 1, "error": 1},
        "credits": 1.6,  # 4 started runs of 2 metrics at 0.2 (calls of no length)
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
    assert "<code>late-booking</code>" in markdown and "<code>cancels</code>" in markdown
    assert "Respects opening hours" in markdown  # the failed metric's name
    assert "<details><summary>Passed cases (2)</summary>" in markdown
    assert by_name["late-booking"]["outcome"] == "failed"
    assert by_name["late-booking"]["path"] == "cekura.toml"
    assert by_name["late-booking"]["line"] >= 1
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


SLOW = 'pipecat_room_url = "https://acme.daily.co/r"\n[[case]]\nname = "slow"\nscenario = 108\n'


def progress_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.startswith("cekura: ") and " done · " in line
    ]


def test_progress_lines_in_ci_mode_are_rate_limited(suite: Suite) -> None:
    suite.toml(SLOW + '[[case]]\nname = "quick"\nscenario = 101\n')
    result = suite.run("--cekura-progress-interval=1")
    lines = progress_lines(result.stdout.str())
    assert len(lines) >= 2, lines  # a 2.5 s wait
    assert lines[0].startswith("cekura: 0/2 done · ")
    assert all(
        " running · " in line and " queued · " in line and " failed · " in line for line in lines
    )
    # At most one line a second: the elapsed seconds they show only ever go up.
    elapsed = [_elapsed(line) for line in lines]
    assert elapsed == sorted(set(elapsed)), lines


def _elapsed(line: str) -> int:
    minutes, seconds = line.rsplit(" · ", 1)[1].rstrip("s").split("m")
    return int(minutes) * 60 + int(seconds)


def _progress_counts(line: str) -> dict[str, int]:
    """``cekura: 1/6 done · 0 running · 1 queued · 4 waiting · ...`` as numbers by word."""
    done, total = line.removeprefix("cekura: ").split(" ", 1)[0].split("/")
    counts = {"done": int(done), "total": int(total)}
    for part in line.split(" · ")[1:-1]:
        number, word = part.split(" ", 1)
        counts[word] = int(number)
    return counts


def test_progress_counts_add_up_with_runs_waiting_for_their_room(suite: Suite) -> None:
    """Runs a room's lane holds back are counted as waiting: every line adds up."""
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/one-room"\n'
        + "".join(f'[[case]]\nname = "c{i}"\nscenario = 108\n' for i in range(2))
    )
    result = suite.run("--cekura-progress-interval=1", "-o", "cekura_room_concurrency=1")
    lines = progress_lines(result.stdout.str())
    assert lines, result.stdout.str()
    for line in lines:
        c = _progress_counts(line)
        assert c["done"] + c["running"] + c["queued"] + c.get("waiting", 0) == c["total"], line
    # One run in the room at a time: the other waits, and is counted.
    assert any(_progress_counts(line).get("waiting") == 1 for line in lines), lines


def test_progress_is_silent_with_q(suite: Suite) -> None:
    suite.toml(SLOW)
    result = suite.run("-q", "--cekura-progress-interval=1")
    assert progress_lines(result.stdout.str()) == []


def test_progress_is_printed_by_the_xdist_controller(suite: Suite) -> None:
    suite.toml(SLOW)
    result = suite.run("-n", "2", "--cekura-progress-interval=1")
    assert len(progress_lines(result.stdout.str())) >= 1


def test_progress_updates_in_place_on_a_tty(suite: Suite) -> None:
    import os
    import pty
    import subprocess
    import sys

    suite.toml(SLOW)
    master, replica = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=suite.pytester.path,
        stdin=replica,
        stdout=replica,
        stderr=replica,
        close_fds=True,
    )
    os.close(replica)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    # Rewritten in place after pytest's line (cursor saved and restored), never appended.
    assert text.count("\x1b7 cekura: 0/1 done") >= 2, text
    assert "\ncekura: 0/1 done" not in text


def test_junit_has_transcript_recording_and_validates_against_the_schema(suite: Suite) -> None:
    import xmlschema

    suite.toml(FOUR_CASES.replace('pipecat_token = "${ROOM_TOKEN}"', "project = 7"))
    suite.run("-n", "2")
    schema = xmlschema.XMLSchema(str(DATA / "junit.xsd"))
    schema.validate(str(suite.pytester.path / "junit.xml"))
    failure = suite.testcase("late-booking").find("failure")
    assert failure is not None
    assert "transcript of run" in (failure.text or "")
    assert "Main Agent:" in (failure.text or "")
    props = suite.properties("books-a-table")
    assert any(k == "cekura_recording_url" and v.endswith(".wav") for k, v in props)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_junit_runs_of_a_repeat_are_indexed_and_time_is_the_runs_duration(
    suite: Suite, workers: list[str]
) -> None:
    import xmlschema

    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        '[[case]]\nname = "slow-twice"\nscenario = 108\nrepeat = 2\n'
        '[[case]]\nname = "late"\nscenario = 102\n'
        '[[case]]\nname = "quick"\nscenario = 101\n'
    )
    result = suite.run(*workers)
    result.assert_outcomes(passed=2, failed=1)
    xmlschema.XMLSchema(str(DATA / "junit.xsd")).validate(str(suite.pytester.path / "junit.xml"))
    props = suite.properties("slow-twice")
    run_ids = [v for k, v in props if k == "cekura_run_id"]
    assert len(run_ids) == 2  # today's names, once per run
    by_name = dict(props)  # what a consumer that maps properties by name keeps
    assert [by_name["cekura_run_1_id"], by_name["cekura_run_2_id"]] == run_ids
    for i in (1, 2):
        assert by_name[f"cekura_run_{i}_status"] == "completed"
        assert by_name[f"cekura_run_{i}_verdict"] == "passed"
        assert by_name[f"cekura_run_{i}_scenario_id"] == "108"
        assert by_name[f"cekura_run_{i}_result_id"]
        assert by_name[f"cekura_run_{i}_recording_url"].endswith(".wav")
    # A case of one run keeps today's names only.
    assert not [k for k, _ in suite.properties("late") if k.startswith("cekura_run_1")]
    # The simulator reports 00:02 for each 2.5 s run of scenario 108: the testcase's time is
    # that duration (the longest run's, not their sum), not the wall-clock wait for it.
    assert 2.0 <= float(suite.testcase("slow-twice").get("time", "0")) < 2.4
    assert float(suite.testcase("quick").get("time", "9")) < 0.4


def test_rerun_fires_a_fresh_run(suite: Suite) -> None:
    pytest.importorskip("pytest_rerunfailures")
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n[[case]]\nname = "late"\nscenario = 102\n'
    )
    result = suite.run("--reruns=1", "--cekura-report=report.json")
    assert result.parseoutcomes() == {"failed": 1, "rerun": 1}
    assert suite.sim.entries_fired() == 2 and len(suite.posts()) == 2
    result.stdout.fnmatch_lines(["FAILED (rerun 1) late*"])
    props = suite.properties("late")
    assert len([k for k, _ in props if k == "cekura_run_id"]) == 1  # the last attempt's run

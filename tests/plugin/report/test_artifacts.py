"""Evidence as artifacts (``--cekura-artifacts``): the recording and the conversation of
each run that did not pass, downloaded from the local server, written under a directory
no case name can steer, linked from JUnit and the JSON report; never for passing runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import jsonschema
import pytest
from helpers import API_KEY, Suite

from pytest_cekura_pipecat._api.run import CekuraRun
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat._report.artifacts import (
    Target,
    case_dir,
    download,
    gather,
    junit_lines,
    masked_url,
)
from pytest_cekura_pipecat._report.record import CaseRecord, RunRecord

SCHEMA = json.loads(
    resources.files("pytest_cekura_pipecat").joinpath("report.schema.json").read_text()
)

ONE_FAILS = """
pipecat_room_url = "https://acme.daily.co/room-abc"

[[case]]
name = "books-a-table"
scenario = 101

[[case]]
name = "late-booking"
scenario = 102

[[case]]
name = "opening-hours"
scenario = 104
"""


def attachments(suite: Suite, name: str) -> list[str]:
    """The ``[[ATTACHMENT|path]]`` paths of a JUnit testcase's ``system-out``."""
    lines = [
        line
        for out in suite.testcase(name).iter("system-out")
        for line in (out.text or "").splitlines()
    ]
    return [line[len("[[ATTACHMENT|") : -2] for line in lines if line.startswith("[[ATTACHMENT|")]


@pytest.mark.parametrize("workers", [["-n", "0"], ["-n", "2"]])
def test_only_the_failing_case_leaves_a_recording_and_a_transcript(
    suite: Suite, workers: list[str]
) -> None:
    suite.toml(ONE_FAILS)
    result = suite.run("--cekura-artifacts=out", "--cekura-report=report.json", *workers)
    result.assert_outcomes(passed=2, failed=1)

    out = suite.pytester.path / "out"
    assert [p.name for p in out.iterdir()] == ["late-booking"]
    (recording,) = (out / "late-booking").glob("*.wav")
    (transcript,) = (out / "late-booking").glob("*.json")
    assert recording.read_bytes().startswith(b"RIFF")
    conversation = json.loads(transcript.read_text(encoding="utf-8"))
    run_id = conversation["run_id"]
    assert recording.name == f"run-{run_id}.wav"
    assert conversation["scenario_id"] == 102
    assert conversation["status"] == "completed"
    assert conversation["verdict"] == "failed"
    assert conversation["transcript_object"][1]["role"] == "Main Agent"
    # Passing runs are never downloaded: one recording was asked for, the failing run's.
    assert [r.path for r in suite.gets("/recordings/")] == [f"/recordings/{run_id}.wav"]

    shown = ["out/late-booking/" + p.name for p in (recording, transcript)]
    assert attachments(suite, "late-booking") == shown
    assert attachments(suite, "books-a-table") == attachments(suite, "opening-hours") == []
    # After the failure, as JUnit schemas order a testcase's children.
    tags = [child.tag for child in suite.testcase("late-booking")]
    assert tags.index("system-out") > tags.index("failure")

    document = json.loads((suite.pytester.path / "report.json").read_text())
    jsonschema.validate(document, SCHEMA)
    runs = {c["name"]: c["runs"][0] for c in document["cases"]}
    assert [a["path"] for a in runs["late-booking"]["artifacts"]] == shown
    assert runs["late-booking"]["artifacts"][0]["size"] == recording.stat().st_size
    assert "artifacts" not in runs["books-a-table"]


def test_off_by_default_and_on_from_the_ini_key(suite: Suite) -> None:
    suite.toml(ONE_FAILS)
    suite.run("-n", "0").assert_outcomes(passed=2, failed=1)
    assert suite.gets("/recordings/") == []
    assert attachments(suite, "late-booking") == []
    assert [p.name for p in suite.pytester.path.iterdir() if p.is_dir()] == []

    # The ini key, relative to the ini file's directory.
    ini = suite.pytester.path / "tox.ini"
    ini.write_text(ini.read_text().rstrip("\n") + "\ncekura_artifacts = evidence\n")
    suite.run("-n", "0").assert_outcomes(passed=2, failed=1)
    assert [p.name for p in (suite.pytester.path / "evidence").iterdir()] == ["late-booking"]
    assert len(attachments(suite, "late-booking")) == 2


def test_a_hostile_case_name_cannot_leave_the_directory(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_hostile="""
        import pytest

        @pytest.mark.parametrize("where", ["../../escaped", "/tmp/escaped", "..", "a\\\\..\\\\b"])
        @pytest.mark.cekura(scenario=102, pipecat_room_url="https://acme.daily.co/room-abc")
        def test_case(where):
            pass
        """
    )
    suite.pytester.mkdir("deep")
    result = suite.run("--cekura-artifacts=deep/out", "-n", "0")
    result.assert_outcomes(failed=4)
    out = (suite.pytester.path / "deep" / "out").resolve()
    written = [p for p in suite.pytester.path.rglob("*") if p.is_file() and p.suffix == ".wav"]
    assert len(written) == 4
    for path in written:
        assert path.resolve().parent.parent == out
        assert ".." not in path.parent.name
    assert not (suite.pytester.path / "escaped").exists()


def test_a_cut_recording_is_said_in_the_cekura_section_under_xdist(suite: Suite) -> None:
    # The cap made small in every process (50 MB is too much for a test to serve).
    suite.pytester.makeconftest(
        """
        import dataclasses
        from pytest_cekura_pipecat import plugin

        made = plugin.CekuraPlugin.artifacts_target

        def small(self):
            target = made(self)
            return None if target is None else dataclasses.replace(target, cap=100)

        plugin.CekuraPlugin.artifacts_target = small
        """
    )
    suite.toml(ONE_FAILS)
    result = suite.run("--cekura-artifacts=out", "--cekura-report=report.json", "-n", "2")
    result.assert_outcomes(passed=2, failed=1)
    (recording,) = (suite.pytester.path / "out" / "late-booking").glob("*.wav")
    assert recording.stat().st_size == 100
    result.stdout.fnmatch_lines(
        [
            f"cekura: case late-booking, run *: recording cut at 100 bytes (the cap): out/late-booking/{recording.name}"
        ]
    )
    document = json.loads((suite.pytester.path / "report.json").read_text())
    (case,) = [c for c in document["cases"] if c["name"] == "late-booking"]
    assert case["runs"][0]["artifacts"][0]["truncated"] is True


# -- the parts, without pytest --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("books-a-table", "books-a-table"),
        ("..", None),
        ("../../etc/passwd", None),
        ("C:\\Windows", None),
        ("CON", None),
        ("", None),
        ("x" * 300, None),
    ],
)
def test_a_case_directory_is_one_plain_name(name: str, expected: str | None) -> None:
    made = case_dir(name)
    if expected is not None:
        assert made == expected
    assert made and ".." not in made and "/" not in made and "\\" not in made
    assert not made.startswith(".") and made.split(".")[0].upper() != "CON"
    assert len(made) <= 90
    assert case_dir(name + "!") != made  # two names, two directories


def streamed(body: Iterator[bytes], status: int = 200) -> httpx.MockTransport:
    """A transport answering every request with ``body``, read chunk by chunk."""

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            return body

    return httpx.MockTransport(lambda request: httpx.Response(status, stream=Body()))


SIGNED = "https://bucket.example/r/90002.wav?X-Amz-Signature=SIGNATURE-SECRET"


def test_a_recording_larger_than_the_cap_is_cut_there_and_said(tmp_path: Path) -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            sent.append(1)
            yield b"\x01" * 65536  # as the body is read: 64 KiB at a time

    target = Target(tmp_path, tmp_path, 5.0, cap=100_000, transport=streamed(endless()))
    artifact, note = download(target, SIGNED, tmp_path, "run-90002")
    assert artifact is not None and artifact.truncated and artifact.size == 100_000
    assert (tmp_path / "run-90002.wav").stat().st_size == 100_000
    assert len(sent) == 2  # stopped reading at the cap
    assert note == "recording cut at 100,000 bytes (the cap): run-90002.wav"
    assert not list(tmp_path.glob("*.part"))


def test_a_recording_that_trickles_past_the_deadline_is_given_up(tmp_path: Path) -> None:
    ticks = iter(range(0, 1000, 10))  # a fake clock: 10 s a read

    def endless() -> Iterator[bytes]:
        while True:
            yield b"\x01"

    target = Target(
        tmp_path,
        tmp_path,
        5.0,
        deadline=30.0,
        transport=streamed(endless()),
        clock=lambda: next(ticks),
    )
    artifact, note = download(target, SIGNED, tmp_path, "run-1")
    assert artifact is None
    assert note == "recording not downloaded from https://bucket.example/…: took more than 30 s"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("transport", "said"),
    [
        (streamed(iter([b"no"]), status=403), "recording not downloaded: HTTP 403 from "),
        (None, "recording not downloaded from "),  # nothing listens on port 1
    ],
)
def test_a_failed_download_is_one_masked_note(
    tmp_path: Path, transport: httpx.MockTransport | None, said: str
) -> None:
    url = "http://127.0.0.1:1/r/7.wav?X-Amz-Signature=SIGNATURE-SECRET"
    target = Target(tmp_path, tmp_path, 2.0, transport=transport)
    artifact, note = download(target, url, tmp_path, "run-7")
    assert artifact is None
    assert note.startswith(said + "http://127.0.0.1/…")
    assert "SIGNATURE" not in note and "/r/7" not in note
    assert "\n" not in note
    assert list(tmp_path.iterdir()) == []


def test_masked_url_keeps_the_host_only() -> None:
    assert masked_url(SIGNED) == "https://bucket.example/…"
    assert masked_url("not a link") == "the recording link"


def test_a_failed_download_keeps_the_transcript_and_the_verdict(tmp_path: Path) -> None:
    redactor = Redactor()
    redactor.add(API_KEY)
    run = CekuraRun(
        scenario_id=102,
        status="completed",
        success=False,
        run_id=7,
        recording_url="http://127.0.0.1:1/r/7.wav?sig=SIGNATURE-SECRET",
        conversation=json.dumps([{"role": "Main Agent", "content": f"key {API_KEY}"}]),
    )
    record = CaseRecord(
        "late booking",
        "cekura.toml::late booking",
        102,
        verdict="failed",
        runs=(RunRecord(7, 5, "completed", False, "failed"),),
    )
    target = Target(tmp_path / "out", tmp_path, 2.0)
    evidence = gather(target, record, [run], redactor)
    assert evidence.record.verdict == "failed"
    (note,) = evidence.notes
    assert note.startswith("cekura: case late booking, run 7: recording not downloaded from ")
    assert "SIGNATURE" not in note
    (artifact,) = evidence.record.runs[0].artifacts
    assert artifact.kind == "transcript"
    assert artifact.path == f"out/{case_dir('late booking')}/run-7.json"
    written = (tmp_path / artifact.path).read_text(encoding="utf-8")
    assert API_KEY not in written  # masked like every other output
    assert json.loads(written)["transcript_object"][0]["role"] == "Main Agent"
    assert junit_lines(evidence.record.to_json()) == [f"[[ATTACHMENT|{artifact.path}]]"]


def test_a_case_whose_runs_passed_writes_nothing(tmp_path: Path) -> None:
    run = CekuraRun(scenario_id=101, status="completed", success=True, run_id=1)
    record = CaseRecord(
        "ok", "cekura.toml::ok", 101, runs=(RunRecord(1, 5, "completed", True, "passed"),)
    )
    evidence = gather(Target(tmp_path / "out", tmp_path, 2.0), record, [run], Redactor())
    assert evidence.record is record and evidence.notes == ()
    assert not (tmp_path / "out").exists()

"""Issue 33, item 4: a session recorded against the local server, then replayed from the
recording with the server stopped and no connection possible."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import API_KEY, ROOM_TOKEN, Suite

from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

SCRIPTS = [
    ScenarioScript(301, "Books a table", "pass", 0.2, score=90),
    ScenarioScript(302, "Opening hours", "pass", 0.2),
    ScenarioScript(303, "Late booking", "fail", 0.2),
]

CASES = """
pipecat_room_url = "https://acme.daily.co/room-abc"
pipecat_token = "${{ROOM_TOKEN}}"

[[case]]
name = "books-a-table"
scenario = 301
{threshold}

[[case]]
name = "opening-hours"
scenario = 302
repeat = 2

[[case]]
name = "late-booking"
scenario = 303
"""


def _point_at(suite: Suite, url: str, *extra: str) -> None:
    """The suite's ini: this server, read fast, no run waiting for another's room."""
    lines = [
        "[pytest]",
        f"cekura_api_url = {url}",
        "cekura_poll_interval = 0.1",
        "cekura_max_reads_per_minute = 6000",
        *extra,
        "cekura_room_concurrency = 100",
    ]
    suite.pytester.makeini("\n".join(lines) + "\n")


@pytest.fixture
def recorded(suite: Suite) -> Iterator[tuple[Suite, Path]]:
    """A session of three cases recorded against the local server, which is then stopped."""
    suite.sim.stop()
    with Simulator(SCRIPTS, api_key=API_KEY) as sim:
        _point_at(suite, sim.url, "cekura_retry_window = 5")
        suite.toml(CASES.format(threshold=""))
        rec = suite.pytester.path / "rec"
        rec.mkdir()
        (rec / "gw9-000001.json").write_text("{}")  # an earlier recording's: forgotten
        (rec / "README").write_text("mine")  # not a recording's: kept
        result = suite.run("-n", "0", "--cekura-record=rec")
        result.assert_outcomes(passed=2, failed=1)
    yield suite, rec


def _no_connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection this process tries fails loudly, and is counted."""
    tried: list[object] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        tried.append(args)
        raise AssertionError(f"a network connection was attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


def test_recording_keeps_every_answer_masked(recorded: tuple[Suite, Path]) -> None:
    _, rec = recorded
    files = sorted(rec.glob("main-*.json"))
    assert files  # one file per request
    assert not (rec / "gw9-000001.json").exists() and (rec / "README").read_text() == "mine"
    text = "".join(path.read_text() for path in files)
    assert API_KEY not in text and ROOM_TOKEN not in text
    first = json.loads(files[0].read_text())
    assert first["format"] == 1
    assert {"method", "path", "query", "status", "headers", "body"} <= first.keys()
    session = json.loads((rec / "session.json").read_text())
    assert session["outcomes"] == {
        "cekura.toml::books-a-table": "passed",
        "cekura.toml::late-booking": "failed",
        "cekura.toml::opening-hours": "passed",
    }


def test_replay_with_a_new_threshold_flips_without_network(
    recorded: tuple[Suite, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, _ = recorded
    suite.toml(CASES.format(threshold='thresholds = { expected_outcome_score = ">= 95" }'))
    monkeypatch.delenv("CEKURA_API_KEY")
    tried = _no_connections(monkeypatch)
    result = suite.run("-n", "0", "--cekura-replay=rec")
    assert tried == []
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*threshold 'expected_outcome_score >= 95' not met: measured 90*",
            "cekura: replay: 1 case(s) flipped against the recorded session:",
            "  cekura.toml::books-a-table: passed -> failed",
        ]
    )
    assert "no recorded answer" not in result.stdout.str()


def test_replay_names_a_request_it_has_no_answer_for(
    recorded: tuple[Suite, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, _ = recorded
    _no_connections(monkeypatch)
    result = suite.run("-n", "0", "--cekura-replay=rec", "--cekura-batch-size=1")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "cekura: --cekura-replay: * request(s) had no recorded answer (answered HTTP 410), "
            "the first POST /test_framework/v1/scenarios/run_scenarios_pipecat/: replay with "
            "the firing options of the recorded session"
        ]
    )


def test_replay_refuses_a_different_suite_in_one_line(
    recorded: tuple[Suite, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, _ = recorded
    suite.toml(CASES.format(threshold="").replace("repeat = 2", "repeat = 3"))
    _no_connections(monkeypatch)
    result = suite.run("-n", "0", "--cekura-replay=rec")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --cekura-replay: this suite differs from the recording: "
            "cekura.toml::opening-hours repeat 3 here, 2 in the recording "
            "(replay the suite that was recorded)"
        ]
    )


GUARD = """
import os, socket

_DIR = {marks!r}
open(os.path.join(_DIR, "loaded-%d" % os.getpid()), "w").close()


def _refuse(*args, **kwargs):
    open(os.path.join(_DIR, "connected-%d" % os.getpid()), "a").write(repr(args) + "\\n")
    raise OSError("a network connection was attempted")


socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
"""


def test_xdist_records_and_replays_without_network(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    suite.sim.stop()
    with Simulator(SCRIPTS, api_key=API_KEY) as sim:
        _point_at(suite, sim.url)
        suite.toml(CASES.format(threshold=""))
        suite.run("-n", "2", "--cekura-record=rec").assert_outcomes(passed=2, failed=1)
    rec = suite.pytester.path / "rec"
    names = {path.name.split("-")[0] for path in rec.glob("*-*.json")}
    assert "main" in names and names & {"gw0", "gw1"}  # the watcher's reads, a worker's start
    # Every worker of the replay loads a guard that fails and notes any connection.
    marks, site = tmp_path / "marks", tmp_path / "site"
    marks.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD.format(marks=str(marks)))
    path = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    tried = _no_connections(monkeypatch)  # the controller (this process)
    suite.toml(CASES.format(threshold='thresholds = { expected_outcome_score = ">= 95" }'))
    # pytest-rerunfailures connects its xdist processes over loopback: not ours to test.
    result = suite.run("-n", "2", "--cekura-replay=rec", "-p", "no:rerunfailures")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["  cekura.toml::books-a-table: passed -> failed"])
    assert len(list(marks.glob("loaded-*"))) >= 2  # the guard ran in the workers
    assert list(marks.glob("connected-*")) == [] and tried == []
    # A recording made under xdist replays in one process too.
    assert "no recorded answer" not in result.stdout.str()
    again = suite.run("-n", "0", "--cekura-replay=rec")
    again.assert_outcomes(passed=1, failed=2)
    assert "no recorded answer" not in again.stdout.str()
    # A worker cannot stop the session: every case errors with the one line.
    suite.toml(CASES.format(threshold="").replace("scenario = 303", "scenario = 304"))
    other = suite.run("-n", "2", "--cekura-replay=rec", "-p", "no:rerunfailures")
    other.assert_outcomes(errors=3)  # opening-hours too, though it needs 2 passed runs
    refusal = (
        "--cekura-replay: this suite differs from the recording: cekura.toml::late-booking "
        "scenario 304 here, 303 in the recording (replay the suite that was recorded)"
    )
    for case in ("books-a-table (scenario 301)", "opening-hours (scenario 302)"):
        other.stdout.fnmatch_lines([f"*ERROR at setup of cekura case {case}*", refusal])


def test_local_server_serves_a_recording(recorded: tuple[Suite, Path]) -> None:
    """A user's own tests get real answers: the local server plays the recording back."""
    suite, rec = recorded
    with Simulator.from_recording(rec) as sim:
        _point_at(suite, sim.url)
        suite.toml(CASES.format(threshold='thresholds = { expected_outcome_score = ">= 95" }'))
        result = suite.run("-n", "0")
        result.assert_outcomes(passed=1, failed=2)
        assert sim.requests and all(r.status != 410 for r in sim.requests)
        answer = httpx.get(f"{sim.url}/test_framework/v2/results/999999/")
        assert answer.status_code == 410
        assert "not in the recording" in answer.text


def test_local_server_cli_refuses_a_bad_recording(tmp_path: Path, capsys: Any) -> None:
    from pytest_cekura_pipecat.simulator.__main__ import EXIT_USAGE, main

    assert main(["--recording", str(tmp_path / "none")]) == EXIT_USAGE
    assert "not a directory (a --cekura-record DIR)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--recording", str(tmp_path), "--default-outcome", "pass"])


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--cekura-replay=nowhere"],
            "ERROR: --cekura-replay: */nowhere is not a directory (a --cekura-record DIR)",
        ),
        (
            ["--cekura-replay=.", "--cekura-record=rec"],
            "ERROR: --cekura-record and --cekura-replay are both set: keep one",
        ),
        (
            ["--cekura-replay=.", "--cekura-simulate"],
            "ERROR: --cekura-simulate and --cekura-replay are both set: keep one",
        ),
        (["--cekura-replay=."], "ERROR: --cekura-replay: * holds no recorded answer"),
    ],
)
def test_replay_options_are_refused_in_one_line(suite: Suite, args: list[str], line: str) -> None:
    suite.toml(CASES.format(threshold=""))
    result = suite.run("-n", "0", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])

"""Issue 33, item 4: a session recorded against the local server, then replayed from the
recording with the server stopped and no connection possible."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def recorded(suite: Suite) -> Iterator[tuple[Suite, Path]]:
    """A session of three cases recorded against the local server, which is then stopped."""
    suite.sim.stop()
    with Simulator(SCRIPTS, api_key=API_KEY) as sim:
        suite.pytester.makeini(
            f"""
            [pytest]
            cekura_api_url = {sim.url}
            cekura_poll_interval = 0.1
            cekura_max_reads_per_minute = 6000
            cekura_retry_window = 5
            cekura_room_concurrency = 100
            """
        )
        suite.toml(CASES.format(threshold=""))
        result = suite.run("-n", "0", "--cekura-record=rec")
        result.assert_outcomes(passed=2, failed=1)
    yield suite, suite.pytester.path / "rec"


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

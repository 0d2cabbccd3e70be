"""Pipecat's real development runner (``python bot.py -t daily``) as the bot under test.

The runner creates every room through Daily's REST API; ``DAILY_API_URL`` points it at a local
stand-in (tests/standins/daily_api.py), so nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import shlex
import socket
import sys
from pathlib import Path

import pytest
from helpers import Suite
from standins.daily_api import DailyApi

from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._fire.bot import BotProcess, ready_url_for
from pytest_cekura_pipecat._fire.rooms import StartUrlRooms
from pytest_cekura_pipecat._redact import Redactor

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pipecat") is None,
    reason="pipecat-ai is not installed (pip install -e '.[pipecat]')",
)

DAILY_KEY = "dummy-daily-key-0123456789"

BOT = '''\
"""The smallest Pipecat bot: it logs its session and returns."""

from pipecat.runner.types import RunnerArguments


async def bot(runner_args: RunnerArguments) -> None:
    print(f"bot session {runner_args.session_id} body={runner_args.body}", flush=True)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_three_runs_get_three_rooms_from_the_real_runner(tmp_path: Path) -> None:
    (tmp_path / "bot.py").write_text(BOT)
    port = free_port()
    start_url = f"http://127.0.0.1:{port}/start"
    case = Case(name="books-a-table", scenario=101, source="cekura.toml")
    redactor = Redactor()
    with DailyApi(DAILY_KEY) as daily:
        bot = BotProcess(
            [sys.executable, "bot.py", "-t", "daily", "--host", "127.0.0.1", "--port", str(port)],
            ready_url=ready_url_for(start_url),
            log_path=tmp_path / "bot.log",
            env={
                "DAILY_API_URL": daily.url,
                "DAILY_API_KEY": DAILY_KEY,
                "DAILY_ROOM_URL": "",  # a room of the developer's would be reused for every run
                "PYTHON_DOTENV_DISABLED": "1",  # the runner loads a .env over the environment
            },
            cwd=tmp_path,
            start_timeout=60,
            grace=5,
        )
        with bot:
            rooms = StartUrlRooms(
                start_url,
                body={
                    "dailyRoomProperties": {"max_participants": 2},
                    "dailyMeetingTokenProperties": {"user_name": "cekura-tester"},
                },
                redactor=redactor,
            )
            got = [rooms.start(case, i) for i in range(3)]
        log = bot.log_tail(200)

    assert not bot.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    assert len({room.url for room in got}) == 3 and len({room.token for room in got}) == 3
    assert [room.url for room in got] == [room["url"] for room in daily.rooms.values()]
    assert [room.token for room in got] == daily.tokens
    assert all(redactor(str(room.token)) == "***" for room in got)

    calls = [(r.method, r.path) for r in daily.requests]
    assert calls == [("POST", "/rooms"), ("POST", "/meeting-tokens")] * 3
    assert {r.authorization for r in daily.requests} == {f"Bearer {DAILY_KEY}"}
    room_bodies = [r.body for r in daily.requests if r.path == "/rooms"]
    assert all(body["properties"]["max_participants"] == 2 for body in room_bodies)
    token_bodies = [r.body["properties"] for r in daily.requests if r.path == "/meeting-tokens"]
    assert [t["room_name"] for t in token_bodies] == [r["name"] for r in daily.rooms.values()]
    assert {t["user_name"] for t in token_bodies} == {"cekura-tester"}
    # Each bot session got the case in runner_args.body.
    for i in range(3):
        assert f"'cekura_case': 'books-a-table', 'cekura_scenario': 101, 'cekura_run': {i}" in log


def test_bot_command_starts_the_real_runner_for_a_suite(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin starts the runner (``bot_command``), waits for its ``/status``, starts one
    session per run through ``/start``, fires against the simulator, and stops the runner."""
    (suite.pytester.path / "bot.py").write_text(BOT)
    port = free_port()
    command = shlex.join(
        [sys.executable, "bot.py", "-t", "daily", "--host", "127.0.0.1", "--port", str(port)]
    )
    suite.toml(
        f"""
bot_command = "{command}"
bot_start_url = "http://127.0.0.1:{port}/start"
bot_start_body = {{ dailyRoomProperties = {{ max_participants = 2 }} }}

[[case]]
name = "books-a-table"
scenario = 101
repeat = 2

[[case]]
name = "opening-hours"
scenario = 104
"""
    )
    suite.sim.configure(room_exclusive=True, echo_secrets=True)
    with DailyApi(DAILY_KEY) as daily:
        monkeypatch.setenv("DAILY_API_URL", daily.url)
        monkeypatch.setenv("DAILY_API_KEY", DAILY_KEY)
        monkeypatch.setenv("DAILY_ROOM_URL", "")
        monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
        result = suite.pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--junitxml=junit.xml", "--cekura-report=report.json"
        )
    result.assert_outcomes(passed=2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    (post,) = suite.posts()
    entries = post.body["scenarios"]
    urls = sorted(e["pipecat_room_url"] for e in entries)
    assert urls == sorted(r["url"] for r in daily.rooms.values()) and len(set(urls)) == 3
    assert sorted(e["pipecat_token"] for e in entries) == sorted(daily.tokens)
    assert len(set(daily.tokens)) == 3
    out = suite.artifacts(result) + (suite.pytester.path / "report.json").read_text()
    assert not any(token in out for token in daily.tokens)
    log = (suite.pytester.path / "cekura-bot.log").read_text()
    assert "'cekura_case': 'opening-hours'" in log

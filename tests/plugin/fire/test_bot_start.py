"""Rooms from a bot start URL, and the bot under test started by the plugin (``bot_command``).

A local start server on 127.0.0.1 answers like Pipecat's runner; the simulator refuses a room
that already has a caller (``room_exclusive``) and echoes each run's room and token into its
error message and transcript (``echo_secrets``), so a leak of a token would show.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, STANDINS, START, Suite

from pytest_cekura_pipecat._config.case import Defaults
from pytest_cekura_pipecat._config.schema import load_cases

STANDIN_BOT = str(STANDINS / "bot.py")
HEADER_KEY = "bot-header-SECRET-0123456789"


class StartServer:
    """``POST /start`` → a fresh room and token (``tok-SECRET-n``); ``fail`` answers 500."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self.tokens: list[str] = []
        lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with lock:
                    state.seen.append((self.path, dict(self.headers), body))
                    n = len(state.seen)
                    token = f"tok-SECRET-{n:04d}-{body['body']['cekura_case']}"
                    state.tokens.append(token)
                status = 500 if state.fail else 200
                data = {"dailyRoom": f"https://standin.invalid/bot-{n}", "dailyToken": token}
                out = json.dumps(data if not state.fail else {"detail": "boom"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/start"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def starter() -> Iterator[StartServer]:
    server = StartServer()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


CASES = """
bot_start_url = "{url}"
bot_start_headers = {{ Authorization = "Bearer ${{BOT_HEADER_KEY}}" }}
bot_start_body = {{ dailyRoomProperties = {{ max_participants = 2 }} }}

[[case]]
name = "books-a-table"
scenario = 101
repeat = 3
publish_data_message = {{ sha = "abc123" }}

[[case]]
name = "late-booking"
scenario = 102
repeat = 2
"""


def everything(suite: Suite, result: pytest.RunResult) -> str:
    report = suite.pytester.path / "report.json"
    return suite.artifacts(result) + (report.read_text() if report.exists() else "")


@pytest.mark.parametrize("workers", [None, "2"], ids=["plain", "n2"])
def test_each_run_gets_its_own_room_and_no_token_leaks(
    suite: Suite, starter: StartServer, monkeypatch: pytest.MonkeyPatch, workers: str | None
) -> None:
    monkeypatch.setenv("BOT_HEADER_KEY", HEADER_KEY)
    suite.sim.configure(room_exclusive=True, echo_secrets=True)
    suite.toml(CASES.format(url=starter.url))
    args = ["--cekura-report=report.json", "-rA"] + (["-n", workers] if workers else [])
    result = suite.run(*args)
    # 102 fails by script, and its message carries the echoed room and token.
    result.assert_outcomes(passed=1, failed=1)

    (post,) = suite.posts()
    entries = post.body["scenarios"]
    assert len(entries) == 5
    assert len({e["pipecat_room_url"] for e in entries}) == 5
    assert sorted(e["pipecat_token"] for e in entries) == sorted(starter.tokens)
    assert len(set(starter.tokens)) == 5

    assert len(starter.seen) == 5
    for path, headers, body in starter.seen:
        assert path == "/start"
        assert headers["Authorization"] == f"Bearer {HEADER_KEY}"
        assert body["createDailyRoom"] is True
        assert body["dailyRoomProperties"] == {"max_participants": 2}
    bodies = sorted((b["body"]["cekura_case"], b["body"]["cekura_run"]) for _, _, b in starter.seen)
    assert bodies == [("books-a-table", i) for i in range(3)] + [
        ("late-booking", i) for i in (0, 1)
    ]
    books = [b["body"] for _, _, b in starter.seen if b["body"]["cekura_case"] == "books-a-table"]
    assert all(b["cekura_scenario"] == 101 for b in books)
    assert all(b["publish_data_message"] == {"sha": "abc123"} for b in books)

    out = everything(suite, result)
    assert "joined https://standin.invalid/bot-" in out  # the echo did reach the output
    for token in starter.tokens:
        assert token not in out
    assert HEADER_KEY not in out


def test_start_url_from_the_command_line_and_marker(
    suite: Suite, starter: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.cekura(scenario=101, repeat=2)
        def test_books():
            pass
        """
    )
    result = suite.run(f"--cekura-bot-start-url={starter.url}")
    result.assert_outcomes(passed=1)
    assert len(starter.seen) == 2
    assert {b["body"]["cekura_case"] for _, _, b in starter.seen} == {"test_books"}


def test_a_failing_start_url_errors_its_runs_and_is_not_retried(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = StartServer(fail=True)
    try:
        suite.toml(f'bot_start_url = "{server.url}"\n[[case]]\nname = "books"\nscenario = 101\n')
        result = suite.run()
    finally:
        server.close()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["bot start URL http://127.0.0.1:*/start: HTTP 500*", "*scenario 101 errored"]
    )
    assert len(server.seen) == 1
    assert not suite.posts()


def test_a_start_url_must_be_http(suite: Suite) -> None:
    suite.toml('bot_start_url = "ftp://bots.example/start"\n[[case]]\nname = "b"\nscenario = 101\n')
    result = suite.run()
    result.stdout.fnmatch_lines(["*case b: bot_start_url must be an http:// or https:// URL*"])
    assert not suite.posts()


def test_headers_go_only_with_the_start_url_of_their_level(tmp_path: Path) -> None:
    path = tmp_path / "cekura.toml"
    path.write_text(
        """
bot_start_url = "https://bots.example/start"
bot_start_headers = { Authorization = "Bearer ${KEY}" }
bot_start_body = { dailyRoomProperties = { max_participants = 2 } }

[[case]]
name = "inherits"
scenario = 101
bot_start_body = { body = { locale = "fr" } }

[[case]]
name = "elsewhere"
scenario = 102
bot_start_url = "https://other.example/start"
"""
    )
    inherits, elsewhere = load_cases(
        path, "cekura.toml", Defaults(bot_start_url="https://ini.example/start"), False
    )
    assert inherits.bot_start_url == "https://bots.example/start"
    assert inherits.bot_start_headers == {"Authorization": "Bearer ${KEY}"}
    assert inherits.bot_start_body == {
        "dailyRoomProperties": {"max_participants": 2},
        "body": {"locale": "fr"},
    }
    assert elsewhere.bot_start_url == "https://other.example/start"
    assert elsewhere.bot_start_headers is None and elsewhere.bot_start_body is None
    assert "KEY" not in repr(inherits)


# -- bot_command ---------------------------------------------------------------------------


def bot_command(port: int, mode: str = "ready") -> str:
    return shlex.join([sys.executable, STANDIN_BOT, str(port), mode])


@pytest.mark.parametrize("workers", [None, "2"], ids=["plain", "n2"])
def test_bot_command_serves_the_suite_and_is_stopped(suite: Suite, workers: str | None) -> None:
    port = free_port()
    suite.toml(
        f"""
bot_command = "{bot_command(port)}"
bot_start_url = "http://127.0.0.1:{port}/start"

[[case]]
name = "books"
scenario = 101
repeat = 2

[[case]]
name = "late"
scenario = 102
"""
    )
    result = suite.run(*(["-n", workers] if workers else []))
    result.assert_outcomes(passed=1, failed=1)
    assert port_closed(port)
    (post,) = suite.posts()
    urls = [e["pipecat_room_url"] for e in post.body["scenarios"]]
    assert len(set(urls)) == 3 and all(u.startswith("https://standin.invalid/bot-") for u in urls)
    # The bot's output is in its log, and its tail is attached to the failing case.
    log = (suite.pytester.path / "cekura-bot.log").read_text()
    assert "'cekura_case': 'books'" in log
    result.stdout.fnmatch_lines(
        ["*late*", "*last lines of the bot's log:*", "*serving on 127.0.0.1:*"]
    )
    assert "bot-token-" not in suite.artifacts(result)


def test_a_bot_that_exits_at_start_errors_every_case_and_fires_nothing(
    suite: Suite, starter: StartServer
) -> None:
    port = free_port()
    suite.toml("[[case]]\nname = 'books'\nscenario = 101\n[[case]]\nscenario = 102\n")
    result = suite.run(
        f"--cekura-bot-command={bot_command(port, 'exit')}",
        f"--cekura-bot-start-url=http://127.0.0.1:{port}/start",
        "--cekura-bot-start-timeout=20",
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*not fired: bot `*bot.py * exit` exited with code 3 before "
            f"http://127.0.0.1:{port}/status was ready*",
            "*Fatal: DAILY_API_KEY is not set*",
        ]
    )
    assert not suite.posts()
    assert not [r for r in suite.sim.requests if r.method == "POST"]


def test_a_bot_that_never_gets_ready_times_out(suite: Suite) -> None:
    port = free_port()
    suite.pytester.makeini(
        f"""
        [pytest]
        cekura_api_url = {suite.sim.url}
        cekura_poll_interval = 0.1
        cekura_bot_command = {bot_command(port, "never")}
        cekura_bot_ready_url = http://127.0.0.1:{port}/status
        cekura_bot_start_timeout = 1
        cekura_pipecat_room_url = https://acme.daily.co/static
        """
    )
    suite.toml("[[case]]\nname = 'books'\nscenario = 101\n")
    result = suite.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*was not ready at http://127.0.0.1:*/status within 1s*"])
    assert not suite.posts()
    assert port_closed(port)


def test_two_files_with_different_bot_commands(suite: Suite) -> None:
    start = 'bot_start_url = "http://127.0.0.1:7860/start"\n'
    case = '[[case]]\nname = "{0}"\nscenario = 101\n'
    suite.toml(f'bot_command = "python a.py"\n{start}{case.format("a")}', "a/cekura.toml")
    suite.toml(f'bot_command = "python b.py"\n{start}{case.format("b")}', "b/cekura.toml")
    result = suite.run("--collect-only")
    result.stdout.fnmatch_lines(["*b/cekura.toml: bot_command: differs from a/cekura.toml*"])
    assert not [r for r in suite.sim.requests if r.path == START]


def _one_hanging_case_on_a_bot(suite: Suite, port: int) -> None:
    suite.toml(
        f"""
bot_command = "{bot_command(port)}"
bot_start_url = "http://127.0.0.1:{port}/start"

[[case]]
name = "hangs"
scenario = 105
"""
    )


def test_the_bot_is_stopped_when_the_session_is_interrupted(suite: Suite) -> None:
    port = free_port()
    _one_hanging_case_on_a_bot(suite, port)
    code, out = suite.sigterm_after_start()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert port_closed(port)
    assert suite.ended()  # the live call was ended too


def test_a_bot_left_by_a_killed_firing_worker_is_stopped_by_the_controller(suite: Suite) -> None:
    """The bot is in its own process group: a SIGKILLed firing worker cannot stop it, so the
    xdist controller does, at the end of the session."""
    port = free_port()
    pidfile = suite.firer_pidfile()
    _one_hanging_case_on_a_bot(suite, port)

    def kill() -> None:  # once the start request was answered
        deadline = time.monotonic() + 20
        while not [r for r in suite.posts() if r.status == 200] and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    suite.run("-n", "2", "--cekura-timeout=5")
    killer.join(1)
    assert port_closed(port)  # stopped when the session ended (the standin never exits)


# -- the simulator's one caller per room -----------------------------------------------------


def test_the_simulator_refuses_a_second_caller_in_a_room(suite: Suite) -> None:
    """``room_exclusive``: a static room shared by two cases fired at once is refused for the
    second entry with Cekura's words, however the room URL is written."""
    suite.sim.configure(room_exclusive=True)
    suite.toml(
        """
[[case]]
name = "first"
scenario = 101
pipecat_room_url = "https://acme.daily.co/shared"

[[case]]
name = "second"
scenario = 104
pipecat_room_url = "https://ACME.daily.co/shared/?t=${ROOM_TOKEN}"
"""
    )
    result = suite.run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*Cekura refused scenario 104 of case second (HTTP 400): pipecat_room_url: another caller was already in "
            "the room*"
        ]
    )


# -- the nearest explicit choice wins: the docs' own first cekura.toml (issue 28) ----------

README = ROOT / "docs" / "configuration.md"
README_START = "http://127.0.0.1:7860/start"


def readme_first_toml() -> str:
    section = README.read_text(encoding="utf-8").split("## `cekura.toml`", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readmes_first_cekura_toml_gives_each_case_the_bot_it_names(
    suite: Suite, starter: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``per-run-bot`` names its own start URL under a suite-level room: one bot session per
    run, not the inherited room; ``books-a-table`` goes to its own room."""
    for name in ("PIPECAT_ROOM_URL", "PIPECAT_TOKEN", "ROOM_ABC_TOKEN", "BOT_KEY"):
        monkeypatch.setenv(name, f"{name.lower()}-SECRET-0123456789")
    monkeypatch.setenv("PIPECAT_ROOM_URL", "https://acme.daily.co/suite-room")
    text = readme_first_toml()
    assert f'bot_start_url = "{README_START}"' in text
    suite.toml(text.replace(README_START, starter.url))  # the same, on a free port

    dry = suite.run("--cekura-dry-run")
    assert dry.ret == pytest.ExitCode.OK, "\n".join(dry.outlines)
    dry.stdout.fnmatch_lines(
        [
            "case books-a-table: bot: static room https://acme.daily.co/room-abc "
            "(chosen by case: pipecat_room_url)",
            f"case per-run-bot: bot: one bot session per run from start URL {starter.url} "
            "(chosen by case: bot_start_url)",
        ]
    )
    assert not starter.seen and not suite.posts()

    result = suite.run("-rA")
    result.assert_outcomes(passed=1, failed=1)  # 102 fails by script
    assert len(starter.seen) == 1  # per-run-bot: repeat 1, one bot session
    ((_, headers, body),) = starter.seen
    assert headers["Authorization"] == "Bearer bot_key-SECRET-0123456789"
    assert body["dailyRoomProperties"] == {"exp": 3600}
    assert body["body"]["cekura_case"] == "per-run-bot"
    rooms = sorted(
        (entry["scenario"], entry["pipecat_room_url"])
        for post in suite.posts()
        for entry in post.body["scenarios"]
    )
    assert rooms == [(101, "https://acme.daily.co/room-abc")] * 3 + [
        (102, "https://standin.invalid/bot-1")
    ]


def test_the_dry_run_says_which_layer_chose_each_bot(suite: Suite, starter: StartServer) -> None:
    port = free_port()
    suite.pytester.makeconftest(
        """
        def pytest_cekura_room(case, config):
            return None
        """
    )
    suite.toml(
        f"""
bot_command = "{bot_command(port)}"
pipecat_room_url = "https://acme.daily.co/suite-room"

[[case]]
name = "inherits"
scenario = 101

[[case]]
name = "own"
scenario = 102
bot_start_url = "http://127.0.0.1:{port}/start"
""",
        "evals/cekura.toml",
    )
    suite.pytester.makepyfile(  # no cekura.toml above it: the options decide
        test_marked=f"""
        import pytest

        @pytest.mark.cekura(scenario=104)
        def test_options():
            pass

        @pytest.mark.cekura(scenario=104, bot_start_url="{starter.url}")
        def test_own():
            pass
        """
    )
    ini = suite.pytester.path / "tox.ini"
    ini.write_text(ini.read_text() + f"\ncekura_bot_start_url = {starter.url}\n")
    room = "https://acme.daily.co/flag-room"
    result = suite.run("--cekura-dry-run", f"--cekura-pipecat-room-url={room}")
    assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
    result.stdout.fnmatch_lines(
        [
            "case inherits: bot: static room https://acme.daily.co/suite-room "
            "(chosen by file: pipecat_room_url)",
            "case own: bot: the pytest_cekura_room hook's room, else one bot session per run "
            f"from start URL http://127.0.0.1:{port}/start (chosen by case: bot_start_url)",
            f"case test_options: bot: static room {room} "
            "(chosen by flag: --cekura-pipecat-room-url)",
            "case test_own: bot: the pytest_cekura_room hook's room, else one bot session per "
            f"run from start URL {starter.url} (chosen by marker: bot_start_url)",
            f"bot_command `{bot_command(port)}` (chosen by file): started once before firing, *",
        ],
    )
    assert not starter.seen and not suite.posts() and port_closed(port)


def test_bot_command_with_variables_starts_the_bot(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${VAR}`` in ``bot_command`` means what it means everywhere else, expanded when
    firing: the interpreter's path (here with a space in it) stays one argument."""
    port = free_port()
    shutil.copy(STANDIN_BOT, suite.pytester.path / "bot.py")
    spaced = suite.pytester.path / "my python"
    spaced.mkdir()
    (spaced / "python").symlink_to(sys.executable)
    suite.toml(
        """
bot_command = "${BOT_PYTHON} bot.py --port ${BOT_PORT}"
bot_start_url = "http://127.0.0.1:${BOT_PORT}/start"

[[case]]
name = "books"
scenario = 101
"""
    )
    monkeypatch.delenv("BOT_PYTHON", raising=False)
    monkeypatch.delenv("BOT_PORT", raising=False)
    assert suite.run("--collect-only").ret == pytest.ExitCode.OK  # no variable needed yet
    monkeypatch.setenv("BOT_PYTHON", str(spaced / "python"))
    monkeypatch.setenv("BOT_PORT", str(port))
    result = suite.run()
    result.assert_outcomes(passed=1)
    assert port_closed(port)
    log = (suite.pytester.path / "cekura-bot.log").read_text()
    assert f"serving on 127.0.0.1:{port}" in log and "'cekura_case': 'books'" in log


def test_a_missing_variable_of_bot_command_fires_nothing(suite: Suite) -> None:
    suite.toml(
        'bot_command = "${NO_SUCH_PYTHON} bot.py"\n'
        'bot_start_url = "http://127.0.0.1:7860/start"\n'
        '[[case]]\nname = "books"\nscenario = 101\n'
    )
    result = suite.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*not fired: bot_command: environment variable NO_SUCH_PYTHON is not set*"]
    )
    assert not suite.posts()

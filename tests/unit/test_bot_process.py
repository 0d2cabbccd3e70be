"""BotProcess against a stand-in bot script (tests/standins/bot.py) on 127.0.0.1."""

from __future__ import annotations

import gc
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
import pytest
from helpers import STANDINS

from pytest_cekura_pipecat._config.case import BotKeys
from pytest_cekura_pipecat._config.options import BotOptions
from pytest_cekura_pipecat._errors import ConfigError
from pytest_cekura_pipecat._fire.bot import (
    BotError,
    BotProcess,
    bot_config,
    command_argv,
    ready_url_for,
)

BOT = str(STANDINS / "bot.py")


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


def bot(tmp_path: Path, mode: str = "ready", **kwargs: float) -> tuple[BotProcess, int]:
    port = free_port()
    process = BotProcess(
        [sys.executable, BOT, str(port), mode],
        ready_url=f"http://127.0.0.1:{port}/status",
        log_path=tmp_path / "logs" / "bot.log",
        **kwargs,  # type: ignore[arg-type]
    )
    return process, port


def test_ready_url_for() -> None:
    assert ready_url_for("http://127.0.0.1:7860/start") == "http://127.0.0.1:7860/status"
    assert ready_url_for("https://bots.example/api/start?x=1") == "https://bots.example/status"


def test_start_waits_until_ready_and_stop_closes_the_port(tmp_path: Path) -> None:
    process, port = bot(tmp_path, "slow", start_timeout=10)
    with process:
        assert process.running
        answer = httpx.post(f"http://127.0.0.1:{port}/start", json={"createDailyRoom": True})
        assert answer.json()["dailyRoom"].startswith("https://standin.invalid/bot-")
    assert not process.running
    assert port_closed(port)
    process.stop()  # idempotent
    assert "serving on 127.0.0.1" in process.log_tail()


def test_a_command_string_is_split_without_a_shell(tmp_path: Path) -> None:
    port = free_port()
    command = f"{shlex.quote(sys.executable)} {shlex.quote(BOT)} {port} ready"
    process = BotProcess(
        command, ready_url=f"http://127.0.0.1:{port}/status", log_path=tmp_path / "bot.log"
    )
    with process:
        assert process.running
    assert process.argv == [sys.executable, BOT, str(port), "ready"]


def test_early_exit_raises_with_the_log_tail(tmp_path: Path) -> None:
    process, _ = bot(tmp_path, "exit", start_timeout=120)
    began = time.monotonic()
    with pytest.raises(BotError) as info:
        process.start()
    assert time.monotonic() - began < 60  # the exit is noticed: the 120 s are not waited out
    message = str(info.value)
    first, *tail = message.splitlines()
    assert "exited with code 3 before http://127.0.0.1:" in first and "bot.log" in first
    assert tail[-1] == "Fatal: DAILY_API_KEY is not set"
    assert "log line 29" in message and "log line 5\n" not in message
    assert len(tail) == 21  # a header line, then the last 20 lines of the log
    assert not process.running


def test_never_ready_times_out_and_leaves_nothing_behind(tmp_path: Path) -> None:
    process, port = bot(tmp_path, "never", start_timeout=1.0, grace=2.0)
    with pytest.raises(BotError, match=r"was not ready at .*/status within 1s") as info:
        process.start()
    assert "serving on 127.0.0.1" in str(info.value)
    assert not process.running and port_closed(port)


def test_sigkill_after_grace_for_a_bot_ignoring_sigterm(tmp_path: Path) -> None:
    process, port = bot(tmp_path, "ignore-term", grace=0.5)
    process.start()
    began = time.monotonic()
    process.stop()
    took = time.monotonic() - began
    assert 0.5 <= took < 30  # the grace, then SIGKILL: not a wait for the bot to obey
    assert process.pid is not None and not process.running
    assert port_closed(port)


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    port = free_port()
    inner = f"{shlex.quote(sys.executable)} {shlex.quote(BOT)} {port} & wait"
    process = BotProcess(
        ["sh", "-c", inner],
        ready_url=f"http://127.0.0.1:{port}/status",
        log_path=tmp_path / "bot.log",
        grace=2.0,
    )
    with process:
        pass
    assert port_closed(port)  # the grandchild got the signal, not only the shell


# The interrupt may strike inside httpx's connect, after the socket is made and before the
# connection pool owns it: that socket is then left to the garbage collector, which warns.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_interrupt_during_start_stops_the_bot(tmp_path: Path) -> None:
    process, port = bot(tmp_path, "never", start_timeout=30, grace=2.0)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.7)
    try:
        with pytest.raises(KeyboardInterrupt):
            process.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        gc.collect()  # such a socket is collected here, under this test's filter
    assert not process.running and port_closed(port)


def test_env_and_cwd_reach_the_bot(tmp_path: Path) -> None:
    script = tmp_path / "envbot.py"
    script.write_text(
        "import os, runpy, sys\n"
        "print('WHERE', os.getcwd(), os.environ['BOT_GREETING'], flush=True)\n"
        f"sys.argv = ['bot', os.environ['BOT_PORT']]\n"
        f"runpy.run_path({BOT!r}, run_name='__main__')\n"
    )
    port = free_port()
    process = BotProcess(
        [sys.executable, str(script)],
        ready_url=f"http://127.0.0.1:{port}/status",
        log_path=tmp_path / "bot.log",
        env={"BOT_GREETING": "hello", "BOT_PORT": str(port)},
        cwd=tmp_path,
    )
    with process:
        pass
    assert f"WHERE {tmp_path} hello" in process.log_tail()


def test_a_missing_executable_is_one_line(tmp_path: Path) -> None:
    process = BotProcess(
        "no-such-bot-binary --port 1",
        ready_url="http://127.0.0.1:1/status",
        log_path=tmp_path / "bot.log",
    )
    with pytest.raises(BotError, match=r"^bot `no-such-bot-binary --port 1` could not start"):
        process.start()
    assert not process.running


# -- ${VAR} in bot_command (issue 28) ---------------------------------------------------------


def test_bot_command_is_split_then_each_argument_expanded() -> None:
    env = {"BOT_PYTHON": "/opt/my python/bin/python", "BOT_PORT": "7861"}
    assert command_argv("${BOT_PYTHON} bot.py --port ${BOT_PORT} '${NAME:-a b}'", env) == [
        "/opt/my python/bin/python",  # a value with spaces stays one argument
        "bot.py",
        "--port",
        "7861",
        "a b",
    ]


def test_a_missing_variable_of_bot_command_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        command_argv("${BOT_PYTHON} bot.py", {})
    assert info.value.problems == [
        "bot_command: environment variable BOT_PYTHON is not set (export it, or write "
        "${BOT_PYTHON:-default})"
    ]


def test_the_session_bot_follows_the_precedence_rule_command_line_first(tmp_path: Path) -> None:
    options = BotOptions(
        cli={},
        ini={"command": "ini-bot", "start_timeout": 9.0},
        cli_dir="cli",
        ini_dir="ini",
        log=str(tmp_path / "bot.log"),
    )
    a = BotKeys(source="a/cekura.toml", directory="a", command="a-bot", ready_url="http://a/")
    b = BotKeys(source="b/cekura.toml", directory="b", command="b-bot")
    config = bot_config(options, [a])
    assert config is not None
    assert (config.command, config.cwd, config.layer) == ("a-bot", "a", "file")
    assert (config.ready_url, config.start_timeout) == ("http://a/", 9.0)
    with pytest.raises(ConfigError, match=r"b/cekura\.toml: bot_command: differs from a/"):
        bot_config(options, [a, b])
    flag = BotOptions(
        cli={"command": "cli-bot"}, ini={}, cli_dir="cli", ini_dir="ini", log=options.log
    )
    config = bot_config(flag, [a, b])  # the command line settles files that disagree
    assert config is not None
    assert (config.command, config.cwd, config.layer) == ("cli-bot", "cli", "flag")
    config = bot_config(options, [])
    assert config is not None and (config.command, config.cwd) == ("ini-bot", "ini")

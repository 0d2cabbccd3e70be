"""The bot under test, started by the plugin: a process (e.g. ``python bot.py -t daily``)
that serves a Pipecat start URL, waited for until it says it is ready, and stopped after."""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from .._config.case import BotKeys, environ, expand
from .._config.schema import Layer, nearest
from .._errors import CekuraError, ConfigError
from .._redact import Redactor

if TYPE_CHECKING:
    from .._config.options import BotOptions

_POLL_INTERVAL = 0.1
DEFAULT_START_TIMEOUT = 60.0
_TAIL_BYTES = 64 * 1024


class BotError(CekuraError):
    """The bot did not start: it exited, or never answered its ready URL in time."""


def ready_url_for(start_url: str) -> str:
    """The ready URL of a Pipecat runner serving ``start_url``: ``{origin}/status``."""
    parts = urlsplit(start_url)
    return f"{parts.scheme}://{parts.netloc}/status"


class BotProcess:
    """One bot process, in its own session (so its whole process group can be stopped).

    ``command`` is an argv list, or a string split with :func:`shlex.split` (no shell).
    ``env`` adds to (and overrides) this process's environment. Output goes to ``log_path``.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        start_timeout: float = 60.0,
        grace: float = 5.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.on_spawn = on_spawn  # told the pid at once, before the bot is ready
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise BotError("the bot command is empty")
        self.ready_url = ready_url
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.grace = grace
        self.env = dict(env or {})
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> BotProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Spawn the bot and wait until ``ready_url`` answers 2xx; on any failure (or an
        interrupt) the bot is stopped before the exception propagates."""
        if self.running:
            raise BotError(f"bot `{self.command}` is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        try:
            with self.log_path.open("wb") as log:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
        except OSError as exc:
            raise BotError(f"bot `{self.command}` could not start: {exc.strerror or exc}") from None
        atexit.register(self.stop)
        try:
            if self.on_spawn is not None:
                self.on_spawn(self._proc.pid)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(trust_env=False) as http:
            while True:
                code = proc.poll()
                if code is not None:
                    raise self._error(f"exited with code {code} before {self.ready_url} was ready")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._error(
                        f"was not ready at {self.ready_url} within {self.start_timeout:g}s"
                    )
                try:
                    response = http.get(self.ready_url, timeout=min(2.0, remaining))
                except httpx.HTTPError:
                    pass
                else:
                    if response.is_success:
                        return
                time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))

    def _error(self, what: str) -> BotError:
        tail = self.log_tail()
        message = f"bot `{self.command}` {what} (log: {self.log_path})"
        if tail:
            message += f"\n--- last lines of {self.log_path.name} ---\n{tail}"
        return BotError(message)

    def stop(self) -> None:
        """SIGTERM to the bot's process group, SIGKILL after ``grace`` seconds. Idempotent;
        safe to call from a signal handler or atexit (a call made while another is under way
        kills the group at once instead of waiting)."""
        proc = self._proc
        if proc is None:
            return
        if self._stopping:
            _signal_group(proc.pid, signal.SIGKILL)
            return
        self._stopping = True
        try:
            deadline = time.monotonic() + self.grace
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.0, deadline - time.monotonic()))
            # Children the bot started may outlive it in its group: they had the same SIGTERM
            # and get what is left of the grace period.
            while proc.poll() is not None and _group_alive(proc.pid):
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            if proc.poll() is None or _group_alive(proc.pid):
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
        finally:
            self._stopping = False
            atexit.unregister(self.stop)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the bot's log ("" when there is none)."""
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" when there is none)."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - _TAIL_BYTES))
            data = log.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def stop_orphan(pgid: int, grace: float = 5.0) -> bool:
    """Stop the process group of a bot whose parent died (SIGTERM, SIGKILL after ``grace``);
    whether it was still running."""
    if not _group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The bot leads its own session, so its pid is its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class BotConfig:
    """The session's bot under test, resolved from the options and the ``cekura.toml`` files."""

    command: str
    cwd: str
    start_timeout: float
    log_path: Path
    ready_url: str | None = None  # None: the origin of the cases' start URL + /status
    layer: str = "file"  # which layer chose the command: flag, file or ini


def _agreed(files: Sequence[BotKeys], key: str) -> BotKeys | None:
    """The first file that sets ``key``; a ConfigError if another sets it differently."""
    given = [f for f in files if getattr(f, key) is not None]
    for other in given[1:]:
        if getattr(other, key) != getattr(given[0], key):
            raise ConfigError(
                [
                    f"{other.source}: bot_{key}: differs from {given[0].source} (one "
                    "session starts one bot: set it once, or on the command line)"
                ]
            )
    return given[0] if given else None


def bot_config(options: BotOptions | None, files: Sequence[BotKeys]) -> BotConfig | None:
    """The session's bot, by the precedence rule (:func:`._config.nearest`) over its own
    layers: the command line first (one session starts one bot: the command line settles
    files that disagree), then the top of a ``cekura.toml``, then the ini file. Files that
    disagree are a ConfigError unless the command line sets the key."""
    if options is None:
        return None
    keys = ("command", "ready_url", "start_timeout")
    agreed = {key: _agreed(files, key) for key in keys if key not in options.cli}
    from_files = {key: getattr(f, key) for key, f in agreed.items() if f is not None}
    found = [Layer("flag", options.cli), Layer("file", from_files), Layer("ini", options.ini)]
    command = nearest(found, ("command",))
    if command is None:
        return None
    first = agreed.get("command")
    dirs = {
        "flag": options.cli_dir,
        "file": first.directory if first is not None else "",
        "ini": options.ini_dir,
    }
    ready_url = nearest(found, ("ready_url",))
    start_timeout = nearest(found, ("start_timeout",))
    return BotConfig(
        command=str(command.value),
        cwd=dirs[command.layer],
        start_timeout=float(start_timeout.value if start_timeout else DEFAULT_START_TIMEOUT),
        log_path=Path(options.log),
        ready_url=ready_url.value if ready_url else None,
        layer=command.layer,
    )


def command_argv(command: str, env: Mapping[str, str]) -> list[str]:
    """``bot_command`` as the argv it runs: split like a shell line (:func:`shlex.split`, no
    shell), then ``${VAR}`` expanded in each argument, so a value with spaces (a path) stays
    one argument. A ConfigError names a missing variable; a ValueError an unbalanced quote."""
    return [expand(arg, env, "bot_command") for arg in shlex.split(command)]


class SessionBot:
    """The bot under test of one session: started on first need (before firing, by the
    process that fires), at most once; stopped by :meth:`stop`."""

    def __init__(
        self,
        config: BotConfig,
        redactor: Redactor,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self._redact = redactor
        self._on_spawn = on_spawn
        self._lock = threading.Lock()
        self._process: BotProcess | None = None
        self._tried = False
        self.problem: str | None = None

    def ensure(self, ready_url: str | None) -> str | None:
        """Start the bot unless already tried; why it is not serving (one line, then the
        tail of its log), or None once it is ready."""
        with self._lock:
            if self._tried:
                return self.problem
            self._tried = True
            config = self.config
            url = config.ready_url or ready_url
            if not url:
                self.problem = (
                    f"bot `{config.command}`: no bot_ready_url, and no bot_start_url to find "
                    "its /status from (set one of them)"
                )
                return self.problem
            try:
                self._process = BotProcess(
                    command_argv(config.command, environ()),
                    ready_url=url,
                    log_path=config.log_path,
                    start_timeout=config.start_timeout,
                    cwd=Path(config.cwd),
                    on_spawn=self._on_spawn,
                )
                self._process.start()
            except (BotError, ConfigError) as exc:
                self.problem = self._redact(str(exc))
            except ValueError as exc:  # shlex: an unbalanced quote
                self.problem = f"bot command `{config.command}` cannot be parsed: {exc}"
            return self.problem

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

"""Builds the session and its runtime from values: the one place that turns settings into
the client policy, the watch schedule and the process's firing role (imported only when a
session has a Cekura case).

The hook object of ``plugin.py`` (single process, xdist controller or xdist worker: chosen
once, in ``pytest_configure``) calls the builder of its own role here (``single``,
``controller``, ``worker``) and hands the result to ``_session.build_session``. Nothing
here knows the plugin or holds ``pytest.Config``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .._api.client import HttpPolicy
from .._api.recording import Recorder, Replay
from .._config.options import Settings
from .._fire.bot_rooms import BotStartRooms
from .._owner import Owner, remove_stale
from .._redact import Redactor
from .._watch.watcher import WatchSettings
from . import role
from .shared import SharedDir

_REMOTE = (
    "not fired: pytest-cekura-pipecat needs xdist workers on the controller's machine "
    "(-n N), not remote ones (--tx ssh/socket)"
)

# This process's firing role, and why the session fires nothing (None: it may fire).
Firing = tuple[role.Role, str | None]


def runtime(
    settings: Settings,
    api_key: str | None,
    redactor: Redactor,
    notice: Callable[[str], None] | None,
    recording: Recorder | Replay | None = None,
) -> role.Runtime:
    """What every role needs to talk to Cekura (its client factory). ``recording``: what
    carries its requests instead of the network (--cekura-record, --cekura-replay)."""
    return role.Runtime(
        api_url=settings.api_url,
        api_key=api_key,
        policy=HttpPolicy(
            connect_timeout=min(settings.http_timeout, 10.0),
            read_timeout=settings.http_timeout,
            retry_window=settings.retry_window,
        ),
        watch=WatchSettings(
            poll_interval=settings.poll_interval,
            max_interval=settings.poll_max_interval,
            retry_window=settings.retry_window,
            breaker_after=settings.breaker_after,
            max_reads_per_minute=settings.max_reads_per_minute,
        ),
        redactor=redactor,
        notice=notice,
        api_url_source=settings.api_url_source,
        recording=recording,
    )


def single(runtime: role.Runtime, owner: Owner) -> Firing:
    """One process: it fires, watches and waits."""
    remove_stale(owner)  # what killed sessions left in the temporary directory
    return role.Local(runtime), None


def controller(runtime: role.Runtime, shared: Path | None, shared_problem: str | None) -> Firing:
    """The xdist controller: the session's one watcher, fed from the shared directory."""
    if shared is None:
        return _refused(_not_fired(shared_problem))
    return role.Controller(runtime, shared), None


def worker(runtime: role.Runtime, shared: str | None, shared_problem: str | None) -> Firing:
    """An xdist worker, given the controller's shared directory (or why there is none)."""
    if shared_problem:
        return _refused(_not_fired(shared_problem))
    if not shared or not Path(shared).is_dir():
        # A worker on another host (--tx ssh=/socket=) cannot see the controller's
        # directory; firing there would fire once per host.
        return _refused(_REMOTE)
    return role.Worker(runtime, Path(shared)), None


def worker_notice(shared: str | None) -> Callable[[str], None] | None:
    """A worker's output is not shown: its notice goes to the controller, which prints it."""
    return SharedDir(Path(shared)).say if shared else None


def _refused(reason: str) -> Firing:
    return role.Idle(reason), reason


def _not_fired(problem: str | None) -> str:
    return f"not fired: {(problem or 'no shared directory').removeprefix('cekura: ')}"


def room_provider(settings: Settings, redactor: Redactor, cloud_key: str | None) -> BotStartRooms:
    """The bot start URL provider (with the Pipecat Cloud preset when asked)."""
    timeout = settings.http_timeout
    if not settings.pipecat_cloud_agent:
        return BotStartRooms(redactor, timeout)
    if not cloud_key:
        raise pytest.UsageError(
            "--cekura-pipecat-cloud-agent: PIPECAT_CLOUD_API_KEY is not set (export your "
            "Pipecat Cloud key)"
        )
    return BotStartRooms.pipecat_cloud(
        settings.pipecat_cloud_agent, cloud_key, settings.pipecat_cloud_url, redactor, timeout
    )

"""Builds the session and its runtime: the one place that turns settings into the process's
role, client policy and watch schedule (imported only when a session has a Cekura case)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .._api.client import HttpPolicy
from .._notice import TerminalNotice
from .._session import CekuraSession
from .._watch.watcher import WatchSettings
from .role import Controller, Local, Role, Runtime, Worker
from .shared import SharedDir

if TYPE_CHECKING:
    from ..plugin import CekuraPlugin


_REMOTE = (
    "not fired: pytest-cekura-pipecat needs xdist workers on the controller's machine "
    "(-n N), not remote ones (--tx ssh/socket)"
)


def build_session(plugin: CekuraPlugin) -> CekuraSession:
    settings = plugin.settings
    runtime = Runtime(
        api_url=settings.api_url,
        api_key=plugin.api_key,
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
        redactor=plugin.redactor,
        notice=_worker_notice(plugin) if plugin.role == "worker" else _notice(plugin),
        api_url_source=settings.api_url_source,
    )
    session = CekuraSession(plugin.config, settings, plugin.redactor, runtime)
    session.role = _role(plugin, runtime, session)
    _room_provider(plugin, session)
    return session


def _notice(plugin: CekuraPlugin) -> TerminalNotice:
    def erase_progress() -> None:
        if plugin.progress is not None:
            plugin.progress.clear()

    return TerminalNotice(plugin.config, erase_progress)


def _worker_notice(plugin: CekuraPlugin) -> Callable[[str], None] | None:
    """A worker's output is not shown: its notice goes to the controller, which prints it."""
    workerinput: dict[str, Any] = getattr(plugin.config, "workerinput", {})
    path = workerinput.get("cekura_shared_dir")
    return SharedDir(Path(str(path))).say if path else None


def _role(plugin: CekuraPlugin, runtime: Runtime, session: CekuraSession) -> Role | None:
    if plugin.role == "controller":
        shared = plugin.shared()
        if shared is None:
            session.state.problem = _not_fired(plugin.shared_problem)
            return None
        return Controller(runtime, shared)
    if plugin.role == "local":
        from .._owner import remove_stale

        remove_stale(plugin.owner)  # what killed sessions left in the temporary directory
        return Local(runtime)
    workerinput: dict[str, Any] = getattr(plugin.config, "workerinput", {})
    if workerinput.get("cekura_shared_problem"):
        session.state.problem = _not_fired(str(workerinput["cekura_shared_problem"]))
        return None
    shared = Path(str(workerinput.get("cekura_shared_dir", "")))
    if not workerinput.get("cekura_shared_dir") or not shared.is_dir():
        # A worker on another host (--tx ssh=/socket=) cannot see the controller's
        # directory; firing there would fire once per host.
        session.state.problem = _REMOTE
        return None
    return Worker(runtime, shared)


def _not_fired(problem: str | None) -> str:
    return f"not fired: {(problem or 'no shared directory').removeprefix('cekura: ')}"


def _room_provider(plugin: CekuraPlugin, session: CekuraSession) -> None:
    """Register the bot start URL provider (with the Pipecat Cloud preset when asked)."""
    from .._fire.bot_rooms import PLUGIN_NAME, BotStartRooms

    settings = plugin.settings
    timeout = settings.http_timeout
    if not settings.pipecat_cloud_agent:
        rooms = BotStartRooms(session.redactor, timeout)
    else:
        key = os.environ.get("PIPECAT_CLOUD_API_KEY")
        if not key:
            raise pytest.UsageError(
                "--cekura-pipecat-cloud-agent: PIPECAT_CLOUD_API_KEY is not set (export your "
                "Pipecat Cloud key)"
            )
        rooms = BotStartRooms.pipecat_cloud(
            settings.pipecat_cloud_agent,
            key,
            settings.pipecat_cloud_url,
            session.redactor,
            timeout,
        )
    if plugin.config.pluginmanager.get_plugin(PLUGIN_NAME) is None:
        plugin.config.pluginmanager.register(rooms, PLUGIN_NAME)

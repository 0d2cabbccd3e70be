"""The bot start URL as a room provider: one bot session, with its own Daily room, per run.

A case's ``bot_start_url`` (from the case, the top of ``cekura.toml``, or the
``cekura_bot_start_url`` ini key / flag) is POSTed once per run of the case; Pipecat Cloud
(``--cekura-pipecat-cloud-agent``) is a preset of the same provider for cases that name no
start URL. Implemented as an ordinary ``pytest_cekura_room`` hook (``trylast``, so a
conftest's own provider wins), called in the process that fires.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from .._config.case import Case, Room, environ, expand, expand_json
from .._config.schema import start_url_problem
from .._errors import CekuraError
from .._redact import Redactor
from .rooms import StartUrlRooms, pipecat_cloud

PLUGIN_NAME = "cekura-bot-rooms"


class BotStartRooms:
    def __init__(
        self, redactor: Redactor, timeout: float = 30.0, preset: StartUrlRooms | None = None
    ) -> None:
        self._redact = redactor
        self._timeout = timeout
        self.preset = preset
        self._providers: dict[tuple[str, str, str], StartUrlRooms] = {}
        # The hook is called once per run without its index: count the calls of each case.
        self._runs: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def pipecat_cloud(
        cls, agent: str, api_key: str, base_url: str, redactor: Redactor, timeout: float = 30.0
    ) -> BotStartRooms:
        """The Pipecat Cloud preset: cases without a start URL start a session of ``agent``."""
        preset = pipecat_cloud(agent, api_key, base_url, redactor=redactor, timeout=timeout)
        return cls(redactor, timeout, preset)

    @property
    def serves_every_case(self) -> bool:
        """Whether a case without a room or start URL still gets one (the preset)."""
        return self.preset is not None

    def provider(self, case: Case) -> StartUrlRooms | None:
        """The start URL provider of ``case`` (None: this hook has no room for it)."""
        if case.bot_start_url is None:
            return self.preset
        env, where = environ(), f"case {case.name}"
        url = expand(case.bot_start_url, env, where)
        self._redact.add_url(url)
        problem = start_url_problem(url)
        if problem:
            raise CekuraError(f"{where}: bot_start_url {problem}")
        body = expand_json(dict(case.bot_start_body or {}), env, where)
        headers = dict(case.bot_start_headers or {})
        key = (url, json.dumps(sorted(headers.items())), json.dumps(body, sort_keys=True))
        with self._lock:
            rooms = self._providers.get(key)
            if rooms is None:
                rooms = StartUrlRooms(
                    url,
                    headers=headers,
                    body=body,
                    redactor=self._redact,
                    timeout=self._timeout,
                    env=env,
                    label="bot start URL",
                )
                self._providers[key] = rooms
        return rooms

    @pytest.hookimpl(trylast=True)
    def pytest_cekura_room(self, case: Case) -> Room | None:
        rooms = self.provider(case)
        if rooms is None:
            return None
        with self._lock:
            run_index = self._runs[case.name]
            self._runs[case.name] += 1
        return rooms.start(case, run_index)

"""A ready-made room provider: one Pipecat Cloud session (with a Daily room) per run.

Opt-in with ``--cekura-pipecat-cloud-agent NAME``; the key comes from
``PIPECAT_CLOUD_API_KEY``. Implemented as an ordinary ``pytest_cekura_room`` hook
(``trylast``, so a conftest's own provider wins) over :func:`._rooms.pipecat_cloud`.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from ._case import Case, Room
from ._redact import Redactor
from ._rooms import DEFAULT_URL, pipecat_cloud

__all__ = ["DEFAULT_URL", "PipecatCloudRooms"]


class PipecatCloudRooms:
    def __init__(
        self, agent: str, api_key: str, base_url: str, redactor: Redactor, timeout: float = 30.0
    ) -> None:
        self.agent = agent
        self._rooms = pipecat_cloud(agent, api_key, base_url, redactor=redactor, timeout=timeout)
        # The hook is called once per run without its index: count the calls of each case.
        self._runs: Counter[str] = Counter()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._rooms.close()

    @pytest.hookimpl(trylast=True)
    def pytest_cekura_room(self, case: Case) -> Room:
        with self._lock:
            run_index = self._runs[case.name]
            self._runs[case.name] += 1
        return self._rooms.start(case, run_index)

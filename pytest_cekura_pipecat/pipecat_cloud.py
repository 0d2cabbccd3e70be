"""A ready-made room provider: one Pipecat Cloud session (with a Daily room) per run.

Opt-in with ``--cekura-pipecat-cloud-agent NAME``; the key comes from
``PIPECAT_CLOUD_API_KEY``. Implemented as an ordinary ``pytest_cekura_room`` hook
(``trylast``, so a conftest's own provider wins).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .case import Case, Room
from .errors import CekuraError
from .redact import Redactor

DEFAULT_URL = "https://api.pipecat.daily.co"


class PipecatCloudRooms:
    def __init__(
        self, agent: str, api_key: str, base_url: str, redactor: Redactor, timeout: float = 30.0
    ) -> None:
        redactor.add(api_key)
        self.agent = agent
        self._redact = redactor
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    @pytest.hookimpl(trylast=True)
    def pytest_cekura_room(self, case: Case) -> Room:
        # Never retried: a second start would start (and bill) a second bot session.
        body: dict[str, Any] = {"createDailyRoom": True, "body": {"cekura_case": case.name}}
        try:
            response = self._http.post(f"/v1/public/{self.agent}/start", json=body)
        except httpx.HTTPError as exc:
            raise CekuraError(
                f"Pipecat Cloud start for agent {self.agent} failed: {type(exc).__name__}"
            ) from None
        if response.status_code in (401, 403):
            raise CekuraError(
                f"Pipecat Cloud rejected the key (HTTP {response.status_code}): check PIPECAT_CLOUD_API_KEY"
            )
        if not response.is_success:
            raise CekuraError(
                f"Pipecat Cloud could not start agent {self.agent} (HTTP {response.status_code}): "
                + self._redact(response.text[:200])
            )
        try:
            data = response.json()
            room, token = data["dailyRoom"], data.get("dailyToken")
        except (ValueError, KeyError, TypeError):
            raise CekuraError("Pipecat Cloud's start answer has no dailyRoom") from None
        self._redact.add(token)
        return Room(str(room), str(token) if token else None)

"""Rooms from a Pipecat start URL: one bot session, with its own Daily room, per run.

Pipecat's development runner (``python bot.py -t daily``, ``POST /start``) and Pipecat Cloud
(``POST /v1/public/{agent}/start``) take the same body and answer the same shape:
``{"createDailyRoom": true, "body": {...}}`` → ``{"dailyRoom", "dailyToken", "sessionId"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from .._config.case import Case, Room, environ, expand, expand_json
from .._errors import CekuraError
from .._redact import Redactor
from .._text import loads

DEFAULT_URL = "https://api.pipecat.daily.co"

# Only a refused connection proves the server never saw the request; it is retried this many
# times (a runner that is restarting), within the request's deadline.
_REFUSED_RETRIES = 3
_REFUSED_BACKOFF = 0.1
_SNIPPET = 200
_ROOM_KEYS = ("dailyRoom", "room_url", "roomUrl")
_TOKEN_KEYS = ("dailyToken", "token")
_TEMPLATE = re.compile(r"\$\{[^}]*\}")


class StartUrlRooms:
    """Starts one bot session per call of :meth:`start` by POSTing to ``start_url``.

    ``headers`` values may use ``${VAR}`` (expanded here, from ``env`` or ``os.environ``;
    the expanded values are secrets). ``body`` is deep-merged over the default start body
    (its values win), e.g. ``{"dailyRoomProperties": {...}, "body": {"locale": "en"}}``.
    Each request has a total deadline of ``timeout`` seconds. Thread-safe; each call runs
    its own event loop, so call it from threads without a running loop (the room hook's).
    """

    def __init__(
        self,
        start_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        redactor: Redactor,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        label: str = "Pipecat start URL",
        auth_hint: str = "check the start URL's headers",
    ) -> None:
        self._env = environ() if env is None else env
        self._redact = redactor
        expanded: dict[str, str] = {}
        for name, value in (headers or {}).items():
            where = f"start URL header {name}"
            for template in _TEMPLATE.findall(value):
                redactor.add(expand(template, self._env, where))
            got = expand(value, self._env, where)
            if got != value:
                redactor.add(got)
            expanded[name] = got
        self._headers = expanded
        self._body = dict(body or {})
        self._timeout = timeout
        self.start_url = start_url
        # Named in errors: never the query string or user info, which may hold credentials.
        parts = urlsplit(start_url)
        self._where = (
            f"{label} {parts.scheme}://{parts.hostname or ''}{_port(parts.port)}{parts.path}"
        )
        self._auth_hint = auth_hint

    def close(self) -> None:
        """Nothing is held between requests; kept so callers can treat providers alike."""

    def request_body(self, case: Case, run_index: int) -> dict[str, Any]:
        """The JSON body POSTed for run ``run_index`` of ``case``."""
        message = expand_json(case.publish_data_message, self._env, f"case {case.name}")
        default = {
            "createDailyRoom": True,
            "body": {
                "cekura_case": case.name,
                "cekura_scenario": case.scenario,
                "cekura_run": run_index,
                "publish_data_message": message,
            },
        }
        return _deep_merge(default, self._body)

    def start(self, case: Case, run_index: int) -> Room:
        """Start one bot session and return its Daily room and the tester's token.

        Never retried once the request may have reached the server (a second start would
        start, and bill, a second session); only a refused connection is tried again.
        """
        body = self.request_body(case, run_index)
        try:
            status, text = asyncio.run(self._post(body))
        except TimeoutError:
            raise CekuraError(
                f"{self._where}: no complete answer within {self._timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise CekuraError(f"{self._where}: request failed ({_reason(exc)})") from None
        return self._room(status, text)

    async def _post(self, body: dict[str, Any]) -> tuple[int, str]:
        async with asyncio.timeout(self._timeout):
            async with httpx.AsyncClient(headers=self._headers, timeout=self._timeout) as http:
                for attempt in range(_REFUSED_RETRIES + 1):
                    try:
                        response = await http.post(self.start_url, json=body)
                    except httpx.ConnectError as exc:
                        if attempt == _REFUSED_RETRIES or not _refused(exc):
                            raise
                        await asyncio.sleep(_REFUSED_BACKOFF * 2**attempt)
                        continue
                    return response.status_code, response.text
        raise AssertionError("unreachable")  # pragma: no cover

    def _room(self, status: int, text: str) -> Room:
        data: Any = None
        with contextlib.suppress(ValueError):
            data = loads(text)  # the boundary: lone surrogates become U+FFFD
        fields = data if isinstance(data, dict) else {}
        # A token in any answer, good or bad, is a secret before anything prints it.
        token = _first(fields, _TOKEN_KEYS)
        self._redact.add(token)
        url = _first(fields, _ROOM_KEYS)
        if url:
            for key, value in parse_qsl(urlsplit(url).query):
                if key == "t":
                    self._redact.add(value)
        if not 200 <= status < 300:
            hint = f" ({self._auth_hint})" if status in (401, 403) else ""
            raise CekuraError(f"{self._where}: HTTP {status}{hint}: {self._snippet(text)}")
        if not url:
            raise CekuraError(
                f"{self._where}: HTTP {status} without a Daily room (dailyRoom): "
                + self._snippet(text)
            )
        return Room(url, token)

    def _snippet(self, text: str) -> str:
        one_line = " ".join(self._redact(text).split())
        return one_line[:_SNIPPET] + ("..." if len(one_line) > _SNIPPET else "") or "(empty body)"


def pipecat_cloud(
    agent: str,
    api_key: str,
    base_url: str = DEFAULT_URL,
    *,
    redactor: Redactor,
    timeout: float = 30.0,
    body: Mapping[str, Any] | None = None,
) -> StartUrlRooms:
    """Rooms from Pipecat Cloud: one session of ``agent`` per run."""
    redactor.add(api_key)
    return StartUrlRooms(
        f"{base_url.rstrip('/')}/v1/public/{agent}/start",
        headers={"Authorization": f"Bearer {api_key}"},
        body=body,
        redactor=redactor,
        timeout=timeout,
        env={},  # the key is a value, not a template
        label=f"Pipecat Cloud agent {agent} at",
        auth_hint="check PIPECAT_CLOUD_API_KEY",
    )


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _first(fields: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if _refused(exc) else "could not connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


def _port(port: int | None) -> str:
    return f":{port}" if port is not None else ""

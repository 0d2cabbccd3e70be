"""Record every answer Cekura gives a session, and replay a session from those answers.

``--cekura-record=DIR``: each process's client gets a ``RecordingTransport`` over the real
one; every exchange becomes one file, ``<process>-<sequence>.json`` (``main``, or the xdist
worker's id), written whole or not at all: the method, path, query and request body as
matched (normalised, masked), the status, the headers the client reads and the answer's
body, with every secret the session knows masked. The API key is a request header and
request headers are never written.

``--cekura-replay=DIR``: each process's client gets a ``ReplayTransport`` that answers from
those files and opens no connection. A request is matched by method, path and its
normalised query and body; repeated requests (polls) get their recorded answers in order,
and one beyond them the last. A request the recording has no answer for gets HTTP 410 and
is named in the session's notes.

``session.json`` holds the recorded suite (each case's scenario, agent and repeat, written
when the session fires) and each case's outcome (written at the end): a replay refuses a
suite that differs, and says which cases flipped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from .._errors import CekuraError
from .._files import SharedDirError, write_atomic
from .._redact import Redactor
from .._text import loads
from .client import MAX_BODY

FORMAT = 1
SESSION_FILE = "session.json"
MISSING = 410  # the status of a request the recording has no answer for
_KEPT_HEADERS = ("content-type", "retry-after", "x-cekura-simulator")
# Entry fields that differ from session to session (a room from a bot start URL, its token)
# and change nothing Cekura answers: left out of the match.
_VOLATILE = frozenset({"pipecat_room_url", "pipecat_token"})


class RecordingError(CekuraError):
    """A recording that cannot be written or read (one line, naming the file)."""


class Exchange(BaseModel):
    """One request and Cekura's answer, as one file of a recording."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    format: int
    process: str
    sequence: int
    method: str
    path: str
    query: str
    request: str  # the request body as matched ("" without one)
    status: int
    headers: dict[str, str]
    body: Any = None  # the answer as JSON, or
    text: str | None = None  # the answer as text when it was not JSON

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.method, self.path, self.query, self.request

    def content(self) -> bytes:
        if self.text is not None:
            return self.text.encode()
        return json.dumps(self.body).encode()


class RecordedCase(BaseModel):
    """A case as the recorded session fired it: what its requests depend on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodeid: str
    scenario: int
    agent: int | None = None
    repeat: int = 1

    def differs(self, other: RecordedCase) -> str:
        """What differs from ``other`` ("" when nothing does)."""
        for field in ("scenario", "agent", "repeat"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                return f"{field} {mine} here, {theirs} in the recording"
        return ""


class RecordedSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    cases: list[RecordedCase] = []
    outcomes: dict[str, str] = {}


def _query(url: httpx.URL) -> str:
    return urlencode(sorted(parse_qsl(url.query.decode(), keep_blank_values=True)))


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in _VOLATILE else _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``): a client given a transport of its own reads none."""
    parts = urlsplit(base_url)
    if not parts.hostname or proxy_bypass(parts.hostname):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


def request_body(content: bytes, redactor: Redactor) -> str:
    """A request body as it is matched: canonical JSON without the per-session room fields,
    every known secret masked."""
    if not content:
        return ""
    try:
        text = json.dumps(_normalised(loads(content)), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        text = content.decode("utf-8", "replace")
    return redactor(text)


class Recorder:
    """Writes this process's exchanges into a recording directory."""

    def __init__(self, directory: Path, redactor: Redactor, process: str = "main") -> None:
        self.directory = directory
        self.process = process
        self._redact = redactor
        self._lock = threading.Lock()
        self._sequence = 0
        self.problems: list[str] = []
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(
                f"--cekura-record: cannot create {directory}: {exc.strerror or exc}"
            ) from None

    def transport(
        self, base_url: str = "", inner: httpx.AsyncBaseTransport | None = None
    ) -> RecordingTransport:
        """A transport over the network to ``base_url`` (through the proxy the environment
        names for it, as the client's own would be), recording every answer."""
        if inner is None:
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
            inner = httpx.AsyncHTTPTransport(limits=limits, proxy=proxy_for(base_url))
        return RecordingTransport(self, inner)

    def keep(self, request: httpx.Request, response: httpx.Response) -> None:
        """One exchange, masked, as its own file (a failure to write is a note, once)."""
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        headers = {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers}
        body: Any = None
        text: str | None = None
        try:
            body = self._redact.tree(loads(response.content))
        except (ValueError, RecursionError):
            text = self._redact(response.content.decode("utf-8", "replace"))
        exchange = Exchange(
            format=FORMAT,
            process=self.process,
            sequence=sequence,
            method=request.method,
            path=request.url.path,
            query=self._redact(_query(request.url)),
            request=request_body(request.content, self._redact),
            status=response.status_code,
            headers=headers,
            body=body,
            text=text,
        )
        path = self.directory / f"{self.process}-{sequence:06d}.json"
        try:
            write_atomic(path, exchange.model_dump_json(indent=1).encode())
        except SharedDirError as exc:
            problem = f"cekura: --cekura-record: {exc}: the recording is incomplete"
            if problem not in self.problems:
                self.problems.append(problem)


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real transport; each answer read whole, kept, and handed on unchanged."""

    def __init__(self, recorder: Recorder, inner: httpx.AsyncBaseTransport) -> None:
        self._recorder = recorder
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self._inner.handle_async_request(request)
        try:
            if response.is_stream_consumed:  # answered whole (a transport of tests)
                raw = response.content
            else:
                raw = await _whole(response)
        finally:
            await response.aclose()
        decoded = httpx.Response(response.status_code, headers=response.headers, content=raw)
        decoded.read()
        self._recorder.keep(request, decoded)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _whole(response: httpx.Response) -> bytes:
    """The raw body, within the client's size cap (a larger one fails as a read error)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > MAX_BODY:
            raise httpx.ReadError(f"the answer is larger than {MAX_BODY // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


class Replay:
    """Every recorded exchange of a directory, answered in recorded order (one per
    process: its clients share the order)."""

    def __init__(self, exchanges: Iterable[Exchange], redactor: Redactor) -> None:
        self._answers: dict[tuple[str, str, str, str], list[Exchange]] = {}
        for exchange in sorted(exchanges, key=lambda e: (e.process, e.sequence)):
            self._answers.setdefault(exchange.key, []).append(exchange)
        self._asked: dict[tuple[str, str, str, str], int] = {}
        self._redact = redactor
        self._lock = threading.Lock()
        self.misses: list[str] = []

    @classmethod
    def load(cls, directory: Path, redactor: Redactor) -> Replay:
        """The recording in ``directory``; a ``RecordingError`` names what is wrong."""
        if not directory.is_dir():
            raise RecordingError(f"--cekura-replay: {directory} is not a directory")
        exchanges = [_read(path) for path in sorted(directory.glob("*-*.json"))]
        if not exchanges:
            raise RecordingError(f"--cekura-replay: {directory} holds no recorded answer")
        return cls(exchanges, redactor)

    def transport(self, base_url: str = "") -> ReplayTransport:
        return ReplayTransport(self)

    def answer(self, request: httpx.Request) -> httpx.Response:
        key = (
            request.method,
            request.url.path,
            self._redact(_query(request.url)),
            request_body(request.content, self._redact),
        )
        with self._lock:
            answers = self._answers.get(key)
            if not answers:
                what = f"{request.method} {request.url.path}" + (f"?{key[2]}" if key[2] else "")
                if what not in self.misses:
                    self.misses.append(what)
                detail = json.dumps({"detail": f"not in the recording: {what}"}).encode()
                return _streamed(MISSING, {"content-type": "application/json"}, detail)
            asked = self._asked.get(key, 0)
            self._asked[key] = asked + 1
        exchange = answers[min(asked, len(answers) - 1)]
        return _streamed(exchange.status, exchange.headers, exchange.content())

    def notes(self) -> list[str]:
        if not self.misses:
            return []
        return [
            f"cekura: --cekura-replay: {len(self.misses)} request(s) had no recorded answer "
            f"(answered HTTP {MISSING}), the first {self.misses[0]}: replay with the firing "
            "options of the recorded session"
        ]


def _streamed(status: int, headers: Mapping[str, str], content: bytes) -> httpx.Response:
    """An answer whose body streams, as from a socket (the client reads it raw)."""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))


class ReplayTransport(httpx.AsyncBaseTransport):
    """Answers from a recording; never opens a connection."""

    def __init__(self, replay: Replay) -> None:
        self._replay = replay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self._replay.answer(request)


def _read(path: Path) -> Exchange:
    try:
        data = loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise RecordingError(f"--cekura-replay: cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise RecordingError(
            f"--cekura-replay: {path}: format {found!r}, this version reads format {FORMAT}: "
            "record the session again"
        )
    try:
        return Exchange.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise RecordingError(f"--cekura-replay: {path}: {field}: {first['msg']}") from None


# -- the recorded session: its suite and its outcomes ------------------------------------


def clear(directory: Path) -> None:
    """Forget an earlier recording in ``directory`` (its answers and its session), before a
    new one is made there: answers of two sessions must never mix. Other files stay."""
    if not directory.is_dir():
        return
    for path in [*directory.glob("*-*.json"), directory / SESSION_FILE]:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise RecordingError(
                f"--cekura-record: cannot remove the earlier recording's {path}: "
                f"{exc.strerror or exc}"
            ) from None


def read_session(directory: Path) -> RecordedSession | None:
    """The recorded session (None when there is no ``session.json`` yet)."""
    path = directory / SESSION_FILE
    if not path.exists():
        return None
    try:
        data = loads(path.read_bytes())
        if isinstance(data, dict) and data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this version reads {FORMAT}")
        return RecordedSession.model_validate(data)
    except (OSError, ValueError, RecursionError) as exc:
        raise RecordingError(f"cannot read {path}: {exc}".splitlines()[0]) from None


def _write_session(directory: Path, session: RecordedSession) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / SESSION_FILE, session.model_dump_json(indent=1).encode())
    except (OSError, SharedDirError) as exc:
        raise RecordingError(f"--cekura-record: {exc}") from None


def record_suite(directory: Path, cases: Sequence[RecordedCase]) -> None:
    """The fired suite, when the session fires (every xdist worker writes the same)."""
    known = _quiet_read(directory)
    outcomes = known.outcomes if known is not None else {}
    _write_session(
        directory, RecordedSession(cases=sorted(cases, key=lambda c: c.nodeid), outcomes=outcomes)
    )


def record_outcomes(directory: Path, outcomes: Mapping[str, str]) -> None:
    """Each case's outcome, at the end of the recorded session."""
    known = _quiet_read(directory) or RecordedSession()
    _write_session(directory, known.model_copy(update={"outcomes": dict(outcomes)}))


def _quiet_read(directory: Path) -> RecordedSession | None:
    try:
        return read_session(directory)
    except RecordingError:
        return None  # a broken one is replaced


def suite_problem(recorded: RecordedSession | None, cases: Sequence[RecordedCase]) -> str | None:
    """Why this suite cannot be replayed from the recording (one line), or None."""
    if recorded is None:
        return f"--cekura-replay: the recording has no {SESSION_FILE}: record the session again"
    theirs = {case.nodeid: case for case in recorded.cases}
    mine = {case.nodeid: case for case in cases}
    for nodeid in sorted(theirs.keys() | mine.keys()):
        if nodeid not in theirs:
            why = "is not in the recording"
        elif nodeid not in mine:
            why = "was recorded but is not selected here"
        else:
            why = mine[nodeid].differs(theirs[nodeid])
        if why:
            return (
                f"--cekura-replay: this suite differs from the recording: {nodeid} {why} "
                "(replay the suite that was recorded)"
            )
    return None


def flips(recorded: RecordedSession | None, outcomes: Mapping[str, str]) -> list[str]:
    """The cases whose outcome differs from the recorded session's, one line each."""
    if recorded is None:
        return []
    flipped = [
        f"  {nodeid}: {before} -> {outcomes[nodeid]}"
        for nodeid, before in sorted(recorded.outcomes.items())
        if nodeid in outcomes and outcomes[nodeid] != before
    ]
    if not flipped:
        return ["cekura: replay: no case flipped against the recorded session"]
    return [
        f"cekura: replay: {len(flipped)} case(s) flipped against the recorded session:",
        *flipped,
    ]

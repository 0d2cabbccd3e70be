"""Request handling, independent of sockets: routing, key checks, faults, recording.

The HTTP layer hands each request to ``App.handle`` and writes back the ``Reply``; keeping
the two apart keeps the protocol rules here readable and the socket code small.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._model import Faults, RecordedRequest, Variants
from ._runs import RunStore, end_runs, render_created, render_full_run, render_result
from ._validation import StartRequest, validate_start, validate_start_v2

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
DEFAULT_AGENT = 1
_NON_JSON_BODY = b"<html>gateway</html>"
_HTML_503 = b"<html><body><h1>503 Service Unavailable</h1>upstream overloaded</body></html>"

_START = "start"
_START_V2 = "start_v2"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/test_framework/v1/scenarios/run_scenarios_pipecat/"), _START),
    # The official CLI's `cekura run start --mode pipecat`; it sends no trailing slash.
    (
        "POST",
        re.compile(r"/test_framework/v1/scenarios-external/run_scenarios_pipecat_v2/?"),
        _START_V2,
    ),
    ("GET", re.compile(r"/test_framework/v[12]/results/(\d+)/"), "result"),
    ("GET", re.compile(r"/test_framework/v1/runs/bulk/"), "bulk"),
    ("POST", re.compile(r"/test_framework/v1/results/(\d+)/end_calls/"), "end_calls"),
    ("POST", re.compile(r"/test_framework/v1/runs-external/(\d+)/end_call/"), "end_call"),
    ("GET", re.compile(r"/test_framework/v1/aiagents/(\d+)/"), "agent"),
    ("GET", re.compile(r"/recordings/(\d+)\.wav"), "recording"),
)
_PIPECAT = re.compile(r"/v1/public/([^/]+)/start/?")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # close the socket without answering


def json_reply(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(data).encode(), JSON_TYPE, headers)


def _not_found() -> Reply:
    return json_reply(404, {"detail": "Not found."})


class _BadJson:
    """Marker for a body that is not valid JSON (None already means "no body")."""


_BAD_JSON = _BadJson()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any  # parsed body, None when empty, _BAD_JSON when unparsable
    arg: int  # the id captured from the path, 0 when the route has none


def _silent_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


class App:
    """All simulator state, guarded by one lock; ``handle`` may be called from many threads."""

    def __init__(
        self,
        store: RunStore,
        *,
        variants: Variants,
        api_key: str,
        pipecat_cloud_key: str,
        clock: Callable[[], float],
    ) -> None:
        self.lock = threading.Lock()
        self.faults = Faults()
        self.api_key = api_key
        self.base_url = ""
        self._store = store
        self._variants = variants
        self._pipecat_cloud_key = pipecat_cloud_key
        self._clock = clock
        self._records: list[tuple[int, RecordedRequest]] = []
        self._seq = 0
        self._gets = 0
        self._entries_fired = 0
        self._sessions = 0
        self._wav = _silent_wav()
        self._handlers: dict[str, Callable[[_Request], Reply]] = {
            _START: self._start,
            _START_V2: self._start_v2,
            "result": self._result,
            "bulk": self._bulk,
            "end_calls": self._end_calls,
            "end_call": self._end_call,
            "agent": self._agent,
            "recording": self._recording,
        }

    # -- accessors used by Simulator -------------------------------------------------

    def records(self) -> list[RecordedRequest]:
        with self.lock:
            ordered = sorted(self._records, key=lambda item: item[0])
        return [record for _, record in ordered]

    def entries_fired(self) -> int:
        with self.lock:
            return self._entries_fired

    def runs(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self._clock()
            return [
                render_full_run(run, now, self._variants, self.base_url)
                for run in self._store.all_runs()
            ]

    def reset(self) -> None:
        with self.lock:
            self._records.clear()
            self._store.clear()
            self.faults.clear()
            self._gets = 0
            self._entries_fired = 0

    # -- request handling ----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request and record it (in arrival order, with the status answered)."""
        arrived = time.monotonic()
        with self.lock:
            seq = self._seq
            self._seq += 1
        split = urlsplit(target)
        query = parse_qs(split.query, keep_blank_values=True)
        parsed = _parse_body(body)
        try:
            reply = self._dispatch(method, split.path, query, headers, parsed)
        except Exception as exc:  # a simulator bug must not kill the connection silently
            reply = json_reply(500, {"detail": f"simulator error: {type(exc).__name__}: {exc}"})
        if isinstance(parsed, _BadJson):
            recorded_body: Any = body.decode("utf-8", errors="replace")
        else:
            recorded_body = parsed
        record = RecordedRequest(
            method=method,
            path=split.path,
            query=query,
            headers=headers,
            body=recorded_body,
            status=0 if reply.drop else reply.status,
            at=arrived,
        )
        with self.lock:
            self._records.append((seq, record))
        return reply

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        parsed: Any,
    ) -> Reply:
        pipecat = _PIPECAT.fullmatch(path)
        if pipecat:
            return self._pipecat_start(method, headers, parsed)
        with self.lock:
            latency = self.faults.latency
        if latency > 0:
            time.sleep(latency)
        if method == "GET":
            gateway = self._gateway_fault()
            if gateway is not None:
                return gateway
        for route_method, pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            # Recordings stand for pre-signed storage links: no API key, like the real ones.
            if name != "recording" and headers.get("x-cekura-api-key") != self.api_key:
                return json_reply(401, {"detail": "Invalid API key."})
            if method != route_method:
                return json_reply(405, {"detail": f'Method "{method}" not allowed.'})
            arg = int(match.group(1)) if match.groups() else 0
            return self._handlers[name](_Request(method, path, query, headers, parsed, arg))
        return _not_found()

    def _gateway_fault(self) -> Reply | None:
        with self.lock:
            self._gets += 1
            count, faults = self._gets, self.faults
            if faults.get_5xx_every > 0 and count % faults.get_5xx_every == 0:
                return Reply(503, _HTML_503, HTML_TYPE)
            if faults.get_non_json_every > 0 and count % faults.get_non_json_every == 0:
                return Reply(200, _NON_JSON_BODY, HTML_TYPE)
        return None

    def _start(self, request: _Request) -> Reply:
        return self._create(request, validate_start)

    def _start_v2(self, request: _Request) -> Reply:
        """Like the v1 start (faults, result shape), but scenario ids and a frequency."""
        return self._create(request, validate_start_v2)

    def _create(
        self,
        request: _Request,
        validate: Callable[[Any, Callable[[int], bool]], StartRequest | dict[str, list[str]]],
    ) -> Reply:
        faults = self.faults
        with self.lock:
            # Throttling comes first, as in DRF: a throttled request never reaches the view.
            if faults.post_429 > 0:
                faults.post_429 -= 1
                return json_reply(
                    429,
                    {"detail": "Request was throttled."},
                    (("Retry-After", faults.retry_after),),
                )
        body = {} if request.json is None else request.json
        if isinstance(body, _BadJson):
            return json_reply(400, {"detail": "JSON parse error"})
        with self.lock:
            checked = validate(body, lambda sid: self._store.script_for(sid) is not None)
            if isinstance(checked, dict):
                return json_reply(400, checked)
            if faults.post_400_entry is not None:
                return json_reply(400, _entry_error(faults.post_400_entry, checked))
            if faults.credit_exhausted:
                return json_reply(402, {"detail": "Insufficient credits to run these scenarios."})
            scripts = [self._store.script_for(sid) for sid in checked.scenario_ids]
            agent = DEFAULT_AGENT if checked.agent is None else checked.agent
            result = self._store.create(
                agent, [s for s in scripts if s is not None], self._clock(), time.time()
            )
            self._entries_fired += len(result.runs)
            created = render_created(result, self._variants)
            if faults.post_500_after_create > 0:
                faults.post_500_after_create -= 1
                return json_reply(500, {"detail": "A server error occurred."})
            if faults.drop_connection_on_post > 0:
                faults.drop_connection_on_post -= 1
                return Reply(0, drop=True)
        return json_reply(self._variants.post_status, created)

    def _result(self, request: _Request) -> Reply:
        with self.lock:
            result = self._store.result(request.arg)
            if result is None:
                return _not_found()
            data = render_result(result, self._clock(), self._variants)
        return json_reply(200, data)

    def _bulk(self, request: _Request) -> Reply:
        raw = request.query.get("run_ids", [])
        if not raw or not any(v.strip() for v in raw):
            return json_reply(400, {"run_ids": ["This field is required."]})
        parts = [part.strip() for value in raw for part in value.split(",")]
        if not all(part.isdigit() for part in parts):
            return json_reply(
                400, {"run_ids": ["Enter a comma-separated list of integer run ids."]}
            )
        with self.lock:
            now = self._clock()
            runs = [self._store.run(int(part)) for part in parts]
            data = [
                render_full_run(run, now, self._variants, self.base_url)
                for run in runs
                if run is not None
            ]
        return json_reply(200, data)

    def _end_calls(self, request: _Request) -> Reply:
        with self.lock:
            result = self._store.result(request.arg)
            if result is None:
                return _not_found()
            ended = end_runs(result.runs, self._clock())
        return json_reply(200, {"ended": ended})

    def _end_call(self, request: _Request) -> Reply:
        with self.lock:
            run = self._store.run(request.arg)
            if run is None:
                return _not_found()
            ended = end_runs([run], self._clock())
        return json_reply(200, {"ended": ended})

    def _agent(self, request: _Request) -> Reply:
        return json_reply(200, {"id": request.arg, "project": 7, "agent_name": "Simulated agent"})

    def _recording(self, request: _Request) -> Reply:
        with self.lock:
            known = self._store.run(request.arg) is not None
        return Reply(200, self._wav, "audio/wav") if known else _not_found()

    def _pipecat_start(self, method: str, headers: dict[str, str], parsed: Any) -> Reply:
        """Pipecat Cloud's session start: its own key, and no Cekura faults or latency."""
        if headers.get("authorization") != f"Bearer {self._pipecat_cloud_key}":
            return json_reply(401, {"error": "Unauthorized", "code": "401"})
        if method != "POST":
            return json_reply(405, {"error": "Method not allowed"})
        body = {} if parsed is None else parsed
        if isinstance(body, _BadJson) or not isinstance(body, dict):
            return json_reply(400, {"detail": "JSON parse error"})
        with self.lock:
            self._sessions += 1
            n = self._sessions
        data: dict[str, Any] = {"sessionId": str(uuid.uuid4())}
        if body.get("createDailyRoom") is True:
            data = {
                "dailyRoom": f"https://sim.daily.co/room-{n}",
                "dailyToken": f"sim-daily-token-{n}",
                **data,
            }
        return json_reply(200, data)


def _entry_error(index: int, checked: StartRequest) -> dict[str, list[str]]:
    ids = checked.requested_ids or tuple(checked.scenario_ids)
    if 0 <= index < len(ids):
        message = f'Invalid pk "{ids[index]}" - object does not exist.'
    else:
        message = "Invalid scenario."
    return {f"scenarios[{index}]{checked.entry_field}": [message]}


def _parse_body(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return _BAD_JSON

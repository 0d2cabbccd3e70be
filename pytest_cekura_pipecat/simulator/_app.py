"""Request handling, independent of sockets: routing, key checks, faults, recording.

The HTTP layer hands each request to ``App.handle`` and writes back the ``Reply``; keeping
the two apart keeps the protocol rules here readable and the socket code small.
"""

from __future__ import annotations

import dataclasses
import email.policy
import io
import json
import re
import threading
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from . import _catalogue as catalogue
from ._model import EntryErrors, Faults, RecordedRequest, V1Reads, Variants
from ._runs import (
    MetricFormat,
    Result,
    Run,
    RunStore,
    end_runs,
    render_created,
    render_full_run,
    render_result,
)
from ._validation import StartRequest, form_to_body, validate_start, validate_start_v2

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
DEFAULT_AGENT = 1
_NON_JSON_BODY = b"<html>gateway</html>"
_HTML_503 = b"<html><body><h1>503 Service Unavailable</h1>upstream overloaded</body></html>"

_START = "start"
_START_V2 = "start_v2"
_V = r"/test_framework/v(?P<v>[12])"
_ID = r"(?P<id>\d+)"
# Every route answers with and without the trailing slash: the official SDK sends none.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern + "/?"), name)
    for method, pattern, name in (
        # The v1 start and its documented aliases (same body, same answer).
        (
            "POST",
            r"/test_framework/(?:v1/scenarios|v1/scenarios-external|v2/scenarios)"
            r"/run_scenarios_pipecat",
            _START,
        ),
        # The official CLI's `cekura run start --mode pipecat` (SDK scenarios.run_pipecat_v2).
        ("POST", r"/test_framework/v1/scenarios-external/run_scenarios_pipecat_v2", _START_V2),
        ("GET", _V + r"/results", "results"),
        ("GET", _V + r"/results/" + _ID, "result"),
        ("GET", _V + r"/runs/bulk", "bulk"),
        ("GET", _V + r"/runs-external/bulk", "bulk"),
        ("GET", _V + r"/runs-external/" + _ID, "run"),
        ("POST", _V + r"/(?:results|results-external)/" + _ID + r"/end_calls", "end_calls"),
        ("POST", _V + r"/(?:runs|runs-external)/" + _ID + r"/end_call", "end_call"),
        ("GET", _V + r"/aiagents/" + _ID, "agent"),
        ("GET", r"/recordings/" + _ID + r"\.wav", "recording"),
        ("GET", r"/test_framework/v1/scenarios", "scenarios"),
        ("GET", r"/test_framework/v1/scenarios/" + _ID, "scenario"),
        ("GET", r"/test_framework/billing/info", "billing"),
    )
)
_READS = frozenset({"results", "result", "bulk", "run"})  # what v1_reads="removed" takes away
_PIPECAT = re.compile(r"/v1/public/([^/]+)/start/?")
PROJECT = 7
_ROOM_TAKEN = "another caller was already in the room"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # close the socket without answering
    reset: bool = False  # reset the connection (TCP RST) without answering
    drip: float = 0.0  # seconds between bytes of the whole response; 0: send at once


def json_reply(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    # allow_nan: a script may ask for a run with Infinity/NaN, as a buggy server would send.
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
    version: int  # 1 or 2 from /test_framework/vN/, 1 when the path has none


def _silent_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


@dataclass(frozen=True)
class Behaviour:
    """Constructor-time switches of the simulator (see ``Simulator``)."""

    v1_reads: V1Reads = "canonical"
    room_exclusive: bool = False
    echo_secrets: bool = False
    start_non_result: bool = False
    unknown_scenario_400: EntryErrors = "entry"
    agent_tools: tuple[str, ...] = ()
    early_completed: bool = False
    ai_summary_after: float = 0.2
    agents: frozenset[int] | None = None  # None: every agent id exists
    credits_remaining: float = 1_000_000.0  # what billing/info says is left
    credits_used: float = 0.0


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
        behaviour: Behaviour = Behaviour(),
    ) -> None:
        self.lock = threading.Lock()
        self.faults = Faults()
        self.api_key = api_key
        self.base_url = ""
        self._store = store
        self._variants = variants
        self._behaviour = behaviour

        self._pipecat_cloud_key = pipecat_cloud_key
        self._clock = clock
        self._records: list[tuple[int, RecordedRequest]] = []
        self._seq = 0
        self._gets = 0
        self._reads_of: dict[int, int] = {}  # GETs of each result so far (get_404_new)
        self._entries_fired = 0
        self._sessions = 0
        self._wav = _silent_wav()
        self._handlers: dict[str, Callable[[_Request], Reply]] = {
            _START: self._start,
            _START_V2: self._start_v2,
            "results": self._results,
            "result": self._result,
            "bulk": self._bulk,
            "run": self._run,
            "end_calls": self._end_calls,
            "end_call": self._end_call,
            "agent": self._agent,
            "recording": self._recording,
            "scenarios": self._scenarios,
            "scenario": self._scenario,
            "billing": self._billing,
        }

    # -- accessors used by Simulator -------------------------------------------------

    def configure(self, **switches: Any) -> None:
        with self.lock:
            self._behaviour = replace(self._behaviour, **switches)

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
            self._reads_of.clear()
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
        parsed = _parse_body(body, headers.get("content-type", ""))
        try:
            reply = self._dispatch(method, split.path, query, headers, parsed)
        except Exception as exc:  # a simulator bug must not kill the connection silently
            reply = json_reply(500, {"detail": f"simulator error: {type(exc).__name__}: {exc}"})
        reply = self._transport_fault(method, reply)
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
            status=0 if reply.drop or reply.reset else reply.status,
            at=arrived,
        )
        with self.lock:
            self._records.append((seq, record))
        return reply

    def _transport_fault(self, method: str, reply: Reply) -> Reply:
        """Drip or reset the answer, once the handler ran (a start has created its runs)."""
        if reply.drop:
            return reply
        with self.lock:
            faults = self.faults
            if method == "GET" and faults.reset_gets > 0:
                faults.reset_gets -= 1
                return dataclasses.replace(reply, reset=True)
            if method == "POST" and faults.reset_posts > 0:
                faults.reset_posts -= 1
                return dataclasses.replace(reply, reset=True)
            if method == "GET" and faults.drip_gets > 0:
                faults.drip_gets -= 1
                return dataclasses.replace(reply, drip=faults.drip_interval)
            if method == "POST" and faults.drip_posts > 0:
                if faults.drip_posts_after > 0:
                    faults.drip_posts_after -= 1
                    return reply
                faults.drip_posts -= 1
                return dataclasses.replace(reply, drip=faults.drip_interval)
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
            groups = match.groupdict()
            version = int(groups.get("v") or 1)
            if version == 1 and name in _READS and self._behaviour.v1_reads == "removed":
                return _not_found()
            # Recordings stand for pre-signed storage links: no API key, like the real ones.
            if name != "recording" and headers.get("x-cekura-api-key") != self.api_key:
                return json_reply(401, {"detail": "Invalid API key."})
            if method != route_method:
                return json_reply(405, {"detail": f'Method "{method}" not allowed.'})
            arg = int(groups.get("id") or 0)
            request = _Request(method, path, query, headers, parsed, arg, version)
            return self._handlers[name](request)
        return _not_found()

    def _gateway_fault(self) -> Reply | None:
        with self.lock:
            self._gets += 1
            count, faults = self._gets, self.faults
            if faults.get_429 > 0:
                faults.get_429 -= 1
                return json_reply(
                    429,
                    {"detail": "Request was throttled."},
                    (("Retry-After", faults.retry_after),),
                )
            if faults.get_5xx_every > 0 and count % faults.get_5xx_every == 0:
                return Reply(503, _HTML_503, HTML_TYPE)
            if faults.get_non_json_every > 0 and count % faults.get_non_json_every == 0:
                return Reply(200, _NON_JSON_BODY, HTML_TYPE)
        return None

    def _format(self, request: _Request) -> MetricFormat:
        """Metrics as the route serves them: v2 canonical; v1 as ``v1_reads`` says."""
        if request.version == 1 and self._behaviour.v1_reads == "legacy":
            return "legacy"
        return "canonical"

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
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        body = {} if request.json is None else request.json
        if isinstance(body, _BadJson):
            return json_reply(400, {"detail": "JSON parse error"})
        with self.lock:
            checked = validate(body, lambda sid: self._store.script_for(sid) is not None)
            if isinstance(checked, dict):
                if self._behaviour.unknown_scenario_400 == "field":
                    checked = _unnamed_entries(checked)
                return json_reply(400, checked)
            refused = self._refused(checked)
            if refused is not None:
                return refused
            now = self._clock()
            if self._behaviour.room_exclusive:
                taken = _rooms_taken(checked, self._store.live_rooms(now))
                if taken:
                    return json_reply(400, taken)
            created = render_created(self._created(checked, now), self._variants)
            failed = self._failed_after_create()
            if failed is not None:
                return failed
        if self._behaviour.start_non_result:
            return json_reply(200, {"ok": True})
        return json_reply(self._variants.post_status, created)

    def _throttled(self) -> Reply | None:
        """Throttling comes first, as in DRF: a throttled request never reaches the view."""
        faults = self.faults
        with self.lock:
            if faults.post_429 > 0:
                faults.post_429 -= 1
                return json_reply(
                    429,
                    {"detail": "Request was throttled."},
                    (("Retry-After", faults.retry_after),),
                )
        return None

    def _refused(self, checked: StartRequest) -> Reply | None:
        """A valid start the faults refuse before anything is created (under the lock)."""
        faults = self.faults
        if faults.post_400_entry is not None:
            return json_reply(400, _entry_error(faults.post_400_entry, checked))
        if faults.credit_exhausted:
            return json_reply(402, {"detail": "Insufficient credits to run these scenarios."})
        if faults.post_500_before_create > 0:
            faults.post_500_before_create -= 1
            return json_reply(500, {"detail": "A server error occurred."})
        return None

    def _created(self, checked: StartRequest, now: float) -> Result:
        """The result of a valid start, its runs counted as fired (and a twin first, when
        the faults ask for another pipeline's result of the same request; under the lock)."""
        faults = self.faults
        entries = []
        for index, sid in enumerate(checked.scenario_ids):
            script = self._store.script_for(sid)
            room, token = checked.rooms[index] if checked.rooms else ("", None)
            if script is not None:
                entries.append((script, room, token))
        mock = checked.mock_tool_names
        agent = DEFAULT_AGENT if checked.agent is None else checked.agent
        twins = 1 if faults.post_twin > 0 else 0
        faults.post_twin -= twins
        for _ in range(twins):  # another pipeline's result: not counted as fired here
            self._store.create(agent, entries, now, time.time(), mock_tool_names=mock)
        result = self._store.create(
            agent,
            entries,
            now,
            time.time(),
            name=checked.name,
            mock_tool_names=mock,
            mocked=self._behaviour.agent_tools if mock is None else tuple(mock),
        )
        self._entries_fired += len(result.runs)
        return result

    def _failed_after_create(self) -> Reply | None:
        """The faults that strike once the result exists (under the lock)."""
        faults = self.faults
        if faults.post_500_after_create > 0:
            faults.post_500_after_create -= 1
            return json_reply(500, {"detail": "A server error occurred."})
        if faults.drop_connection_on_post > 0:
            faults.drop_connection_on_post -= 1
            return Reply(0, drop=True)
        if faults.post_non_result > 0:
            faults.post_non_result -= 1
            return json_reply(faults.post_non_result_status, {"detail": "Accepted."})
        return None

    def _results(self, request: _Request) -> Reply:
        """The results list, paginated as DRF does; filters agent_id, project_id, search,
        scenarios (comma-separated ids)."""
        query = {key: values[-1] for key, values in request.query.items() if values}
        try:
            page = int(query.get("page", "1"))
            size = int(query.get("page_size", "10"))
            agent = int(query["agent_id"]) if query.get("agent_id") else None
            project = int(query["project_id"]) if query.get("project_id") else None
            wanted = {int(s) for s in query.get("scenarios", "").split(",") if s.strip()}
        except ValueError:
            return json_reply(400, {"detail": "Invalid filter value."})
        if page < 1 or size < 1:
            return _not_found()
        search = query.get("search", "").casefold()
        with self.lock:
            now = self._clock()
            chosen = [
                result
                for result in sorted(self._store.all_results(), key=lambda r: -r.id)
                if (agent is None or result.agent == agent)
                and (project is None or project == PROJECT)
                and search in result.name.casefold()
                and (not wanted or wanted & {run.script.id for run in result.runs})
            ]
            window = chosen[(page - 1) * size : page * size]
            items = [
                render_result(
                    r, now, self._variants, self._format(request), with_runs=False, **self._timing()
                )
                for r in window
            ]
        if page > 1 and not items:
            return json_reply(404, {"detail": "Invalid page."})

        def link(number: int) -> str | None:
            if number < 1 or (number - 1) * size >= len(chosen):
                return None
            params = {**query, "page": str(number)}
            return f"{self.base_url}{request.path}?{urlencode(params)}"

        return json_reply(
            200,
            {
                "count": len(chosen),
                "next": link(page + 1),
                "previous": link(page - 1),
                "results": items,
            },
        )

    def _timing(self) -> dict[str, Any]:
        behaviour = self._behaviour
        return {
            "summary_after": behaviour.ai_summary_after,
            "early_completed": behaviour.early_completed,
        }

    def _result(self, request: _Request) -> Reply:
        with self.lock:
            result = self._store.result(request.arg)
            if result is None:
                return _not_found()
            reads = self._reads_of[result.id] = self._reads_of.get(result.id, 0) + 1
            if reads <= self.faults.get_404_new:
                return _not_found()  # a replica that has not seen the new result yet
            data = render_result(
                result,
                self._clock(),
                self._variants,
                self._format(request),
                self._behaviour.echo_secrets,
                **self._timing(),
            )
        return json_reply(200, data)

    def _bulk(self, request: _Request) -> Reply:
        # Cekura's documented parameter is run_ids; the official SDK sends ids.
        key = "run_ids" if "run_ids" in request.query or "ids" not in request.query else "ids"
        raw = request.query.get(key, [])
        if not raw or not any(v.strip() for v in raw):
            return json_reply(400, {key: ["This field is required."]})
        parts = [part.strip() for value in raw for part in value.split(",")]
        if not all(part.isdigit() for part in parts):
            return json_reply(400, {key: ["Enter a comma-separated list of integer run ids."]})
        with self.lock:
            now = self._clock()
            runs = [self._store.run(int(part)) for part in parts]
            data = [self._full_run(run, now, request) for run in runs if run is not None]
        return json_reply(200, data)

    def _full_run(self, run: Run, now: float, request: _Request) -> dict[str, Any]:
        return render_full_run(
            run,
            now,
            self._variants,
            self.base_url,
            self._format(request),
            self._behaviour.echo_secrets,
        )

    def _run(self, request: _Request) -> Reply:
        with self.lock:
            run = self._store.run(request.arg)
            if run is None:
                return _not_found()
            data = self._full_run(run, self._clock(), request)
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
        agents = self._behaviour.agents
        if agents is not None and request.arg not in agents:
            return _not_found()
        return json_reply(
            200, {"id": request.arg, "project": PROJECT, "agent_name": "Simulated agent"}
        )

    def _scenarios(self, request: _Request) -> Reply:
        with self.lock:
            scripts = self._store.listed()
        try:
            chosen = catalogue.selected(scripts, request.query)
            body = catalogue.page(chosen, request.query, self.base_url + request.path)
        except catalogue.QueryError as exc:
            field, _, message = str(exc).partition(": ")
            return json_reply(400, {field: [message]})
        return json_reply(200, body)

    def _scenario(self, request: _Request) -> Reply:
        with self.lock:
            script = self._store.script_for(request.arg)
        if script is None:
            return _not_found()
        return json_reply(200, catalogue.scenario_json(script))

    def _billing(self, request: _Request) -> Reply:
        behaviour = self._behaviour
        return json_reply(
            200, catalogue.billing_json(behaviour.credits_remaining, behaviour.credits_used)
        )

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


def _unnamed_entries(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Unknown scenario ids reported under ``scenarios`` without naming the entry."""
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        unknown = [m for m in messages if m.startswith("Invalid pk ")]
        if key.startswith("scenarios[") and unknown:
            out.setdefault("scenarios", []).extend(unknown)
        else:
            out[key] = messages
    return out


def _rooms_taken(checked: StartRequest, live: set[str]) -> dict[str, list[str]]:
    """Entries whose room already has a caller: a live run, or an earlier entry of this body."""
    errors: dict[str, list[str]] = {}
    taken = {_room_key(room) for room in live}
    for index, (room, _) in enumerate(checked.rooms):
        key = _room_key(room)
        if key in taken:
            errors[f"scenarios[{index}].pipecat_room_url"] = [_ROOM_TAKEN]
        taken.add(key)
    return errors


def _room_key(url: str) -> str:
    """One Daily room, however its URL is written: no query (``?t=token``), no fragment,
    no trailing slash, a case-insensitive host."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{(parts.netloc or '').lower()}{parts.path.rstrip('/')}"
    except ValueError:
        return url


def _form_fields(body: bytes, content_type: str) -> list[tuple[str, str]] | None:
    """The fields of a urlencoded or multipart form; None when the body is neither."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    if kind != "multipart/form-data":
        return None
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    fields = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields.append((name, payload.decode("utf-8", errors="replace")))
    return fields


def _parse_body(body: bytes, content_type: str = "") -> Any:
    if not body.strip():
        return None
    fields = _form_fields(body, content_type)
    if fields is not None:
        return form_to_body(fields)
    try:
        return json.loads(body)
    except ValueError:
        return _BAD_JSON

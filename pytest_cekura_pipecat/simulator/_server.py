"""The HTTP side: a threading stdlib server on loopback, and the ``Simulator`` facade."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from ._app import App, Behaviour, Reply, json_reply
from ._model import (
    V1_READS,
    EntryErrors,
    Faults,
    RecordedRequest,
    ScenarioScript,
    SimulatorConfigError,
    V1Reads,
    Variants,
)
from ._recorded import RecordedApp, load_recording
from ._runs import RunStore
from ._scenarios import ScenariosArg, coerce_scenarios

_NO_VARIANTS = Variants()  # frozen, so one shared default is safe


def check_loopback(host: str) -> None:
    """Refuse any address but loopback: the simulator must never be reachable from outside."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SimulatorConfigError(
            f"host {host!r} is not a loopback address; use 127.0.0.1, ::1 or localhost"
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a benchmark opens many connections at once

    def __init__(self, address: tuple[str, int], app: App) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.stopping = threading.Event()  # ends drips early when the simulator stops
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent: a client that hangs up mid-request is routine in fault tests."""

    def close_connections(self) -> None:
        """Unblock keep-alive handler threads so stop() leaves no socket behind."""
        with self.connections_lock:
            open_sockets = list(self.connections)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pollers reuse connections
    server_version = "CekuraSimulator"
    # Headers and body leave in one segment, flushed per response by the stdlib; without
    # both, Nagle and delayed ACKs add ~40 ms to every request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.connections.add(self.connection)

    def finish(self) -> None:
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client may be gone already
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Request handling logs nothing: the recorded requests are the log."""

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Clients of this API send Content-Length; unread chunks would corrupt keep-alive.
            self.close_connection = True
            self._write(json_reply(411, {"detail": "Length required."}))
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = cast(_Server, self.server).app.handle(self.command, self.path, headers, body)
        if reply.drop:
            self.close_connection = True
            return
        if reply.reset:
            self._reset()
            return
        if reply.drip > 0:
            self._drip(reply)
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-Cekura-Simulator", "1")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the peer gets a TCP RST instead of an answer."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The fd closes only once the file wrappers let go of it.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()

    def _drip(self, reply: Reply) -> None:
        """The whole response, status line first, one byte every ``reply.drip`` seconds."""
        self.close_connection = True
        head = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        head += [
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            "X-Cekura-Simulator: 1",
            "Connection: close",
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body
        stopping = cast(_Server, self.server).stopping
        for index in range(len(data)):
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()
            if stopping.wait(reply.drip):
                return

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


class Simulator:
    """A local Cekura-compatible API (and Pipecat Cloud stand-in) on 127.0.0.1.

    Use as a context manager, or call ``start()`` / ``stop()``. Runs progress with
    ``clock`` (a fake clock makes tests instant); ``faults`` may be changed at any time.

    Switches fixed at construction:

    - ``v1_reads``: how ``/test_framework/v1/`` reads (results, runs/bulk, runs-external,
      the results list) serve binary metrics: ``"canonical"`` (default, ``eval_type`` +
      ``passed``, as v2 always does), ``"legacy"`` (``type`` ``binary_*`` + ``score`` 5/0,
      ``score_normalized`` on some), or ``"removed"`` (those v1 reads answer 404).
    - ``room_exclusive``: a start entry whose ``pipecat_room_url`` already has a live
      (non-terminal) run, or repeats the room of an earlier entry of the same body, is
      refused: 400 ``{"scenarios[i].pipecat_room_url": ["another caller was already in the
      room"]}``, nothing created.
    - ``echo_secrets``: each run's ``error_message`` and transcript carry its
      ``pipecat_room_url`` and ``pipecat_token`` verbatim (to prove a client redacts them).
    - ``start_non_result``: a start creates its runs but answers 200 ``{"ok": true}``.
    - ``unknown_scenario_400``: a start naming an unknown scenario id (no script, no
      ``default_outcome``) is a 400 that names the entry (``"entry"``:
      ``{"scenarios[2].scenario": [...]}``) or does not (``"field"``: ``{"scenarios": [...]}``).
    - ``agent_tools``: the agent's tools; a start without ``mock_tool_names`` (or ``null``)
      mocks them all, ``[]`` none, a list those (``mocked_tool_names`` on each run).
    - ``ai_summary_after``: seconds after a result ended that its ``ai_summary`` and
      ``failed_reasons`` are written (``ai_summary_status`` pending until then, then
      ``completed``, or ``skipped_no_failures`` when every run passed).
    - ``early_completed``: a result reads ``completed`` as soon as any run completed (the
      older published reading) instead of once every run has ended.
    - ``agents``: the agent ids that exist (``GET aiagents/{id}/`` answers 404 for any
      other); None (default): every id exists.
    - ``credits_remaining``: what ``GET billing/info/`` says is left (``credits_used`` 0);
      change it on a running simulator with ``configure(credits_remaining=...)``.
    - Scenario scripts also carry what the scenario endpoints serve: ``agent`` (the agent
      it belongs to; None: any), ``folder_path``, ``tags``, ``metrics`` (metric ids),
      ``max_duration`` (seconds, 10 to 3600) and ``version``. ``GET v1/scenarios/`` lists
      the scripted ids (not those a ``default_outcome`` plays) by ``agent_id``,
      ``folder_path`` (the folder and those under it), ``tags`` (comma-separated) and
      ``tag_filter_type`` (``any``, the default, or ``all``), ``page`` and ``page_size``.

    The simulator never produces dashboard links, and every answer carries
    ``X-Cekura-Simulator: 1``.
    """

    def __init__(
        self,
        scenarios: ScenariosArg = None,
        *,
        api_key: str = "sim-key",
        host: str = "127.0.0.1",
        port: int = 0,
        variants: Variants = _NO_VARIANTS,
        default_outcome: ScenarioScript | None = None,
        pipecat_cloud_key: str = "pcc-sim-key",
        clock: Callable[[], float] = time.monotonic,
        v1_reads: V1Reads = "canonical",
        room_exclusive: bool = False,
        echo_secrets: bool = False,
        start_non_result: bool = False,
        unknown_scenario_400: EntryErrors = "entry",
        agent_tools: Sequence[str] = ("lookup_booking", "create_booking"),
        ai_summary_after: float = 0.2,
        early_completed: bool = False,
        agents: Collection[int] | None = None,
        credits_remaining: float = 1_000_000.0,
    ) -> None:
        check_loopback(host)
        if v1_reads not in V1_READS:
            raise SimulatorConfigError(
                f"v1_reads must be one of {', '.join(V1_READS)}, got {v1_reads!r}"
            )
        if unknown_scenario_400 not in ("entry", "field"):
            raise SimulatorConfigError(
                f"unknown_scenario_400 must be entry or field, got {unknown_scenario_400!r}"
            )
        self._host = host
        self._port = port
        self._app = App(
            RunStore(coerce_scenarios(scenarios), default_outcome),
            variants=variants,
            api_key=api_key,
            pipecat_cloud_key=pipecat_cloud_key,
            clock=clock,
            behaviour=Behaviour(
                v1_reads=v1_reads,
                room_exclusive=room_exclusive,
                echo_secrets=echo_secrets,
                start_non_result=start_non_result,
                unknown_scenario_400=unknown_scenario_400,
                agent_tools=tuple(agent_tools),
                ai_summary_after=ai_summary_after,
                early_completed=early_completed,
                agents=frozenset(agents) if agents is not None else None,
                credits_remaining=credits_remaining,
            ),
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

    @classmethod
    def from_recording(
        cls,
        directory: str | os.PathLike[str],
        *,
        api_key: str = "sim-key",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> Simulator:
        """A simulator that answers with a recorded session (``--cekura-record=DIR``):
        each request gets what Cekura answered it then (polls in order, then the last
        answer), HTTP 410 for one the recording has none for; any API key is accepted."""
        simulator = cls(api_key=api_key, host=host, port=port)
        simulator._app = RecordedApp(load_recording(directory), api_key)
        return simulator

    def configure(self, **switches: Any) -> None:
        """Change the constructor's switches (``room_exclusive``, ``echo_secrets``,
        ``start_non_result``, ``unknown_scenario_400``, ``v1_reads``) of a running simulator."""
        self._app.configure(**switches)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; only once started."""
        if not self._url:
            raise RuntimeError("Simulator not started: call start() or use it as a context manager")
        return self._url

    @property
    def faults(self) -> Faults:
        return self._app.faults

    @property
    def api_key(self) -> str:
        return self._app.api_key

    def start(self) -> Simulator:
        if self._server is not None:
            raise RuntimeError("Simulator already started")
        server = _Server((self._host, self._port), self._app)
        host, port = server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}"
        self._app.base_url = self._url
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cekura-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, rejected ones included, in arrival order (a copy)."""
        return self._app.records()

    def requests_to(self, method: str, path_contains: str) -> list[RecordedRequest]:
        return [
            r for r in self._app.records() if r.method == method.upper() and path_contains in r.path
        ]

    def entries_fired(self) -> int:
        """Scenario entries across all start POSTs that created runs (each entry is one call)."""
        return self._app.entries_fired()

    def runs(self) -> list[dict[str, Any]]:
        """Every run created so far, as ``runs/bulk/`` would serve it now."""
        return self._app.runs()

    def reset(self) -> None:
        """Forget requests, results and faults; ids keep counting so none is ever reused."""
        self._app.reset()

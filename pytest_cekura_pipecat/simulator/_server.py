"""The HTTP side: a threading stdlib server on loopback, and the ``Simulator`` facade."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from ._app import App, Reply, json_reply
from ._model import Faults, RecordedRequest, ScenarioScript, SimulatorConfigError, Variants
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

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


class Simulator:
    """A local Cekura-compatible API (and Pipecat Cloud stand-in) on 127.0.0.1.

    Use as a context manager, or call ``start()`` / ``stop()``. Runs progress with
    ``clock`` (a fake clock makes tests instant); ``faults`` may be changed at any time.
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
    ) -> None:
        check_loopback(host)
        self._host = host
        self._port = port
        self._app = App(
            RunStore(coerce_scenarios(scenarios), default_outcome),
            variants=variants,
            api_key=api_key,
            pipecat_cloud_key=pipecat_cloud_key,
            clock=clock,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

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

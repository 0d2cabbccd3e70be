"""StartUrlRooms against a local start server on 127.0.0.1 that answers like Pipecat's runner."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._errors import CekuraError, ConfigError
from pytest_cekura_pipecat._fire.rooms import StartUrlRooms, pipecat_cloud
from pytest_cekura_pipecat._redact import Redactor

CASE = Case(
    name="books-a-table", scenario=101, source="cekura.toml", publish_data_message={"sha": "x"}
)
KEY = "start-key-SECRET-0123456789"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StartServer:
    """Answers POSTs with ``behave(server, seen)``; records every request it read."""

    behave: Callable[[BaseHTTPRequestHandler, Seen], None]
    seen: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    count: int = 0

    def next(self) -> int:
        self.count += 1
        return self.count


def reply(handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
    out = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(out)))
    handler.end_headers()
    handler.wfile.write(out)


def serve(state: StartServer, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(self.path, dict(self.headers), json.loads(self.rfile.read(length)))
            with lock:
                state.seen.append(seen)
            state.behave(self, seen)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/start"


@pytest.fixture
def start_server() -> Iterator[Callable[..., tuple[StartServer, str]]]:
    servers: list[tuple[ThreadingHTTPServer, StartServer]] = []

    def make(
        behave: Callable[[BaseHTTPRequestHandler, Seen], None], port: int = 0
    ) -> tuple[StartServer, str]:
        state = StartServer(behave)
        server, url = serve(state, port)
        servers.append((server, state))
        return state, url

    yield make
    for server, state in servers:
        state.stop.set()
        server.shutdown()
        server.server_close()


def runner(state_box: list[StartServer]) -> Callable[[BaseHTTPRequestHandler, Seen], None]:
    def behave(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        n = state_box[0].next()
        reply(
            handler,
            200,
            {
                "dailyRoom": f"https://standin.invalid/pipecat-{n}",
                "dailyToken": f"tok-SECRET-{n:04d}",
                "sessionId": f"session-{n}",
            },
        )

    return behave


def pipecat_like(make: Callable[..., tuple[StartServer, str]]) -> tuple[StartServer, str]:
    box: list[StartServer] = []
    state, url = make(runner(box))
    box.append(state)
    return state, url


def test_each_call_starts_its_own_session(start_server: Any) -> None:
    state, url = pipecat_like(start_server)
    redactor = Redactor()
    rooms = StartUrlRooms(url, redactor=redactor)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda i: rooms.start(CASE, i), range(3)))
    assert len({room.url for room in got}) == 3 and len({room.token for room in got}) == 3
    assert all(room.url.startswith("https://standin.invalid/pipecat-") for room in got)
    assert len(state.seen) == 3
    assert sorted(s.body["body"]["cekura_run"] for s in state.seen) == [0, 1, 2]
    for seen in state.seen:
        assert seen.path == "/start"
        assert seen.body == {
            "createDailyRoom": True,
            "body": {
                "cekura_case": "books-a-table",
                "cekura_scenario": 101,
                "cekura_run": seen.body["body"]["cekura_run"],
                "publish_data_message": {"sha": "x"},
            },
        }
    assert all(redactor(f"t={room.token}") == "t=***" for room in got)


def test_extra_body_is_deep_merged_and_templates_expand(start_server: Any) -> None:
    state, url = pipecat_like(start_server)
    case = Case(name="c", scenario=7, source="marker", publish_data_message={"sha": "${GIT_SHA}"})
    rooms = StartUrlRooms(
        url,
        body={
            "dailyRoomProperties": {"max_participants": 2},
            "dailyMeetingTokenProperties": {"user_name": "cekura"},
            "body": {"locale": "en-US", "cekura_run": "mine"},
        },
        redactor=Redactor(),
        env={"GIT_SHA": "abc123"},
    )
    rooms.start(case, 4)
    (seen,) = state.seen
    assert seen.body == {
        "createDailyRoom": True,
        "dailyRoomProperties": {"max_participants": 2},
        "dailyMeetingTokenProperties": {"user_name": "cekura"},
        "body": {
            "cekura_case": "c",
            "cekura_scenario": 7,
            "cekura_run": "mine",  # the user's explicit value wins
            "publish_data_message": {"sha": "abc123"},
            "locale": "en-US",
        },
    }


def test_header_values_expand_from_the_environment_and_are_secrets(start_server: Any) -> None:
    def reject(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        reply(handler, 401, {"error": "Unauthorized", "got": seen.headers["Authorization"]})

    state, url = start_server(reject)
    redactor = Redactor()
    rooms = StartUrlRooms(
        url,
        headers={"Authorization": "Bearer ${START_KEY}", "X-Plain": "plain-value"},
        redactor=redactor,
        env={"START_KEY": KEY},
    )
    with pytest.raises(CekuraError) as info:
        rooms.start(CASE, 0)
    (seen,) = state.seen
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["X-Plain"] == "plain-value"
    message = str(info.value)
    assert message.startswith(
        f"Pipecat start URL {url}: HTTP 401 (check the start URL's headers): "
    )
    assert KEY not in message and '"got": "***"' in message
    assert redactor(f"key={KEY}") == "key=***"
    assert "\n" not in message


def test_a_missing_header_variable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="START_KEY is not set"):
        StartUrlRooms(
            "http://127.0.0.1:9/start",
            headers={"Authorization": "Bearer ${START_KEY}"},
            redactor=Redactor(),
            env={},
        )


@pytest.mark.parametrize("status", [500, 502])
def test_a_server_error_is_never_retried_and_hides_tokens(start_server: Any, status: int) -> None:
    def fail(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        reply(
            handler,
            status,
            {
                "detail": "room created, bot crashed",
                "dailyRoom": "https://standin.invalid/r?t=urltok-SECRET-99",
                "dailyToken": "tok-SECRET-5555",
            },
        )

    state, url = start_server(fail)
    with pytest.raises(CekuraError) as info:
        StartUrlRooms(url, redactor=Redactor()).start(CASE, 0)
    message = str(info.value)
    assert f"HTTP {status}" in message and "bot crashed" in message and url in message
    assert "SECRET" not in message
    assert len(state.seen) == 1


def test_a_reset_connection_is_never_retried(start_server: Any) -> None:
    def reset(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()

    state, url = start_server(reset)
    with pytest.raises(CekuraError, match=r"^Pipecat start URL .*: request failed \(\w+\)$"):
        StartUrlRooms(url, redactor=Redactor()).start(CASE, 0)
    time.sleep(0.3)  # a retry, if any, would have arrived by now
    assert len(state.seen) == 1


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_dripping_server_hits_the_total_deadline(start_server: Any, where: str) -> None:
    def drip(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        out = handler.wfile
        out.write(b"HTTP/1.1 200 OK\r\n")
        if where == "body":
            out.write(b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        try:
            while not state.stop.is_set():
                out.write(b"X-Drip: 1\r\n" if where == "headers" else b" ")
                out.flush()
                time.sleep(0.05)
        except OSError:
            pass

    state, url = start_server(drip)
    began = time.monotonic()
    with pytest.raises(CekuraError, match=r": no complete answer within 0\.8s$"):
        StartUrlRooms(url, redactor=Redactor(), timeout=0.8).start(CASE, 0)
    assert time.monotonic() - began < 30  # the drip would go on for 100,000 bytes x 50 ms
    assert len(state.seen) == 1


def test_a_refused_connection_is_retried(start_server: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rooms = StartUrlRooms(f"http://127.0.0.1:{port}/start", redactor=Redactor(), timeout=5)
    box: list[StartServer] = []
    threading.Timer(0.15, lambda: box.append(start_server(runner(box), port)[0])).start()
    room = rooms.start(CASE, 0)
    assert room.url == "https://standin.invalid/pipecat-1"
    assert len(box[0].seen) == 1


def test_a_refused_connection_gives_up_with_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://user:pw-SECRET@127.0.0.1:{port}/start?key=q-SECRET"
    with pytest.raises(CekuraError) as info:
        StartUrlRooms(url, redactor=Redactor(), timeout=5).start(CASE, 0)
    assert str(info.value) == (
        f"Pipecat start URL http://127.0.0.1:{port}/start: request failed (connection refused)"
    )


@pytest.mark.parametrize(
    ("answer", "room", "token"),
    [
        ({"room_url": "https://standin.invalid/a", "token": "tok-SECRET-a"}, "/a", "tok-SECRET-a"),
        ({"dailyRoom": "https://standin.invalid/b?t=tok-SECRET-b"}, "/b?t=tok-SECRET-b", None),
    ],
)
def test_answer_variants(start_server: Any, answer: dict[str, str], room: str, token: Any) -> None:
    _, url = start_server(lambda h, seen: reply(h, 200, answer))
    redactor = Redactor()
    got = StartUrlRooms(url, redactor=redactor).start(CASE, 0)
    assert got.url == "https://standin.invalid" + room and got.token == token
    assert "SECRET" not in redactor(got.url)


def test_an_answer_without_a_room_is_an_error(start_server: Any) -> None:
    _, url = start_server(lambda h, seen: reply(h, 200, {"sessionId": "s-1", "dailyRoom": None}))
    with pytest.raises(CekuraError, match=r"HTTP 200 without a Daily room \(dailyRoom\): .*s-1"):
        StartUrlRooms(url, redactor=Redactor()).start(CASE, 0)


def test_pipecat_cloud_preset(start_server: Any) -> None:
    def cloud(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        if seen.headers.get("Authorization") != f"Bearer {KEY}":
            reply(handler, 401, {"error": "Unauthorized"})
        else:
            reply(handler, 200, {"dailyRoom": "https://standin.invalid/c", "dailyToken": "tok-c"})

    state, url = start_server(cloud)
    base = url.removesuffix("/start")
    redactor = Redactor()
    room = pipecat_cloud("my-bot", KEY, base + "/", redactor=redactor).start(CASE, 0)
    assert (
        room.url == "https://standin.invalid/c" and state.seen[0].path == "/v1/public/my-bot/start"
    )
    assert redactor(KEY) == "***"
    with pytest.raises(CekuraError) as info:
        pipecat_cloud("my-bot", "wrong-key-SECRET", base, redactor=redactor).start(CASE, 0)
    assert str(info.value).startswith(
        f"Pipecat Cloud agent my-bot at {base}/v1/public/my-bot/start: HTTP 401 "
        "(check PIPECAT_CLOUD_API_KEY)"
    )
    assert "SECRET" not in str(info.value)

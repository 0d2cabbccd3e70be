"""A local stand-in for Daily's REST API: the calls Pipecat's development runner makes.

``POST /rooms`` answers a room object (the fields ``DailyRoomObject`` requires),
``POST /meeting-tokens`` a fresh token, ``GET``/``DELETE /rooms/{name}`` what Daily would.
Every request is recorded. Room URLs use the reserved ``.invalid`` domain: nothing can reach them.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class DailyRequest:
    method: str
    path: str
    authorization: str | None
    body: Any


class DailyApi:
    """``with DailyApi(api_key) as daily: daily.url`` is a value for ``DAILY_API_URL``."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[DailyRequest] = []
        self.rooms: dict[str, dict[str, Any]] = {}
        self.tokens: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> DailyApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(DailyRequest(method, path, auth, body))
            if auth != f"Bearer {self.api_key}":
                return 401, {"error": "authentication-error", "info": "bad API key"}
            if method == "POST" and path == "/rooms":
                name = body.get("name") or f"room-{secrets.token_hex(4)}"
                room = {
                    "id": secrets.token_hex(8),
                    "name": name,
                    "api_created": True,
                    "privacy": body.get("privacy", "public"),
                    "url": f"https://standin.invalid/{name}",
                    "created_at": "2026-01-01T00:00:00.000Z",
                    "config": body.get("properties", {}),
                }
                self.rooms[name] = room
                return 200, room
            if method == "POST" and path == "/meeting-tokens":
                token = f"standin-token-{len(self.tokens) + 1}-{secrets.token_hex(8)}"
                self.tokens.append(token)
                return 200, {"token": token}
            if path.startswith("/rooms/"):
                name = path.removeprefix("/rooms/")
                if name not in self.rooms:
                    return 404, {"error": "not-found", "info": f"room {name} not found"}
                if method == "DELETE":
                    del self.rooms[name]
                    return 200, {"deleted": True, "name": name}
                return 200, self.rooms[name]
            return 404, {"error": "not-found", "info": f"{method} {path}"}


def _handler(api: DailyApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            status, data = api.answer(
                self.command, self.path.rstrip("/"), self.headers.get("Authorization"), body
            )
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

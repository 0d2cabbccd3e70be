"""A stand-in bot: serves ``/status`` and ``/start`` like Pipecat's runner, or misbehaves.

    python bot.py PORT [ready|exit|never|ignore-term|slow]
    python bot.py --port PORT [MODE]

``exit`` prints a few lines and exits 3; ``never`` answers ``/status`` with 503 forever;
``ignore-term`` ignores SIGTERM (only SIGKILL stops it); ``slow`` is ready after 0.5 s.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    ready = True

    def _reply(self, status: int, data: Any) -> None:
        out = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        if self.path == "/status" and self.ready:
            self._reply(200, {"status": "ready", "transports": ["daily"]})
        else:
            self._reply(503 if self.path == "/status" else 404, {"detail": "not ready"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        n = uuid.uuid4().hex[:8]
        print(f"start {body}", flush=True)
        self._reply(
            200,
            {
                "dailyRoom": f"https://standin.invalid/bot-{n}",
                "dailyToken": f"bot-token-{n}",
                "sessionId": str(uuid.uuid4()),
            },
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "--port":
        args = args[1:]
    port, mode = int(args[0]), (args[1] if len(args) > 1 else "ready")
    print(f"stand-in bot starting in mode {mode}", flush=True)
    if mode == "exit":
        for i in range(30):
            print(f"log line {i}")
        print("Fatal: DAILY_API_KEY is not set", flush=True)
        sys.exit(3)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "slow":
        time.sleep(0.5)
    Handler.ready = mode != "never"
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"serving on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""The live progress line while items wait for their runs.

One line, ``cekura: 37/120 done · 80 running · 3 queued · 2 failed · 4m12s``, computed from
the session's plan and result snapshots (no extra request). On a terminal it is rewritten in
place; otherwise it is printed at most every ``interval`` seconds so CI logs stay short.
Only the process that owns the terminal prints it: the controller under pytest-xdist.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import CekuraError
from .models import TERMINAL_STATUSES
from .session import CekuraSession

_QUEUED = {"pending", "in_queue", "scaling_up"}


def progress_line(session: CekuraSession, now: float) -> str | None:
    plan = session.coordinator.plan(0.0)
    if not plan or not plan.get("slots"):
        return None
    client = session.client()
    statuses: dict[int, tuple[str, bool | None]] = {}
    slots = [slot for case_slots in plan["slots"].values() for slot in case_slots]
    for result_id in {s["result_id"] for s in slots if s["result_id"] is not None}:
        known = session.coordinator.snapshot(result_id)
        if known is None or client is None:
            continue
        try:
            result = client.parse_result(known[0], result_id)
        except CekuraError:
            continue
        statuses.update({run.id: (run.status, run.success) for run in result.runs})
    done = running = queued = failed = 0
    for slot in slots:
        if slot["error"] is not None:
            done, failed = done + 1, failed + 1
            continue
        status, success = statuses.get(slot["run_id"], ("pending", None))
        if status in TERMINAL_STATUSES:
            done += 1
            failed += not (status == "completed" and success is True)
        elif status in _QUEUED:
            queued += 1
        else:
            running += 1
    elapsed = int(max(0.0, now - float(plan["fired_at"])))
    return (
        f"cekura: {done}/{len(slots)} done · {running} running · {queued} queued · "
        f"{failed} failed · {elapsed // 60}m{elapsed % 60:02d}s"
    )


class Progress:
    def __init__(
        self,
        session: CekuraSession,
        reporter: Any,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.reporter = reporter
        self.tty = bool(getattr(reporter, "isatty", False))
        self.interval = 1.0 if self.tty else interval
        self.clock = clock
        self._last = 0.0
        self._shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _terminal(self) -> Any:
        """Write past pytest's output capture, as live logging does."""
        capman = self.reporter.config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            return contextlib.nullcontext()
        return capman.global_and_fixture_disabled()

    def tick(self) -> None:
        with self._lock, self._terminal():
            now = self.clock()
            if now - self._last < self.interval:
                return
            line = progress_line(self.session, now)
            if line is None:
                return
            self._last = now
            if self.tty:
                if not self._shown:
                    self.reporter.ensure_newline()
                self.reporter.rewrite(line)
                self._shown = True
            else:
                if self.reporter._tw.width_of_current_line:
                    self.reporter._tw.line()  # xdist's progress leaves the line open
                self.reporter.write_line(line)

    def clear(self) -> None:
        """On a terminal, erase the line so pytest's own output goes on cleanly."""
        with self._lock, self._terminal():
            if self.tty and self._shown:
                self.reporter.rewrite("", erase=True)
                self.reporter.write("\r")
                self._shown = False

    def run_in_background(self, interval: float) -> None:
        """Under xdist the controller waits on no item itself: tick from a thread. Lines,
        never an in-place rewrite: xdist writes its own progress on the current line."""
        self.tty, self.interval = False, interval

        def loop() -> None:
            while not self._stop.wait(0.5):
                self.tick()

        self._thread = threading.Thread(target=loop, name="cekura-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.clear()

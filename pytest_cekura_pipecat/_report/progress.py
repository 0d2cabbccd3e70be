"""The live progress line while items wait for their runs.

One line, ``cekura: 37/120 done · 70 running · 3 queued · 10 waiting · 2 failed · 1 errors ·
4m12s``, from the watcher's own counts (no extra request): done, running (Cekura says the
call is under way), queued (fired, Cekura has not started it), waiting (not fired yet: its
room's lane or ``max_live_runs`` holds it) add up to the total. On a terminal it is shown after pytest's current line
and rewritten in place (every second; every 5 s on the xdist controller), erased before pytest
writes again;
otherwise it is printed at most every ``interval`` seconds so CI logs stay short. Only the
process that owns the terminal prints it (the xdist controller, whose watcher has the counts).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counts:
    """The session's runs at one moment: ``done + running + queued + waiting == total``."""

    done: int
    total: int
    running: int
    queued: int
    waiting: int
    failed: int
    errors: int
    fired_at: float


def progress_line(counts_of: Callable[[], Counts | None], now: float) -> str | None:
    counts = counts_of()
    if counts is None or not counts.total:
        return None
    elapsed = int(max(0.0, now - counts.fired_at))
    waiting = f"{counts.waiting} waiting · " if counts.waiting else ""
    return (
        f"cekura: {counts.done}/{counts.total} done · {counts.running} running · "
        f"{counts.queued} queued · {waiting}{counts.failed} failed · {counts.errors} errors · "
        f"{elapsed // 60}m{elapsed % 60:02d}s"
    )


class Progress:
    def __init__(
        self,
        counts: Callable[[], Counts | None],
        reporter: Any,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counts = counts
        self.reporter = reporter
        self.tty = bool(getattr(reporter, "isatty", False))
        self.xdist = reporter.config.pluginmanager.hasplugin("dsession")
        self.interval = (5.0 if self.xdist else 1.0) if self.tty else interval
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
            line = progress_line(self.counts, now)
            if line is None:
                return
            self._last = now
            if self.tty:
                self._show(line)
            else:
                if self.reporter._tw.width_of_current_line:
                    self.reporter._tw.line()  # never continue pytest's own progress line
                self.reporter.write_line(line)

    def _show(self, line: str) -> None:
        """On a terminal, show the line after pytest's current one without touching it:
        save the cursor, write, restore (DECSC/DECRC). pytest's next character lands where it
        would have, and its own line is never split by a newline of ours."""
        tw = self.reporter._tw
        room = tw.fullwidth - tw.width_of_current_line - 2
        erase = "\x1b[K" if self._shown else ""
        if room < 20:  # no space left on pytest's line: show nothing rather than wrap
            self._raw(erase)
            self._shown = False
            return
        self._raw(f"{erase}\x1b7 {line[:room]}\x1b8")
        self._shown = True

    def _raw(self, text: str) -> None:
        # Straight to the file: the writer's idea of the current line (pytest's [ 42%]
        # alignment) must not count what we show after it.
        stream = self.reporter._tw._file
        stream.write(text)
        stream.flush()

    def clear(self) -> None:
        """On a terminal, erase what we showed so pytest's own output goes on cleanly."""
        with self._lock, self._terminal():
            if self._shown:
                self._raw("\x1b[K")
                self._shown = False

    def start(self) -> None:
        def loop() -> None:
            self.tick()
            while not self._stop.wait(0.25):
                self.tick()

        self._thread = threading.Thread(target=loop, name="cekura-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.clear()

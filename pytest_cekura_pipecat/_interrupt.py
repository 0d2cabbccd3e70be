"""Interrupts (Ctrl-C, SIGTERM) that always reach pytest as one clean KeyboardInterrupt.

CI cancels a job with SIGTERM; pytest only knows KeyboardInterrupt, and live calls are ended
only on an interrupt pytest has seen. Three things can go wrong with a handler that simply
raises, and each is handled here:

- **Raised at an unsafe point.** A KeyboardInterrupt raised between two bytecodes of
  ``threading`` (inside ``Condition.wait`` after its lock was released and before its
  ``try``) leaves that lock released twice: the interrupt surfaces as
  ``RuntimeError: cannot release un-acquired lock``, an INTERNALERROR. One raised inside an
  import can fail it in ``compile()`` (``SystemError``). So the handler raises only where it
  is safe (outside ``threading``, ``queue`` and the import system, or at a blocking
  ``acquire`` inside a ``try`` of ``threading``, which restores its lock) and otherwise asks
  for the signal again a moment later (``retry`` seconds), delivered to the main thread.
- **Lost.** One raised while Python runs a finalizer (``__del__``, a weakref callback) is
  printed and dropped, and code may catch it. So a SIGTERM is raised again until pytest
  reports the interrupt (or the session ends): first after ``first`` seconds (longer than
  an interrupt takes to unwind: a start request on the wire gets 5 s to answer), then every
  ``every`` seconds.
- **Doubled.** A second Ctrl-C while the first is being handled (the live calls are being
  ended) would cut that short and end pytest with a raw traceback. After the first, further
  interrupts are noted with one line on stderr and otherwise ignored until the session ends.
"""

from __future__ import annotations

import ast
import inspect
import os
import queue
import signal
import textwrap
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

AGAIN_LINE = (
    "cekura: interrupted again: the live calls are being ended first (they are billed while "
    "they run); the session ends right after\n"
)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _safe_acquires(function: Callable[..., Any]) -> set[int]:
    """Lines of ``function`` holding a blocking ``acquire`` inside a ``try``: an exception
    raised there is unwound by that ``try`` (it restores the lock)."""
    try:
        lines, start = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return set()
    safe: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for inner in node.body:
                for call in ast.walk(inner):
                    if (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "acquire"
                    ):
                        safe.add(start + call.lineno - 1)
    return safe


def _safe_points() -> dict[CodeType, set[int]]:
    functions: list[Any] = [threading.Condition.wait, threading.Thread._wait_for_tstate_lock]  # type: ignore[attr-defined]
    return {f.__code__: _safe_acquires(f) for f in functions}


_UNSAFE_FILES = frozenset({threading.__file__, queue.__file__})
_SAFE_POINTS = _safe_points()  # read-only after import


def safe_to_raise(frame: FrameType | None) -> bool:
    """Whether a KeyboardInterrupt raised in ``frame`` (the main thread's innermost frame)
    unwinds cleanly."""
    if frame is None:
        return True
    code = frame.f_code
    if code.co_filename in _UNSAFE_FILES and frame.f_lineno not in _SAFE_POINTS.get(code, ()):
        return False
    outer: FrameType | None = frame
    while outer is not None:
        if outer.f_code.co_filename.startswith("<frozen importlib"):
            return False
        outer = outer.f_back
    return True


class SigtermAsInterrupt:
    """Installed in the main thread once firing may start; uninstalled when the session
    ends (see the module docstring)."""

    def __init__(self, first: float = 10.0, every: float = 5.0, retry: float = 0.02) -> None:
        self._first = first
        self._every = every
        self._retry = retry
        self._wake = threading.Event()  # a signal arrived: the resender has work
        self._received = threading.Event()  # a SIGTERM arrived
        self._seen = threading.Event()  # pytest reported the interrupt, or the session ended
        self._finishing = threading.Event()  # the session winds down: raise nothing more
        self._pending: int | None = None  # a signal deferred to a safe point
        self._ours = False  # the next signal is the resender's, not the user's
        self._raised = False  # an interrupt was raised: a user's next one is only noted
        self._told = False
        self._previous: dict[int, Any] = {}
        self._main = threading.main_thread()

    def install(self) -> None:
        """Only the main thread can handle signals; elsewhere this does nothing."""
        if self._previous or threading.current_thread() is not self._main:
            return
        for signum in _SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:
                return
        threading.Thread(target=self._resend, name="cekura-interrupt", daemon=True).start()

    def seen(self) -> None:
        """pytest has the interrupt in hand (``pytest_keyboard_interrupt``)."""
        self._raised = True
        self._seen.set()

    def finishing(self) -> None:
        """The session is finishing (``pytest_sessionfinish``): an interrupt raised now
        would only cut the wind-down short (xdist tearing its workers down) with a raw
        traceback. From here a signal is noted, a SIGTERM pytest never saw is not sent
        again, and the session's end ends the calls (``unseen``)."""
        self._finishing.set()
        self._wake.set()

    def unseen(self) -> bool:
        """A SIGTERM arrived and pytest never reported an interrupt."""
        return self._received.is_set() and not self._seen.is_set()

    def uninstall(self) -> None:
        self._seen.set()
        self._wake.set()  # let the thread end
        if self._previous and threading.current_thread() is self._main:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        ours, self._ours = self._ours, False
        if signum == signal.SIGTERM:
            self._received.set()
        if self._seen.is_set() or self._finishing.is_set() or (self._raised and not ours):
            self._again()  # pytest has (or is unwinding) an interrupt already
            return
        if not safe_to_raise(frame):
            self._pending = signum  # delivered again in a moment
            self._wake.set()
            return
        self._raised = True
        self._wake.set()
        raise KeyboardInterrupt("SIGTERM" if signum == signal.SIGTERM else "SIGINT")

    def _again(self) -> None:
        if not self._told:
            self._told = True
            os.write(2, AGAIN_LINE.encode())

    def _deliver(self, signum: int) -> None:
        ident = self._main.ident
        quiet = self._seen.is_set() or self._finishing.is_set()
        if ident is not None and self._main.is_alive() and not quiet:
            self._ours = True
            signal.pthread_kill(ident, signum)

    def _resend(self) -> None:
        """Delivers a deferred signal again after ``retry`` seconds, and a SIGTERM pytest
        never reported after ``first`` seconds, then every ``every`` seconds. Idle (no
        wake-ups) until a signal arrives."""
        self._wake.wait()
        due = time.monotonic() + self._first
        while not self._seen.wait(self._retry) and not self._finishing.is_set():
            pending, self._pending = self._pending, None
            if pending is not None:
                self._deliver(pending)
            elif not (self._received.is_set() and self._raised):
                due = time.monotonic() + self._first
            elif time.monotonic() >= due:
                self._deliver(signal.SIGTERM)
                due = time.monotonic() + self._every

"""SIGTERM as Ctrl-C. CI cancels a job with SIGTERM; pytest only knows KeyboardInterrupt, and
live calls are ended only on an interrupt pytest has seen.

A KeyboardInterrupt raised by a signal handler can be lost: one raised while Python runs a
finalizer (``__del__``, a weakref callback) is printed and dropped, and code may catch it. So
a SIGTERM is raised again until pytest reports the interrupt (or the session ends): first
after ``first`` seconds (longer than an interrupt takes to unwind: a start request on the wire
gets 5 s to answer), then every ``every`` seconds."""

from __future__ import annotations

import _thread
import signal
import threading
from typing import Any


class SigtermAsInterrupt:
    def __init__(self, first: float = 10.0, every: float = 5.0) -> None:
        self._first = first
        self._every = every
        self._received = threading.Event()  # set by the handler: wakes the thread
        self._seen = threading.Event()  # pytest reported the interrupt, or the session ended
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Only the main thread can handle signals; elsewhere this does nothing."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:
            return
        self._installed = True
        threading.Thread(target=self._resend, name="cekura-sigterm", daemon=True).start()

    def seen(self) -> None:
        """pytest has the interrupt in hand (``pytest_keyboard_interrupt``)."""
        self._seen.set()

    def unseen(self) -> bool:
        """A SIGTERM arrived and pytest never reported an interrupt."""
        return self._received.is_set() and not self._seen.is_set()

    def uninstall(self) -> None:
        self._seen.set()
        self._received.set()  # let the thread end
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self._received.set()
        raise KeyboardInterrupt("SIGTERM")

    def _resend(self) -> None:
        self._received.wait()
        wait = self._first
        while not self._seen.wait(wait):
            _thread.interrupt_main()
            wait = self._every

"""A line for the user's terminal, now, from any thread (the I/O loop's included).

Used for what must not wait for the end of the session: an API host that cannot be
reached. Written past pytest's output capture, as live logging and the progress line are,
and only once per session, so an outage is one line, not one per request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ._text import plain


class TerminalNotice:
    def __init__(self, config: pytest.Config, before: Callable[[], None] | None = None) -> None:
        self.config = config
        self.before = before  # e.g. erase the progress line first
        self._lock = threading.Lock()
        self._said = False

    def __call__(self, line: str) -> None:
        with self._lock:
            if self._said:
                return
            self._said = True
            reporter: Any = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is None:
                return
            if self.before is not None:
                self.before()
            capman: Any = self.config.pluginmanager.getplugin("capturemanager")
            quiet = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
            with quiet:
                reporter.ensure_newline()
                reporter.write_line(plain(line), yellow=True, bold=True)
                reporter.flush()  # now, even when stdout is a pipe (CI logs)

"""Where an interrupt may be raised (unit tests of ``_interrupt``; end to end in
test_polling.py)."""

from __future__ import annotations

import inspect
import signal
import threading
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, cast

import pytest

from pytest_cekura_pipecat import _interrupt
from pytest_cekura_pipecat._interrupt import SigtermAsInterrupt, safe_to_raise


@dataclass
class _Code:
    co_filename: str


@dataclass
class _Frame:
    """What ``safe_to_raise`` reads of a frame."""

    f_code: CodeType | _Code
    f_lineno: int
    f_back: FrameType | None = None


def _frame(code: CodeType | _Code, lineno: int, f_back: FrameType | None = None) -> FrameType:
    """A frame as ``safe_to_raise`` reads it: Python builds real frames only by running code."""
    return cast(FrameType, _Frame(code, lineno, f_back))


def _line_of(function: Any, text: str) -> int:
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if text in line)


WAIT: CodeType = threading.Condition.wait.__code__


def test_an_interrupt_is_not_raised_where_it_would_leave_a_lock_released_twice() -> None:
    released = _frame(WAIT, _line_of(threading.Condition.wait, "_release_save()"))
    assert not safe_to_raise(released)
    restoring = _frame(WAIT, _line_of(threading.Condition.wait, "_acquire_restore(saved_state)"))
    assert not safe_to_raise(restoring)


def test_an_interrupt_is_raised_in_a_blocking_wait_that_restores_its_lock() -> None:
    blocked = _frame(WAIT, _line_of(threading.Condition.wait, "waiter.acquire(True, timeout)"))
    assert safe_to_raise(blocked)
    assert safe_to_raise(inspect.currentframe())


def test_an_interrupt_is_not_raised_inside_an_import() -> None:
    importing = _frame(_Code("<frozen importlib._bootstrap>"), 1)
    assert not safe_to_raise(_frame(_Code(__file__), 3, f_back=importing))


def test_a_signal_at_an_unsafe_point_is_delivered_again_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delivered = threading.Event()
    handler = SigtermAsInterrupt(retry=0.001)
    monkeypatch.setattr(handler, "_deliver", lambda signum: delivered.set())
    threading.Thread(target=handler._resend, daemon=True).start()
    released = _frame(WAIT, _line_of(threading.Condition.wait, "_release_save()"))
    handler._handle(signal.SIGTERM, released)  # no raise
    try:
        assert delivered.wait(60)
    finally:
        handler.uninstall()
    with pytest.raises(KeyboardInterrupt):  # delivered again: now at a safe point
        SigtermAsInterrupt()._handle(signal.SIGTERM, inspect.currentframe())


def test_a_users_second_interrupt_is_noted_once_not_raised(
    capfd: pytest.CaptureFixture[str],
) -> None:
    handler = SigtermAsInterrupt()
    with pytest.raises(KeyboardInterrupt):
        handler._handle(signal.SIGINT, inspect.currentframe())
    handler._handle(signal.SIGINT, inspect.currentframe())
    handler._handle(signal.SIGINT, inspect.currentframe())
    assert capfd.readouterr().err == _interrupt.AGAIN_LINE


def test_nothing_is_raised_or_sent_again_once_the_session_is_finishing(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A SIGTERM pytest never saw is sent again after ``first`` seconds, but not into the
    session's wind-down (xdist tearing its workers down can take that long on a loaded
    machine): the session's end ends the calls instead."""
    delivered: list[int] = []
    handler = SigtermAsInterrupt(first=0.05, retry=0.001)
    monkeypatch.setattr(handler, "_deliver", delivered.append)
    with pytest.raises(KeyboardInterrupt):  # raised, then lost: pytest never reports it
        handler._handle(signal.SIGTERM, inspect.currentframe())
    handler.finishing()
    resender = threading.Thread(target=handler._resend, daemon=True)
    resender.start()
    resender.join(timeout=60)
    assert not resender.is_alive() and delivered == []
    handler._handle(signal.SIGTERM, inspect.currentframe())  # noted, not raised
    assert handler.unseen()
    assert capfd.readouterr().err == _interrupt.AGAIN_LINE

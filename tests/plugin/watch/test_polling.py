"""Interrupts under xdist, and the read budget at its default (the watcher's schedule is
tested with a fake clock in test_watch.py)."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from helpers import Suite


def test_sigterm_under_xdist_ends_live_calls_once(suite: Suite) -> None:
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "s{i}"\nscenario = 105\n' for i in range(4))
    )
    code, out = suite.sigterm_after_start("-n", "2", "--cekura-timeout=120", settle=1.0)
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert len(suite.posts()) == 1
    assert len(suite.ended()) == 1, out
    assert "ended the live calls of result(s)" in out


# A SIGTERM handled while Python runs a finalizer (``__del__``, a weakref callback) has its
# KeyboardInterrupt printed and dropped. This conftest drops the first one on purpose: any
# SIGTERM handler installed is wrapped.
_SWALLOW_FIRST_INTERRUPT = """
import signal

_install = signal.signal
_dropped = []

def _wrapping(signum, handler):
    if signum != signal.SIGTERM or not callable(handler):
        return _install(signum, handler)

    def swallowing(sig, frame):
        try:
            handler(sig, frame)
        except KeyboardInterrupt:
            if _dropped:
                raise
            _dropped.append(sig)
            print("conftest: the interrupt was dropped", flush=True)

    return _install(signum, swallowing)

signal.signal = _wrapping
"""


# A signal that strikes inside ``threading.Condition.wait`` can leave its lock released twice:
# the interrupt then surfaces as "RuntimeError: cannot release un-acquired lock", which pytest
# reports as an INTERNALERROR and never as an interrupt. This conftest turns the first one into
# that error.
_INTERRUPT_BECOMES_RUNTIME_ERROR = _SWALLOW_FIRST_INTERRUPT.replace(
    """            _dropped.append(sig)
            print("conftest: the interrupt was dropped", flush=True)""",
    """            _dropped.append(sig)
            raise RuntimeError("cannot release un-acquired lock")""",
)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
@pytest.mark.parametrize(
    ("conftest", "said", "code"),
    [
        # raised again after 10 s: pytest sees an interrupt
        (_SWALLOW_FIRST_INTERRUPT, "the interrupt was dropped", pytest.ExitCode.INTERRUPTED),
        # ended when the session finishes
        (_INTERRUPT_BECOMES_RUNTIME_ERROR, "un-acquired lock", pytest.ExitCode.INTERNAL_ERROR),
    ],
    ids=["lost", "became-another-error"],
)
def test_a_sigterm_pytest_never_saw_as_an_interrupt_still_ends_the_calls(
    suite: Suite, workers: list[str], conftest: str, said: str, code: pytest.ExitCode
) -> None:
    suite.pytester.makeconftest(conftest)
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "s{i}"\nscenario = 105\n' for i in range(2))
    )
    got, out = suite.sigterm_after_start(*workers, "--cekura-timeout=120", settle=0.5)
    assert said in out
    assert got == code, out
    assert len(suite.ended()) == 1, out


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
def test_a_second_ctrl_c_still_ends_the_calls_without_a_traceback(
    suite: Suite, workers: list[str]
) -> None:
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "s{i}"\nscenario = 105\n' for i in range(2))
    )
    got, out = suite.sigterm_after_start(
        *workers, "--cekura-timeout=120", settle=0.5, signals=(signal.SIGINT, signal.SIGINT)
    )
    assert got == pytest.ExitCode.INTERRUPTED, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    assert len(suite.ended()) == 1, out
    assert "ended the live calls of result(s)" in out


def test_results_of_one_agent_are_read_through_its_list_at_the_default_budget(
    suite: Suite,
) -> None:
    """Three results of one agent, runs of 2.5 s, at the default budget of 60 reads a
    minute: the agent's results list tells when each result ended, so each result is read
    a couple of times, not every poll interval (0.1 s here)."""
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n'
        + "".join(f'[[case]]\nname = "s{i}"\nscenario = 108\n' for i in range(6))
    )
    result = suite.run(
        "-p", "no:xdist", "--cekura-batch-size=2", "--cekura-max-reads-per-minute=60"
    )
    result.assert_outcomes(passed=6)
    lists = [r for r in suite.gets() if r.path.rstrip("/").endswith("/results")]
    assert lists and all(r.query.get("agent_id") == ["1"] for r in lists)
    own = Counter(r.path for r in suite.gets() if r not in lists)
    assert len(own) == 3 and max(own.values()) <= 4, own

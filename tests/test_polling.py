"""Interrupts under xdist (the watcher's schedule is tested in test_watch.py)."""

from __future__ import annotations

import pytest
from conftest import Suite


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

"""Canaries: cases fired first and alone. The rest of the session is fired only if no canary
run *errored* (a bot that is down, a room that is dead): otherwise nothing else is billed.

A canary that fails its evaluation does not stop the session; only an error does. The
canaries' runs are read by the session's watcher like any others; the role waits for their
published final runs as an item does, and asks :func:`canary_problem` what they say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._api.run import CekuraRun
from .._config.case import Case
from .._fire.plan import Slot
from .verdict import run_reasons


def canary_problem(
    canaries: Sequence[tuple[Case, Slot]], runs: Mapping[str, CekuraRun]
) -> str | None:
    """Why the rest must not be fired: the first canary that never started, else the first
    whose final run (in ``runs``, by slot key) errored; None while none did. Not redacted."""
    for case, slot in canaries:
        if slot.error is not None:
            return _errored(case, slot.error)
    for case, slot in canaries:
        run = runs.get(slot.key)
        if run is not None and run.verdict == "error":
            reasons = run_reasons(run)
            return _errored(case, reasons[0] if reasons else "errored")
    return None


def _errored(case: Case, reason: str) -> str:
    return f"canary {case.name} errored: {reason}"

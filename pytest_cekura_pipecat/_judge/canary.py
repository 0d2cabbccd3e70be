"""Canaries: cases fired first and alone. The rest of the session is fired only if no canary
run *errored* (a bot that is down, a room that is dead): otherwise nothing else is billed.

A canary that fails its evaluation does not stop the session; only an error does. The
canaries' runs are read here, on the firing loop, until each is terminal or past its
deadline; the session's watcher watches them as well (it has their batches already).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence

from .._api.run import CekuraRun
from .._config.case import Case
from .._errors import CekuraError
from .._fire.firing import FireContext, claim_runs
from .._fire.plan import Slot
from .verdict import run_reasons


def _errored(case: Case, reason: str, ctx: FireContext) -> str:
    return ctx.redactor(f"canary {case.name} errored: {reason}")


async def canary_problem(items: Sequence[tuple[Case, Slot]], ctx: FireContext) -> str | None:  # noqa: C901 split by issue 30 item 5 in another branch
    """Why the rest must not be fired (the first canary run that errored), or None."""
    for case, slot in items:
        if slot.error is not None:
            return _errored(case, slot.error, ctx)
    assert ctx.client is not None
    waiting = list(items)
    while waiting:
        if ctx.stopped:
            return f"the canaries were not awaited: {ctx.stopped}"
        by_result: dict[int, list[tuple[Case, Slot]]] = defaultdict(list)
        for case, slot in waiting:
            if slot.result_id is not None:
                by_result[slot.result_id].append((case, slot))
        still: list[tuple[Case, Slot]] = []
        for result_id, group in by_result.items():
            try:
                result = await ctx.client.result(result_id)
            except CekuraError:
                still.extend(group)  # read again next time, until the deadline
                continue
            claim_runs(result, [slot for _, slot in group])
            runs = {run.id: run for run in result.runs}
            for case, slot in group:
                if slot.run_id is not None and slot.run_id in result.unreadable:
                    reason = result.unreadable[slot.run_id]
                    return _errored(case, f"run {slot.run_id} could not be read: {reason}", ctx)
                run = runs.get(slot.run_id) if slot.run_id is not None else None
                if run is None or not result.verdict_ready(run):
                    still.append((case, slot))
                    continue
                final = CekuraRun.from_api(run, result.id, result.raw_runs.get(run.id, {}), None)
                if final.verdict == "error":
                    reasons = run_reasons(final)
                    return _errored(case, reasons[0] if reasons else "errored", ctx)
        now = time.time()
        for case, slot in still:
            if now >= slot.deadline:
                return _errored(case, f"no verdict within its timeout ({slot.timeout:g}s)", ctx)
        waiting = still
        if waiting:
            await asyncio.sleep(ctx.canary_poll)
    return None

"""Turning selected cases into start requests, and runs back into cases.

Every run of every case becomes a *slot* (a plain dict, so a plan can be written to a file
and read by another xdist worker): the entry's position, its scenario, and once fired the
result and run it became, or the reason it never started.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from .case import Case, Entry, Room, expand, expand_json
from .client import START_PATH, CekuraClient
from .config import room_url_problem
from .coordinator import Plan
from .errors import ApiError, AuthError, CekuraError, CreditError, FateUnknown, StartRejected
from .models import Result, Run
from .redact import Redactor

Slot = dict[str, Any]
_IN_FLIGHT_GRACE = 5.0


@dataclass
class FireContext:
    client: CekuraClient | None
    redactor: Redactor
    env: Mapping[str, str]
    batch_size: int = 50
    concurrency: int = 4
    no_client_reason: str = "CEKURA_API_KEY is not set: export your Cekura API key"
    room_hook: Callable[[Case], Room | None] | None = None
    entry_hook: Callable[[Case, dict[str, Any]], None] | None = None
    dashboard: str = ""  # the session passes cekura_dashboard_url; no link when empty
    notes: list[str] = field(default_factory=list)
    on_started: Callable[[int], None] | None = None  # a result exists: it may need ending
    systemic: str | None = None  # why every later batch was refused (key, credit)


@dataclass
class _Pending:
    nodeid: str
    case: Case
    slot: Slot
    entry: dict[str, Any] | None = None


def _new_slot(index: int, case: Case) -> Slot:
    return {
        "index": index,
        "scenario": case.scenario,
        "result_id": None,
        "run_id": None,
        "error": None,
        "dashboard_url": None,
    }


def _prepare(pending: _Pending, ctx: FireContext) -> None:
    """Expand variables, find a room, run the entry hook; an error marks the slot."""
    case, where = pending.case, f"case {pending.case.name}"
    try:
        url = expand(case.pipecat_room_url, ctx.env, where) if case.pipecat_room_url else None
        token = expand(case.pipecat_token, ctx.env, where) if case.pipecat_token else None
        message = expand_json(case.publish_data_message, ctx.env, where)
        if url is None:
            room = ctx.room_hook(case) if ctx.room_hook else None
            if room is None:
                raise CekuraError(
                    f"{where}: no pipecat_room_url, and no pytest_cekura_room hook gave one"
                )
            url, token = room.url, room.token
        ctx.redactor.add(token)
        problem = room_url_problem(url)
        if problem:
            raise CekuraError(f"{where}: {problem}")
        entry = Entry(case.scenario, url, token, message).to_json()
        if ctx.entry_hook:
            ctx.entry_hook(case, entry)
            ctx.redactor.add(entry.get("pipecat_token"))
        pending.entry = entry
    except CekuraError as exc:
        pending.slot["error"] = ctx.redactor(str(exc))
    except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
        # A user's hook failed (or called pytest.skip/fail): that case errors, the session
        # goes on.
        pending.slot["error"] = ctx.redactor(
            f"{where}: preparing the entry failed: {type(exc).__name__}: {exc}"
        )


def assign_runs(scenarios: Sequence[int], runs: Sequence[Run]) -> list[int | None]:
    """Run ids for entries, by scenario id and then by position among the same scenario."""
    if runs and all(run.scenario is None for run in runs) and len(runs) == len(scenarios):
        return [run.id for run in runs]
    queues: dict[int | None, deque[int]] = defaultdict(deque)
    for run in runs:
        queues[run.scenario].append(run.id)
    return [queues[s].popleft() if queues[s] else None for s in scenarios]


def _batches(ready: list[_Pending], size: int) -> Iterator[tuple[int | None, list[_Pending]]]:
    by_agent: dict[int | None, list[_Pending]] = defaultdict(list)
    for item in ready:
        by_agent[item.case.agent].append(item)
    for agent, items in by_agent.items():
        for start in range(0, len(items), size):
            yield agent, items[start : start + size]


def _fail_batch(batch: list[_Pending], message: str) -> None:
    for item in batch:
        item.slot["error"] = message


def _send(
    agent: int | None,
    batch: list[_Pending],
    ctx: FireContext,
    stop: threading.Event,
    stop_reason: list[str],
) -> None:
    assert ctx.client is not None
    if stop.is_set():
        _fail_batch(batch, f"not started: {stop_reason[0]}")
        return
    body: dict[str, Any] = {"scenarios": [item.entry for item in batch]}
    if agent is not None:
        body["agent"] = agent
    try:
        result = ctx.client.start_runs(body)
    except (AuthError, CreditError) as exc:
        stop_reason[:] = [str(exc)]
        ctx.systemic = str(exc)
        stop.set()
        _fail_batch(batch, str(exc))
        return
    except StartRejected as exc:
        for index, item in enumerate(batch):
            own = exc.by_entry.get(index)
            if own:
                item.slot["error"] = (
                    f"Cekura rejected this run's entry (HTTP 400): {'; '.join(own)}"
                )
            else:
                why = (
                    "; ".join(exc.general)
                    or "; ".join(
                        f"entry of case {batch[i].case.name}: {'; '.join(m)}"
                        for i, m in sorted(exc.by_entry.items())
                        if i < len(batch)
                    )
                    or "no reason given"
                )
                item.slot["error"] = (
                    f"not started: Cekura rejected the start request it was part of (HTTP 400): {why}"
                )
        ctx.notes.append(ctx.redactor(str(exc)))
        return
    except FateUnknown as exc:
        _fail_batch(batch, str(exc))
        ctx.notes.append(str(exc))
        return
    except ApiError as exc:
        _fail_batch(batch, f"not started: {exc}")
        return
    except Exception as exc:  # never crash the session; never re-send either
        message = ctx.redactor(
            f"the start request failed unexpectedly ({type(exc).__name__}): runs may already "
            "exist and were not re-sent; check the agent's results on the Cekura dashboard"
        )
        _fail_batch(batch, message)
        ctx.notes.append(message)
        return
    if ctx.on_started is not None:
        ctx.on_started(result.id)
    run_ids = assign_runs([item.case.scenario for item in batch], result.runs)
    for item, run_id in zip(batch, run_ids, strict=True):
        item.slot["result_id"] = result.id
        item.slot["run_id"] = run_id


def dry_run(cases: Sequence[tuple[str, Case]], ctx: FireContext) -> list[str]:
    """The start requests a real session would send, redacted; nothing is sent and no room
    hook is called (it may create rooms)."""
    pending = [
        _Pending(nodeid, case, _new_slot(i, case))
        for nodeid, case in cases
        for i in range(case.repeat)
    ]
    ctx.room_hook = lambda case: Room("https://room-from-pytest-cekura-room-hook.invalid/", None)
    for item in pending:
        _prepare(item, ctx)
    lines: list[str] = []
    ready = [p for p in pending if p.slot["error"] is None]
    batches = list(_batches(ready, ctx.batch_size))
    for number, (agent, batch) in enumerate(batches, 1):
        body: dict[str, Any] = {
            "scenarios": [
                {k: ("***" if k == "pipecat_token" else v) for k, v in (item.entry or {}).items()}
                for item in batch
            ]
        }
        if agent is not None:
            body["agent"] = agent
        lines.append(f"POST {START_PATH} (request {number} of {len(batches)}, {len(batch)} run(s))")
        lines.append(ctx.redactor(json.dumps(body, indent=2)))
    for item in pending:
        if item.slot["error"] is not None:
            lines.append(f"would not fire: {item.slot['error']}")
    lines.append(
        f"cekura dry run: {len(ready)} run(s) in {len(batches)} request(s) would be started "
        f"and billed; nothing was fired"
    )
    return lines


def _in_pool(workers: int, jobs: list[Callable[[], None]], stop: threading.Event) -> None:
    """Run jobs on a bounded pool. On Ctrl-C/SIGTERM nothing queued is started any more
    (a batch not yet sent stays unsent) and the interrupt goes on at once."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures = [pool.submit(job) for job in jobs]
    try:
        for future in futures:
            future.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        # Requests already on the wire get a few seconds to answer, so the results they
        # create are known (and their calls can be ended) before the interrupt goes on.
        wait([f for f in futures if f.running()], timeout=_IN_FLIGHT_GRACE)
        raise
    pool.shutdown()


def claim_runs(result: Result, slots: Sequence[Slot]) -> None:
    """Give runs to the slots of ``result`` that the start answer did not map (a variant
    that lists no runs): by scenario, in plan order, lowest run id first. Every process
    that holds the same plan and snapshot reaches the same assignment."""
    claimed = {s["run_id"] for s in slots if s["run_id"] is not None}
    free: dict[int | None, deque[int]] = defaultdict(deque)
    for run in sorted(result.runs, key=lambda r: r.id):
        if run.id not in claimed:
            free[run.scenario].append(run.id)
    for slot in slots:
        if slot["run_id"] is None and slot["error"] is None and free[slot["scenario"]]:
            slot["run_id"] = free[slot["scenario"]].popleft()


def fire(cases: Sequence[tuple[str, Case]], ctx: FireContext) -> Plan:
    """Fire every run of every case, batched; return the plan (never raises for a case)."""
    fired_at = time.time()
    slots: dict[str, list[Slot]] = {}
    pending: list[_Pending] = []
    for nodeid, case in cases:
        case_slots = [_new_slot(i, case) for i in range(case.repeat)]
        slots[nodeid] = case_slots
        pending.extend(_Pending(nodeid, case, slot) for slot in case_slots)
    if ctx.client is None:
        for item in pending:
            item.slot["error"] = ctx.no_client_reason
        return {"fired_at": fired_at, "slots": slots, "notes": [ctx.no_client_reason]}
    stop = threading.Event()
    stop_reason: list[str] = ["the session was interrupted"]
    _in_pool(ctx.concurrency * 4, [partial(_prepare, p, ctx) for p in pending], stop)
    ready = [p for p in pending if p.slot["error"] is None]
    batches = list(_batches(ready, ctx.batch_size))
    _in_pool(
        ctx.concurrency,
        [partial(_send, agent, batch, ctx, stop, stop_reason) for agent, batch in batches],
        stop,
    )
    _add_dashboard_links(pending, ctx)
    return {
        "fired_at": fired_at,
        "slots": slots,
        "notes": ctx.notes,
        "requests": len(batches),
    }


def _add_dashboard_links(pending: list[_Pending], ctx: FireContext) -> None:
    assert ctx.client is not None
    projects: dict[int, str | None] = {}
    for item in pending:
        result_id = item.slot["result_id"]
        if result_id is None:
            continue
        project = item.case.project
        agent = item.case.agent
        if project is None and agent is not None:
            if agent not in projects:
                try:
                    found = ctx.client.agent(agent).project
                except CekuraError:
                    found = None
                projects[agent] = str(found) if found is not None else None
            project = projects[agent]
        if project is not None and ctx.dashboard:
            item.slot["dashboard_url"] = (
                f"{ctx.dashboard.rstrip('/')}/{project}/results/{result_id}"
            )

"""The process's firing role in the session: ``Local`` (no xdist), ``Controller`` (the
xdist controller), ``Worker`` (an xdist worker) or ``Idle`` (a session refused as a whole).
The hook object that ``plugin.py`` registers in ``pytest_configure`` (the one place that
asks which process this is) builds the right one; the session only calls it.

- ``Local`` fires, watches (on its I/O loop) and waits, all in one process.
- ``Worker``: exactly one worker fires (it has the conftest hooks); every worker waits for
  its items' runs, which it reads from the shared directory. Workers make no reads of their own.
- ``Controller`` runs the session's one watcher: it watches every batch the firing worker
  records, publishes each final run to the shared directory, and ends live calls on an
  interrupt (workers may be dead by then; the controller is not).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .._api.catalogue import Evaluator
from .._api.client import CekuraClient, HttpPolicy
from .._api.recording import Recorder, Replay
from .._api.run import CekuraRun
from .._config.case import Case
from .._files import SharedDirError
from .._fire.bot import stop_orphan
from .._fire.credits import Forecast
from .._fire.firing import FireContext, FireControl, FireHooks, Lanes, Wiring, fire, fire_waves
from .._fire.plan import Plan, Slot
from .._judge.canary import canary_problem
from .._owner import pid_alive
from .._redact import Redactor
from .._report.progress import Counts
from .._watch.watcher import Watcher, WatchSettings
from .io import IoLoop, result
from .shared import SharedDir

ContextFactory = Callable[[CekuraClient | None, Wiring], FireContext]
_INTERRUPT_GRACE = 5.0
_BOARD_POLL = 0.01  # seconds between looks for an item's runs (single process)
_CANARY_POLL = 0.05  # seconds between looks for the canaries' runs (on the firing loop)


@dataclass(frozen=True)
class Runtime:
    """What every role needs to talk to Cekura."""

    api_url: str
    api_key: str | None
    policy: HttpPolicy
    watch: WatchSettings
    redactor: Redactor
    notice: Callable[[str], None] | None = None  # a line for the terminal, now
    api_url_source: str = ""  # the option that set api_url, for messages
    # What carries the requests (None: the network): a recording's or a replay's.
    recording: Recorder | Replay | None = None

    def client(self) -> CekuraClient | None:
        if not self.api_key:
            return None
        return CekuraClient(
            self.api_url,
            self.api_key,
            self.redactor,
            self.policy,
            notice=self.notice,
            url_source=self.api_url_source,
            transport=self.recording.transport(self.api_url) if self.recording else None,
        )

    def notes(self) -> list[str]:
        """What the recording or the replay has to say (a file not written, an answer
        not recorded)."""
        if isinstance(self.recording, Replay):
            return self.recording.notes()
        return list(self.recording.problems) if self.recording is not None else []


class Role(Protocol):
    # Whether interrupt() ends the session's live calls (then the ledger forgets them).
    ends_calls: bool

    def start(self, selected: Sequence[tuple[str, Case]], context: ContextFactory) -> None:
        """Fire the selected cases (unless another process of the session does)."""

    def refire(self, nodeid: str, case: Case, attempt: int, context: ContextFactory) -> None:
        """Fire a fresh run of one case (a rerun), in this process."""

    def runs(self, nodeid: str, attempt: int) -> list[CekuraRun]:
        """Every final run of the case, waiting for them (the case must have been started)."""

    def interrupt(self) -> None:
        """End the live calls this process can end (bounded)."""

    def reserve(self, runs: int, budget: int, base: int, counter: str = "reruns") -> bool:
        """Reserve runs (or hundredths of credits: ``counter="credits"``) for a rerun within
        the session's budget (all processes)."""

    def forecast(self) -> Forecast | None:
        """The spend forecast of the session's first firing (None before it, or when
        nothing was forecast)."""

    def evaluators(self) -> Mapping[int, Evaluator]:
        """Each selected scenario's version and metric hash, as the first firing's pre-flight
        read them (empty before it, or when nothing was read)."""

    def bot_spawned(self, pid: int) -> None:
        """The bot under test was started by this process (pid of its process group)."""

    def notes(self) -> list[str]: ...

    def progress(self) -> Counts | None:
        """The counts for the progress line, or None before firing."""

    def close(self) -> None: ...


NO_VERDICT = "no verdict: the session's watcher never reported this run"


def judged(runs: Sequence[CekuraRun]) -> bool:
    """Whether these runs are what Cekura said, not a wait that gave up (their calls may
    still be live: the ledger keeps them for the next session)."""
    return all(run.error_message != NO_VERDICT for run in runs)


def never_started(slot: Slot, reason: str) -> CekuraRun:
    return CekuraRun(
        scenario_id=slot.scenario,
        status="not_started",
        error_message=reason,
        result_id=slot.result_id,
        run_id=slot.run_id,
        dashboard_url=slot.dashboard_url,
    )


class _Board:
    """Final runs by slot key (one process): the I/O loop puts, pytest's thread waits."""

    def __init__(self) -> None:
        self.runs: dict[str, CekuraRun] = {}

    def put(self, slot: Slot, run: CekuraRun) -> None:
        self.runs[slot.key] = run  # one dict store: atomic

    def taken(self, keys: Sequence[str]) -> None:
        """These runs went to their case's verdict: keep them without their snapshots."""
        for key in keys:
            run = self.runs.get(key)
            if run is not None:
                self.runs[key] = run.released()

    def wait(self, keys: list[str], until: float) -> None:
        # Short sleeps, not Condition.wait: a signal (Ctrl-C, SIGTERM) that strikes inside
        # Condition.wait can leave its lock released twice, and the interrupt surfaces as a
        # RuntimeError that pytest reports as an internal error instead of an interrupt.
        while not all(key in self.runs for key in keys) and time.time() < until:
            time.sleep(_BOARD_POLL)


class _Watching:
    """An I/O loop with a client and the one watcher (``Local`` and ``Controller``)."""

    def __init__(self, runtime: Runtime, publish: Callable[[Slot, CekuraRun], None]) -> None:
        self.runtime = runtime
        self.io = IoLoop()
        self.client = runtime.client()
        self.watcher: Watcher | None = None
        if self.client is not None:
            self.watcher = Watcher(self.client, runtime.watch, publish)
            self.io.spawn(self.watcher.run())

    def interrupt(self) -> None:
        if self.watcher is not None:
            budget = self.runtime.watch.end_budget
            with contextlib.suppress(Exception):
                self.io.run(self.watcher.end_live_calls(budget), timeout=budget + 1)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.io.run(self.client.aclose(), timeout=2)
        self.io.close()


def _fire_here(
    io: IoLoop, client: CekuraClient | None, selected: Sequence[tuple[str, Case]], ctx: FireContext
) -> Plan:
    """Fire on the I/O loop; on an interrupt nothing more is sent, and requests already on
    the wire get a few seconds to answer, so their calls can be ended."""
    future = io.spawn(fire(selected, ctx))
    try:
        return result(future)
    except KeyboardInterrupt:
        ctx.control.stop("the session was interrupted")
        with contextlib.suppress(Exception):
            result(future, _INTERRUPT_GRACE)
        future.cancel()
        raise


async def _await_canaries(
    canaries: Sequence[tuple[Case, Slot]],
    published: Callable[[], Mapping[str, CekuraRun]],
    control: FireControl,
    redactor: Redactor,
    poll: float,
) -> str | None:
    """Wait for the canaries' final runs as an item waits for its own (the watcher publishes
    them), on the firing loop: why the rest must not be fired, or None once every canary
    run is final and none errored (``canary_problem``)."""
    slots = [slot for _, slot in canaries if slot.error is None]
    until = _give_up_at(slots)
    while True:
        if control.stopped:
            return f"the canaries were not awaited: {control.stopped}"
        known = published()
        if time.time() >= until:  # the watcher never reported: as an item would see it
            known = {slot.key: _final(slot, known) for slot in slots}
        problem = canary_problem(canaries, known)
        if problem is not None:
            return redactor(problem)
        if all(slot.key in known for slot in slots):
            return None
        await asyncio.sleep(poll)


class Local:
    ends_calls = True

    def __init__(self, runtime: Runtime) -> None:
        self._board = _Board()
        self._watching = _Watching(runtime, self._publish)
        # The session's lanes: every firing (reruns and adaptive top-ups too) queues in them,
        # and one loop at a time fires what they release.
        self._lanes = Lanes()
        self._finished: asyncio.Queue[str] | None = None  # set while that loop runs
        self._wave_task: asyncio.Task[None] | None = None
        self._firings: list[FireContext] = []
        self.plan: Plan | None = None
        self._reruns: dict[tuple[str, int], list[Slot]] = {}
        self._fire_notes: list[str] = []
        self._reserved: dict[str, int] = {}

    def start(self, selected: Sequence[tuple[str, Case]], context: ContextFactory) -> None:
        self.plan = self._fire(selected, context, 0)

    def _fire(
        self, selected: Sequence[tuple[str, Case]], context: ContextFactory, attempt: int
    ) -> Plan:
        client = self._watching.client
        control = FireControl()
        watcher = self._watching.watcher

        async def canary(canaries: Sequence[tuple[Case, Slot]]) -> str | None:
            runs = self._board.runs
            redactor = self._watching.runtime.redactor
            return await _await_canaries(canaries, lambda: runs, control, redactor, _CANARY_POLL)

        hooks = FireHooks(on_batch=watcher.add if watcher is not None else None, canary=canary)
        ctx = context(client, Wiring(control, self._lanes, attempt, hooks))
        plan = _fire_here(self._watching.io, client, selected, ctx)
        self._fire_notes.extend(n for n in plan.notes if n not in self._fire_notes)
        self._firings.append(ctx)
        self._watching.io.run(self._ensure_waves(ctx), timeout=5)
        return plan

    async def _ensure_waves(self, ctx: FireContext) -> None:
        self._start_waves(ctx)

    def _start_waves(self, ctx: FireContext) -> None:
        """Start the loop that fires held-back runs, unless one runs (checked and started
        on the I/O loop, so a loop that is ending cannot miss new runs)."""
        if self._finished is None and ctx.waiting():
            self._finished = asyncio.Queue()
            self._wave_task = asyncio.get_running_loop().create_task(
                self._fire_waves(ctx, self._finished)
            )

    async def _fire_waves(self, ctx: FireContext, finished: asyncio.Queue[str]) -> None:
        try:
            await fire_waves(ctx, finished, self._unfired)
        finally:
            self._finished = None
        self._start_waves(ctx)  # runs queued while the loop was ending

    def _publish(self, slot: Slot, run: CekuraRun) -> None:
        """The watcher's final run of a slot (on the I/O loop): items learn it, and a place
        it held in a room or under max_live_runs is free."""
        self._board.put(slot, run)
        self._lanes.done(slot.key)  # also when no loop runs (done is idempotent)
        if self._finished is not None:
            self._finished.put_nowait(slot.key)  # wakes the loop

    def _unfired(self, slots: list[Slot]) -> None:
        for slot in slots:
            self._board.put(slot, never_started(slot, slot.error or "not fired"))

    def refire(self, nodeid: str, case: Case, attempt: int, context: ContextFactory) -> None:
        plan = self._fire([(nodeid, case)], context, attempt)
        self._reruns[(nodeid, attempt)] = plan.slots.get(nodeid, [])

    def runs(self, nodeid: str, attempt: int) -> list[CekuraRun]:
        if attempt:
            slots = self._reruns.get((nodeid, attempt), [])
        else:
            slots = self.plan.slots.get(nodeid, []) if self.plan else []
        waiting = [s for s in slots if s.error is None]
        self._board.wait([s.key for s in waiting], _give_up_at(waiting))
        runs = [_final(s, self._board.runs) for s in slots]
        self._board.taken([s.key for s in waiting])
        return runs

    def interrupt(self) -> None:
        for ctx in self._firings:
            ctx.control.stop("the session was interrupted")
        self._watching.interrupt()

    def reserve(self, runs: int, budget: int, base: int, counter: str = "reruns") -> bool:
        reserved = self._reserved.get(counter, 0)
        if base + reserved + runs > budget:
            return False
        self._reserved[counter] = reserved + runs
        return True

    def forecast(self) -> Forecast | None:
        return self.plan.forecast if self.plan is not None else None

    def evaluators(self) -> Mapping[int, Evaluator]:
        return self.plan.evaluators if self.plan is not None else {}

    def bot_spawned(self, pid: int) -> None:
        pass  # stopped by this process, at the end

    def notes(self) -> list[str]:
        watcher = self._watching.watcher
        return [*self._fire_notes, *(watcher.notes if watcher else [])]

    def progress(self) -> Counts | None:
        return _progress(self.plan, self._watching.watcher)

    def close(self) -> None:
        self._watching.close()
        self._board.runs.clear()  # read by nobody now; freed without a garbage collection


def _progress(plan: Plan | None, watcher: Watcher | None) -> Counts | None:
    if plan is None:
        return None
    slots = plan.all_slots()
    unfired = sum(s.error is not None for s in slots)
    if watcher is None:
        return Counts(len(slots), len(slots), 0, 0, 0, 0, unfired, plan.fired_at)
    running, queued, _ = watcher.counts()
    done = min(unfired + watcher.published, len(slots))
    return Counts(
        done=done,
        total=len(slots),
        running=running,
        queued=queued,
        waiting=max(len(slots) - done - running - queued, 0),
        failed=watcher.failed,
        errors=unfired + watcher.errors,
        fired_at=plan.fired_at,
    )


class Controller:
    """The xdist controller: the session's watcher, fed from the shared directory."""

    ends_calls = True

    def __init__(self, runtime: Runtime, shared: Path) -> None:
        self.shared = SharedDir(shared)
        self._watching = _Watching(runtime, self._publish)
        self._stop = threading.Event()
        self._problems: list[str] = []
        self._noticed = False
        self._feeder = threading.Thread(target=self._feed, name="cekura-feed", daemon=True)
        self._feeder.start()

    def _publish(self, slot: Slot, run: CekuraRun) -> None:
        try:
            self.shared.append_run(slot.key, run)
        except (SharedDirError, ValueError) as exc:  # ValueError: a run that cannot be written
            if str(exc) not in self._problems:
                self._problems.append(f"cekura: {exc}: workers cannot learn their verdicts")

    def _feed(self) -> None:
        """The thread that hands the workers' batches to the watcher: it must outlive any
        one bad look at the directory, or every later batch would go unwatched."""
        while not self._stop.wait(0.1):
            try:
                self._feed_once()
            except Exception as exc:
                problem = f"cekura: reading {self.shared.path} failed ({exc!r}); read again"
                if problem not in self._problems:
                    self._problems.append(problem)

    def _feed_once(self) -> None:
        watcher = self._watching.watcher
        for slots in self.shared.new_batches():
            if watcher is not None:
                watcher.add(slots)
        notice = self._watching.runtime.notice
        if notice is not None and not self._noticed:  # the firing worker's, for the terminal
            line = self.shared.said()
            if line is not None:
                self._noticed = True
                notice(self._watching.runtime.redactor(line))

    def start(self, selected: Sequence[tuple[str, Case]], context: ContextFactory) -> None:
        pass  # the controller collects nothing: a worker fires

    def refire(self, nodeid: str, case: Case, attempt: int, context: ContextFactory) -> None:
        pass

    def runs(self, nodeid: str, attempt: int) -> list[CekuraRun]:
        return []

    def reserve(self, runs: int, budget: int, base: int, counter: str = "reruns") -> bool:
        return False

    def forecast(self) -> Forecast | None:
        plan = self.shared.read_plan()
        return plan.forecast if plan is not None else None

    def evaluators(self) -> Mapping[int, Evaluator]:
        plan = self.shared.read_plan()
        return plan.evaluators if plan is not None else {}

    def bot_spawned(self, pid: int) -> None:
        pass  # the controller starts no bot

    def interrupt(self) -> None:
        for slots in self.shared.new_batches():  # batches answered since the last feed
            if self._watching.watcher is not None:
                self._watching.watcher.add(slots)
        self._watching.interrupt()

    def notes(self) -> list[str]:
        plan = self.shared.read_plan()
        watcher = self._watching.watcher
        return [*(plan.notes if plan else []), *(watcher.notes if watcher else []), *self._problems]

    def progress(self) -> Counts | None:
        return _progress(self.shared.read_plan(), self._watching.watcher)

    def close(self) -> None:
        self._stop.set()
        self._feeder.join(2)
        self._watching.close()
        orphan = self.shared.orphaned_bot()  # its worker was killed: nobody else stops it
        if orphan is not None:
            stop_orphan(orphan)


class Worker:
    """An xdist worker: fires if it wins the fire lock; waits on the shared run log."""

    ends_calls = False  # the controller does; an orphaned worker (controller killed) cannot

    def __init__(self, runtime: Runtime, shared: Path, *, poll: float = 0.05) -> None:
        self.runtime = runtime
        self.shared = SharedDir(shared)
        self._poll = poll
        self._plan: Plan | None = None
        self._reruns: dict[tuple[str, int], list[Slot]] = {}
        self._io: IoLoop | None = None
        self._notes: list[str] = []
        self._firings: list[FireContext] = []
        self._waves: list[concurrent.futures.Future[None]] = []
        self._clients: list[CekuraClient] = []

    def _loop(self) -> IoLoop:
        if self._io is None:
            self._io = IoLoop()
        return self._io

    def _fire(
        self, selected: Sequence[tuple[str, Case]], context: ContextFactory, attempt: int
    ) -> Plan:
        io = self._loop()
        client = self.runtime.client()
        control = FireControl()
        sending: dict[int, Path] = {}
        failure: list[str] = []

        def on_sending(slots: list[Slot]) -> None:
            try:
                sending[id(slots[0])] = self.shared.record_sending(slots)
            except SharedDirError as exc:
                failure.append(str(exc))

        def on_batch(slots: list[Slot]) -> None:
            try:
                self.shared.record_batch(sending.get(id(slots[0])), slots)
            except SharedDirError as exc:
                failure.append(str(exc))

        async def canary(canaries: Sequence[tuple[Case, Slot]]) -> str | None:
            """The controller's watcher publishes the canaries' runs in the run log."""
            runs = SharedDir(self.shared.path).read_runs  # a reader of its own
            redactor = self.runtime.redactor
            return await _await_canaries(canaries, runs, control, redactor, _CANARY_POLL)

        hooks = FireHooks(on_sending=on_sending, on_batch=on_batch, canary=canary)
        ctx = context(client, Wiring(control, Lanes(), attempt, hooks))
        try:
            plan = _fire_here(io, client, selected, ctx)
        finally:
            if client is not None:
                self._clients.append(client)  # closed with this role: later waves use it
        if failure:
            plan = self._unshared(plan, failure[0])
        elif ctx.waiting():
            self._firings.append(ctx)
            self._waves.append(io.spawn(self._fire_waves(ctx)))
        return plan

    async def _fire_waves(self, ctx: FireContext) -> None:
        """Runs held back for their turn: the controller's watcher reports final runs in
        the shared run log; read it (with a reader of our own) and fire as places free up."""
        finished: asyncio.Queue[str] = asyncio.Queue()
        reader = SharedDir(self.shared.path)
        seen: set[str] = set()

        async def follow() -> None:
            while True:
                for key in reader.read_runs().keys() - seen:
                    seen.add(key)
                    finished.put_nowait(key)
                await asyncio.sleep(_WAVE_POLL)

        follower = asyncio.ensure_future(follow())
        try:
            await fire_waves(ctx, finished, self._unfired)
        finally:
            follower.cancel()

    def _unfired(self, slots: list[Slot]) -> None:
        for slot in slots:
            with contextlib.suppress(SharedDirError):
                self.shared.append_run(slot.key, never_started(slot, slot.error or "not fired"))

    def _unshared(self, plan: Plan, problem: str) -> Plan:
        """The shared directory failed: nobody can watch these runs, so end their calls."""
        client = self.runtime.client()
        results = sorted({s.result_id for s in plan.all_slots() if s.result_id is not None})
        ended = False
        if client is not None and results:

            async def end_all() -> bool:
                import asyncio

                answers = await asyncio.gather(*(client.end_calls(r) for r in results))
                await client.aclose()
                return all(answers)

            with contextlib.suppress(Exception):
                ended = self._loop().run(end_all(), timeout=10)
        reason = f"the runs could not be shared with the other processes ({problem}): " + (
            "their calls were ended" if ended else "end their calls on the Cekura dashboard"
        )
        for slot in plan.all_slots():
            if slot.error is None:
                slot.error = reason
        plan.notes.append(f"cekura: {reason}")
        return plan

    def start(self, selected: Sequence[tuple[str, Case]], context: ContextFactory) -> None:
        if not self.shared.claim_firing():
            return
        plan = self._fire(selected, context, 0)
        self._plan = plan
        try:
            self.shared.write_plan(plan)
        except SharedDirError as exc:
            self._notes.append(f"cekura: {exc}")
            with contextlib.suppress(OSError):
                (self.shared.path / "fire-failed").write_text(str(exc))

    def refire(self, nodeid: str, case: Case, attempt: int, context: ContextFactory) -> None:
        plan = self._fire([(nodeid, case)], context, attempt)
        self._reruns[(nodeid, attempt)] = plan.slots.get(nodeid, [])

    def plan(self) -> Plan:
        """The session's plan, read once; if the firing worker died, rebuilt from what it
        recorded."""
        while self._plan is None:
            plan = self.shared.read_plan()
            if plan is not None:
                self._plan = plan
                break
            failed = self.shared.path / "fire-failed"
            if failed.exists():
                reason = failed.read_text(errors="replace") or "unknown"
                self._plan = Plan(
                    time.time(), {}, [f"not fired: the firing worker failed: {reason}"]
                )
                break
            pid = self.shared.firer()
            if pid is not None and not pid_alive(pid):
                self._plan = self.shared.plan_from_pieces(pid)
                break
            time.sleep(self._poll)
        return self._plan

    def runs(self, nodeid: str, attempt: int) -> list[CekuraRun]:
        plan = self.plan()
        slots = self._reruns.get((nodeid, attempt), []) if attempt else plan.slots.get(nodeid, [])
        if not slots:
            reason = (plan.notes or ["not fired"])[0]
            pid = self.shared.firer()
            if pid is not None and not pid_alive(pid) and not attempt:
                reason = f"not fired: the firing worker (pid {pid}) died before firing this case"
            return [CekuraRun(scenario_id=0, status="not_started", error_message=reason)]
        waiting = [s for s in slots if s.error is None]
        until = _give_up_at(waiting)
        held = [s for s in waiting if s.fired_at is None]  # fired later by the firing worker
        checked = time.time()
        while True:
            known = self.shared.read_runs()
            if all(s.key in known for s in waiting) or time.time() >= until:
                break
            if held and time.time() - checked >= 1.0:
                checked = time.time()
                pid = self.shared.firer()
                if pid is not None and not pid_alive(pid):
                    known = self.shared.read_runs()
                    reason = f"not fired: the firing worker (pid {pid}) died before its turn came"
                    for s in held:
                        if s.key not in known:
                            s.error = reason
                    break
            time.sleep(self._poll)
        return [_final(s, known) for s in slots]

    def interrupt(self) -> None:
        for ctx in self._firings:  # fire nothing more; the controller ends live calls
            ctx.control.stop("the session was interrupted")

    def reserve(self, runs: int, budget: int, base: int, counter: str = "reruns") -> bool:
        return self.shared.reserve(runs, budget, base, counter)

    def forecast(self) -> Forecast | None:
        plan = self._plan or self.shared.read_plan()  # never waits: read after a verdict
        return plan.forecast if plan is not None else None

    def evaluators(self) -> Mapping[int, Evaluator]:
        plan = self._plan or self.shared.read_plan()  # never waits: read after a verdict
        return plan.evaluators if plan is not None else {}

    def bot_spawned(self, pid: int) -> None:
        with contextlib.suppress(SharedDirError):  # then a SIGKILL of this worker orphans it
            self.shared.record_bot(pid)

    def notes(self) -> list[str]:
        return self._notes

    def progress(self) -> Counts | None:
        return None

    def close(self) -> None:
        """A firing worker stays until every held-back run has been fired (or given up):
        items of other workers wait for them."""
        for waves in self._waves:
            while not waves.done():  # in short waits, so that Ctrl-C gets through
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    waves.exception(0.5)
        if self._io is not None:
            for client in self._clients:
                with contextlib.suppress(Exception):
                    self._io.run(client.aclose(), timeout=2)
            self._io.close()


class Idle:
    """A process that fires nothing: the session was refused as a whole when it was built
    (no shared directory, a remote xdist worker). Every case errors with ``reason``."""

    ends_calls = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def start(self, selected: Sequence[tuple[str, Case]], context: ContextFactory) -> None:
        pass

    def refire(self, nodeid: str, case: Case, attempt: int, context: ContextFactory) -> None:
        pass

    def runs(self, nodeid: str, attempt: int) -> list[CekuraRun]:
        return [CekuraRun(scenario_id=0, status="not_started", error_message=self.reason)]

    def interrupt(self) -> None:
        pass

    def reserve(self, runs: int, budget: int, base: int, counter: str = "reruns") -> bool:
        return True  # nothing is fired: the verdict says why

    def forecast(self) -> Forecast | None:
        return None

    def evaluators(self) -> Mapping[int, Evaluator]:
        return {}

    def bot_spawned(self, pid: int) -> None:
        pass

    def notes(self) -> list[str]:
        return []

    def progress(self) -> Counts | None:
        return None

    def close(self) -> None:
        pass


_WATCHER_GRACE = 60.0
_WAVE_POLL = 0.1  # seconds between reads of the run log by a firing worker with runs held back


def _give_up_at(slots: Sequence[Slot]) -> float:
    """The watcher publishes every slot by its deadline (plus the time to end its call);
    past this, something is broken and waiting longer would hang the session. A slot held
    back for its turn has no deadline yet: whoever fires it publishes it, fired or not."""
    if any(s.fired_at is None for s in slots):
        return math.inf
    return max((s.deadline for s in slots), default=0.0) + _WATCHER_GRACE


def _final(slot: Slot, known: Mapping[str, CekuraRun]) -> CekuraRun:
    if slot.error is not None:
        return never_started(slot, slot.error)
    run = known.get(slot.key)
    if run is None:
        return never_started(slot, NO_VERDICT)
    if slot.recovered and not run.recovered:
        return replace(run, recovered=slot.recovered)
    return run

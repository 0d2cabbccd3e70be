"""The watch stage: one watcher per session polls every fired result on one schedule.

It runs on the session's I/O loop, in the process that fired (or the pytest-xdist
controller), and is the only code that reads results. It reads the results that have runs
still open (different results concurrently, bounded), matches runs to slots, fetches the
full runs (transcript, recording) of those that finished in one bulk request, and publishes
each slot's final ``CekuraRun`` exactly once. It alone enforces deadlines (a slot's case
``timeout``, counted from the moment its run was fired), ends the calls that pass them, gives
up on a result whose reads have failed for the whole retry window (an outage costs one window
for the session, not one per case), and trips the circuit breaker.

Every read takes from one budget for the session (``budget.py``). Where two or more open
results share an agent, one read of the agent's results list (every ``poll_interval``, twice
as often while one of them reads ``evaluating``: every call is over, the end is near) shows
each one's status and run counts; a result's own read is then made only when its list entry
moved: at once when the list shows every run ended, else at most every ``900 /
max_reads_per_minute`` seconds (15 s at the default, Cekura's own guidance), and about every
``3600 / max_reads_per_minute`` seconds however still it seems (later while the budget is
kept for the ends). A result whose agent the start answer gave is not read before the list
shows it moved: the start answer said what was created. A result the list does not cover
(no agent known yet, alone for its agent, not on the list's first page, or the list endpoint
answering 404/405 twice in a row: then never for the session) is read on its own schedule,
twice as often while it reads ``evaluating``. Among the reads due, those the list asked for
(and first reads, and re-reads a result's own answer asked for) come first; the rest go to
the result most likely to have a run ended since its last read: the most open runs times
the longest time since that read. Routine reads of one result leave a reserve of the minute
unspent (one read per open result, and room for the list): when every result ends at once,
their reads go out within a second or two, not when the minute turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from .._api.client import CekuraClient, Transient
from .._api.models import KNOWN_STATUSES, TERMINAL_STATUSES, ListedResult, Result, RunDetails
from .._api.run import CekuraRun
from .._errors import ApiError, AuthError
from .._fire.plan import Slot
from .budget import ReadBudget

Publish = Callable[[Slot, CekuraRun], None]
_QUEUED = frozenset({"pending", "in_queue", "scaling_up"})
_BULK = 100
# Cekura writes a result's ai_summary after the result ended: the verdicts of its failing
# runs wait this long for it (read at most this often meanwhile), never longer.
_SUMMARY_GRACE = 3.0
_SUMMARY_POLL = 1.0
_LIST_MAX = 100  # the largest page of the results list asked for
_LIST_GONE_AFTER = 2  # results-list 404/405s in a row that stop its use for the session
_LIST_ROOM = 5  # reads of the minute kept for the list reads that notice the ends


@dataclass(frozen=True)
class WatchSettings:
    poll_interval: float = 3.0
    max_interval: float = 30.0  # back-off ceiling while a result's reads keep failing
    retry_window: float = 150.0
    breaker_after: int = 5
    concurrency: int = 8
    end_budget: float = 5.0
    max_reads_per_minute: int = 60  # results and results-list reads, the whole session

    @property
    def moved_every(self) -> float:
        """Shortest time between two reads of a result whose list entry moved but whose
        runs have not all ended (15 s at the default budget)."""
        return max(self.poll_interval, 900.0 / self.max_reads_per_minute)

    @property
    def still_every(self) -> float:
        """Longest time a result covered by the results list goes unread (60 s at the
        default budget), however still its entry."""
        return max(self.poll_interval, 3600.0 / self.max_reads_per_minute)


@dataclass
class _Finished:
    """A run read terminal, waiting for its transcript and recording. It is made a
    ``CekuraRun`` when read, not kept as the pydantic models it was read into: those are
    several times the objects, and what waits for ``runs/bulk`` outlives the young
    garbage-collector generations, so every full collection would scan it."""

    slot: Slot
    run: CekuraRun
    tries: int = 0

    def final(self, details: RunDetails | None = None) -> CekuraRun:
        """The run with its transcript, recording and conversation from ``runs/bulk``
        (None: as the result carried them)."""
        if details is None:
            return self.run
        return replace(
            self.run,
            transcript=details.transcript,
            recording_url=details.recording_url,
            conversation=details.conversation,
        )


@dataclass
class _Watched:
    """One result and the slots fired into it."""

    result_id: int
    slots: list[Slot] = field(default_factory=list)
    open: dict[str, Slot] = field(default_factory=dict)  # by slot key, not yet published
    next_poll: float = 0.0
    failing_since: float | None = None
    failures: int = 0
    last_error: str = ""  # of the reads failing since ``failing_since``
    terminal_polls: int = 0  # polls in a row that saw the result terminal with runs stuck
    statuses: dict[int, str] = field(default_factory=dict)
    status: str = ""  # the result's, at the last read
    read: bool = False  # a read of the result has succeeded (before: a 404 may be a lag)
    missing_since: float | None = None  # the first 404 of a result never read yet
    ended_at: float | None = None  # when a read first found every run of the result ended
    held: dict[str, _Finished] = field(default_factory=dict)  # waiting for the ai_summary
    agent: int | None = None  # from the start answer or its first read: whose list shows it
    read_at: float = 0.0  # when its last read was sent
    listed: ListedResult | None = None  # its entry in the latest results list that showed it
    listed_at: float | None = None  # when that list read was sent
    known: ListedResult | None = None  # its list entry when its last read was sent


@dataclass
class _Lister:
    """The results list of one agent: when it is next read, and how its reads went."""

    next_at: float = 0.0
    ok_at: float | None = None  # when the last list read that succeeded was sent
    failures: int = 0


@dataclass
class _Want:
    """A read that is, or will be, due: a result's own (``watched``) or an agent's list."""

    due: float
    routine: bool  # made on the chance that something moved, not because something did
    score: float  # among reads due at once, the higher first
    watched: _Watched | None = None
    agent: int | None = None

    @property
    def paced(self) -> bool:
        """Whether it pays the budget's even pace: a routine read of one result. The list
        is read on its own clock (every poll interval), so that no result's read can push
        back the read that notices the ends."""
        return self.routine and self.watched is not None


def _entry_moved(watched: _Watched) -> bool:
    """Whether a result's list entry moved since it was last read; never read (the start
    answer is what is known of it): whether the entry shows any run ended."""
    entry = watched.listed
    if entry is None or watched.read or watched.known is not None:
        return entry != watched.known
    return entry.ended or any(n for n in (entry.success, entry.failed, entry.completed) if n)


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%H:%M:%SZ")


def same_failure(message: str) -> str:
    """A message with its numbers (times, ids) blanked: one outage, however it is stamped."""
    return re.sub(r"\d+", "#", message)


def claim_runs(result: Result, slots: Sequence[Slot]) -> None:
    """Give runs to the slots of ``result`` that the start answer did not map (a variant
    that lists no runs): by scenario, in plan order, lowest run id first."""
    claimed = {s.run_id for s in slots if s.run_id is not None}
    free: dict[int | None, deque[int]] = defaultdict(deque)
    for run in sorted(result.runs, key=lambda r: r.id):
        if run.id not in claimed:
            free[run.scenario].append(run.id)
    for slot in slots:
        if slot.run_id is None and slot.error is None and free[slot.scenario]:
            slot.run_id = free[slot.scenario].popleft()


class Watcher:
    """See the module docstring. ``add`` may be called from any thread."""

    def __init__(
        self,
        client: CekuraClient,
        settings: WatchSettings,
        publish: Publish,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_trip: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.notes: list[str] = []
        self.tripped: str | None = None
        self._publish = publish
        self._breaker_task: asyncio.Task[None] | None = None
        self._clock = clock
        self._sleep = sleep
        self._on_trip = on_trip
        self._watched: dict[int, _Watched] = {}
        # The results with slots still open: what each pass of the loop looks at. A result
        # leaves when its last slot is published, so a session of thousands of results
        # (a wave each) costs per pass what is live, not all it ever fired.
        self._open: dict[int, _Watched] = {}
        self._unknown: set[str] = set()  # statuses noted as unknown
        self._late: set[int] = set()  # results fired after the breaker tripped: calls to end
        self._details: dict[str, _Finished] = {}
        # (deadline, slot key, result id) of every slot added; entries of published slots
        # are dropped when they reach the top. Finding the next deadline costs O(log N).
        self._deadlines: list[tuple[float, str, int]] = []
        self._inbox: deque[list[Slot]] = deque()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._breaker_runs: list[CekuraRun] = []
        self.published = 0
        self.failed = 0
        self.errors = 0
        self._polls: dict[int, asyncio.Future[None]] = {}
        self._budget = ReadBudget(settings.max_reads_per_minute)
        self._listers: dict[int, _Lister] = {}  # by agent
        self._listing: dict[int, asyncio.Future[None]] = {}  # list reads in flight, by agent
        self._list_misses = 0
        self._list_gone = False  # the results list answered 404/405 on v2 and v1, repeatedly
        self._details_task: asyncio.Future[None] | None = None
        self._limit = asyncio.Semaphore(settings.concurrency)
        # Fetching finished runs has its own bound: the next items wait for those, so they
        # never queue behind polls of results that are still running.
        self._details_limit = asyncio.Semaphore(settings.concurrency)

    # -- feeding ---------------------------------------------------------------------------

    def add(self, slots: Sequence[Slot]) -> None:
        """Watch these fired slots (thread-safe; wakes the watcher)."""
        with self._lock:
            self._inbox.append(list(slots))
        self._poke()

    def close(self) -> None:
        """No more slots will be added: ``run`` returns once every slot is published."""
        self._closed = True
        self._poke()

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def _drain(self) -> None:
        with self._lock:
            batches, self._inbox = list(self._inbox), deque()
        for slots in batches:
            for slot in slots:
                if slot.result_id is None:
                    continue
                watched = self._watched.get(slot.result_id)
                if watched is None:
                    # A run cannot end the moment it is fired: the first read is one
                    # interval later (the start answer already said what was created).
                    first = self._clock() + self.settings.poll_interval
                    watched = self._watched[slot.result_id] = _Watched(
                        slot.result_id, next_poll=first, read_at=self._clock(), agent=slot.agent
                    )
                watched.slots.append(slot)
                if self.tripped:  # fired while the breaker tripped: live, and never waited for
                    watched.open[slot.key] = slot
                    self._late.add(slot.result_id)
                    self._finish(slot, self._error(slot, self.tripped))
                else:
                    watched.open[slot.key] = slot
                    self._open[slot.result_id] = watched
                    heapq.heappush(self._deadlines, (slot.deadline, slot.key, slot.result_id))

    # -- the loop --------------------------------------------------------------------------

    def open_count(self) -> int:
        return sum(len(w.open) for w in self._open.values())

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            self._drain()
            await self._end_late()
            if self._closed and not self.open_count() and not self._inbox:
                for task in [*self._polls.values(), *self._listing.values(), self._details_task]:
                    if task is not None:
                        task.cancel()
                return
            await self.tick()
            delay = self._next_delay()
            if delay > 0:
                await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        assert self._wake is not None
        if self._sleep is not None:
            await self._sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _next_delay(self) -> float:
        now = self._clock()
        times = [now + self.settings.poll_interval, self._earliest_deadline()]
        # A read in flight wakes the loop when it is answered.
        times.extend(self._read_times(now))
        if self._details and self._details_task is None:
            times.append(now)
        return max(0.05, min(times) - now)

    def _read_times(self, now: float) -> list[float]:
        """When each read wanted can be sent, by its due time and the budget."""
        stretch = self._stretch()
        return [
            max(want.due, self._budget.free_at(now, want.paced, stretch, self._reserve(want)))
            for want in self._wants(now)
        ]

    def _is_open(self, key: str, result_id: int) -> bool:
        watched = self._watched.get(result_id)
        return watched is not None and key in watched.open

    def _earliest_deadline(self) -> float:
        """The first deadline of a slot still open (infinity when none is)."""
        heap = self._deadlines
        while heap and not self._is_open(heap[0][1], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else float("inf")

    async def tick(self) -> None:
        """One round: start the polls that are due, fetch finished runs, enforce deadlines.

        Polls run as tasks of their own (at most one per result, ``concurrency`` at once): a
        slow or dripping answer delays its own result, never the deadlines of the others. A
        tick returns as soon as one of its requests is answered, so the runs one poll found
        finished are fetched while the other polls are still in flight."""
        self._drain()
        self._start_reads(self._clock())
        if self._details_task is None and self._details:
            self._details_task = self._task(self._fetch_details())
        busy = [*self._polls.values(), *self._listing.values()]
        if self._details_task is not None:
            busy.append(self._details_task)
        if busy:
            await asyncio.wait(
                busy, timeout=self._wait_budget(), return_when=asyncio.FIRST_COMPLETED
            )
        self._reap()
        await self._enforce_deadlines()

    def _task(self, work: Awaitable[None]) -> asyncio.Future[None]:
        """A request of this watcher's, which wakes the loop when it is done."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda _: self._wake.set() if self._wake is not None else None)
        return task

    def _wait_budget(self) -> float:
        """How long a tick waits for its requests: until the next deadline or the next read
        the budget lets out (a slow fetch of transcripts must not hold back the reads of
        results that ended meanwhile), at most one poll interval. A read due already waits
        for a connection: a request answered wakes the tick anyway."""
        now = self._clock()
        later = [t for t in self._read_times(now) if t > now]
        until = min([now + self.settings.poll_interval, self._earliest_deadline(), *later])
        return max(0.0, until - now)

    def _reap(self) -> None:
        for polls in (self._polls, self._listing):
            for key, task in list(polls.items()):
                if task.done():
                    del polls[key]
                    task.result()  # a bug in the watcher must surface, not hang the session
        if self._details_task is not None and self._details_task.done():
            task, self._details_task = self._details_task, None
            task.result()

    # -- choosing reads (see the module docstring) ------------------------------------------

    def _listed_agents(self) -> dict[int, list[_Watched]]:
        """The agents whose results list is worth reading: two or more open results each."""
        if self._list_gone:
            return {}
        groups: dict[int, list[_Watched]] = {}
        for watched in self._open.values():
            if watched.agent is not None:
                groups.setdefault(watched.agent, []).append(watched)
        return {agent: group for agent, group in groups.items() if len(group) > 1}

    def _reserve(self, want: _Want) -> int:
        """Reads of the minute a routine read of one result leaves unspent: one for each
        open result, whose end will want a read at once, and a few for the list reads that
        notice the ends. The list itself keeps the whole budget."""
        return len(self._open) + _LIST_ROOM if want.watched is not None else 0

    def _stretch(self) -> float:
        """Routine reads take half the budget while a list is read, all of it otherwise."""
        return 2.0 if self._listed_agents() else 1.0

    def _covered(self, watched: _Watched, listed: dict[int, list[_Watched]]) -> bool:
        """Whether the latest read of its agent's list showed this result."""
        if watched.agent not in listed:
            return False
        lister = self._listers.get(watched.agent)
        return lister is not None and lister.ok_at is not None and watched.listed_at == lister.ok_at

    def _wants(self, now: float) -> list[_Want]:
        """Every read due now or later (none for those in flight)."""
        listed = self._listed_agents()
        wants = [
            self._list_want(agent, group)
            for agent, group in listed.items()
            if agent not in self._listing
        ]
        wants.extend(
            self._own_want(watched, now, self._covered(watched, listed))
            for watched in self._open.values()
            if watched.result_id not in self._polls
        )
        return wants

    def _list_want(self, agent: int, group: list[_Watched]) -> _Want:
        """An agent's list is read every poll interval, twice as often (and before routine
        reads) while one of its results is ``evaluating``: every call is over, the end is
        near."""
        lister = self._listers.setdefault(agent, _Lister())
        ending = any(w.listed is not None and w.listed.status == "evaluating" for w in group)
        if ending and lister.ok_at is not None:
            soon = lister.ok_at + self._ending_every()
            return _Want(min(lister.next_at, soon), False, 0.0, agent=agent)
        return _Want(lister.next_at, True, math.inf, agent=agent)

    def _ending_every(self) -> float:
        """How often a list or a result that reads ``evaluating`` is read."""
        return max(self._budget.spacing, self.settings.poll_interval / 2)

    def _own_want(self, watched: _Watched, now: float, covered: bool) -> _Want:
        """When a result is to be read on its own, and whether the read is routine."""
        score = len(watched.open) * (now - watched.read_at)
        due = watched.next_poll
        # A first read, unless the list shows the result: the start answer said what was
        # created, so it is read like any result the list covers, once a run of it ended.
        first = not (watched.read or covered) and watched.missing_since is None
        if (first and watched.failing_since is None) or watched.held or watched.terminal_polls:
            return _Want(due, False, score, watched)  # its own answer asked for this read
        ended = watched.listed is not None and watched.listed.ended and _entry_moved(watched)
        if ended and watched.failing_since is None:
            # Read at once: the last verdicts are there (also when it is the last result
            # open, which the list no longer covers).
            return _Want(min(due, watched.listed_at or due), False, score, watched)
        if watched.failing_since is not None or not covered or watched.listed is None:
            if watched.status == "evaluating" and watched.failing_since is None:
                due = min(due, watched.read_at + self._ending_every())  # the end is near
            return _Want(due, True, score, watched)
        if _entry_moved(watched):  # its list entry moved since it was read
            return _Want(
                max(due, watched.read_at + self.settings.moved_every), True, score, watched
            )
        return _Want(max(due, watched.read_at + self.settings.still_every), True, score, watched)

    def _start_reads(self, now: float) -> None:
        """Send the reads that are due, best first, as far as the budget allows."""
        stretch = self._stretch()
        wants = sorted(self._wants(now), key=lambda want: (want.routine, -want.score))
        for want in wants:
            if len(self._polls) + len(self._listing) >= self.settings.concurrency:
                break  # a read waiting for a connection would leave later, in a bunch
            free = self._budget.free_at(now, want.paced, stretch, self._reserve(want))
            if want.due > now or free > now:
                continue
            self._budget.spend(now, want.paced, stretch)
            if want.watched is not None:
                watched = want.watched
                watched.read_at, watched.known = now, watched.listed
                self._polls[watched.result_id] = self._task(self._poll_limited(watched))
            elif want.agent is not None:
                self._listing[want.agent] = self._task(self._list_limited(want.agent))

    async def _list_limited(self, agent: int) -> None:
        async with self._limit:
            await self._list(agent)

    async def _list(self, agent: int) -> None:
        """Read the first page of an agent's results list; note what it shows of ours."""
        now = self._clock()
        lister = self._listers.setdefault(agent, _Lister())
        ours = {w.result_id: w for w in self._open.values() if w.agent == agent}
        size = min(_LIST_MAX, 2 * len(ours) + 10)  # room for other pipelines' results
        try:
            entries, _ = await self.client.results_list(agent, 1, size)
        except Transient as exc:
            lister.ok_at, lister.failures = None, lister.failures + 1
            wait = self.settings.poll_interval * 2 ** min(lister.failures - 1, 10)
            lister.next_at = now + (
                exc.retry_after
                if exc.retry_after is not None
                else min(wait, self.settings.max_interval)
            )
            return
        except AuthError as exc:
            await self.trip(str(exc))
            return
        except ApiError as exc:
            # No list to read (both versions missing, or a filter refused): the results are
            # read on their own; twice in a row, for the rest of the session.
            lister.ok_at, lister.next_at = None, now + self.settings.still_every
            self._list_misses += 1
            self._list_gone = self._list_gone or (
                exc.status in (404, 405) and self._list_misses >= _LIST_GONE_AFTER
            )
            return
        self._list_misses = 0
        lister.ok_at, lister.failures = now, 0
        lister.next_at = now + self.settings.poll_interval
        for entry in entries:
            watched = ours.get(entry.id)
            if watched is None:
                continue
            watched.listed, watched.listed_at = entry, now
            if watched.read_at > now:  # read since this list was asked for: as new as it
                watched.known = entry

    async def _poll_limited(self, watched: _Watched) -> None:
        async with self._limit:
            await self._poll(watched)

    async def _poll(self, watched: _Watched) -> None:
        now = self._clock()
        try:
            settled = {
                slot.run_id
                for slot in watched.slots
                if slot.run_id is not None and slot.key not in watched.open
            }
            result = await self.client.result(watched.result_id, settled)
        except Transient as exc:
            await self._read_failed(watched, exc, now)
            return
        except AuthError as exc:
            await self.trip(str(exc))
            return
        except ApiError as exc:
            if not self._not_yet_there(watched, exc, now):
                await self._give_up(watched, str(exc))
            return
        watched.failing_since, watched.failures, watched.last_error = None, 0, ""
        watched.read, watched.missing_since = True, None
        if result.agent is not None:
            watched.agent = result.agent
        watched.next_poll = now + self.settings.poll_interval
        left = self._update(watched, result, now)
        if left:
            await self._end_left(result, left)

    async def _read_failed(self, watched: _Watched, exc: Transient, now: float) -> None:
        watched.failures += 1
        watched.last_error = str(exc)
        if watched.failing_since is None:
            watched.failing_since = now
        window_ends = watched.failing_since + self.settings.retry_window
        if now >= window_ends:
            await self._give_up(watched, self._outage(watched))
            return
        backoff = min(
            self.settings.poll_interval * 2 ** (watched.failures - 1),
            self.settings.max_interval,
        )
        wait = exc.retry_after if exc.retry_after is not None else backoff
        # The last try comes when the window ends, not one back-off past it.
        watched.next_poll = min(now + wait, window_ends)

    def _not_yet_there(self, watched: _Watched, exc: ApiError, now: float) -> bool:
        """A 404 for a result never read yet: it was just created, and a read may reach a
        replica that has not seen it. Read again, for one retry window at most."""
        if exc.status != 404 or watched.read:
            return False
        if watched.missing_since is None:
            watched.missing_since = now
        if now - watched.missing_since >= self.settings.retry_window:
            return False
        watched.next_poll = now + self.settings.poll_interval
        return True

    def _update(self, watched: _Watched, result: Result, now: float) -> list[Slot]:
        """Take the verdicts this read of ``result`` allows; the slots whose runs stayed
        live in a result that ended (their calls are to be ended) are returned."""
        claim_runs(result, watched.slots)
        watched.status = result.status
        if result.ended and watched.ended_at is None:
            watched.ended_at = now
        by_id = {run.id: run for run in result.runs}
        listed_all_done = bool(result.runs) and all(run.terminal for run in result.runs)
        result_done = result.status in TERMINAL_STATUSES and result.status != "completed"
        stuck = False
        ready: list[_Finished] = []
        left: list[Slot] = []
        for key, slot in list(watched.open.items()):
            if key in self._details or key in watched.held:
                continue
            if slot.run_id is not None and slot.run_id in result.unreadable:
                reason = f"Cekura's run {slot.run_id} could not be read: {result.unreadable[slot.run_id]}"
                self._finish(slot, self._error(slot, reason))
                continue
            run = by_id.get(slot.run_id) if slot.run_id is not None else None
            if run is None:
                if listed_all_done or (result_done and watched.terminal_polls >= 1):
                    self._finish(slot, self._error(slot, self._never_appeared(slot, result)))
                else:
                    stuck = stuck or result_done
                continue
            self._see(watched, run.id, run.status)
            if result.verdict_ready(run):
                raw = result.raw_runs.get(run.id, {})
                final = CekuraRun.from_api(
                    run,
                    result.id,
                    raw,
                    slot.dashboard_url,
                    scenario_id=slot.scenario,
                    agent_version=result.agent_version,
                )
                ready.append(_Finished(slot, final))
            elif result_done and not run.terminal:
                stuck = True
                if watched.terminal_polls >= 1:
                    left.append(slot)
        watched.terminal_polls = watched.terminal_polls + 1 if (result_done and stuck) else 0
        self._settle(watched, result, ready, now)
        return left

    @staticmethod
    def _never_appeared(slot: Slot, result: Result) -> str:
        return (
            f"the run never appeared in result {result.id} (no run of scenario "
            f"{slot.scenario} left to match this entry)"
        )

    def _see(self, watched: _Watched, run_id: int, status: str) -> None:
        watched.statuses[run_id] = status
        if status not in KNOWN_STATUSES and status not in self._unknown:
            self._unknown.add(status)  # one note a status, not one a run
            self._note(
                f"cekura: run {run_id} reported an unknown status '{status}' "
                "(treated as not finished)"
            )

    def _settle(
        self, watched: _Watched, result: Result, ready: list[_Finished], now: float
    ) -> None:
        """Hand the runs whose verdicts are taken on to have their details fetched, with
        Cekura's own account of those that did not pass. Cekura writes its summary once the
        result ended: while it says one is coming, a run that failed its evaluation waits
        for the end (bounded by its case timeout, when it is published as it is), and every
        run that did not pass waits a few seconds more. An errored run is not held until
        the end: the circuit breaker counts the first errors as they come."""
        ready = [*watched.held.values(), *ready]
        watched.held = {}
        if not ready:
            return
        failing = [f for f in ready if f.run.verdict != "passed"]
        if failing and result.summary_pending:
            ended_at = watched.ended_at
            if ended_at is None:  # the summary comes after the end: failures wait for it
                watched.held = {f.slot.key: f for f in failing if f.run.verdict == "failed"}
                ready = [f for f in ready if f.slot.key not in watched.held]
                failing = [f for f in failing if f.slot.key not in watched.held]
            elif now - ended_at < _SUMMARY_GRACE:
                watched.held = {f.slot.key: f for f in ready}
                soon = now + min(self.settings.poll_interval, _SUMMARY_POLL)
                watched.next_poll = min(watched.next_poll, soon)
                return
        for finished in failing:
            summary, reasons = result.cekura_reasons(finished.run.run_id)
            finished.run = replace(finished.run, ai_summary=summary, failed_reasons=reasons)
        for finished in ready:
            self._details[finished.slot.key] = finished

    async def _end_left(self, result: Result, left: list[Slot]) -> None:
        """Error the runs left live in a result that ended, and end their calls: they will
        not move again, and a live call costs money."""
        budget = self.settings.end_budget

        async def end(run_id: int | None) -> bool:
            return run_id is not None and await self.client.end_call(run_id, timeout=budget)

        ended = await asyncio.gather(*(end(slot.run_id) for slot in left))
        for slot, ok in zip(left, ended, strict=True):
            watched = self._watched[result.id]
            status = watched.statuses.get(slot.run_id, "pending") if slot.run_id else "pending"
            message = (
                f"result {result.id} ended with status '{result.status}' while this run "
                f"stayed '{status}'"
            )
            message += (
                "; the call was ended"
                if ok
                else "; ending the call failed: end it on the Cekura dashboard"
            )
            self._finish(slot, self._error(slot, message))

    async def _fetch_details(self) -> None:
        """Transcripts and recordings of finished runs, in bulk; a run whose details cannot
        be had after two tries is published without them."""
        if not self._details:
            return
        waiting = list(self._details.values())
        ids = sorted({f.run.run_id for f in waiting if f.run.run_id is not None})
        full: dict[int, RunDetails] = {}
        chunks = [ids[i : i + _BULK] for i in range(0, len(ids), _BULK)]

        async def fetch(chunk: list[int]) -> None:
            async with self._details_limit:
                try:
                    details = await self.client.bulk_runs(chunk)
                except (Transient, ApiError):
                    return
                for run_id, got in details.items():
                    full[run_id] = got

        await asyncio.gather(*(fetch(c) for c in chunks))
        for finished in waiting:
            key = finished.slot.key
            if self._details.get(key) is not finished:
                continue  # given up on meanwhile
            finished.tries += 1
            got = full.get(finished.run.run_id) if finished.run.run_id is not None else None
            if got is None and finished.tries < 2:
                continue
            del self._details[key]
            self._finish(finished.slot, finished.final(got))

    async def _enforce_deadlines(self) -> None:
        now = self._clock()
        late: list[tuple[_Watched, Slot]] = []
        fetching: list[tuple[float, str, int]] = []  # finished, transcripts on their way
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            watched = self._watched.get(entry[2])
            slot = watched.open.get(entry[1]) if watched is not None else None
            if watched is None or slot is None:
                continue
            held = watched.held.pop(entry[1], None)
            if held is not None:  # its verdict is taken: it waited for the ai_summary
                self._details[entry[1]] = held
            if entry[1] in self._details:
                fetching.append(entry)
            else:
                late.append((watched, slot))
        for entry in fetching:
            heapq.heappush(heap, entry)
        if not late:
            return
        budget = self.settings.end_budget

        async def end(watched: _Watched, run_id: int | None) -> bool | None:
            if run_id is None or watched.statuses.get(run_id) in TERMINAL_STATUSES:
                return None  # no call to end: none was placed, or it is over
            return await self.client.end_call(run_id, timeout=budget)

        ended = await asyncio.gather(*(end(watched, slot.run_id) for watched, slot in late))
        for (watched, slot), ok in zip(late, ended, strict=True):
            message, status = self._late_reason(watched, slot)
            if ok:
                message += "; the call was ended"
            elif ok is False:
                message += "; ending the call failed: end it on the Cekura dashboard"
            self._finish(slot, self._error(slot, message, status))

    def _late_reason(self, watched: _Watched, slot: Slot) -> tuple[str, str]:
        """Why a slot has no verdict at its deadline, and its run's last status."""
        status = watched.statuses.get(slot.run_id, "pending") if slot.run_id else "pending"
        message = f"no verdict after {slot.timeout:g} s (last status: {status})"
        if status in TERMINAL_STATUSES:
            message += (
                f": the run ended, but its evaluation had not landed (result "
                f"{watched.result_id} still '{watched.status}')"
            )
        if watched.failing_since is not None:  # the reads were failing when time ran out
            message += f"; {self._outage(watched)}"
        return message, status

    # -- giving up ---------------------------------------------------------------------------

    def _outage(self, watched: _Watched) -> str:
        since = watched.failing_since if watched.failing_since is not None else self._clock()
        return (
            f"Cekura at {self.client.base_url} unreachable since {_stamp(since)} "
            f"(GET result {watched.result_id}): last error {watched.last_error}"
        )

    async def _give_up(self, watched: _Watched, reason: str) -> None:
        """Error every open slot of a result and end its calls (best effort, bounded)."""
        ended = await self.client.end_calls(watched.result_id, timeout=self.settings.end_budget)
        suffix = "; its calls were ended" if ended else ""
        for slot in list(watched.open.values()):
            self._details.pop(slot.key, None)
            self._finish(slot, self._error(slot, reason + suffix))

    async def trip(self, reason: str) -> None:
        """Stop waiting for anything: end live calls, error every open slot."""
        if self.tripped:
            return
        self.tripped = reason
        self._note(reason)
        if self._on_trip is not None:
            self._on_trip(reason)
        await self.end_live_calls()
        for watched in list(self._open.values()):
            for slot in list(watched.open.values()):
                self._details.pop(slot.key, None)
                self._finish(slot, self._error(slot, reason))

    async def _end_late(self) -> None:
        if not self._late:
            return
        late, self._late = sorted(self._late), set()
        budget = self.settings.end_budget
        await asyncio.gather(*(self.client.end_calls(r, timeout=budget) for r in late))

    async def end_live_calls(self, budget: float | None = None) -> list[int]:
        """End the calls of every result with open runs, concurrently, within ``budget``
        (slots added a moment ago, still in the inbox, included)."""
        self._drain()
        live = sorted(self._open)
        if not live:
            return []
        budget = self.settings.end_budget if budget is None else budget
        try:
            async with asyncio.timeout(budget):
                answers = await asyncio.gather(
                    *(self.client.end_calls(r, timeout=budget) for r in live)
                )
        except TimeoutError:
            answers = [False] * len(live)
        ended = [r for r, ok in zip(live, answers, strict=True) if ok]
        missed = [r for r, ok in zip(live, answers, strict=True) if not ok]
        if ended:
            self._note("cekura: ended the live calls of result(s) " + ", ".join(map(str, ended)))
        if missed:
            self._note(
                "cekura: could not end the calls of result(s) "
                + ", ".join(map(str, missed))
                + " in time: end them on the Cekura dashboard"
            )
        return ended

    # -- publishing ------------------------------------------------------------------------

    def _error(self, slot: Slot, reason: str, status: str | None = None) -> CekuraRun:
        watched = self._watched.get(slot.result_id) if slot.result_id is not None else None
        if status is None:
            known = watched.statuses.get(slot.run_id) if watched and slot.run_id else None
            status = known or "pending"
        return CekuraRun(
            scenario_id=slot.scenario,
            status=status,
            run_id=slot.run_id,
            result_id=slot.result_id,
            error_message=reason,
            dashboard_url=slot.dashboard_url,
        )

    def _finish(self, slot: Slot, run: CekuraRun) -> None:
        watched = self._watched.get(slot.result_id) if slot.result_id is not None else None
        if watched is not None:
            if watched.open.pop(slot.key, None) is None:
                return  # published already
            if not watched.open:
                self._open.pop(watched.result_id, None)
        self.published += 1
        self.failed += run.verdict == "failed"
        self.errors += run.verdict == "error"
        self._publish(slot, run)
        self._watch_breaker(run)

    def _watch_breaker(self, run: CekuraRun) -> None:
        """Trip when the first K finished runs all errored the same way (numbers aside)."""
        k = self.settings.breaker_after
        if not k or self.tripped or run.run_id is None or len(self._breaker_runs) >= k:
            return
        self._breaker_runs.append(run)
        first = self._breaker_runs
        if len(first) < k:
            return
        kinds = {same_failure(r.error_message) for r in first}
        if all(r.verdict == "error" for r in first) and len(kinds) == 1 and first[0].error_message:
            reason = (
                f"circuit breaker: the first {k} finished runs all errored with "
                f"'{first[0].error_message}'; the remaining cases were not waited for"
            )
            self._breaker_task = asyncio.get_running_loop().create_task(self.trip(reason))

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    # -- progress --------------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(running, queued, open) over the open slots, from the last statuses seen."""
        running = queued = 0
        for watched in list(self._open.values()):
            for slot in list(watched.open.values()):
                status = watched.statuses.get(slot.run_id, "pending") if slot.run_id else "pending"
                if status in _QUEUED:
                    queued += 1
                else:
                    running += 1
        return running, queued, running + queued

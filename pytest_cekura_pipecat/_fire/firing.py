"""The fire stage: selected cases -> entries -> batched start requests -> slots.

Every run of every case becomes a ``Slot``. Entries are prepared (``${VAR}`` expansion, the
room hook, the entry hook), grouped into start requests by what must be equal across a
request's body (``agent``, ``mock_tool_names``), and sent a few at a time. Each answered
request is handed on (``on_batch``) at once, so the watcher starts watching its runs while
later requests are still being sent.

Billing safety: the first start request is sent alone, and a start request whose fate is
unknown (sent, no readable answer) is never sent again: the result it may have created is
looked for in the results list (``_recover.py``); found, it is adopted and firing goes on,
otherwise nothing more is sent in the session. A killed session's requests are in the ledger
(``_ledger.py``): their runs are re-attached (an unanswered request's once found), not fired
again. A request refused with 400 created nothing, so
it is sent again without the entries Cekura refused (halving the batch to find them when the
400 does not say which).

A firing is given everything once, in its ``FireContext``: fixed values (``FirePolicy``),
the hooks it calls (``FireHooks``: the room and entry hooks, the bot under test, the ledger,
and the role's ``on_sending``, ``on_batch`` and canary gate), the session's ``Lanes``, and
one ``FireControl`` that owns stopping (an interrupt comes from pytest's thread) and notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

from .._api.catalogue import Evaluator
from .._api.client import AGENT_PATH, START_PATH, CekuraClient
from .._api.models import Result, Run
from .._config.case import Case, Entry, Room, expand, expand_json
from .._config.schema import room_url_problem
from .._errors import (
    ApiError,
    AuthError,
    CekuraError,
    CreditError,
    FateUnknown,
    StartRejected,
    Unreachable,
)
from .._redact import Redactor
from .credits import Forecast
from .plan import Plan, Slot
from .recover import (
    Search,
    Sent,
    Traffic,
    earlier_not_found,
    not_recovered,
    recovered_reason,
    search,
)
from .waves import Lane, Waves

if TYPE_CHECKING:
    from .ledger import Resumption, Unanswered

_BatchKey = tuple[int | None, tuple[str, ...] | None]
_Found = dict[tuple[str, int], tuple[int, int | None]]  # (node id, index) -> result, run


Gate = Callable[[Sequence[tuple[Case, Slot]]], Awaitable[str | None]]


@dataclass(frozen=True)
class FirePolicy:
    """The fixed values of one firing."""

    batch_size: int = 50
    concurrency: int = 4
    no_client_reason: str = "not fired: CEKURA_API_KEY is not set: export your Cekura API key"
    dashboard: str = ""  # cekura_dashboard_url; no link when empty (or simulated)
    attempt: int = 0
    canaries: frozenset[str] = frozenset()  # node ids fired first and alone
    # The --cekura-agent / cekura_agent default, with the flag or key that set it, to say
    # where an agent that does not exist came from.
    default_agent: tuple[int, str] | None = None
    recover_poll: float = 3.0  # seconds between reads of the results list when recovering


@dataclass(frozen=True)
class FireHooks:
    """What firing calls out to, all given at construction (None: not called)."""

    room: Callable[[Case], Room | None] | None = None  # the pytest_cekura_room hook
    entry: Callable[[Case, dict[str, Any]], None] | None = None  # the pytest_cekura_entry hook
    # Before anything is sent (the bot under test is started here): why nothing may be
    # fired, or None. Blocking; run in a thread.
    before_firing: Callable[[], str | None] | None = None
    on_sending: Callable[[list[Slot]], None] | None = None  # before a request leaves
    on_batch: Callable[[list[Slot]], None] | None = None  # an answered request's slots
    # The ledger (``ledger.py``): the record of each request before it leaves and of each
    # answered one (written before its runs are watched); what a killed session left to
    # re-attach or end, and what it sent without an answer (``recover.py``).
    on_request: Callable[[list[tuple[Case, Slot]], Sent], None] | None = None
    on_fired: Callable[[list[tuple[Case, Slot]]], None] | None = None
    resume: Callable[[Sequence[tuple[str, Case]], _Found], Resumption] | None = None
    unanswered: Callable[[], tuple[list[Unanswered], set[int]]] | None = None
    # The canaries' gate: waits for their final runs; why the rest must not be fired, or
    # None. Without one, canaries are fired first and nothing waits for them.
    canary: Gate | None = None
    # The spend pre-flight (``spend.py``) of a first firing: why nothing may be fired, or
    # None; it marks the slots of cases it leaves out, and gives ``control`` the forecast.
    spend: Callable[[Sequence[tuple[Case, Slot]]], Awaitable[str | None]] | None = None


class FireControl:
    """Whether a firing may go on, and what it has to say: the one object written by firing
    and by the thread that interrupts it. The first reason to stop is the one kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped: str | None = None
        self._notes: list[str] = []
        self._forecast: Forecast | None = None
        self._evaluators: dict[int, Evaluator] = {}

    def stop(self, reason: str) -> None:
        """Send nothing more (thread-safe; a later reason does not replace the first)."""
        with self._lock:
            if self._stopped is None:
                self._stopped = reason

    @property
    def stopped(self) -> str | None:
        """Why nothing more is sent, or None."""
        return self._stopped

    def note(self, line: str) -> None:
        with self._lock:
            self._notes.append(line)

    def notes(self) -> list[str]:
        with self._lock:
            return list(self._notes)

    def forecast(self, found: Forecast) -> None:
        """The spend pre-flight's forecast (the plan carries it)."""
        self._forecast = found

    @property
    def forecasted(self) -> Forecast | None:
        return self._forecast

    def evaluators(self, found: Mapping[int, Evaluator]) -> None:
        """Each scenario's version and metric hash as the pre-flight read them (the plan
        carries them to the process that judges)."""
        self._evaluators = dict(found)

    @property
    def evaluated(self) -> dict[int, Evaluator]:
        return dict(self._evaluators)


class Lanes:
    """The runs a session holds back for their turn (a room's lane, ``max_live_runs``),
    across its firings: a later firing (a rerun, an adaptive top-up) queues behind the
    first one's in the same rooms. The first firing's runs set the cap on live runs."""

    def __init__(self) -> None:
        self._waves: Waves[_Pending] | None = None

    def queue(self, fresh: Sequence[_Pending], live: Sequence[_Pending]) -> list[_Pending]:
        """Queue the fresh runs and count the re-attached ones live (their rooms are still
        taken); what may be fired now."""
        ready = [p for p in fresh if p.slot.error is None]
        if self._waves is None:
            self._waves = _schedule(ready)
        else:
            self._waves.add(ready)
        self._waves.occupy(live)
        return self._waves.next()

    def next(self) -> list[_Pending]:
        return self._waves.next() if self._waves is not None else []

    def done(self, key: str) -> None:
        """The run named ``key`` ended (or never started): its place is free."""
        if self._waves is not None:
            self._waves.done(key)

    def waiting(self) -> int:
        """Runs left to fire once earlier runs end (see :func:`fire_waves`)."""
        return self._waves.waiting() if self._waves is not None else 0

    def abandon(self) -> list[_Pending]:
        return self._waves.abandon() if self._waves is not None else []


@dataclass(frozen=True)
class Wiring:
    """What the process's role gives one firing: which attempt it is, the session's lanes,
    the control it stops through, and its own hooks (``on_sending``, ``on_batch``,
    ``canary``)."""

    control: FireControl = field(default_factory=FireControl)
    lanes: Lanes = field(default_factory=Lanes)
    attempt: int = 0
    hooks: FireHooks = FireHooks()


@dataclass(frozen=True)
class FireContext:
    """One firing: what it is given, once. The mutable parts are objects of their own
    (``control``, ``lanes``, the sets and ``traffic``); no field is ever reassigned."""

    client: CekuraClient | None
    redactor: Redactor
    env: Mapping[str, str]
    policy: FirePolicy = FirePolicy()
    hooks: FireHooks = FireHooks()
    control: FireControl = field(default_factory=FireControl)
    lanes: Lanes = field(default_factory=Lanes)
    # Results this session knows (answered, adopted, re-attached): never taken for the
    # result of a start request whose answer was lost (``recover.py``).
    known_results: set[int] = field(default_factory=set)
    traffic: Traffic = field(default_factory=Traffic)
    projects: dict[int, str | None] = field(default_factory=dict)  # by agent

    def waiting(self) -> int:
        """Runs left to fire once earlier runs end (see :func:`fire_waves`)."""
        return self.lanes.waiting()


@dataclass
class _Pending:
    case: Case
    slot: Slot
    entry: dict[str, Any] | None = None
    room: str | None = None  # a re-attached run's static room (it has no entry: not sent)


@contextlib.contextmanager
def _marking(pending: _Pending, ctx: FireContext) -> Iterator[None]:
    """An error preparing a run's entry marks its slot; the session goes on."""
    try:
        yield
    except CekuraError as exc:
        pending.slot.error = ctx.redactor(str(exc))
    except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
        # A user's hook failed (or called pytest.skip/fail): that case errors.
        pending.slot.error = ctx.redactor(
            f"case {pending.case.name}: preparing the entry failed: {type(exc).__name__}: {exc}"
        )


def _expanded(case: Case, ctx: FireContext) -> tuple[str | None, str | None, Any]:
    """The case's room URL, token and data message with their variables expanded."""
    where = f"case {case.name}"
    url = expand(case.pipecat_room_url, ctx.env, where) if case.pipecat_room_url else None
    token = expand(case.pipecat_token, ctx.env, where) if case.pipecat_token else None
    return url, token, expand_json(case.publish_data_message, ctx.env, where)


def _set_entry(
    pending: _Pending, ctx: FireContext, url: str, token: str | None, message: Any
) -> None:
    """Check the room, build the entry, run the entry hook."""
    ctx.redactor.add(token)
    ctx.redactor.add_url(url)
    problem = room_url_problem(url)
    if problem:
        raise CekuraError(f"case {pending.case.name}: {problem}")
    entry = Entry(pending.case.scenario, url, token, message).to_json()
    if ctx.hooks.entry:
        ctx.hooks.entry(pending.case, entry)
        ctx.redactor.add(entry.get("pipecat_token"))
    pending.entry = entry


def _prepare_own_room(pending: _Pending, ctx: FireContext) -> None:
    """The entry of a run whose case names its room: nothing to wait for."""
    with _marking(pending, ctx):
        url, token, message = _expanded(pending.case, ctx)
        assert url is not None  # the case names its room
        _set_entry(pending, ctx, url, token, message)


async def _prepare_provided_room(pending: _Pending, ctx: FireContext) -> None:
    """The entry of a run whose room comes from the room hook, called in a thread (it may
    be slow), and only once the case's variables expanded."""
    with _marking(pending, ctx):
        _, _, message = _expanded(pending.case, ctx)
        hook = ctx.hooks.room
        room = await asyncio.to_thread(hook, pending.case) if hook else None
        if room is None:
            raise CekuraError(
                f"case {pending.case.name}: no pipecat_room_url, and no pytest_cekura_room "
                "hook gave one"
            )
        _set_entry(pending, ctx, room.url, room.token, message)


def assign_runs(scenarios: Sequence[int], runs: Sequence[Run]) -> list[int | None]:
    """Run ids for entries, by scenario id and then by position among the same scenario."""
    if runs and all(run.scenario is None for run in runs) and len(runs) == len(scenarios):
        return [run.id for run in runs]
    queues: dict[int | None, deque[int]] = defaultdict(deque)
    for run in runs:
        queues[run.scenario].append(run.id)
    return [queues[s].popleft() if queues[s] else None for s in scenarios]


def _batch_key(case: Case) -> _BatchKey:
    mock = case.mock_tool_names
    return case.agent, (tuple(mock) if mock is not None else None)


def _batches(ready: list[_Pending], size: int) -> Iterator[tuple[_BatchKey, list[_Pending]]]:
    groups: dict[_BatchKey, list[_Pending]] = defaultdict(list)
    for item in ready:
        groups[_batch_key(item.case)].append(item)
    for key, items in groups.items():
        for start in range(0, len(items), size):
            yield key, items[start : start + size]


def _body(key: _BatchKey, batch: list[_Pending]) -> dict[str, Any]:
    agent, mock = key
    body: dict[str, Any] = {"scenarios": [item.entry for item in batch]}
    if agent is not None:
        body["agent"] = agent
    if mock is not None:
        body["mock_tool_names"] = list(mock)
    return body


def _fail(batch: list[_Pending], message: str) -> None:
    for item in batch:
        item.slot.error = message


async def _send(key: _BatchKey, batch: list[_Pending], ctx: FireContext) -> None:
    """Send one start request; on a 400, send the entries Cekura did not refuse again;
    when its answer is lost, look for the result it may have created."""
    assert ctx.client is not None
    await ctx.traffic.turn()  # a lost request is being looked for: it decides what goes on
    stopped = ctx.control.stopped
    if stopped:
        _fail(batch, f"not fired: {stopped}")
        return
    hooks = ctx.hooks
    if hooks.on_sending is not None:
        hooks.on_sending([item.slot for item in batch])
    sent = Sent(key[0], tuple(item.case.scenario for item in batch), time.time())
    if hooks.on_request is not None:
        hooks.on_request([(item.case, item.slot) for item in batch], sent)
    async with ctx.traffic.sending():
        outcome = await _start(key, batch, sent, ctx)
    if isinstance(outcome, Result):
        await _answered(batch, outcome, ctx)
    elif isinstance(outcome, StartRejected):
        await _rejected(key, batch, outcome, ctx)
    elif outcome is not None:
        lost, exc = outcome
        recovered = await _recover(batch, lost, exc, ctx)
        if recovered is not None:
            await _answered(batch, recovered, ctx, recovered_reason(lost, recovered.id))


async def _start(
    key: _BatchKey, batch: list[_Pending], sent: Sent, ctx: FireContext
) -> Result | StartRejected | tuple[Sent, FateUnknown] | None:
    """The start request of ``batch``: its result, its 400, or what was lost (the request
    went out and no usable answer came back); None when it failed (its slots say why)."""
    assert ctx.client is not None
    try:
        return await ctx.client.start_runs(_body(key, batch))
    except (AuthError, CreditError) as exc:
        ctx.control.stop(str(exc))  # every later request would be refused (key, credit)
        _fail(batch, str(exc))
        return None
    except StartRejected as exc:
        return exc
    except FateUnknown as exc:
        lost = replace(sent, reason=exc.reason)
        ctx.traffic.lose(lost)  # while this request is still counted on the wire: see Traffic
        return lost, exc
    except Unreachable as exc:
        # A whole retry window without an answer: later batches and waves are not sent
        # (each would wait out a window of its own: the outage multiplied by the waves).
        _fail(batch, f"not started: {exc}")
        ctx.control.stop(str(exc))
        return None
    except ApiError as exc:
        _fail(batch, f"not started: {exc}")
        return None
    except Exception as exc:  # never crash the session; never re-send either
        message = ctx.redactor(
            f"the start request failed unexpectedly ({type(exc).__name__}): runs may already "
            "exist and were not re-sent; check the agent's results on the Cekura dashboard"
        )
        _fail(batch, message)
        ctx.control.note(message)
        ctx.control.stop(f"an earlier start request's fate is unknown ({message})")
        return None


async def _recover(
    batch: list[_Pending], lost: Sent, exc: FateUnknown, ctx: FireContext
) -> Result | None:
    """Look for the result a lost start request may have created (``_recover.py``); None
    when none is adopted: the batch's cases error and nothing more is fired."""
    assert ctx.client is not None
    async with ctx.traffic.recovering():
        alike = ctx.traffic.lost[lost.signature]
        found = Search()
        if alike == 1:
            found = await search(ctx.client, lost, ctx.known_results, ctx.policy.recover_poll)
        if found.result is not None:
            ctx.traffic.lost[lost.signature] -= 1  # its fate is known now
            ctx.known_results.add(found.result.id)
            ctx.control.note(
                f"cekura: {recovered_reason(lost, found.result.id)} ({len(batch)} run(s))"
            )
            return found.result
        _fail(batch, str(exc))
        ctx.control.note(str(exc))
        ctx.control.note(not_recovered(lost, found, alike))
        ctx.control.stop(f"an earlier start request's fate is unknown ({exc})")
        return None


async def _answered(
    batch: list[_Pending], result: Result, ctx: FireContext, recovered: str | None = None
) -> None:
    """Give the result's runs to the batch's slots, record and watch them."""
    ctx.known_results.add(result.id)
    now = time.time()
    run_ids = assign_runs([item.case.scenario for item in batch], result.runs)
    link = await _dashboard_link(batch[0].case, result.id, ctx)
    for item, run_id in zip(batch, run_ids, strict=True):
        item.slot.result_id = result.id
        item.slot.run_id = run_id
        item.slot.fired_at = now
        item.slot.dashboard_url = link
        item.slot.recovered = recovered
        item.slot.agent = result.agent
    if ctx.hooks.on_fired is not None:
        ctx.hooks.on_fired([(item.case, item.slot) for item in batch])
    if ctx.hooks.on_batch is not None:
        ctx.hooks.on_batch([item.slot for item in batch])


async def _rejected(
    key: _BatchKey, batch: list[_Pending], exc: StartRejected, ctx: FireContext
) -> None:
    """A 400 created nothing: error the refused entries, send the rest again."""
    named = {i for i in exc.by_entry if i < len(batch)}
    if named:
        for index in sorted(named):
            item = batch[index]
            item.slot.error = (
                f"Cekura refused scenario {item.case.scenario} of case {item.case.name} "
                f"(HTTP 400): {'; '.join(exc.by_entry[index])}"
            )
        rest = [item for i, item in enumerate(batch) if i not in named]
        if rest:
            await _send(key, rest, ctx)
        return
    why = "; ".join(exc.general) or "no reason given"
    if len(batch) == 1:
        item = batch[0]
        item.slot.error = (
            f"Cekura refused scenario {item.case.scenario} of case {item.case.name} "
            f"(HTTP 400): {why}"
        )
        return
    # The 400 names no entry: halve until the refused entries are isolated.
    half = len(batch) // 2
    await _send(key, batch[:half], ctx)
    await _send(key, batch[half:], ctx)


async def _dashboard_link(case: Case, result_id: int, ctx: FireContext) -> str | None:
    assert ctx.client is not None
    dashboard = ctx.policy.dashboard
    if not dashboard or ctx.client.simulated:
        return None  # a simulated result has no page on the real dashboard
    project = case.project
    if project is None and case.agent is not None:
        if case.agent not in ctx.projects:
            try:
                found = (await ctx.client.agent(case.agent)).project
            except CekuraError:
                found = None
            ctx.projects[case.agent] = str(found) if found is not None else None
        project = ctx.projects[case.agent]
    if project is None:
        return None
    return f"{dashboard.rstrip('/')}/{project}/results/{result_id}"


async def preflight(pending: Sequence[_Pending], ctx: FireContext) -> str | None:
    """What can be checked before the first start request, or None: every agent the cases
    name exists (its GET is also the project lookup for dashboard links, and the probe of
    the URL: a host that never answered ends the session at once, see the client). Without
    an agent, the first start request is the probe."""
    assert ctx.client is not None
    cases: dict[int, dict[str, Case]] = defaultdict(dict)  # by agent, then by node id
    for item in pending:
        if item.case.agent is not None:
            cases[item.case.agent].setdefault(item.slot.nodeid, item.case)
    for agent in sorted(cases):
        try:
            found = await ctx.client.agent(agent)
        except (AuthError, Unreachable) as exc:
            return str(exc)
        except ApiError as exc:
            if exc.status == 404:
                return _no_such_agent(agent, list(cases[agent].values()), ctx)
            continue  # not a reason to stop: the start request will say what is wrong
        ctx.projects[agent] = str(found.project) if found.project is not None else None
    return None


def _no_such_agent(agent: int, cases: Sequence[Case], ctx: FireContext) -> str:
    assert ctx.client is not None
    first = cases[0]
    where = f"case {first.name} ({first.source})"
    if len(cases) > 1:
        where += f" and {len(cases) - 1} other case(s)"
    default = ctx.policy.default_agent
    if default is not None and default[0] == agent:
        where += f"; it is also the {default[1]} default"
    url = ctx.client.url(AGENT_PATH.format(agent))
    return f"agent {agent} does not exist: GET {url} answered 404; set by {where}"


def _pending(cases: Sequence[tuple[str, Case]], attempt: int) -> list[_Pending]:
    return [
        _Pending(case, Slot(nodeid, i, case.scenario, case.timeout, attempt=attempt))
        for nodeid, case in cases
        for i in range(case.repeat)
    ]


def _plan(fired_at: float, pending: list[_Pending], ctx: FireContext) -> Plan:
    slots: dict[str, list[Slot]] = defaultdict(list)
    for item in pending:
        slots[item.slot.nodeid].append(item.slot)
    return Plan(
        fired_at,
        dict(slots),
        ctx.control.notes(),
        ctx.traffic.sent,
        ctx.control.forecasted,
        ctx.control.evaluated,
    )


def _lane(item: _Pending) -> Lane:
    """Runs in one static room share a lane; a room from a provider is the run's own."""
    if item.case.pipecat_room_url and item.entry is not None:
        return Lane(item.entry["pipecat_room_url"], item.case.room_concurrency)
    if item.room is not None:
        return Lane(item.room, item.case.room_concurrency)
    return Lane(("provided", item.slot.key), 1)


def _max_live(items: Sequence[_Pending]) -> int | None:
    caps = [p.case.max_live_runs for p in items if p.case.max_live_runs is not None]
    return min(caps) if caps else None


def _schedule(pending: list[_Pending]) -> Waves[_Pending]:
    ready = [p for p in pending if p.slot.error is None]
    return Waves(ready, lane=_lane, key=lambda p: p.slot.key, max_live=_max_live(ready))


async def _prepare_all(items: Sequence[_Pending], ctx: FireContext) -> None:
    """Prepare the entries of these runs: at once for cases that name their room (no task
    each: thousands of them would be pure overhead), concurrently and bounded for rooms
    from the room hook."""
    provided: list[_Pending] = []
    for item in items:
        if item.case.pipecat_room_url:
            _prepare_own_room(item, ctx)
        else:
            provided.append(item)
    if not provided:
        return
    limit = asyncio.Semaphore(max(1, ctx.policy.concurrency * 4))

    async def prepare(item: _Pending) -> None:
        async with limit:
            await _prepare_provided_room(item, ctx)

    await asyncio.gather(*(prepare(p) for p in provided))


async def _fire_released(released: list[_Pending], ctx: FireContext) -> list[Slot]:
    """Fire released runs (a room from a provider is asked for only now, when its run
    goes); return the slots that did not start (their places are free again)."""
    await _prepare_all([p for p in released if p.entry is None and p.slot.error is None], ctx)
    ready = [p for p in released if p.slot.error is None]
    sending = asyncio.Semaphore(max(1, ctx.policy.concurrency))

    async def send(key: _BatchKey, batch: list[_Pending]) -> None:
        async with sending:
            await _send(key, batch, ctx)

    batches = list(_batches(ready, ctx.policy.batch_size))
    if batches:
        # The first request goes alone: when its fate is unknown (a 200 that is not a
        # result, a dropped answer), nothing else has been sent. Only then do the others
        # go, a few at a time; one of unknown fate stops every later one.
        await send(*batches[0])
    await asyncio.gather(*(send(key, batch) for key, batch in batches[1:]))
    failed = [p.slot for p in released if p.slot.error is not None]
    for slot in failed:
        ctx.lanes.done(slot.key)
    return failed


async def fire(cases: Sequence[tuple[str, Case]], ctx: FireContext) -> Plan:
    """Fire the first wave of every case's runs, batched; return the plan (never raises for
    a case). Runs that must wait for a room's lane or for ``max_live_runs`` stay in
    ``ctx.lanes``, unfired, for :func:`fire_waves`. Canaries (``policy.canaries``) go first
    and alone: the rest is fired only if the canary gate lets it (``hooks.canary``)."""
    fired_at = time.time()
    pending = _pending(cases, ctx.policy.attempt)
    if not await _refused(pending, ctx):
        await _fire_pending(cases, pending, ctx)
    return _plan(fired_at, pending, ctx)


async def _refused(pending: list[_Pending], ctx: FireContext) -> bool:
    """Whether nothing may be fired (no client, an agent that does not exist, the bot under
    test did not start): then every run says why, and so do the notes."""
    if ctx.client is None:
        _fail(pending, ctx.policy.no_client_reason)
        ctx.control.note(ctx.policy.no_client_reason)
        return True
    problem = await preflight(pending, ctx) if not ctx.policy.attempt else None
    spend = ctx.hooks.spend
    if problem is None and spend is not None and not ctx.policy.attempt:
        problem = await spend([(p.case, p.slot) for p in pending])
    if problem is not None:
        ctx.control.stop(problem)
        _fail([p for p in pending if p.slot.error is None], f"not fired: {problem}")
        ctx.control.note(f"cekura: nothing fired: {problem}")
        return True
    before = ctx.hooks.before_firing
    problem = await asyncio.to_thread(before) if before is not None else None
    if problem:
        first = problem.splitlines()[0]
        ctx.control.stop(first)
        _fail(pending, f"not fired: {problem}")
        ctx.control.note(f"not fired: {first}")
        return True
    return False


async def _fire_pending(
    cases: Sequence[tuple[str, Case]], pending: list[_Pending], ctx: FireContext
) -> None:
    """Re-attach what a killed session fired, fire the canaries and wait for them, then
    queue the rest in the session's lanes and fire what they release."""
    resume = ctx.hooks.resume is not None and not ctx.policy.attempt
    resumed = await _resume(cases, pending, ctx) if resume else set()
    fresh = [p for p in pending if p.slot.key not in resumed]
    live = [p for p in pending if p.slot.key in resumed]
    canaries = [p for p in fresh if p.slot.nodeid in ctx.policy.canaries]
    if canaries and len(canaries) < len(fresh):
        fresh = [p for p in fresh if p.slot.nodeid not in ctx.policy.canaries]
        problem = await _fire_canaries(canaries, ctx)
        if problem is not None:
            _fail(fresh, f"not fired: {problem}")
            ctx.control.note(f"cekura: {len(fresh)} run(s) not fired: {problem}")
            return
    await _prepare_all([p for p in fresh if p.case.pipecat_room_url], ctx)
    for item in live:
        if item.case.pipecat_room_url:
            with contextlib.suppress(CekuraError):  # it was sent before: the URL expanded then
                item.room = expand(item.case.pipecat_room_url, ctx.env, item.case.name)
    # A later firing joins the session's lanes (its rooms may still be taken); re-attached
    # runs are still live in their rooms.
    await _fire_released(ctx.lanes.queue(fresh, live), ctx)


async def _fire_canaries(canaries: list[_Pending], ctx: FireContext) -> str | None:
    """Fire the canaries before anything else and wait for their runs; why the rest must
    not be fired, or None. Canaries sharing a room take turns in it, as any runs do (in
    lanes of their own: nothing else is live yet); the others go at once."""
    await _prepare_all([p for p in canaries if p.case.pipecat_room_url], ctx)
    lanes = _schedule(canaries)
    gate = ctx.hooks.canary
    while released := lanes.next():
        await _fire_released(released, ctx)
        problem = await gate([(p.case, p.slot) for p in released]) if gate else None
        if problem is not None:
            _fail(lanes.abandon(), f"not fired: {problem}")
            return problem
        for item in released:
            lanes.done(item.slot.key)
    return None


WAVE_GATHER = 0.05  # seconds: runs that end together start their successors in one request


async def fire_waves(
    ctx: FireContext,
    finished: asyncio.Queue[str],
    unfired: Callable[[list[Slot]], None],
) -> None:
    """Fire the runs ``fire`` held back, as places free up: ``finished`` yields the key of
    every slot that got its final run. Slots that will never start (firing stopped, a
    refused entry) go to ``unfired`` with their ``error`` set, so nobody waits for them."""
    waves = ctx.lanes
    try:
        while waves.waiting():
            if ctx.control.stopped:
                break
            released = waves.next()
            if released:
                failed = await _fire_released(released, ctx)
                if failed:
                    unfired(failed)
                continue
            waves.done(await finished.get())
            await asyncio.sleep(WAVE_GATHER)
            while not finished.empty():
                waves.done(finished.get_nowait())
    finally:
        rest = waves.abandon()
        if rest:
            reason = f"not fired: {ctx.control.stopped or 'the session ended before its turn'}"
            _fail(rest, reason)
            unfired([p.slot for p in rest])


async def _resume(
    cases: Sequence[tuple[str, Case]], pending: list[_Pending], ctx: FireContext
) -> set[str]:
    """Re-attach the runs a killed session fired for these cases (they are watched, not
    fired), and end the calls of those it left that cannot be; the keys of the slots
    re-attached."""
    assert ctx.hooks.resume is not None and ctx.client is not None
    found = await _find_unanswered(ctx) if ctx.hooks.unanswered is not None else {}
    resumption = await asyncio.to_thread(ctx.hooks.resume, cases, found)
    client = ctx.client
    ends = [client.end_call(run_id) for run_id in resumption.end_runs]
    ends += [client.end_calls(result_id) for result_id in resumption.end_results]
    if ends:
        answers = await asyncio.gather(*ends, return_exceptions=True)
        missed = sum(answer is not True for answer in answers)
        if missed:
            resumption.notes.append(
                f"cekura: {missed} call(s) left by an earlier session could not be ended: "
                "end them on the Cekura dashboard"
            )
    for note in resumption.notes:
        ctx.control.note(note)
    attached: list[Slot] = []
    for item in pending:
        slot = resumption.attached.get(item.slot.key)
        if slot is not None:
            item.slot = slot
            attached.append(slot)
            if slot.result_id is not None:
                ctx.known_results.add(slot.result_id)
            if (slot.nodeid, slot.index) in found:
                slot.recovered = _EARLIER
    if attached and ctx.hooks.on_batch is not None:
        ctx.hooks.on_batch(attached)
    return {slot.key for slot in attached}


_EARLIER = (
    "recovered after the session that sent its start request ended before the answer: its "
    "result was found in Cekura's results list; nothing was sent again"
)


async def _find_unanswered(ctx: FireContext) -> _Found:
    """The results of the start requests a killed session sent without an answer, as the
    results list shows them (one read each: they were sent before this session began);
    the result and run of each of their slots found."""
    assert ctx.hooks.unanswered is not None and ctx.client is not None
    requests, known = await asyncio.to_thread(ctx.hooks.unanswered)
    known |= ctx.known_results
    alike = Counter(request.sent.signature for request in requests)
    found: _Found = {}
    for request in requests:
        sent = replace(request.sent, reason="its session ended before the answer")
        answer = Search()
        if alike[sent.signature] == 1:
            answer = await search(ctx.client, sent, known, ctx.policy.recover_poll, reads=1)
        if answer.result is None:
            ctx.control.note(earlier_not_found(sent, answer, alike[sent.signature]))
            continue
        known.add(answer.result.id)
        run_ids = assign_runs(list(sent.scenarios), answer.result.runs)
        for nodeid, index, position in request.slots:
            if position < len(run_ids):
                found[(nodeid, index)] = (answer.result.id, run_ids[position])
    return found


def _dry_run_schedule(pending: list[_Pending], ctx: FireContext) -> list[str]:
    """Lanes, waves and bot sessions: how the runs would be spread over time."""
    lines: list[str] = []
    waves = _schedule(pending)
    for lane, capacity, runs in waves.lanes():
        if isinstance(lane, str) and runs > capacity:
            lines.append(
                ctx.redactor(
                    f"room {lane}: {runs} run(s), {capacity} at a time (room_concurrency), "
                    "each next one when a run in the room ends"
                )
            )
    cap = _max_live([p for p in pending if p.slot.error is None])
    if cap is not None:
        lines.append(f"max_live_runs={cap}: at most {cap} run(s) live at once")
    provided = sum(1 for p in pending if p.slot.error is None and not p.case.pipecat_room_url)
    if provided:
        lines.append(
            f"{provided} bot session(s) would be started by the room provider, one per run"
        )
    return lines


def dry_run(cases: Sequence[tuple[str, Case]], ctx: FireContext) -> list[str]:
    """The start requests a real session would send, wave by wave, redacted; nothing is
    sent and no room hook is called (it may create rooms). A wave is what may start once
    the runs of the wave before it ended (a room's lane, ``max_live_runs``)."""
    pending = _pending(cases, 0)
    room = Room("https://room-from-pytest-cekura-room-hook.invalid/", None)
    ctx = replace(ctx, hooks=replace(ctx.hooks, room=lambda case: room))

    asyncio.run(_prepare_all(pending, ctx))
    ready = [p for p in pending if p.slot.error is None]
    waves = _schedule(ready).rounds()
    requests = [
        (number, batch)
        for number, wave in enumerate(waves, 1)
        for batch in _batches(wave, ctx.policy.batch_size)
    ]
    lines: list[str] = []
    for index, (wave, (key, batch)) in enumerate(requests, 1):
        body = _body(key, batch)
        body["scenarios"] = [
            {k: ("***" if k == "pipecat_token" else v) for k, v in (entry or {}).items()}
            for entry in body["scenarios"]
        ]
        where = f", wave {wave} of {len(waves)}" if len(waves) > 1 else ""
        lines.append(
            f"POST {START_PATH} (request {index} of {len(requests)}{where}, {len(batch)} run(s))"
        )
        lines.append(ctx.redactor(json.dumps(body, indent=2)))
    for item in pending:
        if item.slot.error is not None:
            lines.append(f"would not fire: {item.slot.error}")
    lines.extend(_dry_run_schedule(pending, ctx))
    if len(waves) > 1:
        lines.append(f"{len(waves)} wave(s): each after the runs of the one before end")
    lines.append(
        f"cekura dry run: {len(ready)} run(s) in {len(requests)} request(s) would be started "
        f"and billed; nothing was fired"
    )
    return lines

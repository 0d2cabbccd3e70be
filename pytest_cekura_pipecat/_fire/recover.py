"""Recover a start request of unknown fate: find the result it may have created, adopt it.

A start request that went out without a usable answer (a timeout after sending, a connection
reset after the body went out, a 5xx, a 200 or 202 that is not a result) may have created a
result: Cekura then places and bills its calls. It is never sent again (``_client.py``).
Instead its result is looked for in the results list (``GET /test_framework/v2/results/
?agent_id=&scenarios=``, newest first). A listed result is the request's when

- this session does not know it already (no start answer named it, none was adopted),
- it was created at most ``SKEW`` seconds before the request left (the two clocks may
  disagree by that much),
- and its runs are the entries sent: the same scenario ids, each as many times, for the
  same agent (its runs are read to be sure).

Exactly one such result is adopted: its runs are mapped to the entries as a start answer's
are, then watched, judged and ended like any other, and firing goes on. None after
``READS`` reads of the list, a poll interval apart (18 s at the default 3 s): the cases error
as before and nothing more is fired. Several (another pipeline fired the same scenarios at
the same moment, or two lost requests of this session had the same scenarios): which one is
ours cannot be told, so none is adopted and none is ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Container
from dataclasses import dataclass, field

from .._api.client import CekuraClient, Transient
from .._api.models import ListedResult, Result
from .._errors import CekuraError

SKEW = 30.0  # seconds: how far Cekura's clock may be behind ours
READS = 6  # reads of the results list before a lost request is given up
PAGES = 4  # pages of the list read at most, each time
PAGE_SIZE = 25

Signature = tuple[int | None, tuple[int, ...]]


@dataclass(frozen=True)
class Sent:
    """A start request as sent: what finds its result should its answer be lost."""

    agent: int | None
    scenarios: tuple[int, ...]  # one per entry sent
    sent_at: float  # wall time just before it left
    reason: str = ""  # what went wrong, in a few words ("HTTP 500")

    @property
    def signature(self) -> Signature:
        return self.agent, tuple(sorted(self.scenarios))


@dataclass(frozen=True)
class Search:
    """What the results list said about a lost request."""

    result: Result | None = None  # the one result that matched
    several: tuple[int, ...] = ()  # the ids of the results that matched, when more than one
    problem: str = ""  # why the list could not be read, when it never could


def may_be(summary: ListedResult, lost: Sent, known: Container[int]) -> bool:
    """Whether a listed result may be the lost request's (its runs then decide)."""
    if summary.id in known or summary.created_at is None:
        return False
    if summary.created_at < lost.sent_at - SKEW:
        return False
    if lost.agent is not None and summary.agent not in (None, lost.agent):
        return False
    if summary.scenarios is not None and summary.scenarios != set(lost.scenarios):
        return False
    return summary.total is None or summary.total == len(lost.scenarios)


def same_runs(result: Result, lost: Sent) -> bool:
    """The result's runs are the entries sent: the same scenario ids, each as many times."""
    if lost.agent is not None and result.agent not in (None, lost.agent):
        return False
    if result.unreadable or len(result.runs) != len(lost.scenarios):
        return False
    return Counter(run.scenario for run in result.runs) == Counter(lost.scenarios)


async def _listed(client: CekuraClient, lost: Sent, known: Container[int]) -> list[int]:
    """The ids of the listed results that may be the lost request's."""
    ids: list[int] = []
    for page in range(1, PAGES + 1):
        items, more = await client.results_list(lost.agent, page, PAGE_SIZE, lost.scenarios)
        ids.extend(item.id for item in items if may_be(item, lost, known))
        # Newest first: past a result older than the window, every later page is older.
        if not more or any(i.created_at < lost.sent_at - SKEW for i in items if i.created_at):
            break
    return ids


async def search(
    client: CekuraClient,
    lost: Sent,
    known: Container[int],
    interval: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    reads: int = READS,
) -> Search:
    """Read the results list up to ``reads`` times, ``interval`` apart, until a result
    matches the lost request (see the module's docstring)."""
    problem = ""
    for read in range(reads):
        if read:
            await sleep(interval)
        try:
            ids = await _listed(client, lost, known)
            found = [await client.result(result_id) for result_id in ids]
        except (Transient, CekuraError) as exc:
            problem = str(exc)
            continue
        matches = [result for result in found if same_runs(result, lost)]
        if len(matches) > 1:
            return Search(several=tuple(result.id for result in matches))
        if matches:
            return Search(matches[0])
        problem = ""
    return Search(problem=problem)


def recovered_reason(lost: Sent, result_id: int) -> str:
    """What a recovered case says."""
    return (
        f"recovered after the start request failed ({lost.reason}): its result {result_id} "
        "was found in Cekura's results list; nothing was sent again"
    )


def not_recovered(lost: Sent, found: Search, alike: int) -> str:
    """Why a lost request was not recovered, in one line."""
    runs = f"a start request of {len(lost.scenarios)} run(s) failed ({lost.reason})"
    if alike > 1:
        return (
            f"cekura: {runs} and was not recovered: {alike} start requests with the same "
            "scenarios lost their answers, and which result is whose cannot be told: none was "
            "adopted or ended; check the agent's results on the Cekura dashboard"
        )
    if found.several:
        ids = ", ".join(str(i) for i in found.several)
        return (
            f"cekura: {runs} and was not recovered: {len(found.several)} results with the "
            f"same scenarios were created since it was sent ({ids}; another pipeline?): none "
            "was adopted or ended; check them on the Cekura dashboard"
        )
    why = f" (the list could not be read: {found.problem})" if found.problem else ""
    return (
        f"cekura: {runs} and was not recovered: no result of it was found in Cekura's "
        f"results list{why}; nothing was sent again"
    )


def earlier_not_found(sent: Sent, found: Search, alike: int) -> str:
    """Why a killed session's unanswered request was not recovered, in one line."""
    if alike > 1 or found.several:
        why = f"{max(alike, len(found.several))} could be it, and which is whose cannot be told"
    elif found.problem:
        why = f"the results list could not be read: {found.problem}"
    else:
        why = "no result of it is in Cekura's results list"
    return (
        f"cekura: a start request of {len(sent.scenarios)} run(s) sent by a session that "
        f"ended before its answer was not recovered ({why}): its cases are fired afresh"
    )


@dataclass
class Traffic:
    """Start requests on the wire, and lost ones being recovered. A search starts only once
    no other start request is on the wire (an answer still on its way names a result the
    search would take for the lost one's), one at a time, and no new request leaves while
    one is under way (it decides whether firing goes on)."""

    in_flight: int = 0
    holding: int = 0
    sent: int = 0  # start requests sent so far (each part of a halved 400 counts)
    lost: Counter[Signature] = field(default_factory=Counter)
    _changed: asyncio.Condition | None = None
    _one: asyncio.Lock | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        condition = self._condition()
        async with condition:
            condition.notify_all()

    async def turn(self) -> None:
        """Wait until no recovery is under way."""
        if self.holding:
            condition = self._condition()
            async with condition:
                await condition.wait_for(lambda: not self.holding)

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """One start request on the wire (a lost one must call :meth:`lose` inside)."""
        self.sent += 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            await self._notify()

    def lose(self, lost: Sent) -> None:
        """A request lost its answer: hold new requests back until it is searched for."""
        self.holding += 1
        self.lost[lost.signature] += 1

    @contextlib.asynccontextmanager
    async def recovering(self) -> AsyncIterator[None]:
        """The search for a lost request: alone, once nothing else is on the wire."""
        try:
            condition = self._condition()
            async with condition:
                await condition.wait_for(lambda: self.in_flight == 0)
            if self._one is None:
                self._one = asyncio.Lock()
            async with self._one:
                yield
        finally:
            self.holding -= 1
            await self._notify()

"""The spend pre-flight: before the first start request, and for nothing (GETs only).

Reads each selected scenario once per session (``Catalogue``), checks that it exists and
belongs to the case's agent, forecasts the session's cost (``credits.py``), applies the
credit cap, and compares the worst case with the credits Cekura says are left. A scenario or
the billing info that cannot be read is a note, never a failure: the forecast then assumes
the longest call for that scenario, and the credits left are not compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .._api.catalogue import Evaluator, Scenario
from .._api.client import BILLING_PATH, SCENARIO_PATH, CekuraClient
from .._config.case import Case
from .._config.options import Spend
from .._errors import ApiError, Unreachable
from .credits import (
    CaseCost,
    Forecast,
    Pricing,
    ScenarioCost,
    admission_order,
    admit,
    capped_reason,
    cents,
    credits,
)
from .firing import FireControl
from .plan import Slot

_READS_AT_ONCE = 8  # scenario reads in flight at once
_LIST_FROM = 20  # scenarios of one agent above which its scenario list is read first


@dataclass(frozen=True)
class SpendPolicy:
    """The spend options: pricing, the cap (None: none) and whether too few credits left
    only warn (``--cekura-allow-low-credits``)."""

    pricing: Pricing = field(default_factory=Pricing)
    cap: float | None = None
    allow_low_credits: bool = False


@dataclass
class Catalogue:
    """The session's scenarios as read, each id at most once: found, missing (404), or
    unread (why)."""

    found: dict[int, Scenario] = field(default_factory=dict)
    missing: set[int] = field(default_factory=set)
    unread: dict[int, str] = field(default_factory=dict)
    unreachable: str | None = None  # Cekura did not answer: nothing may be fired

    def known(self, scenario: int) -> bool:
        return scenario in self.found or scenario in self.missing or scenario in self.unread

    async def read(self, client: CekuraClient, scenarios: Iterable[tuple[int | None, int]]) -> None:
        """Read the (agent, scenario) pairs not known yet: an agent with many of them
        through its scenario list first (a page of 100 instead of 100 reads), then each
        scenario the list did not show on its own (a 404 says it does not exist)."""
        by_agent: dict[int | None, set[int]] = {}
        for agent, scenario in scenarios:
            if not self.known(scenario):
                by_agent.setdefault(agent, set()).add(scenario)
        for agent, ids in sorted(by_agent.items(), key=lambda kv: kv[0] or 0):
            if len(ids) > _LIST_FROM:
                await self._list(client, agent, ids)
        wanted = sorted({i for ids in by_agent.values() for i in ids if not self.known(i)})
        limit = asyncio.Semaphore(_READS_AT_ONCE)

        async def one(scenario: int) -> None:
            async with limit:
                try:
                    self.found[scenario] = await client.scenario(scenario)
                except Unreachable as exc:  # the probe of the host, as the agent check is
                    self.unreachable = self.unreachable or str(exc)
                except ApiError as exc:
                    if exc.status == 404:
                        self.missing.add(scenario)
                    else:
                        self.unread[scenario] = str(exc)

        await asyncio.gather(*(one(i) for i in wanted))

    async def _list(self, client: CekuraClient, agent: int | None, ids: set[int]) -> None:
        try:
            listed = await client.scenarios(agent_id=agent)
        except ApiError:
            return  # each is read on its own
        for scenario in listed:
            if scenario.id in ids:
                self.found[scenario.id] = scenario

    def evaluators(self) -> dict[int, Evaluator]:
        """Each scenario read: its version and metric hash (what judged its runs)."""
        return {i: scenario.evaluator for i, scenario in self.found.items()}

    def cost(self, scenario: int) -> ScenarioCost:
        found = self.found.get(scenario)
        if found is None:
            return ScenarioCost(scenario, None, 0)
        return ScenarioCost(scenario, found.max_duration, len(found.metrics))


@dataclass(frozen=True)
class SpendCheck:
    """What the pre-flight found: the forecast, a line per case whose scenario is wrong
    (by node id), why nothing may be fired (or None), and the cap's reasons by node id."""

    forecast: Forecast
    bad: dict[str, str]
    problem: str | None
    capped: dict[str, str]
    notes: tuple[str, ...] = ()


def _first_cases(cases: Sequence[tuple[str, Case]]) -> list[tuple[str, Case]]:
    seen: dict[str, Case] = {}
    for nodeid, case in cases:
        seen.setdefault(nodeid, case)
    return list(seen.items())


def wrong_scenarios(
    cases: Sequence[tuple[str, Case]], catalogue: Catalogue, client: CekuraClient
) -> tuple[dict[str, str], list[str]]:
    """A line per case whose scenario does not exist or is another agent's (by node id),
    and one line per wrong scenario id, naming its first case."""
    bad: dict[str, str] = {}
    by_id: dict[tuple[int, int | None], list[Case]] = {}
    for nodeid, case in cases:
        line = _wrong(case, catalogue, client)
        if line is not None:
            bad[nodeid] = line
            by_id.setdefault((case.scenario, case.agent), []).append(case)
    lines = []
    for named in by_id.values():
        line = _wrong(named[0], catalogue, client) or ""
        if len(named) > 1:
            line += f" (and {len(named) - 1} other case(s) of this scenario)"
        lines.append(line)
    return bad, lines


def _wrong(case: Case, catalogue: Catalogue, client: CekuraClient) -> str | None:
    where = f"case {case.name} ({case.source})"
    if case.scenario in catalogue.missing:
        url = client.url(SCENARIO_PATH.format(case.scenario))
        return f"{where}: scenario {case.scenario} does not exist: GET {url} answered 404"
    found = catalogue.found.get(case.scenario)
    if found is None or found.agent is None or case.agent is None or found.agent == case.agent:
        return None
    return (
        f"{where}: scenario {case.scenario} belongs to agent {found.agent}, not to agent "
        f"{case.agent} the case is fired with"
    )


def forecast(
    cases: Sequence[tuple[str, Case]], catalogue: Catalogue, policy: SpendPolicy
) -> tuple[Forecast, dict[str, str]]:
    """The forecast of these cases (runs = ``repeat``: adaptive top-ups included) and the
    error of each case the cap leaves out, by node id."""
    pricing = policy.pricing
    costs = []
    for nodeid, case in cases:
        scenario = catalogue.cost(case.scenario)
        costs.append(
            CaseCost(
                nodeid,
                case.name,
                case.repeat,
                scenario.worst(pricing),
                scenario.estimate(pricing),
                case.priority,
            )
        )
    left_out = admit(costs, policy.cap)
    unread = sorted({c.scenario for _, c in cases if c.scenario not in catalogue.found})
    result = Forecast(pricing, tuple(costs), policy.cap, left_out, tuple(unread))
    capped: dict[str, str] = {}
    if policy.cap is not None and left_out:
        before = result.worst
        out = set(left_out)
        for cost in admission_order(costs):
            if cost.nodeid in out:
                capped[cost.nodeid] = capped_reason(policy.cap, cost, before)
    return result, capped


async def _credits_left(client: CekuraClient) -> tuple[float | None, str | None]:
    """Cekura's credits left, or None and a note saying why they are not known."""
    try:
        billing = await client.billing()
    except ApiError as exc:
        url = client.url(BILLING_PATH)
        status = f"HTTP {exc.status}" if exc.status is not None else str(exc)
        hint = (
            " (Cekura's billing info needs an organization-scoped key)"
            if exc.status
            in (
                401,
                403,
            )
            else ""
        )
        return None, (
            f"cekura: credits left not known: GET {url} answered {status}{hint}; the "
            "forecast was not compared with them"
        )
    return billing.credits_remaining, None


def low_credits(left: float, forecast: Forecast) -> str:
    return (
        f"Cekura's credits left ({credits(left)}) cannot cover this session's worst case "
        f"({credits(forecast.worst)} credits, estimated): buy credits, select fewer cases, "
        "cap the spend with --cekura-max-credits, or go on anyway with "
        "--cekura-allow-low-credits"
    )


async def check(
    client: CekuraClient,
    cases: Sequence[tuple[str, Case]],
    policy: SpendPolicy,
    catalogue: Catalogue,
    *,
    billing: bool = True,
) -> SpendCheck:
    """The whole pre-flight of the first firing (GETs only; nothing is fired here)."""
    cases = _first_cases(cases)
    await catalogue.read(client, ((case.agent, case.scenario) for _, case in cases))
    if catalogue.unreachable is not None:
        empty = Forecast(policy.pricing, (), policy.cap)
        return SpendCheck(empty, {}, catalogue.unreachable, {})
    notes: list[str] = []
    unread = sorted({c.scenario for _, c in cases if c.scenario in catalogue.unread})
    if unread:
        why = catalogue.unread[unread[0]]
        notes.append(
            f"cekura: {len(unread)} scenario(s) could not be read ({why}): their worst case "
            "assumes a 60-minute call"
        )
    result, capped = forecast(cases, catalogue, policy)
    bad, lines = wrong_scenarios(cases, catalogue, client)
    if bad:
        wrong = f"{len(lines)} scenario id(s) do not exist or belong to another agent: " + lines[0]
        return SpendCheck(result, bad, wrong, capped, tuple([*notes, *lines]))
    left, note = await _credits_left(client) if billing else (None, None)
    if note is not None:
        notes.append(note)
    if left is not None:
        result = Forecast(
            result.pricing, result.cases, result.cap, result.left_out, result.unread, left
        )
    low = None
    if left is not None and left < result.worst - 1e-9:
        low = low_credits(left, result)
        if policy.allow_low_credits:
            notes.append(f"cekura: {low} (going on: allowed)")
            low = None
    return SpendCheck(result, {}, low, capped, tuple(notes))


Announce = Callable[[str], None]


class SessionSpend:
    """The session's side of the spend pre-flight: its policy, its one catalogue (each
    scenario read once per session), and the hook a first firing calls before any start
    request (``FireHooks.spend``)."""

    def __init__(
        self,
        policy: SpendPolicy,
        cases: Mapping[str, Case],
        announce: Announce | None = None,
        problem: Announce | None = None,
    ) -> None:
        self.policy = policy
        self.cases = cases  # the session's registered cases: their full repeat counts
        self.catalogue = Catalogue()
        self._announce = announce  # the forecast line, now
        self._problem = problem  # why nothing is fired, now

    def _full(self, pairs: Sequence[tuple[Case, Slot]]) -> list[tuple[str, Case]]:
        """The cases as selected (an adaptive case's first firing is cut to ``min_passes``;
        its forecast counts every run it may fire)."""
        return [(slot.nodeid, self.cases.get(slot.nodeid, case)) for case, slot in pairs]

    def hook(
        self, client: CekuraClient, control: FireControl
    ) -> Callable[[Sequence[tuple[Case, Slot]]], Awaitable[str | None]]:
        async def spend(pairs: Sequence[tuple[Case, Slot]]) -> str | None:
            found = await check(client, self._full(pairs), self.policy, self.catalogue)
            control.forecast(found.forecast)
            control.evaluators(self.catalogue.evaluators())
            if found.forecast.cases:  # none when Cekura could not be reached: no estimate
                control.note(found.forecast.line())
            for line in found.notes:
                control.note(line)
            for _, slot in pairs:
                bad = found.bad.get(slot.nodeid)
                if bad is not None:
                    slot.error = f"not fired: {bad}"
                elif slot.nodeid in found.capped:
                    slot.error = found.capped[slot.nodeid]
            if found.problem is not None:
                if self._problem is not None:
                    self._problem(f"cekura: nothing fired: {found.problem}")
            elif self._announce is not None:
                self._announce(found.forecast.line())
            return found.problem

        return spend

    def dry_run(self, client: CekuraClient, cases: Sequence[tuple[str, Case]]) -> SpendCheck:
        """The pre-flight as the dry run shows it (GETs only)."""

        async def run() -> SpendCheck:
            try:
                return await check(client, cases, self.policy, self.catalogue)
            finally:
                await client.aclose()

        return asyncio.run(run())

    def rerun_problem(
        self,
        nodeid: str,
        runs: int,
        forecast: Forecast | None,
        reserve: Callable[[int, int, int, str], bool],
    ) -> str | None:
        """Why a rerun of ``runs`` runs would pass the credit cap (reserving its share when
        it does not), or None."""
        cap = self.policy.cap
        if cap is None:
            return None
        per_run = forecast.run_worst(nodeid) if forecast is not None else None
        if forecast is None or per_run is None:
            return f"its worst case is not known, and the credit cap ({credits(cap)}) needs it"
        if not reserve(cents(runs * per_run), cents(cap), cents(forecast.worst), "credits"):
            return f"a rerun would pass the credit cap ({credits(cap)} credits, estimated)"
        return None


def policy_of(options: Spend) -> SpendPolicy:
    return SpendPolicy(
        Pricing(options.credits_per_minute, options.credits_per_metric),
        options.max_credits,
        options.allow_low_credits,
    )


@dataclass(frozen=True)
class SpendLine:
    """A line of the dry run; ``nodeid`` names a case that would not be fired."""

    text: str
    nodeid: str = ""


def spend_lines(found: SpendCheck) -> list[SpendLine]:
    """The pre-flight as the dry run prints it: the forecast, its notes, every case that
    would not be fired and why, and why nothing would be."""
    lines = [SpendLine(f"cekura dry run: {found.forecast.line().removeprefix('cekura: ')}")]
    lines += [SpendLine(note) for note in found.notes]
    lines += [SpendLine(f"would not fire: {line}", nodeid) for nodeid, line in found.bad.items()]
    lines += [
        SpendLine(f"would not fire: {line.removeprefix('not fired: ')}", nodeid)
        for nodeid, line in found.capped.items()
    ]
    if found.problem is not None:
        lines.append(SpendLine(f"cekura dry run: nothing would be fired: {found.problem}"))
    return lines

"""The session object: owns the cases, the firing plan, result snapshots and verdicts.

It is reached through ``config.stash`` (see ``plugin.py``); pytest hooks only delegate here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from .case import Case, Room, environ, expand
from .client import CekuraClient
from .coordinator import Coordinator, Plan
from .errors import AuthError, CekuraError
from .firing import FireContext, Slot, claim_runs, dry_run, fire
from .models import KNOWN_STATUSES, Result, Run
from .options import Settings
from .redact import Redactor
from .verdict import CaseVerdict, CekuraRun, decide, is_terminal


def next_interval(current: float, changed: bool, base: float, ceiling: float) -> float:
    """Poll again soon after a change; back off by half while nothing changes."""
    return base if changed else min(current * 1.5, ceiling)


_NOT_FIRED = "the case was not fired (the firing process gave no plan)"


def will_not_run(item: pytest.Item) -> bool:
    """Whether pytest's skipping plugin will skip the item before it runs."""
    from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

    try:
        if evaluate_skip_marks(item) is not None:
            return True
        xfail = evaluate_xfail_marks(item)
    except BaseException:  # a broken condition: pytest reports it; do not fire for it
        return True
    return xfail is not None and not xfail.run


SESSION_KEY = pytest.StashKey["CekuraSession"]()
# How long a worker waits for another worker's firing before giving up on a case.
_PLAN_WAIT = 600.0


@dataclass
class _Track:
    """What one case's wait loop knows about one of its slots."""

    slot: Slot
    run: CekuraRun | None = None
    last_status: str = "pending"


@dataclass
class SessionState:
    cases: dict[str, Case] = field(default_factory=dict)
    verdicts: dict[str, CaseVerdict] = field(default_factory=dict)
    details: dict[int, Run] = field(default_factory=dict)
    reruns: dict[str, Plan] = field(default_factory=dict)
    plan_missing: bool = False
    problem: str | None = None  # a configuration problem that stopped all firing
    invalid: dict[str, str] = field(default_factory=dict)  # marked tests with bad markers
    rerun_counts: dict[str, int] = field(default_factory=dict)
    finished: list[CekuraRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)


class CekuraSession:
    """Per-pytest-session state; one instance, stashed on the config."""

    @classmethod
    def of(cls, config: pytest.Config) -> CekuraSession:
        return config.stash[SESSION_KEY]

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        coordinator: Coordinator,
        redactor: Redactor,
        *,
        api_key: str | None,
        simulated_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings = settings
        self.coordinator = coordinator
        self.redactor = redactor
        self.simulated_url = simulated_url
        self.state = SessionState()
        self._api_key = api_key
        self._client: CekuraClient | None = None
        self._sleep = sleep
        self.clock = clock
        self.on_tick: Callable[[], None] | None = None  # progress reporting, if any
        self._parsed: dict[int, tuple[float, Result]] = {}
        self._lock = threading.RLock()
        redactor.add(api_key)

    # -- setup -----------------------------------------------------------------------------

    def register(self, nodeid: str, case: Case) -> None:
        if self.settings.timeout_override is not None:
            case = replace(case, timeout=self.settings.timeout_override)
        self.state.cases[nodeid] = case
        # Every process learns the tokens it may have to mask, not only the one that fires
        # (Cekura may echo a token back in an error message that any worker prints).
        if case.pipecat_token:
            with contextlib.suppress(CekuraError):  # a missing variable is reported at firing
                self.redactor.add(expand(case.pipecat_token, environ(), case.name))

    def client(self) -> CekuraClient | None:
        with self._lock:
            if self._client is None and self._api_key:
                self._client = CekuraClient(
                    self.settings.api_url, self._api_key, self.redactor, self.settings.http
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def simulated(self) -> bool:
        return self.simulated_url is not None or bool(self._client and self._client.simulated)

    def has_room_provider(self) -> bool:
        return bool(self.config.pluginmanager.hook.pytest_cekura_room.get_hookimpls())

    # -- firing ----------------------------------------------------------------------------

    def selected(self, items: Sequence[pytest.Item]) -> list[tuple[str, Case]]:
        """The cases of the selected items that will run: a test skipped by a mark (skip,
        a true skipif, xfail(run=False)) is never fired, never billed."""
        return [
            (item.nodeid, self.state.cases[item.nodeid])
            for item in items
            if item.nodeid in self.state.cases and not will_not_run(item)
        ]

    def start(self, items: Sequence[pytest.Item]) -> None:
        """Fire every selected case once for the whole session (see coordinator.py)."""
        selected = self.selected(items)
        if not selected or self.state.problem:
            return
        self.coordinator.start(lambda: self._fire(selected))

    def budget_problem(self, selected: list[tuple[str, Case]]) -> str | None:
        total = sum(case.repeat for _, case in selected)
        if self.settings.max_runs is not None and total > self.settings.max_runs:
            return (
                f"not fired: this session would start {total} runs, more than "
                f"cekura_max_runs={self.settings.max_runs}"
            )
        return None

    def dry_run(self, items: Sequence[pytest.Item]) -> list[str]:
        selected = self.selected(items)
        ctx = self._context(None, "")
        lines = dry_run(selected, ctx) if selected else ["cekura dry run: no Cekura case selected"]
        problem = self.budget_problem(selected)
        return lines + ([problem] if problem else [])

    def _fire(self, selected: list[tuple[str, Case]]) -> Plan:
        client = self.client()
        reason = "CEKURA_API_KEY is not set: export your Cekura API key"
        problem = self.budget_problem(selected)
        if problem:
            client, reason = None, problem
        ctx = self._context(client, reason)
        self.coordinator.set_spent(sum(case.repeat for _, case in selected) if client else 0)
        plan = fire(selected, ctx)
        if ctx.systemic:
            self.coordinator.trip(ctx.systemic)
        return plan

    def _context(self, client: CekuraClient | None, reason: str) -> FireContext:
        hook = self.config.pluginmanager.hook

        def room(case: Case) -> Room | None:
            got = hook.pytest_cekura_room(case=case, config=self.config)
            if got is None or isinstance(got, Room):
                return got
            url, token = got
            return Room(url, token)

        return FireContext(
            client=client,
            redactor=self.redactor,
            env=environ(),
            batch_size=self.settings.batch_size,
            no_client_reason=reason,
            room_hook=room if self.has_room_provider() else None,
            entry_hook=lambda case, entry: hook.pytest_cekura_entry(case=case, entry=entry),
            dashboard=self.settings.dashboard_url,
            on_started=self.coordinator.note_started,
        )

    # -- waiting ---------------------------------------------------------------------------

    def verdict(self, nodeid: str) -> CaseVerdict:
        """Wait for the case's runs, then decide; cached, so setup and call share it."""
        known = self.state.verdicts.get(nodeid)
        if known is not None:
            return known
        case = self.state.cases[nodeid]
        plan = self.state.reruns.get(nodeid) or self._plan()
        slots = plan["slots"].get(nodeid) if plan else None
        if plan is None or slots is None:
            runs = [self._never_started(case, self.state.problem or _NOT_FIRED)]
        else:
            runs = self._wait(case, slots, float(plan["fired_at"]), plan["slots"])
            self._watch_breaker(runs)
        verdict = self._decide(case, runs)
        self.state.verdicts[nodeid] = verdict
        return verdict

    def _plan(self) -> Plan | None:
        """The plan, waiting for the firing process once per session, not once per item."""
        if self.state.plan_missing:
            return None
        plan = self.coordinator.plan(_PLAN_WAIT)
        self.state.plan_missing = plan is None
        return plan

    def _decide(self, case: Case, runs: list[CekuraRun]) -> CaseVerdict:
        hook = self.config.pluginmanager.hook
        override = None
        runs = [self._with_details(run) for run in runs]
        try:
            for run in runs:
                hook.pytest_cekura_run_finished(case=case, run=run)
            if all(run.verdict != "error" for run in runs):
                override = hook.pytest_cekura_verdict(case=case, runs=tuple(runs))
        except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
            broken = f"a pytest_cekura_* hook raised {type(exc).__name__}: {exc}"
            return CaseVerdict("error", self.redactor(broken), self.redactor(broken), tuple(runs))
        verdict = decide(case, runs, override)
        message = verdict.message
        if verdict.outcome != "passed":
            message += self._transcript_tail(runs)
        return replace(
            verdict,
            message=self.redactor(message),
            first_reason=self.redactor(verdict.first_reason),
        )

    def rerun_problem(self, nodeid: str) -> str | None:
        """Why a rerun must not fire again, or None. Only a case whose runs all reached
        Cekura may be fired again: after a start request of unknown fate, a rejected key or
        credit, a tripped breaker or the run budget, a second POST could bill twice."""
        previous = self.state.verdicts.get(nodeid)
        case = self.state.cases[nodeid]
        if previous is None or previous.outcome == "passed":
            return "nothing to rerun"
        if self.coordinator.tripped():
            return "the circuit breaker tripped"
        if any(run.run_id is None for run in previous.runs):
            return "a run of the first attempt never started or its fate is unknown"
        budget = self.settings.max_runs
        if budget is not None and not self.coordinator.reserve(case.repeat, budget):
            return f"a rerun would start more than cekura_max_runs={budget} runs"
        return None

    def refire(self, nodeid: str) -> bool:
        """A rerun (pytest-rerunfailures) of a case that did not pass: fire a fresh run of
        it, in this process, and judge the case again from that run alone. False (and the
        old verdict stands) when ``rerun_problem`` says no."""
        problem = self.rerun_problem(nodeid)
        if problem is not None:
            note = f"cekura: {nodeid} was not fired again on rerun: {problem}"
            if note not in self.state.notes:
                self.state.notes.append(note)
            return False
        case = self.state.cases[nodeid]
        self.state.verdicts.pop(nodeid, None)
        self.state.rerun_counts[nodeid] = self.state.rerun_counts.get(nodeid, 0) + 1
        client = self.client()
        reason = "CEKURA_API_KEY is not set: export your Cekura API key"
        self.state.reruns[nodeid] = fire([(nodeid, case)], self._context(client, reason))
        return True

    def _transcript_tail(self, runs: Sequence[CekuraRun], turns: int = 8) -> str:
        """The last turns of each failing run's transcript, bounded, for the failure text."""
        parts: list[str] = []
        for run in runs:
            if run.passed or run.run_id is None:
                continue
            transcript = run.transcript
            if not transcript:
                continue
            lines = [line.strip() for line in transcript.splitlines() if line.strip()]
            tail = [line if len(line) <= 200 else line[:199] + "…" for line in lines[-turns:]]
            parts.append(f"\n  transcript of run {run.run_id}, last {len(tail)} turn(s):")
            parts.extend(f"\n    {line}" for line in tail)
        return "".join(parts)

    def _never_started(self, case: Case, reason: str, slot: Slot | None = None) -> CekuraRun:
        return CekuraRun(
            scenario_id=case.scenario,
            status="not_started",
            error_message=self.redactor(reason),
            result_id=slot.get("result_id") if slot else None,
            dashboard_url=slot.get("dashboard_url") if slot else None,
        )

    def _wait(
        self, case: Case, slots: list[Slot], fired_at: float, plan_slots: dict[str, list[Slot]]
    ) -> list[CekuraRun]:
        tracks = [_Track(slot) for slot in slots]
        for track in tracks:
            if track.slot["error"] is not None:
                track.run = self._never_started(case, track.slot["error"], track.slot)
        client = self.client()
        deadline = fired_at + case.timeout
        interval = self.settings.poll_interval
        signatures: dict[int, Any] = {}
        while True:
            waiting = [t for t in tracks if t.run is None]
            if not waiting or client is None:
                break
            tripped = self.coordinator.tripped()
            if tripped:
                for track in waiting:
                    track.run = self._failed_run(case, track, tripped)
                break
            changed = False
            result_ids = sorted({t.slot["result_id"] for t in waiting})
            for result_id, got in zip(
                result_ids,
                self._fetch_all(client, result_ids, interval * 0.8, waiting),
                strict=True,
            ):
                mine = [t for t in waiting if t.slot["result_id"] == result_id]
                if isinstance(got, CekuraError):
                    if isinstance(got, AuthError):
                        self.trip(str(got))
                    for track in mine:
                        track.run = self._failed_run(case, track, str(got))
                    continue
                signature = tuple((run.id, run.status) for run in got.runs)
                changed = changed or signatures.get(result_id) != signature
                signatures[result_id] = signature
                claim_runs(
                    got,
                    [s for ss in plan_slots.values() for s in ss if s["result_id"] == result_id],
                )
                self._update(case, mine, got)
            if self.on_tick is not None:
                self.on_tick()
            if all(t.run is not None for t in tracks):
                break
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._time_out(case, client, [t for t in tracks if t.run is None])
                break
            interval = next_interval(
                interval, changed, self.settings.poll_interval, self.settings.poll_max_interval
            )
            self._sleep(min(interval, remaining))
        return [t.run for t in tracks if t.run is not None]

    def _fetch_all(
        self, client: CekuraClient, result_ids: list[int], max_age: float, waiting: list[_Track]
    ) -> list[Result | CekuraError]:
        """Each result once this tick; several at once (bounded) when a case spans batches."""

        def one(result_id: int) -> Result | CekuraError:
            mine = [t for t in waiting if t.slot["result_id"] == result_id]
            try:
                return self._result(client, result_id, max_age, mine)
            except CekuraError as exc:
                return exc

        if len(result_ids) == 1:
            return [one(result_ids[0])]
        with ThreadPoolExecutor(max_workers=min(4, len(result_ids))) as pool:
            return list(pool.map(one, result_ids))

    def _result(
        self, client: CekuraClient, result_id: int, max_age: float, mine: list[_Track]
    ) -> Result:
        known = self._snapshot(client, result_id)
        if known is not None:
            # Terminal runs never change: a snapshot of any age serves them without a GET.
            statuses = {run.id: run.status for run in known.runs}
            if all(
                t.slot["run_id"] is not None and is_terminal(statuses.get(t.slot["run_id"], ""))
                for t in mine
            ):
                return known
        self.coordinator.refresh(result_id, max_age, lambda: client.result_json(result_id))
        fresh = self._snapshot(client, result_id)
        assert fresh is not None  # refresh stored one
        return fresh

    def _snapshot(self, client: CekuraClient, result_id: int) -> Result | None:
        """The last snapshot of a result, parsed once per fetch (items of a 50-run result
        would otherwise each parse the same JSON again)."""
        known = self.coordinator.snapshot(result_id)
        if known is None:
            return None
        data, fetched_at = known
        with self._lock:
            parsed = self._parsed.get(result_id)
            if parsed is not None and parsed[0] == fetched_at:
                return parsed[1]
        result = client.parse_result(data, result_id)
        with self._lock:
            self._parsed[result_id] = (fetched_at, result)
        return result

    def _update(self, case: Case, mine: list[_Track], result: Result) -> None:
        by_id = {run.id: run for run in result.runs}
        settled = bool(result.runs) and all(run.terminal for run in result.runs)
        for track in mine:
            run_id = track.slot["run_id"]
            if run_id in result.unreadable:
                track.run = self._failed_run(
                    case,
                    track,
                    f"Cekura's run {run_id} could not be read: {result.unreadable[run_id]}",
                )
                continue
            run = by_id.get(run_id) if run_id is not None else None
            if run is None:
                if settled:  # every listed run finished, and this one never appeared
                    track.run = self._failed_run(
                        case,
                        track,
                        f"the run never appeared in result {result.id} (no run of scenario "
                        f"{case.scenario} left to match this entry)",
                    )
                continue
            track.last_status = run.status
            if run.status not in KNOWN_STATUSES:
                note = f"cekura: run {run.id} reported an unknown status '{run.status}' (treated as not finished)"
                if note not in self.state.notes:
                    self.state.notes.append(note)
            if is_terminal(run.status):
                raw = result.raw_runs.get(run.id, {})
                track.run = CekuraRun.from_api(run, result.id, raw, track.slot["dashboard_url"])
                if track.run.scenario_id == 0:
                    track.run = replace(track.run, scenario_id=case.scenario)

    def _failed_run(self, case: Case, track: _Track, reason: str) -> CekuraRun:
        return replace(
            self._never_started(case, reason, track.slot),
            status=track.last_status,
            run_id=track.slot["run_id"],
        )

    def _time_out(self, case: Case, client: CekuraClient, late: list[_Track]) -> None:
        for track in late:
            run_id = track.slot["run_id"]
            if run_id is not None:
                client.end_call(run_id)
            track.run = CekuraRun(
                scenario_id=case.scenario,
                status=track.last_status,
                run_id=run_id,
                result_id=track.slot["result_id"],
                error_message=f"no verdict after {case.timeout:g} s (last status: {track.last_status})"
                + ("; the call was ended" if run_id is not None else ""),
                dashboard_url=track.slot["dashboard_url"],
            )

    # -- breaker and interrupts ------------------------------------------------------------

    def _watch_breaker(self, runs: list[CekuraRun]) -> None:
        """Trip when the first K finished runs all errored with one same message."""
        k, finished = self.settings.breaker_after, self.state.finished
        before = len(finished)
        # Only runs that reached Cekura count: a refused batch is not a sick bot.
        finished.extend(run for run in runs if run.run_id is not None)
        if not k or before >= k or len(finished) < k:
            return  # disabled, already judged, or not enough runs yet
        first = finished[:k]
        messages = {run.error_message for run in first}
        if (
            all(run.verdict == "error" for run in first)
            and len(messages) == 1
            and first[0].error_message
        ):
            self.trip(
                f"circuit breaker: the first {k} finished runs all errored with "
                f"'{first[0].error_message}'; the remaining cases were not waited for"
            )

    def trip(self, reason: str) -> None:
        if self.coordinator.trip(reason):
            self.end_live_calls()

    def end_live_calls(self, budget: float = 5.0) -> list[int]:
        """Best effort, bounded: end every call of every result this session started that
        is not known to be finished. Returns the results asked to end."""
        client = self.client()
        plan = self.coordinator.plan(0.0) or {"slots": {}}
        if client is None:
            return []
        results = sorted(
            {
                s["result_id"]
                for slots in plan["slots"].values()
                for s in slots
                if s["result_id"] is not None
            }
            | self.coordinator.started()
        )
        live = []
        for result_id in results:
            known = self.coordinator.snapshot(result_id)
            if known is not None:
                try:
                    if all(run.terminal for run in client.parse_result(known[0], result_id).runs):
                        continue
                except CekuraError:
                    pass
            live.append(result_id)
        deadline = time.monotonic() + budget

        def end(result_id: int) -> bool:
            remaining = deadline - time.monotonic()
            return remaining > 0 and client.end_calls(result_id, timeout=min(3.0, remaining))

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = dict(zip(live, pool.map(end, live), strict=True))
        ended = [r for r, ok in answers.items() if ok]
        missed = [r for r, ok in answers.items() if not ok]
        if ended:
            self.state.ended.append(
                "cekura: ended the live calls of result(s) " + ", ".join(map(str, ended))
            )
        if missed:
            self.state.ended.append(
                "cekura: could not end the calls of result(s) "
                + ", ".join(map(str, missed))
                + " in time: end them on the Cekura dashboard"
            )
        return ended

    # -- details (transcripts) -------------------------------------------------------------

    def _with_details(self, run: CekuraRun) -> CekuraRun:
        """The run with its transcript and recording link (CekuraRun is plain data)."""
        if run.transcript is not None and run.recording_url is not None:
            return run  # the result itself carried them
        details = self._details(run)
        if details is None:
            return run
        return replace(
            run,
            transcript=details.transcript or run.transcript,
            recording_url=details.voice_recording_url or run.recording_url,
        )

    def _details(self, run: CekuraRun) -> Run | None:
        """Full run (transcript, recording). A miss fetches, in bulk requests of at most
        100, this run and every other finished run of its result and of the judged cases
        that is not fetched yet: one request serves the many items that ask next."""
        if run.run_id is None:
            return None
        with self._lock:
            if run.run_id not in self.state.details:
                client = self.client()
                if client is None:
                    return None
                wanted = {run.run_id} | {
                    r.run_id
                    for v in self.state.verdicts.values()
                    for r in v.runs
                    if r.run_id is not None
                }
                if run.result_id is not None:
                    with contextlib.suppress(CekuraError):
                        known = self._snapshot(client, run.result_id)
                        wanted |= {r.id for r in known.runs if r.terminal} if known else set()
                ids = sorted(wanted - set(self.state.details))
                try:
                    for start in range(0, len(ids), 100):
                        for full in client.bulk_runs(ids[start : start + 100]):
                            # Keep what is asked of it, not the whole run (memory at scale).
                            self.state.details[full.id] = Run.model_construct(
                                id=full.id,
                                transcript=full.transcript,
                                voice_recording_url=full.voice_recording_url,
                            )
                except CekuraError:
                    return None
            return self.state.details.get(run.run_id)

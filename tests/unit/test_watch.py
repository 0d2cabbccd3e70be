"""The watcher on its own: a fake clock and a scripted client, no processes, no sockets."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Collection
from typing import Any

import pytest

from pytest_cekura_pipecat._api.client import Transient
from pytest_cekura_pipecat._api.models import TERMINAL_STATUSES, ListedResult, Result, RunDetails
from pytest_cekura_pipecat._api.run import CekuraRun
from pytest_cekura_pipecat._errors import ApiError
from pytest_cekura_pipecat._fire.plan import Slot
from pytest_cekura_pipecat._judge.verdict import run_reasons
from pytest_cekura_pipecat._watch.budget import ReadBudget
from pytest_cekura_pipecat._watch.watcher import Watcher, WatchSettings, same_failure

T0 = 1_000_000.0
# A budget that never binds: these tests are about the schedule of each result.
FAST: dict[str, Any] = {"poll_interval": 1.0, "max_reads_per_minute": 60_000}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class FakeClient:
    """Answers each GET of a result from ``script(result_id, now)``."""

    base_url = "http://cekura.test"

    def __init__(self, clock: Clock, script: Callable[[int, float], Any]) -> None:
        self.clock = clock
        self.script = script
        self.gets: list[tuple[int, float]] = []
        self.settled: list[set[int]] = []  # the runs each GET was told are settled
        self.ended: list[int] = []
        self.ended_results: list[int] = []
        self.bulk: list[list[int]] = []

    async def result(self, result_id: int, settled: Collection[int] = ()) -> Result:
        self.gets.append((result_id, self.clock.now))
        self.settled.append(set(settled))
        answer = self.script(result_id, self.clock.now)
        if isinstance(answer, Exception):
            raise answer
        return Result.model_validate(answer, context={"settled": settled})

    async def bulk_runs(self, run_ids: list[int]) -> dict[int, RunDetails]:
        self.bulk.append(run_ids)
        return {i: RunDetails(i, f"transcript {i}", None) for i in run_ids}

    async def end_call(self, run_id: int, timeout: float = 5.0) -> bool:
        self.ended.append(run_id)
        return True

    async def end_calls(self, result_id: int, timeout: float = 5.0) -> bool:
        self.ended_results.append(result_id)
        return True


def watch(
    slots: list[Slot], script: Callable[[int, float], Any], **settings: Any
) -> tuple[dict[str, CekuraRun], dict[str, float], FakeClient, Watcher]:
    clock = Clock()
    client = FakeClient(clock, script)
    published: dict[str, CekuraRun] = {}
    when: dict[str, float] = {}

    def publish(slot: Slot, run: CekuraRun) -> None:
        assert slot.key not in published, "published twice"
        published[slot.key] = run
        when[slot.key] = clock.now

    watcher = Watcher(
        client,  # type: ignore[arg-type]
        WatchSettings(**{**FAST, **settings}),
        publish,
        clock=clock,
        sleep=clock.sleep,
    )
    for slot in slots:
        slot.fired_at = T0
    watcher.add(slots)
    watcher.close()
    asyncio.run(asyncio.wait_for(watcher.run(), 10))
    return published, when, client, watcher


def _watcher(client: FakeClient, published: dict[str, CekuraRun], **settings: Any) -> Watcher:
    """A watcher on the client's fake clock that records what it publishes, once each."""

    def publish(slot: Slot, run: CekuraRun) -> None:
        published.setdefault(slot.key, run)

    return Watcher(
        client,  # type: ignore[arg-type]
        WatchSettings(**{**FAST, **settings}),
        publish,
        clock=client.clock,
        sleep=client.clock.sleep,
    )


def slot(
    result: int, run: int, *, index: int = 0, timeout: float = 60.0, scenario: int = 7
) -> Slot:
    return Slot(f"t::case{run}", index, scenario, timeout, result_id=result, run_id=run)


def run(run_id: int, status: str, success: bool | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": run_id, "status": status, "success": success, "scenario": 7, **extra}


def test_one_get_per_result_per_tick_and_details_in_bulk() -> None:
    slots = [slot(1, 11), slot(1, 12), slot(2, 21)]

    def script(result_id: int, now: float) -> dict[str, Any]:
        done = now >= T0 + 3
        ids = [11, 12] if result_id == 1 else [21]
        return {
            "id": result_id,
            "status": "completed" if done else "running",
            "runs": [run(i, "completed" if done else "running", done) for i in ids],
        }

    published, when, client, _ = watch(slots, script)
    assert sorted(published) == sorted(s.key for s in slots)
    assert all(r.passed and r.transcript == f"transcript {r.run_id}" for r in published.values())
    ticks = sorted({t for _, t in client.gets})
    # One GET per result per tick: never two GETs of one result at one moment.
    assert len(client.gets) == len(set(client.gets))
    assert ticks == [T0 + 1, T0 + 2, T0 + 3]  # the first read one interval after firing
    assert client.bulk == [[11, 12, 21]]  # one bulk request for every run that finished
    assert max(when.values()) - (T0 + 3) <= 1.0  # noticed within a tick of the end


def test_a_stuck_run_errors_at_its_deadline_and_its_call_is_ended() -> None:
    slots = [slot(1, 11, timeout=5.0)]
    published, when, client, _ = watch(
        slots, lambda r, now: {"id": 1, "runs": [run(11, "running")]}
    )
    (final,) = published.values()
    assert final.verdict == "error"
    assert final.error_message == "no verdict after 5 s (last status: running); the call was ended"
    assert client.ended == [11]
    assert when[slots[0].key] == pytest.approx(T0 + 5, abs=1.0)


def test_a_terminal_result_with_a_pending_run_errors_within_two_polls() -> None:
    slots = [slot(1, 11), slot(1, 12)]

    def script(result_id: int, now: float) -> dict[str, Any]:
        return {
            "id": 1,
            "status": "failed",
            "runs": [run(11, "completed", True), run(12, "pending")],
        }

    published, when, _, _ = watch(slots, script)
    stuck = published[slots[1].key]
    assert stuck.verdict == "error"
    assert (
        "result 1 ended with status 'failed' while this run stayed 'pending'" in stuck.error_message
    )
    assert when[slots[1].key] - T0 <= 2.0
    assert published[slots[0].key].passed


def test_an_outage_costs_one_retry_window_for_every_result() -> None:
    slots = [slot(r, r * 10) for r in range(1, 6)]
    published, when, client, _ = watch(
        slots, lambda r, now: Transient("HTTP 503"), retry_window=10.0, max_interval=2.0
    )
    assert all(r.verdict == "error" for r in published.values())
    assert all("unreachable since" in r.error_message for r in published.values())
    assert all("last error HTTP 503" in r.error_message for r in published.values())
    assert max(when.values()) - T0 <= 12.0  # the window, not five windows one after another
    assert sorted(client.ended_results) == [1, 2, 3, 4, 5]


def test_the_breaker_sees_one_outage_however_it_is_stamped() -> None:
    assert same_failure("unreachable since 10:00:01Z") == same_failure(
        "unreachable since 10:00:07Z"
    )
    slots = [slot(r, r * 10) for r in range(1, 5)] + [slot(9, 90, timeout=600.0)]

    def script(result_id: int, now: float) -> dict[str, Any]:
        if result_id == 9:
            return {"id": 9, "runs": [run(90, "running")]}
        return {
            "id": result_id,
            "runs": [
                run(result_id * 10, "failed", error_message=f"bot crashed at {now + result_id}")
            ],
        }

    published, when, client, watcher = watch(slots, script, breaker_after=4)
    assert watcher.tripped is not None and "circuit breaker" in watcher.tripped
    assert "circuit breaker" in published[slots[-1].key].error_message
    assert when[slots[-1].key] - T0 < 5  # not its 600 s timeout
    assert 9 in client.ended_results


def test_an_interrupt_ends_the_calls_of_slots_added_a_moment_before() -> None:
    """Slots still in the inbox (added, not yet seen by the loop) are live calls too."""
    clock = Clock()
    client = FakeClient(clock, lambda r, now: {"id": r, "runs": [run(11, "running")]})
    watcher = Watcher(
        client,  # type: ignore[arg-type]
        WatchSettings(poll_interval=1.0),
        lambda slot, run: None,
        clock=clock,
        sleep=clock.sleep,
    )
    watcher.add([slot(1, 11)])
    assert asyncio.run(watcher.end_live_calls(1.0)) == [1]
    assert client.ended_results == [1]


def test_finished_runs_are_fetched_while_other_polls_are_still_in_flight() -> None:
    """One slow answer does not hold back the transcripts of a result already finished:
    result 2's GET answers only once the runs of result 1 have been asked for in bulk (with
    a 30 s tick, a watcher that waited for every poll of its tick would time out here)."""
    clock = Clock()
    asked_bulk = asyncio.Event()

    class SlowSecond(FakeClient):
        async def result(self, result_id: int, settled: Collection[int] = ()) -> Result:
            if result_id == 2:
                await asyncio.wait_for(asked_bulk.wait(), 5)
            return await super().result(result_id, settled)

        async def bulk_runs(self, run_ids: list[int]) -> dict[int, RunDetails]:
            asked_bulk.set()
            return await super().bulk_runs(run_ids)

    client = SlowSecond(
        clock,
        lambda r, now: {"id": r, "status": "completed", "runs": [run(r * 10, "completed", True)]},
    )
    published: dict[str, CekuraRun] = {}
    watcher = _watcher(client, published, poll_interval=30.0)
    slots = [slot(1, 10), slot(2, 20)]
    for s in slots:
        s.fired_at = T0
    watcher.add(slots)
    watcher.close()
    asyncio.run(asyncio.wait_for(watcher.run(), 10))
    assert client.bulk[0] == [10]  # result 1's run, asked for before result 2 answered
    assert all(r.passed and r.transcript for r in published.values())


def test_a_batch_answered_after_the_breaker_tripped_is_errored_and_its_calls_ended() -> None:
    """Runs fired while the breaker trips (their start request was in flight) are published
    as errors at once, not left for their items to wait out, and their calls are ended."""
    clock = Clock()
    client = FakeClient(clock, lambda r, now: {"id": r, "runs": [run(31, "running")]})
    published: dict[str, CekuraRun] = {}
    watcher = _watcher(client, published)
    late = slot(3, 31, timeout=600.0)
    late.fired_at = T0

    async def main() -> None:
        await watcher.trip("circuit breaker: the first 5 finished runs all errored")
        watcher.add([late])
        watcher.close()
        await asyncio.wait_for(watcher.run(), 5)

    asyncio.run(main())
    assert published[late.key].verdict == "error"
    assert "circuit breaker" in published[late.key].error_message
    assert client.ended_results == [3]
    assert clock.now - T0 < 5  # not its 600 s timeout


def test_a_run_whose_verdict_was_taken_is_not_read_again() -> None:
    """A batch's runs end at different times and its result is polled until the last one
    has: the runs already judged are read for their id and status only, not their metrics
    and evaluation again on every poll."""
    slots = [slot(1, 11), slot(1, 12)]
    metrics = {"evaluation": {"metrics": [{"name": "Tone", "eval_type": "binary", "passed": True}]}}

    def script(result_id: int, now: float) -> dict[str, Any]:
        second = "completed" if now >= T0 + 3 else "running"
        return {
            "id": 1,
            "runs": [run(11, "completed", True, **metrics), run(12, second, True, **metrics)],
        }

    published, _, client, _ = watch(slots, script)
    assert [r.metrics[0].name for r in published.values()] == ["Tone", "Tone"]
    assert client.settled[0] == set() and client.settled[-1] == {11}
    read = Result.model_validate(script(1, T0 + 3), context={"settled": {11}})
    assert [len(r.evaluation.metrics) for r in read.runs] == [0, 1]
    assert [r.status for r in read.runs] == ["completed", "completed"]


def test_an_unknown_status_is_noted_once_not_once_a_run() -> None:
    """Cekura may add a status: its runs are treated as not finished, and the note says so
    once (a note per run would be one per case, carried by every test's report)."""
    slots = [slot(1, 10 + i, index=i) for i in range(5)]

    def script(result_id: int, now: float) -> dict[str, Any]:
        status = "completed" if now >= T0 + 3 else "transcribing"
        return {"id": 1, "runs": [run(10 + i, status, True) for i in range(5)]}

    published, _, _, watcher = watch(slots, script)
    assert all(r.passed for r in published.values())
    unknown = [n for n in watcher.notes if "unknown status 'transcribing'" in n]
    assert len(unknown) == 1, watcher.notes


# -- a verdict only from a finished evaluation (issue 29) ------------------------------------


def _evaluating_then(early: dict[str, Any], *, polls: int = 3) -> Callable[[int, float], Any]:
    """A result that reads ``evaluating`` for ``polls`` reads while its run reads
    ``completed`` with ``early``'s fields, then ends with the run passed (with evidence)."""
    reads = {"n": 0}
    metrics = {"evaluation": {"metrics": [{"name": "Tone", "eval_type": "binary", "passed": True}]}}

    def script(result_id: int, now: float) -> dict[str, Any]:
        reads["n"] += 1
        if reads["n"] <= polls:
            return {"id": 1, "status": "evaluating", "runs": [run(11, "completed", **early)]}
        return {"id": 1, "status": "completed", "runs": [run(11, "completed", True, **metrics)]}

    return script


@pytest.mark.parametrize(
    "early",
    [{"success": None}, {"success": False}],
    ids=["success-null", "success-false-nothing-evaluated"],
)
def test_a_completed_run_waits_for_its_evaluation_to_land(early: dict[str, Any]) -> None:
    slots = [slot(1, 11)]
    published, _when, client, _ = watch(slots, _evaluating_then(early))
    (final,) = published.values()
    assert final.verdict == "passed", final.error_message
    assert len(client.gets) == 4  # three reads of the evaluating result, then the verdict
    assert client.ended == []


def test_a_completed_run_without_a_verdict_in_an_ended_result_errors_at_once() -> None:
    slots = [slot(1, 11)]
    published, _when, client, _ = watch(
        slots, lambda r, now: {"id": 1, "status": "completed", "runs": [run(11, "completed")]}
    )
    (final,) = published.values()
    assert final.verdict == "error"
    assert run_reasons(final) == ["the run completed without a verdict (success is null)"]
    assert len(client.gets) == 1


def test_a_run_carrying_its_evidence_is_judged_while_its_result_evaluates() -> None:
    failing = {
        "expected_outcome": {"score": 20, "explanation": ["It never confirmed."]},
    }
    slots = [slot(1, 11)]
    published, _, client, _ = watch(
        slots,
        lambda r, now: {
            "id": 1,
            "status": "evaluating",
            "runs": [run(11, "completed", False, **failing)],
        },
    )
    (final,) = published.values()
    assert final.verdict == "failed"
    assert len(client.gets) == 1


def test_the_older_reading_of_completed_waits_for_every_run() -> None:
    """A result read ``completed`` once any run completed (the older reading): a run without
    its verdict waits until every run of the result is terminal, then errors."""
    slots = [slot(1, 11), slot(1, 12)]

    def script(result_id: int, now: float) -> dict[str, Any]:
        second = "completed" if now >= T0 + 4 else "in_progress"
        return {
            "id": 1,
            "status": "completed",
            "runs": [run(11, "completed"), run(12, second, True, expected_outcome={"score": 100})],
        }

    published, when, _, _ = watch(slots, script)
    assert published[slots[1].key].passed
    assert published[slots[0].key].verdict == "error"
    assert when[slots[0].key] >= T0 + 4


def test_a_run_whose_evaluation_never_lands_errors_at_its_deadline_without_end_call() -> None:
    slots = [slot(1, 11, timeout=5.0)]
    published, _, client, _ = watch(
        slots, lambda r, now: {"id": 1, "status": "evaluating", "runs": [run(11, "completed")]}
    )
    (final,) = published.values()
    assert final.verdict == "error"
    assert final.error_message == (
        "no verdict after 5 s (last status: completed): the run ended, but its evaluation "
        "had not landed (result 1 still 'evaluating')"
    )
    assert client.ended == []  # the call is over: nothing to end


# -- the read path's edges (issue 29) --------------------------------------------------------


def test_a_new_result_may_answer_404_at_first() -> None:
    slots = [slot(1, 11)]

    def script(result_id: int, now: float) -> Any:
        if now < T0 + 3:
            return ApiError("Cekura has no /test_framework/v1/results/1/ (HTTP 404)", 404)
        return {
            "id": 1,
            "status": "completed",
            "runs": [run(11, "completed", True, expected_outcome={"score": 100})],
        }

    published, _, client, _ = watch(slots, script)
    assert published[slots[0].key].passed
    assert len(client.gets) == 3


def test_a_result_that_stays_missing_errors_after_the_retry_window() -> None:
    slots = [slot(1, 11, timeout=600.0)]
    published, when, _, _ = watch(
        slots,
        lambda r, now: ApiError("Cekura has no /test_framework/v1/results/1/ (HTTP 404)", 404),
        retry_window=10.0,
    )
    (final,) = published.values()
    assert final.verdict == "error" and "HTTP 404" in final.error_message
    assert when[slots[0].key] - T0 <= 12.0


def test_a_run_left_live_in_a_terminal_result_has_its_call_ended() -> None:
    slots = [slot(1, 11), slot(1, 12)]
    published, _, client, _ = watch(
        slots,
        lambda r, now: {
            "id": 1,
            "status": "failed",
            "runs": [run(11, "failed", error_message="bot crashed"), run(12, "running")],
        },
    )
    left = published[slots[1].key]
    assert left.verdict == "error"
    assert left.error_message == (
        "result 1 ended with status 'failed' while this run stayed 'running'; the call was ended"
    )
    assert client.ended == [12]


# -- Cekura's own summary (issue 29) ---------------------------------------------------------


def _summarised(after: float) -> Callable[[int, float], Any]:
    """A result that ends at T0 + 2 with a failing and a passing run; its ai_summary is
    written ``after`` seconds later."""
    failing = {"expected_outcome": {"score": 10, "explanation": ["No booking made."]}}
    passing = {"expected_outcome": {"score": 100}}

    def script(result_id: int, now: float) -> dict[str, Any]:
        ended = now >= T0 + 2
        body: dict[str, Any] = {
            "id": 1,
            "status": "completed" if ended else "in_progress",
            "runs": [
                run(11, "completed" if ended else "in_progress", False, **failing),
                run(12, "completed" if ended else "in_progress", True, **passing),
            ],
            "ai_summary_status": "pending",
            "ai_summary": None,
        }
        if ended and now >= T0 + 2 + after:
            body["ai_summary_status"] = "completed"
            body["ai_summary"] = "The agent never offered a time slot."
            body["failed_reasons"] = {"11": ["No slot offered"]}
        return body

    return script


def test_the_ai_summary_written_soon_after_the_end_reaches_the_failing_run() -> None:
    slots = [slot(1, 11), slot(1, 12)]
    published, when, _, _ = watch(slots, _summarised(after=1.0))
    failing, passing = published[slots[0].key], published[slots[1].key]
    assert failing.ai_summary == "The agent never offered a time slot."
    assert failing.failed_reasons == ("No slot offered",)
    assert passing.ai_summary == "" and passing.failed_reasons == ()
    assert when[slots[0].key] - (T0 + 2) <= 2.0


def test_the_ai_summary_is_never_waited_for_long() -> None:
    slots = [slot(1, 11), slot(1, 12)]
    published, when, _, _ = watch(slots, _summarised(after=600.0))
    failing = published[slots[0].key]
    assert failing.verdict == "failed" and failing.ai_summary == ""
    assert when[slots[0].key] - (T0 + 2) <= 4.0


def test_a_run_that_failed_early_waits_for_its_results_summary() -> None:
    """The summary is written after the result ended: a run that failed while others of
    its result still ran waits for the end (and the summary), a passing run does not."""
    slots = [slot(1, 11), slot(1, 12), slot(1, 13)]
    failing = {"expected_outcome": {"score": 10, "explanation": ["No booking made."]}}
    passing = {"expected_outcome": {"score": 100}}

    def script(result_id: int, now: float) -> dict[str, Any]:
        ended = now >= T0 + 5
        body: dict[str, Any] = {
            "id": 1,
            "status": "completed" if ended else "in_progress",
            "runs": [
                run(11, "completed", False, **failing),
                run(12, "completed", True, **passing),
                run(13, "completed" if ended else "in_progress", True, **passing),
            ],
            "ai_summary_status": "completed" if now >= T0 + 6 else "pending",
        }
        if now >= T0 + 6:
            body["ai_summary"] = "One run did not book."
        return body

    published, when, _, _ = watch(slots, script)
    assert published[slots[0].key].ai_summary == "One run did not book."
    assert when[slots[1].key] - T0 <= 2.0  # the passing run was not held
    assert T0 + 6 <= when[slots[0].key] <= T0 + 8


def test_a_failing_run_held_for_the_summary_keeps_its_verdict_at_its_deadline() -> None:
    slots = [slot(1, 11, timeout=5.0), slot(1, 12, timeout=600.0)]
    failing = {"expected_outcome": {"score": 10, "explanation": ["No booking made."]}}

    def script(result_id: int, now: float) -> dict[str, Any]:
        return {
            "id": 1,
            "status": "in_progress",
            "runs": [run(11, "completed", False, **failing), run(12, "in_progress")],
            "ai_summary_status": "pending",
        }

    published, when, _, _ = watch(slots, script)
    assert published[slots[0].key].verdict == "failed"
    assert when[slots[0].key] - T0 == pytest.approx(5.0, abs=1.0)


def test_an_errored_run_is_not_held_for_the_summary() -> None:
    """Errors are published as they come (the circuit breaker counts the first ones), even
    while a summary is coming."""
    slots = [slot(1, 11), slot(1, 12, timeout=600.0)]

    def script(result_id: int, now: float) -> dict[str, Any]:
        return {
            "id": 1,
            "status": "in_progress",
            "runs": [run(11, "failed", error_message="bot crashed"), run(12, "in_progress")],
            "ai_summary_status": "pending",
        }

    published, when, _, _ = watch(slots, script)
    assert published[slots[0].key].error_message == "bot crashed"
    assert when[slots[0].key] - T0 <= 2.0


# -- the read budget -----------------------------------------------------------------------

AGENT = 5
RUNS_EACH = 50


class ListingClient(FakeClient):
    """A FakeClient that also answers the results list of ``AGENT`` (every result of
    ``results``, newest first, with status and counts), or raises ``list_error``."""

    def __init__(
        self, clock: Clock, script: Callable[[int, float], Any], results: Collection[int]
    ) -> None:
        super().__init__(clock, script)
        self.results = sorted(results, reverse=True)
        self.lists: list[float] = []
        self.list_error: Exception | None = None

    async def results_list(
        self, agent_id: int, page: int = 1, page_size: int = 100
    ) -> tuple[list[ListedResult], bool]:
        assert agent_id == AGENT
        self.lists.append(self.clock.now)
        if self.list_error is not None:
            raise self.list_error
        entries = []
        for result_id in self.results[:page_size]:
            data = self.script(result_id, self.clock.now)
            ended = sum(r["status"] in TERMINAL_STATUSES for r in data["runs"])
            item = {
                "id": result_id,
                "status": data["status"],
                "total_runs_count": len(data["runs"]),
                "completed_runs_count": str(ended),  # counts may come as strings
            }
            entries.append(ListedResult.read(item))
        return [e for e in entries if e is not None], False


def ending_at(
    ends: Callable[[int], float], agent: int | None = AGENT
) -> Callable[[int, float], Any]:
    """Results of ``RUNS_EACH`` runs that all pass at ``ends(result_id)``; the result ends
    with its last run (Cekura's newer reading)."""

    def script(result_id: int, now: float) -> dict[str, Any]:
        done = now >= ends(result_id)
        status = "completed" if done else "in_progress"
        runs = [run(result_id * 1000 + i, status, True if done else None) for i in range(RUNS_EACH)]
        return {"id": result_id, "agent": agent, "status": status, "runs": runs}

    return script


def watch_many(
    results: int,
    script: Callable[[int, float], Any],
    start_agent: int | None = AGENT,
    **settings: Any,
) -> tuple[dict[str, float], ListingClient]:
    """Watch ``results`` results of ``RUNS_EACH`` runs at the default budget and poll
    interval, their agent as the start answer gave it (``start_agent``; None: learnt from
    a first read); when each slot was published, and the client."""
    clock = Clock()
    client = ListingClient(clock, script, range(1, results + 1))
    when: dict[str, float] = {}

    def publish(slot: Slot, run: CekuraRun) -> None:
        assert run.passed, run
        when[slot.key] = clock.now

    watcher = Watcher(
        client,  # type: ignore[arg-type]
        WatchSettings(**settings),
        publish,
        clock=clock,
        sleep=clock.sleep,
    )
    slots = [
        slot(r, r * 1000 + i, index=i, timeout=900.0)
        for r in range(1, results + 1)
        for i in range(RUNS_EACH)
    ]
    for each in slots:
        each.fired_at, each.agent = T0, start_agent
    watcher.add(slots)
    watcher.close()
    asyncio.run(asyncio.wait_for(watcher.run(), 60))
    assert len(when) == len(slots)
    return when, client


def busiest_minute(times: list[float]) -> int:
    """The most reads in any 60 s."""
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + 60) for start in times)


def reads(client: ListingClient) -> list[float]:
    return [t for _, t in client.gets] + client.lists


@pytest.mark.parametrize("agent", [AGENT, None], ids=["listed", "alone"])
def test_reads_stay_within_the_budget_whatever_the_number_of_runs(agent: int | None) -> None:
    """1,000 runs in 20 results, ending over 10 minutes: at most 60 reads in any minute at
    the default budget, with the results list (one agent) and without it (none known)."""
    when, client = watch_many(20, ending_at(lambda r: T0 + 30 * r, agent), start_agent=agent)
    assert busiest_minute(reads(client)) <= 60
    late = max(when.values()) - (T0 + 600)
    if agent is not None:
        assert client.lists  # the list read
        assert late <= 5.0
    else:  # each of 20 results read every 20 s, the most recently read last
        assert not client.lists
        assert late <= 25.0


@pytest.mark.parametrize("spread", [0.1, 0.0], ids=["staggered", "at-once"])
def test_the_end_of_the_last_run_is_noticed_within_seconds(spread: float) -> None:
    """1,000 runs of 60 s in 20 results of one agent: the last verdict is published within
    2 simulated seconds of the last run's end, at the default budget, even when every result
    ends at once (the budget kept room for their 20 reads)."""
    last_end = T0 + 60 + 19 * spread
    when, client = watch_many(20, ending_at(lambda r: T0 + 60 + r * spread))
    assert max(when.values()) - last_end <= 2.0
    assert busiest_minute(reads(client)) <= 60


@pytest.mark.parametrize("start_agent", [AGENT, None], ids=["start-answer", "first-read"])
def test_results_sharing_an_agent_are_read_through_its_list(start_agent: int | None) -> None:
    """While nothing moves, the list is read every poll interval; a result's own read comes
    when its entry moves, and at least once a minute. Its agent from the start answer, no
    result is read before the list showed it; else each is read once to learn it."""
    when, client = watch_many(20, ending_at(lambda r: T0 + 500), start_agent=start_agent)
    before_end = [(r, t) for r, t in client.gets if t < T0 + 500]
    first_reads = {r: t for r, t in reversed(before_end)}
    assert len(first_reads) == 20
    if start_agent is not None:
        assert min(first_reads.values()) >= T0 + 60  # the first, a minute after the start
    else:
        assert max(first_reads.values()) <= T0 + 5  # learnt the agent at once
    # Each read again within two and a half minutes (60 s, then its turn among the reads
    # due with it in what the list and the room kept for the ends leave), not every 3 s.
    for result in range(1, 21):
        times = [T0, *(t for r, t in before_end if r == result), T0 + 500]
        assert max(b - a for a, b in itertools.pairwise(times)) <= 150.0
    assert len(before_end) <= 20 * 13
    assert len(client.lists) >= 160  # every poll interval (3 s) for 500 s
    assert max(when.values()) - (T0 + 500) <= 5.0
    assert busiest_minute(reads(client)) <= 60


def test_a_missing_results_list_falls_back_to_reading_each_result() -> None:
    """The list answers 404 (on v2 and v1): after two tries, the results are read one by one
    for the rest of the session, within the budget."""
    clock = Clock()
    script = ending_at(lambda r: T0 + 60)
    client = ListingClient(clock, script, range(1, 5))
    client.list_error = ApiError("Cekura has no results list (HTTP 404)", 404)
    published: dict[str, CekuraRun] = {}
    watcher = _watcher(client, published, poll_interval=3.0, max_reads_per_minute=60)
    slots = [
        slot(r, r * 1000 + i, index=i, timeout=600.0) for r in range(1, 5) for i in range(RUNS_EACH)
    ]
    for each in slots:
        each.fired_at = T0
    watcher.add(slots)
    watcher.close()
    asyncio.run(asyncio.wait_for(watcher.run(), 30))
    assert len(published) == len(slots) and all(r.passed for r in published.values())
    assert len(client.lists) == 2
    assert busiest_minute(reads(client)) <= 60


def test_the_budget_paces_routine_reads_and_caps_every_minute() -> None:
    budget = ReadBudget(60)
    assert budget.free_at(0.0, routine=True) == 0.0
    budget.spend(0.0, routine=True)
    assert budget.free_at(0.0, routine=True) == 1.0  # one a second
    assert budget.free_at(0.0, routine=True, stretch=2.0) == 1.0  # paid at the old pace
    assert budget.free_at(0.0, routine=False) == 0.0  # reads the list asked for: no pace
    for _ in range(9):
        budget.spend(0.5, routine=False)
    assert budget.free_at(0.5, routine=True) == 1.0  # ten a second at most, routine
    assert budget.free_at(0.5, routine=False) == 0.5  # twenty, reads the list asked for
    for _ in range(10):
        budget.spend(0.5, routine=False)
    assert budget.free_at(0.5, routine=False) == 1.0
    for t in range(1, 41):
        budget.spend(float(t), routine=False)
    assert budget.free_at(41.0, routine=False) == 62.0  # 60 in any minute (and 2 s of slack)


def test_routine_reads_leave_room_for_the_reads_at_the_end() -> None:
    """20 open results: routine reads stop at 40 in the minute, the last 20 are the ends'."""
    budget = ReadBudget(60)
    for t in range(40):
        assert budget.free_at(float(t), routine=True, reserve=20) == float(t)
        budget.spend(float(t), routine=True)
    assert budget.free_at(40.0, routine=True, reserve=20) == 62.0  # the first leaves the minute
    assert budget.free_at(40.0, routine=True) == 40.0  # nothing to keep: the whole minute
    for _ in range(20):  # every result ends at once: all read in one second
        assert budget.free_at(40.5, routine=False) == 40.5
        budget.spend(40.5, routine=False)
    assert budget.free_at(40.5, routine=False) == 62.0
    # At most half the minute is kept back, whatever the number of open results.
    assert ReadBudget(60).free_at(0.0, routine=True, reserve=1000) == 0.0


def test_a_large_budget_sends_a_seconds_worth_of_routine_reads_at_once() -> None:
    budget = ReadBudget(6000)
    for _ in range(100):
        assert budget.free_at(0.0, routine=True) == pytest.approx(0.0, abs=1e-9)
        budget.spend(0.0, routine=True)
    assert budget.free_at(0.0, routine=True) > 0.005  # a second's worth, not more


def test_a_result_alone_is_read_more_often_once_its_calls_are_over() -> None:
    """One result (no list to read): every poll interval while its calls go on, every half
    interval once it reads ``evaluating`` (its calls over, only evaluations left)."""

    def script(result_id: int, now: float) -> dict[str, Any]:
        status = "in_progress" if now < T0 + 20 else "evaluating" if now < T0 + 30 else "completed"
        success = True if status == "completed" else None
        runs = [run(1000 + i, status, success) for i in range(3)]
        return {"id": result_id, "agent": AGENT, "status": status, "runs": runs}

    slots = [slot(1, 1000 + i, index=i, timeout=600.0) for i in range(3)]
    published, when, client, _ = watch(slots, script, poll_interval=3.0, max_reads_per_minute=60)
    assert all(r.passed for r in published.values())
    gaps = {round(b[1] - a[1], 1) for a, b in itertools.pairwise(client.gets)}
    assert gaps == {3.0, 1.5}
    assert max(when.values()) - (T0 + 30) <= 1.5


def test_a_failing_results_list_leaves_the_results_read_on_their_own() -> None:
    """The list keeps answering 503: it is tried again, backing off, and meanwhile every
    result is read on its own, so the end is still noticed."""
    clock = Clock()
    client = ListingClient(clock, ending_at(lambda r: T0 + 30), range(1, 4))
    client.list_error = Transient("HTTP 503")
    published: dict[str, CekuraRun] = {}
    watcher = _watcher(client, published, poll_interval=3.0, max_reads_per_minute=60)
    slots = [slot(r, r * 1000 + i, index=i, timeout=600.0) for r in range(1, 4) for i in range(3)]
    for each in slots:
        each.fired_at = T0
    watcher.add(slots)
    watcher.close()
    asyncio.run(asyncio.wait_for(watcher.run(), 30))
    assert len(published) == len(slots) and all(r.passed for r in published.values())
    assert 2 <= len(client.lists) <= 5  # backing off: 3, 6, 12 s
    assert max(t for _, t in client.gets) - (T0 + 30) <= 5.0

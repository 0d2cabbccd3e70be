"""Spend you can see and cap (issue 31 items 1-3): the forecast, the credit cap, the default
run ceiling and the pre-flight that costs nothing, against the local server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from helpers import API_KEY, Suite, json_answer

from pytest_cekura_pipecat._api.client import CekuraClient, HttpPolicy
from pytest_cekura_pipecat._api.run import CekuraRun
from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._fire.credits import (
    CaseCost,
    Pricing,
    ScenarioCost,
    actual,
    admit,
    cents,
    credits,
    run_credits,
)
from pytest_cekura_pipecat._fire.spend import Catalogue, SpendPolicy, check
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

# A run of 301 or 302 costs at worst 5 minutes x 5 credits = 25 credits (no metric); one of
# 303 costs 1 minute x 5 + 2 metrics x 0.2 = 5.4. 401 belongs to another agent.
SCRIPTS = [
    ScenarioScript(301, "Books a table", "pass", 0.3, agent=5, max_duration=300),
    ScenarioScript(302, "Refuses a late booking", "fail", 0.3, agent=5, max_duration=300),
    ScenarioScript(303, "Short call", "pass", 0.3, agent=5, max_duration=60, metrics=(1, 2)),
    ScenarioScript(401, "Support line", "pass", 0.3, agent=6, max_duration=300),
    ScenarioScript(501, "Any agent's", "pass", 0.3),  # agent null: unknown, accepted
    *(ScenarioScript(600 + i, f"Many {i}", "pass", 0.3, agent=5) for i in range(25)),
]
TOP = 'agent = 5\npipecat_room_url = "https://acme.daily.co/r"\n'


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SCRIPTS, api_key=API_KEY) as simulator:
        yield simulator


def cases(*rows: tuple[str, int], extra: str = "") -> str:
    return TOP + "".join(
        f'[[case]]\nname = "{name}"\nscenario = {scenario}\n{extra}' for name, scenario in rows
    )


def report(suite: Suite) -> dict[str, object]:
    document = json.loads((suite.pytester.path / "report.json").read_text())
    assert isinstance(document, dict)
    return document


# -- the credit cap -------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_the_cap_fires_the_prefix_that_fits_and_errors_the_rest(
    suite: Suite, workers: list[str]
) -> None:
    """Six cases of 25 credits at worst (150) under a cap of 100: the case of priority 1
    first, then collection order, while the sum fits; the two after it error naming the
    cap."""
    names = [(f"c{i}", 301) for i in range(5)]
    suite.toml(cases(*names) + '[[case]]\nname = "first"\nscenario = 301\npriority = 1\n')
    result = suite.run("--cekura-max-credits=100", "--cekura-report=report.json", *workers)
    result.assert_outcomes(passed=4, errors=2)
    assert suite.sim.entries_fired() == 4
    fired = sorted(e["scenario"] for p in suite.posts() for e in p.body["scenarios"])
    assert fired == [301] * 4
    for left_out in ("c3", "c4"):  # in either order under xdist
        result.stdout.fnmatch_lines(
            [
                f"*ERROR at setup of cekura case {left_out} (scenario 301)*",
                "not fired: credit cap (100): this case's worst case, 25 credits (estimated), *",
            ]
        )
    spend = report(suite)["spend"]
    assert spend == {
        "estimate": True,
        "runs": 4,
        "estimated_credits": 50,
        "worst_case_credits": 100,
        "max_credits": 100,
        "cases_left_out": 2,
        "credits_left": 1_000_000,
        "credits_per_minute": 5,
        "credits_per_metric": 0.2,
        "unread_scenarios": [],
        "selected_runs": 6,
        "selected_worst_case_credits": 150,
        "actual_credits": 1.6,  # 4 runs of 2 metrics at 0.2, calls of no length
    }


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_reruns_count_against_the_cap(suite: Suite, workers: list[str]) -> None:
    suite.toml(cases(("a", 302), ("b", 302)))
    result = suite.run("--reruns=1", "--cekura-max-credits=75", *workers)
    assert suite.sim.entries_fired() == 3  # 2 first runs + 1 rerun; the cap refuses the next
    result.stdout.fnmatch_lines(["*not fired again on rerun: a rerun would pass the credit cap*"])


def test_the_pricing_is_overridable_and_the_cap_reads_it(suite: Suite) -> None:
    suite.toml(cases(("a", 303), ("b", 303)))
    # 1 minute x 10 + 2 metrics x 1 = 12 a run: both fit in 24, not in 23.
    ok = ("--cekura-credits-per-minute=10", "--cekura-credits-per-metric=1")
    suite.run(*ok, "--cekura-max-credits=24").assert_outcomes(passed=2)
    suite.sim.reset()
    suite.run(*ok, "--cekura-max-credits=23").assert_outcomes(passed=1, errors=1)


def test_the_dry_run_shows_the_forecast_and_what_the_cap_leaves_out(suite: Suite) -> None:
    suite.toml(cases(("a", 301), ("b", 301), ("c", 303)))
    result = suite.run("--cekura-dry-run", "--cekura-max-credits=30")
    result.stdout.fnmatch_lines(
        [
            "*(request 1 of 1, 1 run(s))*",
            "cekura dry run: spend forecast (estimates): 1 run(s), about 12.5 credits, worst "
            "case 25 credits; credit cap 30: 2 case(s) left out; 1,000,000 credits left (5 "
            "credits a voice minute, 0.2 an LLM metric)",
            "would not fire: credit cap (30): *",
            "would not fire: credit cap (30): *",
        ]
    )
    assert suite.posts() == []


def test_a_bad_priority_is_one_line_naming_the_case(suite: Suite) -> None:
    suite.toml(TOP + '[[case]]\nname = "a"\nscenario = 301\npriority = "high"\n')
    result = suite.run()
    result.stdout.fnmatch_lines(["*case a: priority: *"])
    assert suite.sim.requests == []


# -- the default ceiling on runs --------------------------------------------------------------


def test_a_runaway_is_one_line_naming_the_ceiling_and_fires_nothing(suite: Suite) -> None:
    suite.toml(cases(*[(f"c{i}", 301) for i in range(11)], extra="repeat = 100\n"))
    result = suite.run("-p", "no:randomly")
    result.assert_outcomes(errors=11)
    line = (
        "cekura: not fired: this session would start 1100 runs, more than "
        "cekura_max_runs=1000 (the default ceiling is 1000: raise it with "
        "--cekura-max-runs=N or the ini key cekura_max_runs, 0 for none)"
    )
    assert result.stdout.lines.count(line) == 1
    assert suite.sim.requests == []


def test_max_runs_zero_lifts_the_ceiling(suite: Suite) -> None:
    suite.toml(cases(("a", 303), extra="repeat = 3\n"))
    suite.run("--cekura-max-runs=2").assert_outcomes(errors=1)
    assert suite.posts() == []
    suite.run("--cekura-max-runs=0").assert_outcomes(passed=1)
    assert suite.sim.entries_fired() == 3


# -- the pre-flight -------------------------------------------------------------------------


def test_too_few_credits_left_is_one_line_and_fires_nothing(suite: Suite) -> None:
    suite.sim.configure(credits_remaining=40)
    suite.toml(cases(("a", 301), ("b", 301)))
    result = suite.run()
    result.assert_outcomes(errors=2)
    line = (
        "cekura: nothing fired: Cekura's credits left (40) cannot cover this session's worst "
        "case (50 credits, estimated): buy credits, select fewer cases, cap the spend with "
        "--cekura-max-credits, or go on anyway with --cekura-allow-low-credits"
    )
    assert result.stdout.lines.count(line) >= 1
    assert suite.posts() == []
    suite.sim.reset()
    suite.run("--cekura-allow-low-credits").assert_outcomes(passed=2)
    # A cap that fits in the credits left fires what it admits.
    suite.sim.reset()
    suite.run("--cekura-max-credits=30").assert_outcomes(passed=1, errors=1)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_unknown_and_foreign_scenarios_are_one_line_each_and_nothing_fires(
    suite: Suite, workers: list[str]
) -> None:
    suite.toml(cases(("good", 301), ("ghost", 999), ("foreign", 401)))
    result = suite.run("-p", "no:randomly", *workers)
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    ghost = "case ghost (cekura.toml): scenario 999 does not exist: GET "
    foreign = (
        "case foreign (cekura.toml): scenario 401 belongs to agent 6, not to agent 5 the case "
        "is fired with"
    )
    assert ghost in out and foreign in out
    assert [line for line in result.stdout.lines if line.startswith(foreign)] == [foreign]
    assert suite.posts() == []


def test_the_pre_flight_reads_each_scenario_once_and_never_on_collect_only(
    suite: Suite,
) -> None:
    """...and a scenario of no known agent (``agent`` null) is accepted for agent 5."""
    suite.toml(cases(("a", 301), ("b", 301), ("c", 303), ("anyone", 501)))
    suite.run("--collect-only")
    assert suite.sim.requests == []
    suite.run().assert_outcomes(passed=4)
    reads = sorted(r.path for r in suite.gets("/v1/scenarios/"))
    assert reads == [f"/test_framework/v1/scenarios/{s}/" for s in (301, 303, 501)]
    assert len(suite.gets("/billing/info")) == 1


def test_many_scenarios_of_an_agent_are_read_through_its_list(suite: Suite) -> None:
    suite.toml(cases(*[(f"m{i}", 600 + i) for i in range(25)], ("ghost", 999)))
    result = suite.run()
    result.assert_outcomes(errors=26)
    result.stdout.fnmatch_lines(["*case ghost (cekura.toml): scenario 999 does not exist*"])
    reads = suite.gets("/v1/scenarios/")
    listed = [r for r in reads if r.path == "/test_framework/v1/scenarios/"]
    assert [r.query.get("agent_id") for r in listed] == [["5"]]
    single = [r.path for r in reads if r not in listed]
    assert single == ["/test_framework/v1/scenarios/999/"]  # only what the list did not show


# -- the pre-flight without pytest: billing that cannot be read is a note -------------------


def _client(handler: httpx.MockTransport) -> CekuraClient:
    return CekuraClient(
        "https://cekura.test", "sk-x", Redactor(), HttpPolicy(retry_window=1), transport=handler
    )


def _case(name: str, scenario: int, repeat: int = 1) -> tuple[str, Case]:
    return f"cekura.toml::{name}", Case(name, scenario, "cekura.toml", agent=5, repeat=repeat)


@pytest.mark.parametrize("status", [403, 404, 401])
def test_billing_that_cannot_be_read_is_a_note_not_a_failure(status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "billing" in request.url.path:
            return json_answer(status, {"detail": "no"})
        return json_answer(200, {"id": 301, "agent": 5, "max_duration": 120})

    async def main() -> None:
        client = _client(httpx.MockTransport(answer))
        try:
            found = await check(client, [_case("a", 301)], SpendPolicy(), Catalogue())
        finally:
            await client.aclose()
        assert found.problem is None and found.bad == {}
        assert found.forecast.worst == 10 and found.forecast.credits_left is None
        assert any("credits left not known" in note for note in found.notes)

    asyncio.run(main())


def test_a_scenario_that_cannot_be_read_assumes_the_longest_call() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "billing" in request.url.path:
            return json_answer(200, {"credits_remaining": 10_000})
        return json_answer(400, {"detail": "bad"})

    async def main() -> None:
        client = _client(httpx.MockTransport(answer))
        try:
            found = await check(client, [_case("a", 301)], SpendPolicy(), Catalogue())
        finally:
            await client.aclose()
        assert found.problem is None
        assert found.forecast.worst == 300 and found.forecast.unread == (301,)

    asyncio.run(main())


@pytest.mark.parametrize("counted", [True, False], ids=["count", "next-only"])
def test_the_scenario_list_is_read_to_its_last_page(counted: bool) -> None:
    """250 scenarios, 100 a page: with a count, pages 2 and 3 are read at once after the
    first; without one, page after page while ``next`` says so. Order is kept."""
    total, asked = 250, []
    third = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        asked.append(page)
        if counted and page == 2:
            await third.wait()  # answered only once page 3 was asked: both are in flight
        if page == 3:
            third.set()
        ids = list(range((page - 1) * 100, min(page * 100, total)))
        body: dict[str, object] = {"results": [{"id": i, "agent": 5} for i in ids]}
        body["next"] = "more" if page * 100 < total else None
        if counted:
            body["count"] = total
        return json_answer(200, body)

    async def main() -> None:
        client = _client(httpx.MockTransport(answer))
        try:
            found = await asyncio.wait_for(client.scenarios(agent_id=5), 60)
        finally:
            await client.aclose()
        assert [s.id for s in found] == list(range(total))
        assert sorted(asked) == [1, 2, 3] and asked[0] == 1

    asyncio.run(main())


def test_a_count_that_says_one_page_does_not_stop_a_list_that_has_more() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        last = page == 2
        body = {"count": 1, "next": None if last else "more", "results": [{"id": page}]}
        return json_answer(200, body)

    async def main() -> None:
        client = _client(httpx.MockTransport(answer))
        try:
            assert [s.id for s in await client.scenarios(agent_id=5)] == [1, 2]
        finally:
            await client.aclose()

    asyncio.run(main())


# -- the arithmetic -------------------------------------------------------------------------


def test_worst_case_and_estimate_of_a_run() -> None:
    pricing = Pricing(5, 0.2)
    run = ScenarioCost(1, 120, 3)
    assert run.worst(pricing) == pytest.approx(10.6)  # 2 min x 5 + 3 x 0.2
    assert run.estimate(pricing) == pytest.approx(5.6)  # half the minutes, every metric
    assert ScenarioCost(1, None, 0).worst(pricing) == 300  # not read: 60 minutes


def test_the_cap_admits_a_prefix_by_priority_then_order() -> None:
    costs = [
        CaseCost("a", "a", 1, 10, 5),
        CaseCost("b", "b", 2, 10, 5, priority=2),
        CaseCost("c", "c", 1, 5, 2),
        CaseCost("d", "d", 1, 1, 1),
    ]
    assert admit(costs, None) == ()
    assert admit(costs, 30) == ("c", "d")  # b (20), a (30); c does not fit, nor what follows
    assert admit(costs, 19) == ("b", "a", "c", "d")
    assert admit(costs, 36) == ()


def test_cents_round_up_and_credits_read_well() -> None:
    assert cents(0.2) == 20 and cents(10.001) == 1001
    assert credits(12.5) == "12.5" and credits(100.0) == "100" and credits(2_000_000) == "2,000,000"


def test_actual_credits_of_finished_runs() -> None:
    runs = [
        CekuraRun(1, "completed", True, run_id=1, duration=90.0),
        CekuraRun(1, "completed", True, run_id=2, duration=None),
        CekuraRun(1, "not_started", run_id=None),
    ]
    spent = actual(runs, Pricing(5, 0.2))
    assert (spent.credits, spent.runs, spent.unknown) == (7.5, 2, 1)


# -- what the run cost ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_what_the_runs_cost_is_in_every_output(
    suite: Suite, workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each case's runs cost their minutes at 5 credits and their metrics at 0.2: per case
    and in total in the JSON report, on the terminal's totals line, in the step summary and
    in the PR comment."""
    step = suite.pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    suite.toml(cases(("books", 301), ("late", 302), ("short", 303)))
    result = suite.run("--cekura-report=report.json", "--cekura-pr-comment=pr.md", *workers)
    result.assert_outcomes(passed=2, failed=1)
    document = report(suite)
    by_name = {c["name"]: c for c in document["cases"]}  # type: ignore[attr-defined]
    pricing = Pricing(5.0, 0.2)
    for name, case in by_name.items():
        run = case["runs"][0]
        # The local server evaluates two metrics a run of these scripts.
        expected = run_credits(run["duration"], 2, pricing)
        assert case["credits"] == pytest.approx(expected, abs=1e-3), name
    total = document["totals"]["credits"]  # type: ignore[index]
    assert total == pytest.approx(sum(c["credits"] for c in by_name.values()), abs=0.01)
    assert total >= 1.2  # three runs of two metrics at 0.2
    assert document["spend"]["actual_credits"] == total  # type: ignore[index]
    shown = f"about {credits(total)} credits (estimate)"
    result.stdout.fnmatch_lines([f"3 case(s), 3 run(s): 2 passed, 1 failed, 0 error*{shown}"])
    assert shown in step.read_text()
    assert f"Spend {shown}." in (suite.pytester.path / "pr.md").read_text()

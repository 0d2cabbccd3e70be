"""The local Cekura simulator, over real HTTP on 127.0.0.1.

Run life cycles are driven by a fake clock, so nothing here sleeps except the latency
fault and the CLI subprocess.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ROOT

from pytest_cekura_pipecat.simulator import (
    ScenarioScript,
    Simulator,
    SimulatorConfigError,
    Variants,
    load_scenarios,
)

START = "/test_framework/v1/scenarios/run_scenarios_pipecat/"
S = 10.0  # seconds of every scripted scenario below, on the fake clock

SCRIPTS = [
    ScenarioScript(101, name="Books a table", seconds=S),
    ScenarioScript(
        102,
        outcome="fail",
        seconds=S,
        reasons=("The agent never confirmed the booking time.",),
        failed_metrics=("Confirms booking",),
    ),
    ScenarioScript(103, outcome="error", seconds=S),
    ScenarioScript(104, outcome="timeout", seconds=S, reasons=("too slow", "gave up")),
    ScenarioScript(105, outcome="stuck", seconds=S),
    ScenarioScript(106, outcome="cancelled", seconds=S),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(SCRIPTS, clock=clock) as simulator:
        yield simulator


def _client(simulator: Simulator, **headers: str) -> httpx.Client:
    return httpx.Client(
        base_url=simulator.url,
        headers={"X-CEKURA-API-KEY": simulator.api_key, **headers},
        timeout=5,
    )


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with _client(sim) as c:
        yield c


def entries(*ids: int) -> dict[str, Any]:
    return {"scenarios": [{"scenario": i, "pipecat_room_url": f"https://r/{i}"} for i in ids]}


def start(client: httpx.Client, *ids: int) -> dict[str, Any]:
    response = client.post(START, json=entries(*ids))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def result(client: httpx.Client, result_id: int, version: str = "v1") -> dict[str, Any]:
    response = client.get(f"/test_framework/{version}/results/{result_id}/")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def only_run(client: httpx.Client, result_id: int) -> dict[str, Any]:
    runs = result(client, result_id)["runs"]
    assert len(runs) == 1
    run: dict[str, Any] = next(iter(runs.values()))
    return run


# -- authentication and routing -------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-CEKURA-API-KEY": "wrong"}], ids=["missing", "wrong"])
def test_bad_key_is_401_and_recorded(sim: Simulator, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=sim.url, headers=headers) as c:
        response = c.post(START, json=entries(101))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key."}
    assert response.headers["x-cekura-simulator"] == "1"
    assert [r.status for r in sim.requests] == [401]
    assert sim.entries_fired() == 0


@pytest.mark.parametrize(
    "path", ["/test_framework/v1/nothing/", "/test_framework/v3/results/5001/", "/results/"]
)
def test_unknown_path_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert response.headers["content-type"] == "application/json"


def test_unknown_result_is_404(client: httpx.Client) -> None:
    assert client.get("/test_framework/v1/results/4242/").status_code == 404
    assert client.post("/test_framework/v1/results/4242/end_calls/").status_code == 404
    assert client.post("/test_framework/v1/runs-external/4242/end_call/").status_code == 404


def test_agent_endpoint(client: httpx.Client) -> None:
    response = client.get("/test_framework/v1/aiagents/12/")
    assert response.json() == {"id": 12, "project": 7, "agent_name": "Simulated agent"}


def test_an_agent_not_in_agents_is_404() -> None:
    with Simulator(SCRIPTS, agents=[12]) as simulator, _client(simulator) as c:
        assert c.get("/test_framework/v1/aiagents/12/").status_code == 200
        assert c.get("/test_framework/v1/aiagents/999999/").status_code == 404


# -- the start POST -------------------------------------------------------------------------

ROOM = "https://r/1"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"scenarios": ["This field is required."]}),
        ({"scenarios": []}, {"scenarios": ["This list may not be empty."]}),
        ({"scenarios": "101"}, {"scenarios": ['Expected a list of items but got type "str".']}),
        (
            {"scenarios": [{"scenario": 101, "pipecat_room_url": ROOM}] * 2 + [{"scenario": 101}]},
            {"scenarios[2].pipecat_room_url": ["This field is required."]},
        ),
        (
            {"scenarios": [{"pipecat_room_url": ROOM}]},
            {"scenarios[0].scenario": ["This field is required."]},
        ),
        (
            {"scenarios": [{"scenario": True, "pipecat_room_url": ROOM}]},
            {"scenarios[0].scenario": ["A valid integer is required."]},
        ),
        (
            {"scenarios": [{"scenario": 101, "pipecat_room_url": ""}]},
            {"scenarios[0].pipecat_room_url": ["This field may not be blank."]},
        ),
        (
            {"scenarios": [{"scenario": 101, "pipecat_room_url": ROOM, "pipecat_token": 5}]},
            {"scenarios[0].pipecat_token": ["Not a valid string."]},
        ),
        (
            {"scenarios": ["x"]},
            {"scenarios[0]": ["Invalid data. Expected a dictionary, but got str."]},
        ),
        ({**entries(101), "agent": "12"}, {"agent": ["A valid integer is required."]}),
        (
            {**entries(101), "mock_tool_names": "lookup"},
            {"mock_tool_names": ['Expected a list of items but got type "str".']},
        ),
        (
            {**entries(101), "mock_tool_names": ["ok", 3]},
            {"mock_tool_names[1]": ["Not a valid string."]},
        ),
        ([1], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
    ids=[
        "missing",
        "empty",
        "not-a-list",
        "entry-2-without-room",
        "without-scenario",
        "bool-scenario",
        "blank-room",
        "token-not-string",
        "entry-not-object",
        "agent-not-int",
        "mock-not-list",
        "mock-item-not-string",
        "body-not-object",
    ],
)
def test_start_validation_errors(
    sim: Simulator, client: httpx.Client, body: Any, errors: dict[str, list[str]]
) -> None:
    response = client.post(START, json=body)
    assert response.status_code == 400
    assert response.json() == errors
    assert sim.entries_fired() == 0
    assert sim.runs() == []


def test_start_accepts_optional_fields(sim: Simulator, client: httpx.Client) -> None:
    body = {
        "agent": 12,
        "mock_tool_names": None,
        "scenarios": [
            {
                "scenario": 101,
                "pipecat_room_url": ROOM,
                "pipecat_token": "tok",
                "publish_data_message": {"any": ["json", 1]},
            }
        ],
    }
    response = client.post(START, json=body)
    assert response.status_code == 200
    assert response.json()["agent"] == 12


def test_bad_json_body_is_400(client: httpx.Client) -> None:
    response = client.post(START, content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error"}


def test_unknown_scenario_is_400(sim: Simulator, client: httpx.Client) -> None:
    response = client.post(START, json=entries(101, 999))
    assert response.status_code == 400
    assert response.json() == {
        "scenarios[1].scenario": ['Invalid pk "999" - object does not exist.']
    }
    assert sim.runs() == []


def test_default_outcome_plays_unknown_ids(clock: FakeClock) -> None:
    default = ScenarioScript(0, outcome="fail", seconds=1)
    with Simulator(default_outcome=default, clock=clock) as simulator, _client(simulator) as c:
        created = start(c, 999, 998)
        assert [r["scenario_name"] for r in created["runs"]] == ["Scenario 999", "Scenario 998"]
        clock.advance(1)
        runs = result(c, created["id"])["runs"]
    assert [(r["scenario"], r["success"]) for r in runs.values()] == [(999, False), (998, False)]


def test_start_creates_one_result_with_a_run_per_entry(
    sim: Simulator, client: httpx.Client
) -> None:
    first = start(client, 102, 101, 102)
    second = start(client, 101)
    assert first["id"] == 5001 and second["id"] == 5002
    assert first["status"] == "pending" and first["run_as_text"] is False
    assert first["created_at"].endswith("Z")
    assert first["runs"] == [
        {
            "id": 90001 + i,
            "status": "pending",
            "scenario": sid,
            "scenario_name": name,
            "number": None,
            "inbound_number": None,
            "test_profile_data": None,
        }
        for i, (sid, name) in enumerate(
            [(102, "Scenario 102"), (101, "Books a table"), (102, "Scenario 102")]
        )
    ]
    assert second["runs"][0]["id"] == 90004
    assert sim.entries_fired() == 4
    assert len(sim.runs()) == 4


def test_post_status_variant_201(clock: FakeClock) -> None:
    variants = Variants(post_status=201)
    with Simulator(SCRIPTS, clock=clock, variants=variants) as simulator, _client(simulator) as c:
        assert c.post(START, json=entries(101)).status_code == 201


# -- the run life cycle ---------------------------------------------------------------------

PHASES = [
    (0.0, "pending"),
    (0.12, "in_queue"),
    (0.17, "scaling_up"),
    (0.5, "in_progress"),
    (0.9, "evaluating"),
]


@pytest.mark.parametrize(
    ("scenario", "status", "success", "error_message", "ended_reason"),
    [
        (101, "completed", True, "", "testing_agent_ended_call"),
        (102, "completed", False, "", "testing_agent_ended_call"),
        (103, "failed", None, "Bot did not join the room", "error"),
        (104, "timeout", None, "too slow; gave up", "max_duration_exceeded"),
        (106, "cancelled", None, "Run was cancelled", "cancelled"),
    ],
    ids=["pass", "fail", "error", "timeout", "cancelled"],
)
def test_life_cycle_to_terminal(
    client: httpx.Client,
    clock: FakeClock,
    scenario: int,
    status: str,
    success: bool | None,
    error_message: str,
    ended_reason: str,
) -> None:
    result_id = start(client, scenario)["id"]
    created = clock.now
    for fraction, phase in PHASES:
        clock.now = created + fraction * S
        run = only_run(client, result_id)
        assert run["status"] == phase
        assert run["success"] is None
        assert run["expected_outcome"] == {}
        assert run["evaluation"] == {"metrics": []}
        assert run["error_message"] == ""
    clock.now = created + S + 50
    run = only_run(client, result_id)
    assert (run["status"], run["success"]) == (status, success)
    assert run["error_message"] == error_message
    assert run["metadata"] == {"ended_reason": ended_reason}
    assert run["duration"] == "00:10"  # capped at the scripted seconds once terminal
    for key in ("timestamp", "executed_at", "personality_name", "scenario_name"):
        assert run[key]


def test_pass_and_fail_verdict_details(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 101, 102)["id"]
    clock.advance(S)
    passed, failed = result(client, result_id)["runs"].values()
    assert passed["expected_outcome"] == {
        "score": 100,
        "explanation": ["The expected outcome was met."],
        "outcome_alignments": [],
    }
    assert passed["evaluation"]["metrics"] and all(
        m["passed"] is True and m["eval_type"] == "binary" for m in passed["evaluation"]["metrics"]
    )
    assert failed["expected_outcome"]["score"] == 40
    assert failed["expected_outcome"]["explanation"] == [
        "The agent never confirmed the booking time."
    ]
    metrics = {m["name"]: m["passed"] for m in failed["evaluation"]["metrics"]}
    assert metrics.pop("Confirms booking") is False
    assert list(metrics.values()) == [True]


def test_fail_defaults_to_task_completed_metric() -> None:
    script = ScenarioScript(7, outcome="fail")
    assert script.failed_metrics == ("Task completed",)
    assert script.name == "Scenario 7"
    assert ScenarioScript(8).failed_metrics == ()


def test_then_plays_a_scenario_s_later_runs_in_turn(clock: FakeClock) -> None:
    flaky = ScenarioScript(110, outcome="fail", seconds=S, then=("error", "pass"))
    with Simulator([flaky], clock=clock) as simulator, _client(simulator) as client:
        first = start(client, 110, 110)["id"]
        second = start(client, 110, 110)["id"]
        clock.advance(S)
        runs = [*result(client, first)["runs"].values(), *result(client, second)["runs"].values()]
    assert [r["status"] for r in runs] == ["completed", "failed", "completed", "completed"]
    assert [r["success"] for r in runs] == [False, None, True, True]  # the last one repeats


def test_stuck_run_stays_running(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 105)["id"]
    clock.advance(75)
    run = only_run(client, result_id)
    assert run["status"] == "running" and run["success"] is None
    assert run["duration"] == "01:15"  # keeps growing: it is not terminal
    assert result(client, result_id)["status"] == "running"


def test_result_status_and_counts(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 101, 102, 103, 105)["id"]
    assert result(client, result_id)["status"] == "pending"
    clock.advance(0.5 * S)
    assert result(client, result_id)["status"] == "running"
    clock.advance(S)
    # A result ends only once every run has: the stuck run keeps it running.
    assert result(client, result_id)["status"] == "running"
    client.post("/test_framework/v1/runs-external/90004/end_call/")
    body = result(client, result_id)
    assert body["status"] == "completed"
    assert (body["total_runs_count"], body["success_runs_count"], body["failed_runs_count"]) == (
        4,
        1,
        3,  # the fail, the error and the call ended by API
    )
    assert body["success_rate"] == 25.0
    assert body["agent"] == 1 and body["created_at"].endswith("Z")


def test_result_of_only_errors_ends_failed(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 103, 104)["id"]
    clock.advance(S)
    assert result(client, result_id)["status"] == "failed"


def test_v2_results_path_serves_the_same_schema(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 101, 102)["id"]
    clock.advance(S)
    assert result(client, result_id, "v2") == result(client, result_id, "v1")


def test_runs_dict_keyed_by_string_id_by_default(client: httpx.Client) -> None:
    result_id = start(client, 101, 102)["id"]
    assert list(result(client, result_id)["runs"]) == ["90001", "90002"]


def test_variants(clock: FakeClock) -> None:
    variants = Variants(
        runs_as_list=True, scenario_as_object=True, counts_as_strings=True, canceled_spelling=True
    )
    with Simulator(SCRIPTS, clock=clock, variants=variants) as simulator, _client(simulator) as c:
        created = start(c, 101, 106)
        assert created["runs"][0]["scenario"] == {"id": 101, "name": "Books a table"}
        clock.advance(S)
        body = result(c, created["id"])
        bulk = c.get("/test_framework/v1/runs/bulk/", params={"run_ids": "90001"}).json()
    assert isinstance(body["runs"], list)
    assert [r["scenario"] for r in body["runs"]] == [
        {"id": 101, "name": "Books a table"},
        {"id": 106, "name": "Scenario 106"},
    ]
    assert [r["status"] for r in body["runs"]] == ["completed", "canceled"]
    assert (body["total_runs_count"], body["success_runs_count"], body["failed_runs_count"]) == (
        "2",
        "1",
        "1",
    )
    assert bulk[0]["scenario"] == {"id": 101, "name": "Books a table"}


# -- runs/bulk, end_calls, end_call ---------------------------------------------------------


def test_runs_bulk(sim: Simulator, client: httpx.Client, clock: FakeClock) -> None:
    start(client, 101, 103)
    clock.advance(S)
    response = client.get("/test_framework/v1/runs/bulk/", params={"run_ids": "90002,90001,77"})
    assert response.status_code == 200
    errored, passed = response.json()
    assert [errored["id"], passed["id"]] == [90002, 90001]  # request order; unknown ids left out
    assert passed["transcript"].startswith("Testing Agent: ")
    assert passed["transcript_object"][0] == {
        "role": "Testing Agent",
        "content": "Hi, I am calling about: Books a table.",
    }
    assert passed["voice_recording_url"] == f"{sim.url}/recordings/90001.wav"
    assert errored["transcript"] == "" and errored["transcript_object"] == []
    recording = client.get(passed["voice_recording_url"])
    assert recording.status_code == 200 and recording.content.startswith(b"RIFF")


@pytest.mark.parametrize("query", ["", "?run_ids=", "?run_ids=1,x", "?run_ids=1,,2"])
def test_runs_bulk_bad_run_ids_is_400(client: httpx.Client, query: str) -> None:
    response = client.get(f"/test_framework/v1/runs/bulk/{query}")
    assert response.status_code == 400
    assert list(response.json()) == ["run_ids"]


def test_scripted_transcript_is_served_as_turns(clock: FakeClock) -> None:
    script = ScenarioScript(1, seconds=0, transcript="Main Agent: Hello\nTesting Agent: Hi: there")
    with Simulator([script], clock=clock) as simulator, _client(simulator) as c:
        start(c, 1)
        (run,) = c.get("/test_framework/v1/runs/bulk/?run_ids=90001").json()
    assert run["transcript_object"] == [
        {"role": "Main Agent", "content": "Hello"},
        {"role": "Testing Agent", "content": "Hi: there"},
    ]


def test_end_calls_ends_every_live_run(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 105, 101, 103)["id"]
    clock.advance(0.5 * S)
    response = client.post(f"/test_framework/v1/results/{result_id}/end_calls/")
    assert response.json() == {"ended": [90001, 90002, 90003]}
    clock.advance(100)
    for run in result(client, result_id)["runs"].values():
        assert run["status"] == "cancelled" and run["success"] is None
        assert run["error_message"] == "Call ended by API"
        assert run["metadata"] == {"ended_reason": "ended_by_api"}
        assert run["duration"] == "00:05"
    again = client.post(f"/test_framework/v1/results/{result_id}/end_calls/")
    assert again.json() == {"ended": []}


def test_end_calls_leaves_terminal_runs_alone(client: httpx.Client, clock: FakeClock) -> None:
    fast = start(client, 101)["id"]
    clock.advance(S)
    assert client.post(f"/test_framework/v1/results/{fast}/end_calls/").json() == {"ended": []}
    assert only_run(client, fast)["status"] == "completed"


def test_end_call_ends_one_run(client: httpx.Client, clock: FakeClock) -> None:
    result_id = start(client, 105, 105)["id"]
    response = client.post("/test_framework/v1/runs-external/90002/end_call/")
    assert response.json() == {"ended": [90002]}
    clock.advance(S)
    runs = result(client, result_id)["runs"]
    assert [runs["90001"]["status"], runs["90002"]["status"]] == ["running", "cancelled"]


# -- faults ---------------------------------------------------------------------------------


def test_latency_fault_delays_cekura_but_not_pipecat(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.latency = 3.0
    began = time.monotonic()
    client.get("/test_framework/v1/aiagents/1/")
    assert time.monotonic() - began >= 3.0
    began = time.monotonic()
    pipecat_start(sim, {})
    assert time.monotonic() - began < 3.0


def test_post_429_with_retry_after_then_success(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_429 = 2
    sim.faults.retry_after = "3"
    for _ in range(2):
        throttled = client.post(START, json=entries(101))
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "3"
        assert throttled.json() == {"detail": "Request was throttled."}
    assert sim.entries_fired() == 0
    assert client.post(START, json=entries(101)).status_code == 200
    assert sim.entries_fired() == 1


def test_get_5xx_every_kth_get(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.get_5xx_every = 3
    responses = [client.get("/test_framework/v1/aiagents/1/") for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 503, 200, 200, 503]
    assert responses[2].headers["content-type"].startswith("text/html")
    assert responses[2].text.startswith("<html>")


def test_get_non_json_every_kth_get(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.get_non_json_every = 2
    first, second = (client.get("/test_framework/v1/aiagents/1/") for _ in range(2))
    assert first.json()["id"] == 1
    assert (second.status_code, second.text) == (200, "<html>gateway</html>")


def test_post_500_after_create_creates_runs(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_500_after_create = 1
    response = client.post(START, json=entries(101, 102))
    assert response.status_code == 500
    assert sim.entries_fired() == 2
    assert [r["id"] for r in sim.runs()] == [90001, 90002]
    assert result(client, 5001)["total_runs_count"] == 2  # the runs exist on the "server"
    assert client.post(START, json=entries(101)).status_code == 200


def test_drop_connection_on_post_creates_runs(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.drop_connection_on_post = 1
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(START, json=entries(101, 101, 101))
    assert sim.entries_fired() == 3
    assert sim.requests[-1].status == 0
    assert start(client, 101)["id"] == 5002


def test_post_500_before_create_creates_nothing(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_500_before_create = 1
    assert client.post(START, json=entries(101)).status_code == 500
    assert sim.entries_fired() == 0
    assert client.get("/test_framework/v2/results/").json()["count"] == 0


@pytest.mark.parametrize("status", [200, 202])
def test_post_non_result_creates_runs(sim: Simulator, client: httpx.Client, status: int) -> None:
    sim.faults.post_non_result = 1
    sim.faults.post_non_result_status = status
    response = client.post(START, json=entries(101, 101))
    assert response.status_code == status and "id" not in response.json()
    assert sim.entries_fired() == 2
    listed = client.get("/test_framework/v2/results/?scenarios=101").json()["results"]
    assert [(r["id"], r["total_runs_count"]) for r in listed] == [(5001, 2)]


def test_post_twin_creates_another_pipelines_result_first(
    sim: Simulator, client: httpx.Client
) -> None:
    sim.faults.post_twin = 1
    assert start(client, 101, 102)["id"] == 5002
    assert sim.entries_fired() == 2  # the twin is not this caller's
    listed = client.get("/test_framework/v2/results/?agent_id=1").json()["results"]
    assert [r["id"] for r in listed] == [5002, 5001]  # newest first
    assert listed[0]["scenarios"] == listed[1]["scenarios"] == [101, 102]
    assert start(client, 101)["id"] == 5003  # once only


def test_post_400_entry(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_400_entry = 1
    response = client.post(START, json=entries(101, 102))
    assert response.status_code == 400
    assert response.json() == {
        "scenarios[1].scenario": ['Invalid pk "102" - object does not exist.']
    }
    assert sim.entries_fired() == 0 and sim.runs() == []


def test_credit_exhausted_is_402(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.credit_exhausted = True
    response = client.post(START, json=entries(101))
    assert response.status_code == 402
    assert response.json()["detail"].startswith("Insufficient credits")
    assert sim.runs() == []


def test_reset_forgets_requests_results_and_faults(sim: Simulator, client: httpx.Client) -> None:
    faults = sim.faults
    start(client, 101)
    faults.credit_exhausted = True
    assert client.post(START, json=entries(101)).status_code == 402
    sim.reset()
    assert sim.requests == [] and sim.runs() == [] and sim.entries_fired() == 0
    assert client.get("/test_framework/v1/results/5001/").status_code == 404
    assert start(client, 101)["runs"][0]["id"] == 90002  # ids are never reused
    faults.post_429 = 1  # the object the caller holds is still the live one
    assert client.post(START, json=entries(101)).status_code == 429


# -- recording ------------------------------------------------------------------------------


def test_requests_are_recorded_with_headers_bodies_and_status(
    sim: Simulator, client: httpx.Client
) -> None:
    start(client, 101)
    client.get("/test_framework/v1/runs/bulk/", params={"run_ids": "90001"})
    client.get("/test_framework/v1/results/1")
    post, bulk, missing = sim.requests
    assert (post.method, post.path, post.status) == ("POST", START, 200)
    assert post.headers["x-cekura-api-key"] == "sim-key"
    assert post.headers["content-type"] == "application/json"
    assert post.body == entries(101)
    assert bulk.query == {"run_ids": ["90001"]} and bulk.body is None
    assert missing.status == 404
    assert post.at <= bulk.at <= missing.at
    assert sim.requests_to("post", "run_scenarios") == [post]
    assert sim.requests_to("GET", "/runs/") == [bulk]


def test_non_json_body_is_recorded_as_text(sim: Simulator, client: httpx.Client) -> None:
    client.post(START, content=b"hello")
    assert sim.requests[0].body == "hello"


def test_concurrent_clients_get_distinct_runs(sim: Simulator) -> None:
    def fire() -> None:
        with _client(sim) as c:
            for _ in range(5):
                created = start(c, 101, 102)
                result(c, created["id"])

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [r["id"] for r in sim.runs()]
    assert len(ids) == len(set(ids)) == 80 == sim.entries_fired()
    assert len(sim.requests) == 80


# -- Pipecat Cloud stand-in -----------------------------------------------------------------


def pipecat_start(simulator: Simulator, body: Any, key: str = "pcc-sim-key") -> httpx.Response:
    return httpx.post(
        f"{simulator.url}/v1/public/my-agent/start",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    )


def test_pipecat_cloud_start(sim: Simulator) -> None:
    sim.faults.post_429 = 5  # Cekura faults never touch the Pipecat path
    first = pipecat_start(sim, {"createDailyRoom": True}).json()
    second = pipecat_start(sim, {"createDailyRoom": True}).json()
    assert first["dailyRoom"] == "https://sim.daily.co/room-1"
    assert first["dailyToken"] == "sim-daily-token-1"
    assert second["dailyRoom"] == "https://sim.daily.co/room-2"
    assert first["sessionId"] != second["sessionId"]
    assert set(pipecat_start(sim, {"body": {}}).json()) == {"sessionId"}
    assert sim.requests[0].path == "/v1/public/my-agent/start"


def test_pipecat_cloud_needs_its_own_key(sim: Simulator) -> None:
    assert pipecat_start(sim, {}, key="sim-key").status_code == 401
    response = httpx.post(
        f"{sim.url}/v1/public/a/start", json={}, headers={"X-CEKURA-API-KEY": "sim-key"}
    )
    assert response.status_code == 401


# -- lifecycle of the simulator itself ------------------------------------------------------


def test_stop_releases_the_port_and_connections() -> None:
    first = Simulator(SCRIPTS).start()
    port = int(first.url.rsplit(":", 1)[1])
    with _client(first) as c:
        c.get("/test_framework/v1/aiagents/1/")  # leaves a keep-alive connection open
        began = time.monotonic()
        first.stop()
        assert time.monotonic() - began < 2
    first.stop()  # idempotent
    with Simulator(SCRIPTS, port=port) as second:
        assert second.url == f"http://127.0.0.1:{port}"


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = Simulator().url


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_refuses_non_loopback_host(host: str) -> None:
    with pytest.raises(SimulatorConfigError, match="not a loopback address"):
        Simulator(host=host)


# -- scenarios file -------------------------------------------------------------------------

GOOD_TOML = """
[[scenario]]
id = 101
name = "Books a table"
outcome = "pass"
seconds = 2

[[scenario]]
id = 102
outcome = "fail"
reasons = ["The agent never confirmed the booking time."]
failed_metrics = ["Confirms booking"]
"""


def test_load_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(GOOD_TOML)
    scripts = load_scenarios(path)
    assert scripts == {
        101: ScenarioScript(101, name="Books a table", seconds=2.0),
        102: ScenarioScript(
            102,
            outcome="fail",
            reasons=("The agent never confirmed the booking time.",),
            failed_metrics=("Confirms booking",),
        ),
    }
    assert Simulator(str(path)).runs() == []  # a path is accepted directly


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[scenario]]\nid = 102\ncolour = "red"', "scenario 102: colour: unknown key"),
        ('[[scenario]]\nid = 102\noutcome = "meh"', "scenario 102: outcome: must be one of"),
        (
            '[[scenario]]\nid = 102\nthen = ["meh"]',
            "scenario 102: then: must be a list of outcomes",
        ),
        ("[[scenario]]\nid = 102\nseconds = -1", "scenario 102: seconds: must be a finite number"),
        ('[[scenario]]\nid = 102\nseconds = "2"', "scenario 102: seconds: must be a number"),
        (
            "[[scenario]]\nid = 102\nreasons = [1]",
            "scenario 102: reasons: must be a list of strings",
        ),
        ('[[scenario]]\nname = "x"', "scenario #1: id: required"),
        ('[[scenario]]\nid = "7"', "scenario #1: id: must be an integer"),
        ("[[scenario]]\nid = 1\n[[scenario]]\nid = 1", "scenario 1: id: duplicate id"),
        ("[other]\nx = 1", "other: unknown key"),
        ("[[scenario]\nid = 1", "invalid TOML"),
    ],
)
def test_load_scenarios_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SimulatorConfigError) as info:
        load_scenarios(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_scenarios_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SimulatorConfigError, match="cannot read"):
        load_scenarios(tmp_path / "absent.toml")


# -- command line ---------------------------------------------------------------------------

LISTENING = re.compile(
    r"cekura simulator listening on (http://127\.0\.0\.1:\d+) "
    r"\(LOCAL SIMULATOR, not the Cekura service\)\n"
)


def run_cli(*args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_cekura_pipecat.simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(GOOD_TOML)
    proc = run_cli("--scenarios", str(path), "--port", "0", "--api-key", "k")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the CLI printed nothing within 10 s"
        match = LISTENING.fullmatch(proc.stdout.readline())
        assert match
        response = httpx.post(
            f"{match.group(1)}{START}", json=entries(102), headers={"X-CEKURA-API-KEY": "k"}
        )
        assert response.json()["runs"][0]["scenario"] == 102
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert (out, err) == ("", "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--scenarios", "BAD"], "scenario 5: outcome: must be one of"),
        (["--scenarios", "BAD", "--host", "0.0.0.0"], "not a loopback address"),
    ],
    ids=["bad-file", "non-loopback"],
)
def test_cli_refuses_with_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[scenario]]\nid = 5\noutcome = "nope"' if "--host" not in args else GOOD_TOML)
    proc = run_cli(*[str(path) if a == "BAD" else a for a in args])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert expected in err
    if "--host" not in args:
        assert str(path) in err


# -- the v2 start (the official CLI's `cekura run start --mode pipecat`) --------------------

START_V2 = "/test_framework/v1/scenarios-external/run_scenarios_pipecat_v2"


def v2_body(*ids: int, **extra: Any) -> dict[str, Any]:
    return {"agent_id": 12, "scenarios": list(ids), **extra}


@pytest.mark.parametrize("path", [START_V2, START_V2 + "/"], ids=["no-slash", "slash"])
def test_v2_start_creates_one_result_with_a_run_per_scenario(
    sim: Simulator, client: httpx.Client, path: str
) -> None:
    response = client.post(path, json=v2_body(102, 101))
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["id"] == 5001 and created["agent"] == 12 and created["status"] == "pending"
    assert [(r["id"], r["scenario"], r["status"]) for r in created["runs"]] == [
        (90001, 102, "pending"),
        (90002, 101, "pending"),
    ]
    assert sim.entries_fired() == 2
    assert sim.requests_to("POST", "run_scenarios_pipecat_v2")[0].path == path


def test_v2_frequency_runs_each_scenario_that_many_times(
    sim: Simulator, client: httpx.Client, clock: FakeClock
) -> None:
    created = client.post(START_V2, json=v2_body(101, 102, frequency=3)).json()
    assert [r["scenario"] for r in created["runs"]] == [101, 101, 101, 102, 102, 102]
    assert sim.entries_fired() == 6
    clock.advance(S)
    body = result(client, created["id"])
    assert (body["total_runs_count"], body["success_runs_count"]) == (6, 3)
    assert body["agent"] == 12


def test_v2_frequency_defaults_to_one_and_extra_keys_are_ignored(
    sim: Simulator, client: httpx.Client
) -> None:
    created = client.post(START_V2, json=v2_body(101, name="nightly", tags=["x"])).json()
    assert len(created["runs"]) == 1 and sim.entries_fired() == 1


def test_v2_runs_follow_the_same_life_cycle_and_results_path(
    client: httpx.Client, clock: FakeClock
) -> None:
    result_id = client.post(START_V2, json=v2_body(103)).json()["id"]
    assert only_run(client, result_id)["status"] == "pending"
    clock.advance(S)
    run = only_run(client, result_id)
    assert (run["status"], run["error_message"]) == ("failed", "Bot did not join the room")
    assert result(client, result_id, "v2") == result(client, result_id, "v1")


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"agent_id": 12}, {"scenarios": ["This field is required."]}),
        ({"scenarios": [101]}, {"agent_id": ["This field is required."]}),
        (v2_body(101, agent_id="12"), {"agent_id": ["A valid integer is required."]}),
        (v2_body(101, agent_id=True), {"agent_id": ["A valid integer is required."]}),
        (v2_body(), {"scenarios": ["This list may not be empty."]}),
        (
            {"agent_id": 12, "scenarios": 101},
            {"scenarios": ['Expected a list of items but got type "int".']},
        ),
        (
            # v1's entry objects are not v2's scenario ids.
            {"agent_id": 12, "scenarios": [{"scenario": 101}]},
            {"scenarios[0]": ["A valid integer is required."]},
        ),
        (v2_body(101, False), {"scenarios[1]": ["A valid integer is required."]}),
        (
            v2_body(101, 999, 998),
            {
                "scenarios[1]": ['Invalid pk "999" - object does not exist.'],
                "scenarios[2]": ['Invalid pk "998" - object does not exist.'],
            },
        ),
        (v2_body(101, frequency=0), {"frequency": ["Ensure this value is a positive integer."]}),
        (v2_body(101, frequency=-2), {"frequency": ["Ensure this value is a positive integer."]}),
        (v2_body(101, frequency="2"), {"frequency": ["Ensure this value is a positive integer."]}),
        (v2_body(101, frequency=1.5), {"frequency": ["Ensure this value is a positive integer."]}),
        (
            v2_body(101, frequency=True),
            {"frequency": ["Ensure this value is a positive integer."]},
        ),
        (
            {"scenarios": [999], "frequency": 0},  # every problem at once, as DRF reports them
            {
                "agent_id": ["This field is required."],
                "frequency": ["Ensure this value is a positive integer."],
                "scenarios[0]": ['Invalid pk "999" - object does not exist.'],
            },
        ),
        ([101], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
    ids=[
        "no-scenarios",
        "no-agent",
        "agent-string",
        "agent-bool",
        "empty",
        "not-a-list",
        "v1-entry",
        "bool-id",
        "unknown-ids",
        "frequency-0",
        "frequency-negative",
        "frequency-string",
        "frequency-float",
        "frequency-bool",
        "all-at-once",
        "body-not-object",
    ],
)
def test_v2_start_validation_errors(
    sim: Simulator, client: httpx.Client, body: Any, errors: dict[str, list[str]]
) -> None:
    response = client.post(START_V2, json=body)
    assert response.status_code == 400
    assert response.json() == errors
    assert sim.entries_fired() == 0
    assert sim.runs() == []


def test_v2_bad_json_and_empty_body_are_400(sim: Simulator, client: httpx.Client) -> None:
    bad = client.post(START_V2, content=b"{nope", headers={"Content-Type": "application/json"})
    assert (bad.status_code, bad.json()) == (400, {"detail": "JSON parse error"})
    empty = client.post(START_V2)
    assert empty.status_code == 400
    assert set(empty.json()) == {"agent_id", "scenarios"}
    assert sim.entries_fired() == 0


def test_v2_needs_the_api_key_and_post(sim: Simulator, client: httpx.Client) -> None:
    with httpx.Client(base_url=sim.url) as anonymous:
        assert anonymous.post(START_V2, json=v2_body(101)).status_code == 401
    assert client.get(START_V2).status_code == 405
    assert client.post(START_V2 + "//", json=v2_body(101)).status_code == 404
    assert sim.entries_fired() == 0


def test_v2_post_status_variant_201(clock: FakeClock) -> None:
    variants = Variants(post_status=201)
    with Simulator(SCRIPTS, clock=clock, variants=variants) as simulator, _client(simulator) as c:
        assert c.post(START_V2, json=v2_body(101)).status_code == 201


def test_v2_post_429_with_retry_after_then_success(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_429 = 1
    sim.faults.retry_after = "7"
    throttled = client.post(START_V2, json=v2_body(101))
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "7")
    assert throttled.json() == {"detail": "Request was throttled."}
    assert sim.entries_fired() == 0
    assert client.post(START_V2, json=v2_body(101)).status_code == 200


def test_v2_throttle_comes_before_validation(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_429 = 1
    assert client.post(START_V2, json={}).status_code == 429
    assert client.post(START_V2, json={}).status_code == 400


def test_v2_post_500_after_create_creates_runs(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_500_after_create = 1
    response = client.post(START_V2, json=v2_body(101, frequency=2))
    assert response.status_code == 500
    assert sim.entries_fired() == 2
    assert result(client, 5001)["total_runs_count"] == 2


def test_v2_drop_connection_on_post_creates_runs(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.drop_connection_on_post = 1
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(START_V2, json=v2_body(101, 102))
    assert sim.entries_fired() == 2 and sim.requests[-1].status == 0
    assert client.post(START_V2, json=v2_body(101)).json()["id"] == 5002


def test_v2_credit_exhausted_is_402(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.credit_exhausted = True
    response = client.post(START_V2, json=v2_body(101))
    assert response.status_code == 402
    assert response.json()["detail"].startswith("Insufficient credits")
    assert sim.runs() == []


def test_v2_latency_fault(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.latency = 0.2
    began = time.monotonic()
    assert client.post(START_V2, json=v2_body(101)).status_code == 200
    assert time.monotonic() - began >= 0.2


def test_v2_post_400_entry_fires_nothing(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_400_entry = 0
    response = client.post(START_V2, json=v2_body(101, 102))
    assert response.status_code == 400
    assert sim.entries_fired() == 0 and sim.runs() == []


def test_v2_post_400_entry_uses_the_v2_error_location(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.post_400_entry = 1
    response = client.post(START_V2, json=v2_body(101, 102))
    assert response.json() == {"scenarios[1]": ['Invalid pk "102" - object does not exist.']}


def test_v2_post_400_entry_names_the_requested_scenario_under_frequency(
    sim: Simulator, client: httpx.Client
) -> None:
    sim.faults.post_400_entry = 1
    response = client.post(START_V2, json=v2_body(101, 102, frequency=2))
    (messages,) = response.json().values()
    assert messages == ['Invalid pk "102" - object does not exist.']


def test_v2_get_faults_do_not_touch_the_post(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.get_5xx_every = 1
    sim.faults.get_non_json_every = 1
    assert client.post(START_V2, json=v2_body(101)).status_code == 200
    assert client.get("/test_framework/v1/results/5001/").status_code == 503


# -- published API: aliases, bodies, switches (issue 9) --------------------------------------

ALIASES = [
    "/test_framework/v1/scenarios/run_scenarios_pipecat",
    "/test_framework/v1/scenarios-external/run_scenarios_pipecat/",
    "/test_framework/v2/scenarios/run_scenarios_pipecat",
]


@pytest.mark.parametrize("path", ALIASES)
def test_start_aliases_with_or_without_slash(client: httpx.Client, path: str) -> None:
    response = client.post(path, json=entries(101))
    assert response.status_code == 200, response.text
    assert response.headers["x-cekura-simulator"] == "1"
    assert response.json()["runs"][0]["scenario"] == 101


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("slash", ["/", ""])
def test_reads_and_ends_on_both_versions_with_or_without_slash(
    client: httpx.Client, clock: FakeClock, version: str, slash: str
) -> None:
    created = start(client, 101, 105)
    rid, (done, stuck) = created["id"], (r["id"] for r in created["runs"])
    clock.advance(S)
    base = f"/test_framework/{version}"
    assert client.get(f"{base}/results/{rid}{slash}").json()["id"] == rid
    assert client.get(f"{base}/results{slash}").json()["count"] == 1
    for query in (f"run_ids={done},{stuck}", f"ids={done},{stuck}"):
        for bulk in ("runs/bulk", "runs-external/bulk"):
            runs = client.get(f"{base}/{bulk}{slash}?{query}").json()
            assert [r["id"] for r in runs] == [done, stuck]
    assert client.get(f"{base}/runs-external/{done}{slash}").json()["status"] == "completed"
    assert client.get(f"{base}/aiagents/12{slash}").json()["project"] == 7
    for kind in ("runs", "runs-external"):
        assert client.post(f"{base}/{kind}/{stuck}/end_call{slash}").status_code == 200
    for kind in ("results", "results-external"):
        assert client.post(f"{base}/{kind}/{rid}/end_calls{slash}").status_code == 200


def test_results_list_filters_and_pages(sim: Simulator, client: httpx.Client) -> None:
    for _ in range(3):
        start(client, 101)
    client.post(
        "/test_framework/v1/scenarios-external/run_scenarios_pipecat_v2/",
        json={"agent_id": 3, "scenarios": [102], "name": "Nightly regression"},
    )
    page = client.get("/test_framework/v2/results/", params={"page_size": 2}).json()
    assert page["count"] == 4 and [r["id"] for r in page["results"]] == [5004, 5003]
    assert page["next"] == f"{sim.url}/test_framework/v2/results/?page_size=2&page=2"
    assert "runs" not in page["results"][0]
    found = client.get("/test_framework/v2/results/", params={"search": "nightly"}).json()
    assert [r["name"] for r in found["results"]] == ["Nightly regression"]
    assert client.get("/test_framework/v2/results/?agent_id=1").json()["count"] == 3
    assert client.get("/test_framework/v2/results/?scenarios=102").json()["count"] == 1


FORM_FIELDS = [
    ("agent", "12"),
    ("scenarios[0]scenario", "101"),
    ("scenarios[0]pipecat_room_url", "https://r/a"),
    ("scenarios[0]pipecat_token", "tok"),
    ("scenarios[1].scenario", "102"),
    ("scenarios[1].pipecat_room_url", "https://r/b"),
    ("mock_tool_names", "lookup_booking"),
]


def test_start_accepts_a_urlencoded_form(sim: Simulator, client: httpx.Client) -> None:
    response = client.post(START, data=dict(FORM_FIELDS))
    assert response.status_code == 200, response.text
    assert response.json()["agent"] == 12
    assert [r["scenario"] for r in response.json()["runs"]] == [101, 102]
    assert sim.requests[-1].body["scenarios"][0] == {
        "scenario": 101,
        "pipecat_room_url": "https://r/a",
        "pipecat_token": "tok",
    }
    assert sim.runs()[0]["mocked_tool_names"] == ["lookup_booking"]


def test_start_accepts_a_multipart_form(sim: Simulator, client: httpx.Client) -> None:
    files = {name: (None, value) for name, value in FORM_FIELDS}
    response = client.post(START, files=files)
    assert response.status_code == 200, response.text
    assert sim.requests[-1].headers["content-type"].startswith("multipart/form-data")
    assert [r["scenario"] for r in response.json()["runs"]] == [101, 102]


def test_form_with_a_bad_entry_is_400(client: httpx.Client) -> None:
    response = client.post(START, data={"scenarios[0]scenario": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "scenarios[0].scenario": ["A valid integer is required."],
        "scenarios[0].pipecat_room_url": ["This field is required."],
    }


@pytest.mark.parametrize(
    ("extra", "mocked", "recorded"),
    [
        ({}, ["lookup_booking", "create_booking"], None),
        ({"mock_tool_names": None}, ["lookup_booking", "create_booking"], None),
        ({"mock_tool_names": []}, [], []),
        ({"mock_tool_names": ["create_booking"]}, ["create_booking"], ["create_booking"]),
    ],
    ids=["absent", "null", "none", "some"],
)
def test_mock_tool_names(
    client: httpx.Client, extra: dict[str, Any], mocked: list[str], recorded: list[str] | None
) -> None:
    created = client.post(START, json={**entries(101), **extra}).json()
    assert created["mock_tool_names"] == recorded
    assert result(client, created["id"])["mock_tool_names"] == recorded
    assert only_run(client, created["id"])["mocked_tool_names"] == mocked


def test_result_fields_the_official_cli_reads(client: httpx.Client, clock: FakeClock) -> None:
    created = start(client, 101, 102, 105)
    clock.advance(S)
    body = result(client, created["id"])
    assert body["name"] == f"Pipecat run {created['id']}"
    assert (body["completed_runs_count"], body["total_runs_count"]) == (2, 3)
    assert body["scenarios"] == [101, 102, 105]
    assert body["total_duration"] == "00:30"
    assert body["success_rate"] == 33.33


def test_room_exclusive_refuses_a_room_with_a_live_run(clock: FakeClock) -> None:
    with Simulator(SCRIPTS, clock=clock, room_exclusive=True) as simulator, _client(simulator) as c:
        start(c, 105)  # stuck in https://r/105
        response = c.post(START, json=entries(101, 105))
        assert response.status_code == 400
        assert response.json() == {
            "scenarios[1].pipecat_room_url": ["another caller was already in the room"]
        }
        same_body = c.post(START, json={"scenarios": entries(101)["scenarios"] * 2})
        assert list(same_body.json()) == ["scenarios[1].pipecat_room_url"]
        assert simulator.entries_fired() == 1
        c.post("/test_framework/v1/runs-external/90001/end_call/")
        assert c.post(START, json=entries(105)).status_code == 200


def test_echo_secrets_puts_room_and_token_in_the_run(clock: FakeClock) -> None:
    body = {"scenarios": [{"scenario": 101, "pipecat_room_url": ROOM, "pipecat_token": "s3cr3t"}]}
    with Simulator(SCRIPTS, clock=clock, echo_secrets=True) as simulator, _client(simulator) as c:
        rid = c.post(START, json=body).json()["id"]
        clock.advance(S)
        run = only_run(c, rid)
        full = c.get("/test_framework/v1/runs/bulk/?run_ids=90001").json()[0]
    assert run["error_message"] == f"joined {ROOM} with token s3cr3t"
    assert f"joined {ROOM} with token s3cr3t" in full["transcript"]


def test_start_non_result_creates_runs_but_answers_something_else(clock: FakeClock) -> None:
    with (
        Simulator(SCRIPTS, clock=clock, start_non_result=True) as simulator,
        _client(simulator) as c,
    ):
        response = c.post(START, json=entries(101, 102))
        assert (response.status_code, response.json()) == (200, {"ok": True})
        assert simulator.entries_fired() == 2 and len(simulator.runs()) == 2


def test_unknown_scenario_without_naming_the_entry(clock: FakeClock) -> None:
    with Simulator(SCRIPTS, clock=clock, unknown_scenario_400="field") as simulator:
        with _client(simulator) as c:
            response = c.post(START, json=entries(101, 998, 999))
        assert response.json() == {
            "scenarios": [
                'Invalid pk "998" - object does not exist.',
                'Invalid pk "999" - object does not exist.',
            ]
        }
        assert simulator.runs() == []


def test_bad_switch_values_are_config_errors() -> None:
    with pytest.raises(SimulatorConfigError, match="v1_reads must be one of"):
        Simulator(v1_reads="old")  # type: ignore[arg-type]
    with pytest.raises(SimulatorConfigError, match="unknown_scenario_400"):
        Simulator(unknown_scenario_400="loc")  # type: ignore[arg-type]


def test_pending_forever_run_in_a_failed_result(clock: FakeClock) -> None:
    scripts = [*SCRIPTS, ScenarioScript(120, outcome="pending_forever", seconds=S)]
    with Simulator(scripts, clock=clock) as simulator, _client(simulator) as c:
        rid = start(c, 101, 120)["id"]
        clock.advance(S / 2)
        assert result(c, rid)["status"] == "running"
        clock.advance(S)
        body = result(c, rid)
    assert body["status"] == "failed"
    assert [r["status"] for r in body["runs"].values()] == ["completed", "pending"]


def test_non_finite_values_are_written_as_raw_json(clock: FakeClock) -> None:
    scripts = [
        ScenarioScript(121, seconds=S, non_finite="duration"),
        ScenarioScript(122, seconds=S, non_finite="score"),
        ScenarioScript(123, seconds=S),
    ]
    with Simulator(scripts, clock=clock) as simulator, _client(simulator) as c:
        rid = start(c, 121, 122, 123)["id"]
        clock.advance(S)
        raw = c.get(f"/test_framework/v1/results/{rid}/").text
    assert raw.count('"duration": Infinity') == 1
    assert raw.count('"score": NaN') == 1
    with pytest.raises(ValueError):
        json.loads(raw, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))


def test_new_script_fields_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(
        '[[scenario]]\nid = 130\noutcome = "rubric_fail"\nreview = "failure"\n'
        'expected_outcome_as_string = true\nnon_finite = "score"\n'
        'numeric_metrics = { "Latency (ms)" = 2100 }\nenum_metrics = { Outcome = "resolved" }\n'
    )
    script = load_scenarios(path)[130]
    assert script.numeric_metrics == (("Latency (ms)", 2100),)
    assert script.enum_metrics == (("Outcome", "resolved"),)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[scenario]]\nid = 1\nnumeric_metrics = { x = "fast" }\n')
    with pytest.raises(SimulatorConfigError, match="numeric_metrics: must map metric names"):
        load_scenarios(bad)


def test_get_429_with_retry_after(sim: Simulator, client: httpx.Client) -> None:
    sim.faults.get_429 = 1
    sim.faults.retry_after = "3"
    first = client.get("/test_framework/v1/results/5001/")
    assert (first.status_code, first.headers["retry-after"]) == (429, "3")
    assert client.get("/test_framework/v1/results/5001/").status_code == 404


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_drip_sends_one_byte_at_a_time(sim: Simulator, method: str) -> None:
    sim.faults.drip_interval = 0.002
    if method == "GET":
        sim.faults.drip_gets = 1
    else:
        sim.faults.drip_posts = 1
    with _client(sim) as c:
        started = time.monotonic()
        if method == "GET":
            response = c.get("/test_framework/v1/aiagents/3/")
        else:
            response = c.post(START, json=entries(101))
        took = time.monotonic() - started
    assert response.status_code == 200 and response.headers["x-cekura-simulator"] == "1"
    assert took >= 0.002 * len(response.content)
    assert sim.entries_fired() == (1 if method == "POST" else 0)
    with pytest.raises(httpx.ReadTimeout), _client(sim) as c:
        sim.faults.drip_interval = 1.0
        sim.faults.drip_gets = 1
        c.get("/test_framework/v1/aiagents/3/", timeout=httpx.Timeout(5, read=0.5))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_reset_connection(sim: Simulator, client: httpx.Client, method: str) -> None:
    if method == "GET":
        sim.faults.reset_gets = 1
    else:
        sim.faults.reset_posts = 1
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.request(
            method,
            START if method == "POST" else "/test_framework/v1/results/1/",
            json=entries(101) if method == "POST" else None,
        )
    assert sim.requests[-1].status == 0
    assert sim.entries_fired() == (1 if method == "POST" else 0)
    assert client.get("/test_framework/v1/aiagents/3/").status_code == 200


def test_cli_flags_for_the_switches(tmp_path: Path) -> None:
    proc = run_cli(
        "--default-outcome",
        "pass",
        "--default-seconds",
        "0",
        "--v1-reads",
        "legacy",
        "--room-exclusive",
        "--unknown-scenario-400",
        "field",
    )
    try:
        assert proc.stdout is not None
        url = LISTENING.match(proc.stdout.readline())
        assert url, "no listening line"
        headers = {"X-CEKURA-API-KEY": "sim-key"}
        created = httpx.post(url.group(1) + START, json=entries(7, 7), headers=headers)
        assert list(created.json()) == ["scenarios[1].pipecat_room_url"]
        rid = httpx.post(url.group(1) + START, json=entries(7), headers=headers).json()["id"]
        body = httpx.get(f"{url.group(1)}/test_framework/v1/results/{rid}/", headers=headers)
        metric = next(iter(body.json()["runs"].values()))["evaluation"]["metrics"][0]
        assert metric["type"].startswith("binary_") and metric["score"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


# -- the lifecycle Cekura documents (issue 29) -----------------------------------------------

DOCUMENTED = {
    "pending",
    "in_queue",
    "scaling_up",
    "running",
    "in_progress",
    "evaluating",
    "completed",
    "failed",
    "timeout",
    "cancelled",
}


def test_every_documented_status_is_played_by_some_script(clock: FakeClock) -> None:
    scripts = [
        *SCRIPTS,
        ScenarioScript(120, outcome="pending_forever", seconds=S),
        ScenarioScript(121, outcome="no_verdict", seconds=S),
    ]
    seen_runs: set[str] = set()
    seen_results: set[str] = set()
    with Simulator(scripts, clock=clock) as simulator, _client(simulator) as c:
        batches = [[101, 102, 105], [103, 104], [104], [106], [101, 120], [121]]
        ids = [start(c, *batch)["id"] for batch in batches]
        for _ in range(30):
            for rid in ids:
                body = result(c, rid)
                seen_results.add(body["status"])
                seen_runs.update(run["status"] for run in body["runs"].values())
            clock.advance(S / 20)
    assert seen_runs | seen_results >= DOCUMENTED, DOCUMENTED - (seen_runs | seen_results)
    assert {"pending", "in_queue", "scaling_up", "in_progress", "evaluating"} <= seen_runs
    assert {"running", "evaluating", "completed", "failed", "timeout", "cancelled"} <= (
        seen_results
    )


def test_a_result_ends_only_once_every_run_has(clock: FakeClock) -> None:
    scripts = [ScenarioScript(1, seconds=1), ScenarioScript(2, seconds=30)]
    with Simulator(scripts, clock=clock) as simulator, _client(simulator) as c:
        rid = start(c, 1, 2, 2)["id"]
        clock.advance(2)
        body = result(c, rid)
        assert body["status"] == "running"
        assert body["completed_runs_count"] == 1
        assert body["ai_summary_status"] == "pending"
        clock.advance(28)
        body = result(c, rid)
    assert body["status"] == "completed"
    assert body["success_runs_count"] == 3


def test_phases_script_the_life_cycle(clock: FakeClock) -> None:
    phases = (("in_queue", 1), ("scaling_up", 2), ("in_progress", 3), ("evaluating", 4))
    script = ScenarioScript(1, phases=phases)
    assert script.seconds == 10
    with Simulator([script], clock=clock) as simulator, _client(simulator) as c:
        rid = start(c, 1)["id"]
        seen = []
        for _ in range(11):
            seen.append((only_run(c, rid)["status"], result(c, rid)["status"]))
            clock.advance(1)
    assert [run for run, _ in seen] == [
        "in_queue",
        "scaling_up",
        "scaling_up",
        "in_progress",
        "in_progress",
        "in_progress",
        "evaluating",
        "evaluating",
        "evaluating",
        "evaluating",
        "completed",
    ]
    assert [res for _, res in seen] == [
        "in_queue",
        "scaling_up",
        "scaling_up",
        *["running"] * 3,
        *["evaluating"] * 4,
        "completed",
    ]


@pytest.mark.parametrize("early", ["null", "false"])
def test_a_late_verdict_keeps_the_result_evaluating(clock: FakeClock, early: str) -> None:
    script = ScenarioScript(1, seconds=1, verdict_after=3, early_success=early)  # type: ignore[arg-type]
    with Simulator([script], clock=clock) as simulator, _client(simulator) as c:
        rid = start(c, 1)["id"]
        clock.advance(2)
        body = result(c, rid)
        run = next(iter(body["runs"].values()))
        assert (body["status"], run["status"]) == ("evaluating", "completed")
        assert run["success"] is (None if early == "null" else False)
        assert run["evaluation"] == {"metrics": []} and run["expected_outcome"] == {}
        clock.advance(2)
        body = result(c, rid)
    run = next(iter(body["runs"].values()))
    assert (body["status"], run["success"]) == ("completed", True)
    assert run["evaluation"]["metrics"]


def test_no_verdict_completes_with_success_null(clock: FakeClock) -> None:
    with (
        Simulator([ScenarioScript(1, outcome="no_verdict", seconds=1)], clock=clock) as simulator,
        _client(simulator) as c,
    ):
        rid = start(c, 1)["id"]
        clock.advance(5)
        body = result(c, rid)
    run = next(iter(body["runs"].values()))
    assert (body["status"], run["status"], run["success"]) == ("completed", "completed", None)


def test_ai_summary_is_written_after_the_end(clock: FakeClock) -> None:
    with (
        Simulator(SCRIPTS, clock=clock, ai_summary_after=2) as simulator,
        _client(simulator) as c,
    ):
        failing = start(c, 101, 102)["id"]
        passing = start(c, 101)["id"]
        clock.advance(S)
        assert result(c, failing)["ai_summary_status"] == "pending"
        clock.advance(2)
        body, clean = result(c, failing), result(c, passing)
    assert body["ai_summary_status"] == "completed"
    assert "1 of 2 runs did not pass" in body["ai_summary"]
    assert "The agent never confirmed the booking time." in body["ai_summary"]
    assert body["failed_reasons"] == {"90002": ["The agent never confirmed the booking time."]}
    assert clean["ai_summary_status"] == "skipped_no_failures" and clean["ai_summary"] is None


def test_early_completed_plays_the_older_reading(clock: FakeClock) -> None:
    scripts = [ScenarioScript(1, seconds=1), ScenarioScript(2, seconds=30)]
    with (
        Simulator(scripts, clock=clock, early_completed=True) as simulator,
        _client(simulator) as c,
    ):
        rid = start(c, 1, 2)["id"]
        clock.advance(2)
        assert result(c, rid)["status"] == "completed"


def test_phases_and_seconds_together_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[[scenario]]\nid = 1\nseconds = 3\nphases = { in_queue = 1 }\n")
    with pytest.raises(SimulatorConfigError, match=r"scenario 1: seconds: give seconds or phases"):
        load_scenarios(path)
    path.write_text("[[scenario]]\nid = 1\nphases = { booting = 1 }\n")
    with pytest.raises(SimulatorConfigError, match=r"scenario 1: phases: 'booting' is not"):
        load_scenarios(path)
    path.write_text('[[scenario]]\nid = 1\nverdict_after = 2\nearly_success = "maybe"\n')
    with pytest.raises(SimulatorConfigError, match=r"early_success: must be null or false"):
        load_scenarios(path)
    path.write_text('[[scenario]]\nid = 1\nphases = [["in_queue", 1], ["in_progress", 2]]\n')
    assert load_scenarios(path)[1].seconds == 3


def test_the_first_reads_of_a_new_result_may_answer_404(
    sim: Simulator, client: httpx.Client
) -> None:
    sim.faults.get_404_new = 2
    rid = start(client, 101)["id"]
    paths = [f"/test_framework/v2/results/{rid}/", f"/test_framework/v1/results/{rid}/"]
    assert [client.get(p).status_code for p in paths] == [404, 404]
    assert client.get(paths[0]).status_code == 200

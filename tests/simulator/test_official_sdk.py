"""The simulator against code nobody here wrote: Cekura's official SDK and CLI (PyPI 1.6.x).

Every answer is also checked against JSON Schemas in ``tests/data/`` written from the API
contract (cekura-api.md and the OpenAPI document), not from the simulator's output. The
SDK's base URL is always the simulator's: nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import DATA
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

cekura = pytest.importorskip("cekura")
from cekura import APIError, Cekura, NotFoundError  # noqa: E402

AGENT = 12
ROOM = "https://acme.daily.co/room-{}"
TOKEN = "daily-token-SECRET-0123"

SCRIPTS = [
    ScenarioScript(101, "Books a table", "pass", 10, numeric_metrics=(("Latency (ms)", 870),)),
    ScenarioScript(102, "Late booking", "fail", 10, failed_metrics=("Respects opening hours",)),
    ScenarioScript(103, "Hangs", "stuck", 10),
    ScenarioScript(104, "Slow answers", "rubric_fail", 10),
    ScenarioScript(105, "Never joins", "never_connected", 10),
    ScenarioScript(106, "Routes the call", "pass", 10, enum_metrics=(("Outcome", "escalated"),)),
    ScenarioScript(107, "Reviewed", "fail", 10, review="success"),
    ScenarioScript(108, "Plain outcome", "pass", 10, expected_outcome_as_string=True),
    ScenarioScript(109, "Nothing to check", "evaluated_nothing", 10),
    ScenarioScript(110, "Instant", "pass", 0),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _registry() -> Registry:
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text())))
        for path in DATA.glob("*.schema.json")
    ]
    return Registry().with_resources(resources)


REGISTRY = _registry()


def check(schema: str, data: Any) -> None:
    """Fail with every schema violation, on the contract's schema named ``schema``."""
    root = REGISTRY.contents(schema)
    validator = Draft202012Validator(root, registry=REGISTRY)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, "\n".join(errors)


def check_metric(kind: str, metric: dict[str, Any]) -> None:
    check("run.schema.json", {"id": 1, "status": "completed", "scenario": 1})  # schema loads
    validator = Draft202012Validator(
        {"$ref": f"run.schema.json#/$defs/{kind}"},
        registry=REGISTRY,
    )
    errors = [e.message for e in validator.iter_errors(metric)]
    assert not errors, f"{metric}: {errors}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(SCRIPTS, clock=clock) as simulator:
        yield simulator


@pytest.fixture
def sdk(sim: Simulator) -> Iterator[Cekura]:
    with Cekura(api_key=sim.api_key, base_url=sim.url) as client:
        yield client


def entries(*ids: int) -> list[dict[str, Any]]:
    return [
        {"scenario": sid, "pipecat_room_url": ROOM.format(i), "pipecat_token": TOKEN}
        for i, sid in enumerate(ids)
    ]


def runs_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    runs = result["runs"]
    return list(runs.values()) if isinstance(runs, dict) else list(runs)


# -- the SDK ----------------------------------------------------------------------------------


def test_sdk_run_pipecat_then_wait_and_get(sim: Simulator, sdk: Cekura, clock: FakeClock) -> None:
    started = sdk.scenarios.run_pipecat(
        agent=AGENT, scenarios=entries(101, 102), mock_tool_names=["lookup_booking"]
    )
    check("start-response.schema.json", started)
    assert [r["scenario"] for r in started["runs"]] == [101, 102]
    clock.now += 10
    final = sdk.results.wait(started["id"], poll_interval=0, timeout=5)
    check("result.schema.json", final)
    assert final == sdk.results.get(started["id"])
    assert final["status"] == "completed"
    assert (final["total_runs_count"], final["success_runs_count"]) == (2, 1)
    passed, failed = runs_of(final)
    assert (passed["success"], failed["success"]) == (True, False)
    assert passed["mocked_tool_names"] == ["lookup_booking"]
    # What the SDK sent: no trailing slash, its key header, the body verbatim.
    post = sim.requests[0]
    assert (post.method, post.path) == (
        "POST",
        "/test_framework/v1/scenarios/run_scenarios_pipecat",
    )
    assert post.headers["x-cekura-api-key"] == sim.api_key
    assert post.headers["x-client-source"] == "sdk"
    assert post.body == {
        "agent": AGENT,
        "scenarios": entries(101, 102),
        "mock_tool_names": ["lookup_booking"],
    }
    gets = [r.path for r in sim.requests if r.method == "GET"]
    assert set(gets) == {f"/test_framework/v1/results/{started['id']}"}
    assert all(r.status == 200 for r in sim.requests)


def test_sdk_reads_runs_three_ways(sim: Simulator, sdk: Cekura, clock: FakeClock) -> None:
    started = sdk.scenarios.run_pipecat(scenarios=entries(101, 106))
    ids = [r["id"] for r in started["runs"]]
    clock.now += 10
    by_result = sdk.results.get_runs(ids)
    by_bulk = sdk.runs.bulk(ids=",".join(map(str, ids)))
    one = sdk.runs.get(ids[1])
    check("bulk-runs.schema.json", by_result)
    check("bulk-runs.schema.json", by_bulk)
    check("run.schema.json", one)
    assert by_result == by_bulk and one == by_bulk[1]
    assert by_result[0]["transcript_object"][0]["role"] == "Testing Agent"
    outcome = next(m for m in one["evaluation"]["metrics"] if m["name"] == "Outcome")
    check_metric("enum", outcome)
    assert outcome["value"] == "escalated"
    latency = next(m for m in by_result[0]["evaluation"]["metrics"] if m.get("type") == "numeric")
    check_metric("numeric", latency)
    assert latency["score"] == 870
    # No mock_tool_names on the start: every tool of the agent was mocked.
    assert one["mocked_tool_names"] == ["lookup_booking", "create_booking"]
    assert [(r.path, r.query) for r in sim.requests if r.method == "GET"] == [
        ("/test_framework/v1/runs/bulk", {"ids": ["90001,90002"]}),
        ("/test_framework/v1/runs-external/bulk", {"ids": ["90001,90002"]}),
        ("/test_framework/v1/runs-external/90002", {}),
    ]


def test_sdk_ends_calls(sim: Simulator, sdk: Cekura, clock: FakeClock) -> None:
    first = sdk.scenarios.run_pipecat(scenarios=entries(103))
    second = sdk.scenarios.run_pipecat(scenarios=entries(103, 103))
    clock.now += 5
    assert sdk.runs.end_call(first["runs"][0]["id"]) == {"ended": [first["runs"][0]["id"]]}
    ended = sdk.results.end_calls(second["id"])
    assert ended == {"ended": [r["id"] for r in second["runs"]]}
    for result_id in (first["id"], second["id"]):
        result = sdk.results.get(result_id)
        check("result.schema.json", result)
        assert {r["status"] for r in runs_of(result)} == {"cancelled"}
    posts = [(r.path, r.status) for r in sim.requests if r.method == "POST"][2:]
    assert posts == [
        (f"/test_framework/v1/runs-external/{first['runs'][0]['id']}/end_call", 200),
        (f"/test_framework/v1/results/{second['id']}/end_calls", 200),
    ]


def test_sdk_takes_url_and_key_from_the_environment(
    sim: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEKURA_API_URL", sim.url)
    monkeypatch.setenv("CEKURA_API_KEY", sim.api_key)
    with Cekura() as client:
        started = client.scenarios.run_pipecat(scenarios=entries(110))
        result = client.results.wait(started["id"], poll_interval=0, timeout=5)
    assert result["success_runs_count"] == 1
    assert [r.status for r in sim.requests] == [200, 200]


def test_sdk_sees_every_scripted_verdict(sim: Simulator, sdk: Cekura, clock: FakeClock) -> None:
    started = sdk.scenarios.run_pipecat(scenarios=entries(104, 105, 107, 108, 109))
    clock.now += 10
    result = sdk.results.get(started["id"])
    check("result.schema.json", result)
    rubric, never, reviewed, plain, nothing = runs_of(result)
    assert rubric["success"] is False
    assert all(m.get("passed", True) for m in rubric["evaluation"]["metrics"])
    assert rubric["rubric"][0]["passed"] is False
    assert rubric["rubric"][0]["conditions"] == "value lte 1500"
    assert (never["status"], never["success"]) == ("completed", False)
    assert never["error_message"] and never["expected_outcome"] == {}
    assert never["evaluation"]["metrics"] == []
    assert reviewed["is_reviewed"] is True and reviewed["success"] is True
    assert reviewed["evaluation_status"] == "reviewed_success"
    assert isinstance(plain["expected_outcome"], str)
    assert nothing["success"] is True and nothing["expected_outcome"] == {}
    assert nothing["evaluation"]["metrics"] == []


def test_sdk_reads_legacy_metrics_on_v1(clock: FakeClock) -> None:
    with Simulator(SCRIPTS, clock=clock, v1_reads="legacy") as sim:
        with Cekura(api_key=sim.api_key, base_url=sim.url) as sdk:
            started = sdk.scenarios.run_pipecat(scenarios=entries(101, 102))
            clock.now += 10
            legacy = sdk.results.get(started["id"])
        v2 = httpx.get(
            f"{sim.url}/test_framework/v2/results/{started['id']}/",
            headers={"X-CEKURA-API-KEY": sim.api_key},
        ).json()
    check("result.schema.json", legacy)
    check("result.schema.json", v2)
    for run in runs_of(legacy):
        for metric in run["evaluation"]["metrics"]:
            kind = "numeric" if metric["type"] == "numeric" else "legacyBinary"
            check_metric(kind, metric)
    assert any("score_normalized" in m for m in runs_of(legacy)[0]["evaluation"]["metrics"])
    for run in runs_of(v2):
        for metric in run["evaluation"]["metrics"]:
            if metric.get("eval_type") == "binary":
                check_metric("canonicalBinary", metric)
    failed = [m for m in runs_of(legacy)[1]["evaluation"]["metrics"] if m["score"] == 0]
    assert [m["name"] for m in failed] == ["Respects opening hours"]


def test_sdk_gets_404_when_v1_reads_are_removed(clock: FakeClock) -> None:
    with (
        Simulator(SCRIPTS, clock=clock, v1_reads="removed") as sim,
        Cekura(api_key=sim.api_key, base_url=sim.url) as sdk,
    ):
        started = sdk.scenarios.run_pipecat(scenarios=entries(101))
        with pytest.raises(NotFoundError):
            sdk.results.get(started["id"])
        with pytest.raises(NotFoundError):
            sdk.results.get_runs([started["runs"][0]["id"]])
        assert sdk.results.end_calls(started["id"]) == {"ended": [started["runs"][0]["id"]]}


@pytest.mark.parametrize(
    ("mode", "errors"),
    [
        ("entry", {"scenarios[1].scenario": ['Invalid pk "999" - object does not exist.']}),
        ("field", {"scenarios": ['Invalid pk "999" - object does not exist.']}),
    ],
)
def test_sdk_sees_the_400_for_an_unknown_scenario(
    clock: FakeClock, mode: Any, errors: dict[str, list[str]]
) -> None:
    with (
        Simulator(SCRIPTS, clock=clock, unknown_scenario_400=mode) as sim,
        Cekura(api_key=sim.api_key, base_url=sim.url) as sdk,
    ):
        with pytest.raises(APIError) as info:
            sdk.scenarios.run_pipecat(scenarios=entries(101, 999))
        assert sim.runs() == []
    assert info.value.status_code == 400
    assert info.value.response_body == errors


# -- the CLI ----------------------------------------------------------------------------------


def cli(sim: Simulator | Standalone, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``cekura ARGS`` in a subprocess whose only Cekura settings point at the simulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CEKURA_") and key != "HOME"
    }
    env.update(
        HOME=str(home),  # no ~/.cekura config: no OAuth token, no other API URL
        CEKURA_API_URL=sim.url,
        CEKURA_API_KEY=sim.api_key,
        COLUMNS="200",
        NO_COLOR="1",
    )
    return subprocess.run(
        [sys.executable, "-m", "cekura.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_run_start_pipecat_wait_status_and_result(sim: Simulator, tmp_path: Path) -> None:
    started = cli(
        sim,
        tmp_path,
        "run", "start", "--agent-id", str(AGENT), "--scenario-ids", "110,110",
        "--mode", "pipecat", "--name", "nightly", "--wait", "--fail-on-threshold", "1.0",
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Run started — result ID: 5001" in started.stdout
    assert "All 2 runs passed." in started.stdout
    status = cli(sim, tmp_path, "run", "status", "5001")
    assert status.returncode == 0, status.stderr
    assert "Status: completed" in status.stdout
    assert "Total: 2  Passed: 2  Failed: 0" in status.stdout
    assert "Pass Rate: 100.0%" in status.stdout
    got = cli(sim, tmp_path, "results", "get", "5001", "--format", "json")
    assert got.returncode == 0, got.stderr
    result = json.loads(got.stdout)
    check("result.schema.json", result)
    assert result["name"] == "nightly" and result["completed_runs_count"] == 2
    post = sim.requests_to("POST", "run_scenarios_pipecat_v2")[0]
    assert post.path == "/test_framework/v1/scenarios-external/run_scenarios_pipecat_v2"
    assert post.body == {
        "agent_id": AGENT,
        "frequency": 1,
        "scenarios": [110, 110],
        "name": "nightly",
    }
    assert post.headers["x-client-source"] == "cli"
    assert "sim-key" not in started.stdout + started.stderr


def test_cli_runs_and_end_calls(sim: Simulator, sdk: Cekura, tmp_path: Path) -> None:
    started = sdk.scenarios.run_pipecat(scenarios=entries(103, 110))
    stuck, done = (r["id"] for r in started["runs"])
    bulk = cli(sim, tmp_path, "runs", "bulk", "--ids", f"{stuck}, {done}", "-f", "json")
    assert bulk.returncode == 0, bulk.stderr
    check("bulk-runs.schema.json", json.loads(bulk.stdout))
    ended = cli(sim, tmp_path, "runs", "end-call", str(stuck))
    assert ended.returncode == 0, ended.stderr
    assert f"Call for run {stuck} ended." in ended.stdout
    again = cli(sim, tmp_path, "results", "end-calls", str(started["id"]), "-f", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"ended": []}
    one = cli(sim, tmp_path, "runs", "get", str(stuck), "-f", "json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["status"] == "cancelled"
    listed = cli(sim, tmp_path, "run", "list", "--agent-id", "1", "-f", "json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["count"] == 1 and page["results"][0]["id"] == started["id"]
    assert [r.status for r in sim.requests] == [200] * len(sim.requests)


def test_cli_reports_an_unknown_result_in_one_line(sim: Simulator, tmp_path: Path) -> None:
    missing = cli(sim, tmp_path, "run", "status", "4242")
    assert missing.returncode == 2
    assert "Error:" in missing.stderr and "Traceback" not in missing.stderr


# -- the standalone server ----------------------------------------------------------------


@dataclass
class Standalone:
    """``python -m pytest_cekura_pipecat.simulator`` in its own process (what users run)."""

    url: str
    api_key: str = "sim-key"


@pytest.fixture
def standalone() -> Iterator[Standalone]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_cekura_pipecat.simulator", "--port", "0",
         "--default-outcome", "pass", "--default-seconds", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "cekura simulator listening on http://127.0.0.1:" in line, line
        yield Standalone(line.split(" on ", 1)[1].split()[0])
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_official_sdk_and_cli_against_the_standalone_server(
    standalone: Standalone, tmp_path: Path
) -> None:
    with Cekura(api_key=standalone.api_key, base_url=standalone.url) as client:
        started = client.scenarios.run_pipecat(scenarios=entries(201, 202))
        check("start-response.schema.json", started)
        final = client.results.wait(started["id"], poll_interval=0.1, timeout=10)
        check("result.schema.json", final)
        run_ids = [r["id"] for r in runs_of(final)]
        assert final["success_runs_count"] == 2
        check("bulk-runs.schema.json", client.results.get_runs(run_ids))
        client.results.end_calls(started["id"])
        client.runs.end_call(run_ids[0])
    got = cli(standalone, tmp_path, "results", "get", str(started["id"]), "--format", "json")
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout)["id"] == started["id"]
    status = cli(standalone, tmp_path, "run", "status", str(started["id"]))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Passed: 2" in status.stdout


# -- the result's end, as the official tools wait for it (issue 29) ---------------------------


def test_sdk_wait_returns_once_the_slowest_run_ended(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 runs of 1 s, 30 s and 30 s: ``results.wait()`` returns after about 30 s (on the
    fake clock, which the SDK's own sleep advances), not after the first run's 1 s."""
    from types import SimpleNamespace

    import cekura.resources.results as sdk_results

    def sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(sdk_results, "time", SimpleNamespace(sleep=sleep))
    scripts = [ScenarioScript(1, "Quick", "pass", 1), ScenarioScript(2, "Slow", "pass", 30)]
    with (
        Simulator(scripts, clock=clock) as sim,
        Cekura(api_key=sim.api_key, base_url=sim.url) as client,
    ):
        started = client.scenarios.run_pipecat(scenarios=entries(1, 2, 2))
        fired = clock.now
        final = client.results.wait(started["id"], poll_interval=1, timeout=300)
    check("result.schema.json", final)
    assert clock.now - fired == pytest.approx(30, abs=1)
    assert final["status"] == "completed"
    assert (final["total_runs_count"], final["success_runs_count"]) == (3, 3)
    assert final["ai_summary_status"] == "pending"  # written after the end


@pytest.mark.slow
def test_cli_wait_passes_an_all_pass_batch_of_uneven_runs(tmp_path: Path) -> None:
    """The CLI's ``--wait`` (its SDK's wait, every 5 s) on runs of 0 s and 2 s: it waits for
    the slow runs and exits 0, where a result that ended with its first run made it exit 1."""
    scripts = [ScenarioScript(1, "Quick", "pass", 0), ScenarioScript(2, "Slow", "pass", 2)]
    with Simulator(scripts) as sim:
        started = cli(
            sim,
            tmp_path,
            "run", "start", "--agent-id", str(AGENT), "--scenario-ids", "1,2,2",
            "--mode", "pipecat", "--wait", "--fail-on-threshold", "1.0",
        )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert "All 3 runs passed." in started.stdout

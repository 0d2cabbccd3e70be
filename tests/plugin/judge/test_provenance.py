"""Issue 32, item 1: provenance on every case and run (the agent version, the scenario's
version and metric hash, the plugin and API versions, commit and branch) in the JSON report
and JUnit, and ``evaluator_changed``: a case that passed in the baseline and fails now under
another scenario version or other metric definitions. Suites run against the local server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import API_KEY, Suite

import pytest_cekura_pipecat
from pytest_cekura_pipecat._api.catalogue import Evaluator, Scenario
from pytest_cekura_pipecat._api.models import Result
from pytest_cekura_pipecat._api.run import CekuraRun
from pytest_cekura_pipecat._config.case import Case
from pytest_cekura_pipecat._fire.plan import Plan, plan_from_json, plan_to_json
from pytest_cekura_pipecat._judge.gating import Baseline, gate, load_baseline
from pytest_cekura_pipecat._report.record import Provenance, RunRecord, junit_properties
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

SCHEMA = json.loads(
    (Path(pytest_cekura_pipecat.__file__).parent / "report.schema.json").read_text(encoding="utf-8")
)

CASES = """
pipecat_room_url = "https://acme.daily.co/room-abc"

[[case]]
name = "books-a-table"
scenario = 101

[[case]]
name = "opening-hours"
scenario = 104
"""


def _scripts(outcome: str, version: str, metrics: tuple[int, ...] = (1, 2)) -> list[ScenarioScript]:
    return [
        ScenarioScript(
            101,
            "Books a table",
            outcome,  # type: ignore[arg-type]
            0.1,
            version=version,
            metrics=metrics,
            agent_version="7",
        ),
        ScenarioScript(104, "Opening hours", "pass", 0.1, version="v1"),
    ]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """The baseline's server: scenario 101 at version v1, and it passes."""
    with Simulator(_scripts("pass", "v1"), api_key=API_KEY) as simulator:
        yield simulator


def _now(outcome: str, version: str, metrics: tuple[int, ...] = (1, 2)) -> Simulator:
    """The server of the session under test: 101 plays ``outcome`` at ``version``."""
    return Simulator(_scripts(outcome, version, metrics), api_key=API_KEY)


def _baseline(suite: Suite) -> dict[str, Any]:
    suite.toml(CASES)
    suite.run("-n0", "--cekura-report=base.json").assert_outcomes(passed=2)
    base: dict[str, Any] = json.loads((suite.pytester.path / "base.json").read_text())
    return base


def _case(document: dict[str, Any], name: str) -> dict[str, Any]:
    case: dict[str, Any] = next(c for c in document["cases"] if c["name"] == name)
    return case


@pytest.mark.parametrize("processes", [("-n0",), ("-n", "2")], ids=["single", "xdist"])
def test_evaluator_changed_is_apart_and_does_not_block(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, processes: tuple[str, ...]
) -> None:
    base = _baseline(suite)
    jsonschema.validate(base, SCHEMA)
    before = _case(base, "books-a-table")
    assert before["scenario_version"] == "v1"
    assert len(before["metrics_hash"]) == 12
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(suite.pytester.path / "step.md"))
    with _now("fail", "v2") as now:
        result = suite.run(
            *processes,
            f"--cekura-api-url={now.url}",
            "--cekura-baseline=base.json",
            "--cekura-report=now.json",
            "--cekura-pr-comment=comment.md",
        )
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*baseline: 0 new failure(s), 0 known failure(s), 0 fixed*",
            "*baseline: 1 failure(s) under a changed evaluator *: books-a-table (xfailed)*",
        ]
    )
    report = json.loads((suite.pytester.path / "now.json").read_text())
    jsonschema.validate(report, SCHEMA)
    case = _case(report, "books-a-table")
    assert case["baseline"] == "evaluator_changed"
    assert case["scenario_version"] == "v2"
    assert case["metrics_hash"] == before["metrics_hash"]  # the same metrics
    assert [run["agent_version"] for run in case["runs"]] == ["7"]
    assert report["gate"] == {
        "new": 0,
        "known": 0,
        "fixed": 0,
        "evaluator_changed": 1,
        "quarantined": 0,
    }
    assert report["plugin_version"] == pytest_cekura_pipecat.__version__
    assert report["api_version"] == "v1"
    step = (suite.pytester.path / "step.md").read_text()
    assert "1 failure(s) under a changed evaluator" in step
    assert "- Evaluator changed: <code>books-a-table</code>" in step
    comment = (suite.pytester.path / "comment.md").read_text()
    assert "Evaluator changed (1)" in comment
    assert "New failures (1)" not in comment
    props = dict(suite.properties("books-a-table"))
    assert props["cekura_scenario_version"] == "v2"
    assert props["cekura_metrics_hash"] == before["metrics_hash"]
    assert props["cekura_agent_version"] == "7"
    assert props["cekura_plugin_version"] == pytest_cekura_pipecat.__version__
    assert props["cekura_api_version"] == "v1"


def test_evaluator_changed_blocks_when_asked(suite: Suite) -> None:
    _baseline(suite)
    with _now("fail", "v2") as now:
        flag = suite.run(
            "-n0",
            f"--cekura-api-url={now.url}",
            "--cekura-baseline=base.json",
            "--cekura-evaluator-changed-blocks",
            "--cekura-report=now.json",
        )
        flag.assert_outcomes(passed=1, failed=1)
        assert flag.ret == pytest.ExitCode.TESTS_FAILED
        flag.stdout.fnmatch_lines(
            ["*evaluator changed (scenario version v1 -> v2) since the baseline *base.json*"]
        )
        report = json.loads((suite.pytester.path / "now.json").read_text())
        jsonschema.validate(report, SCHEMA)
        assert _case(report, "books-a-table")["baseline"] == "evaluator_changed"
        assert report["gate"]["evaluator_changed"] == 1
        ini = suite.pytester.path / "tox.ini"
        ini.write_text(ini.read_text() + "\ncekura_evaluator_changed_blocks = true\n")
        by_ini = suite.run("-n0", f"--cekura-api-url={now.url}", "--cekura-baseline=base.json")
        by_ini.assert_outcomes(passed=1, failed=1)


def test_equal_versions_make_a_blocking_new_failure(suite: Suite) -> None:
    _baseline(suite)
    with _now("fail", "v1") as now:
        result = suite.run(
            "-n0",
            f"--cekura-api-url={now.url}",
            "--cekura-baseline=base.json",
            "--cekura-report=now.json",
        )
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*new failure: it passed in the baseline *base.json*"])
    report = json.loads((suite.pytester.path / "now.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert _case(report, "books-a-table")["baseline"] == "new"
    assert report["gate"]["new"] == 1 and report["gate"]["evaluator_changed"] == 0


def test_changed_metric_definitions_alone_change_the_evaluator(suite: Suite) -> None:
    base = _baseline(suite)
    with _now("fail", "v1", metrics=(1, 2, 3)) as now:
        result = suite.run(
            "-n0",
            f"--cekura-api-url={now.url}",
            "--cekura-baseline=base.json",
            "--cekura-report=now.json",
            "-rx",
        )
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*evaluator changed (metric definitions * -> *)*"])
    case = _case(json.loads((suite.pytester.path / "now.json").read_text()), "books-a-table")
    assert case["metrics_hash"] != _case(base, "books-a-table")["metrics_hash"]


def test_junit_carries_commit_and_branch(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef")
    monkeypatch.setenv("GITHUB_REF_NAME", "feature/x")
    monkeypatch.delenv("GITHUB_HEAD_REF", raising=False)
    suite.toml(CASES)
    suite.run("-n0", "--cekura-no-annotations").assert_outcomes(passed=2)
    props = dict(suite.properties("books-a-table"))
    assert props["cekura_commit"] == "0123456789abcdef"
    assert props["cekura_branch"] == "feature/x"
    assert props["cekura_scenario_version"] == "v1"


# -- pure parts ----------------------------------------------------------------------------


def test_metrics_hash_ignores_order_and_sees_definitions() -> None:
    one = Scenario.model_validate({"id": 1, "metrics": [1, 2], "version": 3})
    same = Scenario.model_validate({"id": 1, "metrics": [2, 1]})
    objects = Scenario.model_validate({"id": 1, "metrics": [{"id": 1, "description": "a"}]})
    edited = Scenario.model_validate({"id": 1, "metrics": [{"id": 1, "description": "b"}]})
    assert one.evaluator == Evaluator("3", one.metrics_hash)
    assert one.metrics_hash == same.metrics_hash
    assert objects.metrics == edited.metrics == (1,)
    assert objects.metrics_hash != edited.metrics_hash
    assert Scenario.model_validate({"id": 1}).metrics_hash is None


def test_evaluator_change_needs_both_sides_known() -> None:
    v1 = Evaluator("v1", "aaa")
    assert Evaluator("v2", "aaa").changed(v1) == "scenario version v1 -> v2"
    assert Evaluator("v1", "bbb").changed(v1) == "metric definitions aaa -> bbb"
    assert Evaluator("v1", "aaa").changed(v1) is None
    assert Evaluator(None, None).changed(v1) is None
    case = Case("a", 101, "cekura.toml")
    # A baseline written before the report carried evaluators: a plain new failure.
    old = Baseline("base.json", {"a": True})
    assert gate(case, "a", False, old, date.today(), Evaluator("v2")).baseline == "new"
    base = Baseline("base.json", {"a": True}, evaluators={"a": v1})
    changed = gate(case, "a", False, base, date.today(), Evaluator("v2", "aaa"))
    assert changed.baseline == "evaluator_changed" and changed.excuse is not None
    assert gate(case, "a", False, base, date.today(), None).baseline == "new"
    assert gate(case, "a", True, base, date.today(), Evaluator("v2")).baseline is None
    blocks = Baseline("base.json", {"a": True}, evaluators={"a": v1}, evaluator_blocks=True)
    blocking = gate(case, "a", False, blocks, date.today(), Evaluator("v2", "aaa"))
    assert blocking.excuse is None and blocking.note is not None


def test_baseline_reads_each_case_evaluator(tmp_path: Path) -> None:
    path = tmp_path / "base.json"
    cases = [
        {"nodeid": "a", "outcome": "passed", "scenario_version": "v1", "metrics_hash": "h"},
        {"nodeid": "b", "outcome": "passed"},
    ]
    path.write_text(json.dumps({"schema_version": 2, "cases": cases}))
    baseline = load_baseline(str(path))
    assert baseline.evaluators == {"a": Evaluator("v1", "h")}


def test_agent_version_from_the_run_else_its_result() -> None:
    result = Result.model_validate(
        {
            "id": 9,
            "status": "completed",
            "agent_version": 12,
            "runs": [
                {"id": 1, "status": "completed"},
                {"id": 2, "status": "completed", "agent_version": "v3"},
            ],
        }
    )
    runs = [
        CekuraRun.from_api(r, 9, {}, None, agent_version=result.agent_version) for r in result.runs
    ]
    assert [r.agent_version for r in runs] == ["12", "v3"]


def test_junit_provenance_once_per_case() -> None:
    run = RunRecord(1, 9, "completed", True, "passed", scenario_id=101, agent_version="7")
    props = junit_properties(
        [run, run], indexed=True, provenance=Provenance("v2", "abc", "0.1.0", "v1", None, "main")
    )
    names = [name for name, _ in props]
    assert names.count("cekura_agent_version") == 2
    assert "cekura_run_2_agent_version" in names
    assert names.count("cekura_scenario_version") == 1
    assert "cekura_commit" not in names
    assert ("cekura_branch", "main") in props


def test_the_plan_carries_the_evaluators_between_processes() -> None:
    # An xdist worker that did not fire reads them from the firing worker's plan.
    plan = Plan(1.0, evaluators={101: Evaluator("v2", "abc"), 104: Evaluator(None, None)})
    assert plan_from_json(plan_to_json(plan)).evaluators == plan.evaluators

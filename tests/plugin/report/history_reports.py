"""Five fixture reports of one suite across CI runs, valid against ``report.schema.json``:
``books-a-table`` passes, fails, passes, cannot be evaluated (an infra error) and passes;
``opening-hours`` always passes; ``late-booking`` always fails."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from pytest_cekura_pipecat import report as report_cli
from pytest_cekura_pipecat._report.document import Report
from pytest_cekura_pipecat._report.record import CaseRecord

SCHEMA = json.loads(
    resources.files("pytest_cekura_pipecat").joinpath("report.schema.json").read_text()
)
COMMITS = ["c0ffee01", "c0ffee02", "c0ffee03", "c0ffee04", "c0ffee05"]
BOOKS = ["pass", "fail", "pass", "infra", "pass"]
SCORES = {"pass": 92.0, "fail": 40.0, "infra": None}
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def run(kind: str, run_id: int, explanation: str = "") -> dict[str, Any]:
    verdict = {"pass": "passed", "fail": "failed", "infra": "error"}[kind]
    failed = [{"name": "Books correctly", "explanation": [explanation]}] if kind == "fail" else []
    return {
        "run_id": run_id,
        "result_id": run_id,
        "status": "failed" if kind == "infra" else "completed",
        "success": kind == "pass",
        "verdict": verdict,
        "score": SCORES[kind],
        "failed_metrics": failed,
        "error_message": "Bot did not join the room" if kind == "infra" else "",
        "duration": 30.0,
        "dashboard_url": f"https://dashboard.cekura.ai/runs/{run_id}",
    }


def case(name: str, scenario: int, kind: str, run_id: int, explanation: str = "") -> dict[str, Any]:
    verdict = {"pass": "passed", "fail": "failed", "infra": "error"}[kind]
    outcome = {"pass": "passed", "fail": "failed", "infra": "error"}[kind]
    reason = {"pass": "", "fail": "expected outcome: score 40/100", "infra": "not evaluated"}
    return {
        "name": name,
        "nodeid": f"cekura.toml::{name}",
        "path": "cekura.toml",
        "line": scenario - 99,
        "scenario": scenario,
        "agent": 7,
        "scenario_name": f"Scenario {scenario}",
        "verdict": verdict,
        "outcome": outcome,
        "reason": reason[kind],
        "failure": reason[kind],
        "rerun": 0,
        "fired": 1,
        "duration": 30.0,
        "dashboard_url": f"https://dashboard.cekura.ai/runs/{run_id}",
        "runs": [run(kind, run_id, explanation)],
    }


def report(session: int, explanation: str = "the agent said no") -> dict[str, Any]:
    """The report of CI run ``session`` (0-4)."""
    base = 100 * session
    cases = [
        case("books-a-table", 101, BOOKS[session], base + 1, explanation),
        case("late-booking", 102, "fail", base + 2, explanation),
        case("opening-hours", 104, "pass", base + 3),
    ]
    document = Report(
        cases=tuple(CaseRecord.from_json(c) for c in cases),
        plugin_version="0.0.0",
        api_url="https://api.cekura.ai",
        simulated=False,
        provenance={
            "ci": "github",
            "commit": COMMITS[session],
            "branch": "main",
            "run_url": f"https://github.com/acme/bot/actions/runs/{session + 1}",
            "job": "evals",
            "attempt": 1,
        },
    ).to_json()
    jsonschema.validate(document, SCHEMA)
    return document


def write_reports(directory: Any) -> list[str]:
    paths = []
    for session in range(5):
        path = directory / f"report-{session}.json"
        path.write_text(json.dumps(report(session)), encoding="utf-8")
        paths.append(str(path))
    return paths


SUITE = """
pipecat_room_url = "https://acme.daily.co/r"

[[case]]
name = "books-a-table"
scenario = 101

[[case]]
name = "late-booking"
scenario = 102

[[case]]
name = "opening-hours"
scenario = 104
"""


def folded(tmp_path: Path) -> Path:
    history = tmp_path / "history.jsonl"
    assert report_cli.main(["history", str(history), *write_reports(tmp_path)]) == 0
    return history

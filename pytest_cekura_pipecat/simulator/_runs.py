"""Results and runs: creation, the time-driven life cycle, and their JSON shapes.

A run stores only when it was created; its status is derived from the clock each time it
is served, so the simulator needs no background worker and no per-tick work.
The store is not thread-safe on its own: the simulator calls it under its lock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._model import ScenarioScript, Variants

TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled"})
_NOT_STARTED = frozenset({"pending", "in_queue"})
_TERMINAL_BY_OUTCOME = {
    "pass": "completed",
    "fail": "completed",
    "error": "failed",
    "timeout": "timeout",
    "cancelled": "cancelled",
}
_DEFAULT_ERROR = {
    "error": "Bot did not join the room",
    "timeout": "Run timed out: the call exceeded its maximum duration",
    "cancelled": "Run was cancelled",
}
_ENDED_REASON = {
    "pass": "testing_agent_ended_call",
    "fail": "testing_agent_ended_call",
    "error": "error",
    "timeout": "max_duration_exceeded",
    "cancelled": "cancelled",
}
_PASSING_METRIC = "Polite and professional"
FIRST_RUN_ID = 90001
FIRST_RESULT_ID = 5001


@dataclass
class Run:
    id: int
    result_id: int
    script: ScenarioScript
    created: float  # on the simulator's clock
    created_wall: float  # time.time(), only for the timestamps served
    ended_at: float | None = None  # clock time an end_call(s) request stopped it

    def status(self, now: float) -> str:
        """Canonical status (``cancelled`` spelling) at clock time ``now``."""
        if self.ended_at is not None:
            return "cancelled"
        return _phase(self.script, now - self.created)

    def elapsed(self, now: float) -> float:
        if self.ended_at is not None:
            return max(0.0, self.ended_at - self.created)
        elapsed = max(0.0, now - self.created)
        if self.status(now) in TERMINAL:
            return min(elapsed, self.script.seconds)
        return elapsed


@dataclass
class Result:
    id: int
    agent: int
    created_wall: float
    runs: list[Run] = field(default_factory=list)


def _phase(script: ScenarioScript, elapsed: float) -> str:
    s = script.seconds
    if elapsed < 0.1 * s:
        return "pending"
    if elapsed < 0.2 * s:
        return "in_queue"
    if script.outcome == "stuck":
        return "running"
    if elapsed < 0.8 * s:
        return "running"
    if elapsed < s:
        return "evaluating"
    return _TERMINAL_BY_OUTCOME[script.outcome]


class RunStore:
    """Every result and run the simulator created; ids are never reused, even after clear()."""

    def __init__(self, scripts: dict[int, ScenarioScript], default: ScenarioScript | None) -> None:
        self._scripts = scripts
        self._default = default
        self._results: dict[int, Result] = {}
        self._runs: dict[int, Run] = {}
        self._next_run = FIRST_RUN_ID
        self._next_result = FIRST_RESULT_ID

    def script_for(self, scenario_id: int) -> ScenarioScript | None:
        script = self._scripts.get(scenario_id)
        if script is None and self._default is not None:
            # Cached so a benchmark with one default script does not rebuild it per run.
            script = dataclasses.replace(
                self._default, id=scenario_id, name=f"Scenario {scenario_id}"
            )
            self._scripts[scenario_id] = script
        return script

    def create(self, agent: int, scripts: list[ScenarioScript], now: float, wall: float) -> Result:
        result = Result(id=self._next_result, agent=agent, created_wall=wall)
        self._next_result += 1
        for script in scripts:
            run = Run(
                id=self._next_run,
                result_id=result.id,
                script=script,
                created=now,
                created_wall=wall,
            )
            self._next_run += 1
            result.runs.append(run)
            self._runs[run.id] = run
        self._results[result.id] = result
        return result

    def result(self, result_id: int) -> Result | None:
        return self._results.get(result_id)

    def run(self, run_id: int) -> Run | None:
        return self._runs.get(run_id)

    def all_runs(self) -> list[Run]:
        return list(self._runs.values())

    def clear(self) -> None:
        self._results.clear()
        self._runs.clear()


def end_runs(runs: list[Run], now: float) -> list[int]:
    """Stop every run not yet terminal, as Cekura's end_call(s) does; the ids it stopped."""
    ended = []
    for run in runs:
        if run.status(now) not in TERMINAL:
            run.ended_at = now
            ended.append(run.id)
    return ended


def iso(wall: float) -> str:
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def _mmss(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def scenario_ref(script: ScenarioScript, variants: Variants) -> int | dict[str, Any]:
    if variants.scenario_as_object:
        return {"id": script.id, "name": script.name}
    return script.id


def spell(status: str, variants: Variants) -> str:
    return "canceled" if status == "cancelled" and variants.canceled_spelling else status


def _metric(index: int, name: str, passed: bool) -> dict[str, Any]:
    sentence = (
        f"The agent satisfied '{name}' throughout the call."
        if passed
        else f"The agent did not satisfy '{name}' during the call."
    )
    return {
        "id": index,
        "name": name,
        "eval_type": "binary",
        "passed": passed,
        "explanation": [sentence],
    }


def _verdict_fields(script: ScenarioScript) -> dict[str, Any]:
    """The fields a run carries once it reached its scripted terminal status."""
    outcome = script.outcome
    fields: dict[str, Any] = {"metadata": {"ended_reason": _ENDED_REASON[outcome]}}
    if outcome == "pass":
        fields["success"] = True
        fields["expected_outcome"] = {
            "score": 100,
            "explanation": ["The expected outcome was met."],
            "outcome_alignments": [],
        }
        fields["evaluation"] = {
            "metrics": [_metric(1, "Task completed", True), _metric(2, _PASSING_METRIC, True)]
        }
    elif outcome == "fail":
        fields["success"] = False
        fields["expected_outcome"] = {
            "score": 40,
            "explanation": list(script.reasons)
            or ["The agent did not achieve the expected outcome."],
            "outcome_alignments": [],
        }
        metrics = [_metric(i, name, False) for i, name in enumerate(script.failed_metrics, start=1)]
        metrics.append(_metric(len(metrics) + 1, _PASSING_METRIC, True))
        fields["evaluation"] = {"metrics": metrics}
    else:
        fields["error_message"] = "; ".join(script.reasons) or _DEFAULT_ERROR[outcome]
    return fields


def render_run(run: Run, now: float, variants: Variants) -> dict[str, Any]:
    """The run as ``GET results/{id}/`` serves it."""
    script = run.script
    status = run.status(now)
    elapsed = run.elapsed(now)
    started = elapsed >= 0.2 * script.seconds and status not in _NOT_STARTED
    data: dict[str, Any] = {
        "id": run.id,
        "result": run.result_id,
        "status": spell(status, variants),
        "success": None,
        "scenario": scenario_ref(script, variants),
        "scenario_name": script.name,
        "expected_outcome": {},
        "evaluation": {"metrics": []},
        "error_message": "",
        "metadata": {"ended_reason": None},
        "duration": _mmss(elapsed),
        "timestamp": iso(run.created_wall),
        "executed_at": iso(run.created_wall + 0.2 * script.seconds) if started else None,
        "personality_name": "Normal Male",
    }
    if run.ended_at is not None:
        data["error_message"] = "Call ended by API"
        data["metadata"] = {"ended_reason": "ended_by_api"}
    elif status in TERMINAL:
        data.update(_verdict_fields(script))
    return data


def transcript_turns(script: ScenarioScript) -> list[dict[str, str]]:
    """The transcript as ``{"role", "content"}`` turns, parsed from ``Speaker: text`` lines."""
    if not script.transcript:
        reply = (
            "Of course, let me take care of that."
            if script.outcome == "pass"
            else "Sorry, I cannot do that."
        )
        return [
            {"role": "Testing Agent", "content": f"Hi, I am calling about: {script.name}."},
            {"role": "Main Agent", "content": reply},
            {"role": "Testing Agent", "content": "Thank you, that is all."},
            {"role": "Main Agent", "content": "Goodbye!"},
        ]
    turns: list[dict[str, str]] = []
    for line in script.transcript.splitlines():
        role, sep, content = line.partition(":")
        if sep:
            turns.append({"role": role.strip(), "content": content.strip()})
        elif line.strip():
            turns.append({"role": "", "content": line.strip()})
    return turns


def render_full_run(run: Run, now: float, variants: Variants, base_url: str) -> dict[str, Any]:
    """The run as ``GET runs/bulk/`` serves it: with transcript and recording URL."""
    data = render_run(run, now, variants)
    # Only a call that ran to its end has a conversation to show.
    turns = (
        transcript_turns(run.script)
        if run.status(now) == "completed" and run.ended_at is None
        else []
    )
    data["transcript"] = "\n".join(
        f"{t['role']}: {t['content']}" if t["role"] else t["content"] for t in turns
    )
    data["transcript_object"] = turns
    data["voice_recording_url"] = f"{base_url}/recordings/{run.id}.wav"
    return data


def render_result(result: Result, now: float, variants: Variants) -> dict[str, Any]:
    """The result as ``GET results/{id}/`` (v1 and v2) serves it."""
    rendered = [render_run(run, now, variants) for run in result.runs]
    statuses = [run.status(now) for run in result.runs]
    total = len(rendered)
    success = sum(1 for r in rendered if r["success"] is True)
    failed = sum(
        1
        for r, s in zip(rendered, statuses, strict=True)
        if s in TERMINAL and r["success"] is not True
    )
    if "completed" in statuses:
        status = "completed"
    elif statuses and all(s in TERMINAL for s in statuses):
        # Not in the brief's rule, which would leave an all-error result "running" forever.
        status = "failed"
    elif any(s not in _NOT_STARTED for s in statuses):
        status = "running"
    else:
        status = "pending"
    counts: dict[str, Any] = {
        "total_runs_count": total,
        "success_runs_count": success,
        "failed_runs_count": failed,
    }
    if variants.counts_as_strings:
        counts = {k: str(v) for k, v in counts.items()}
    runs: list[dict[str, Any]] | dict[str, dict[str, Any]]
    runs = rendered if variants.runs_as_list else {str(r["id"]): r for r in rendered}
    return {
        "id": result.id,
        "agent": result.agent,
        "status": status,
        "run_as_text": False,
        "runs": runs,
        **counts,
        "success_rate": round(100.0 * success / total, 2) if total else 0.0,
        "created_at": iso(result.created_wall),
    }


def render_created(result: Result, variants: Variants) -> dict[str, Any]:
    """The result as the start POST answers it: runs as a list, everything pending."""
    return {
        "id": result.id,
        "agent": result.agent,
        "status": "pending",
        "run_as_text": False,
        "runs": [
            {
                "id": run.id,
                "status": "pending",
                "scenario": scenario_ref(run.script, variants),
                "scenario_name": run.script.name,
                "number": None,
                "inbound_number": None,
                "test_profile_data": None,
            }
            for run in result.runs
        ],
        "created_at": iso(result.created_wall),
    }

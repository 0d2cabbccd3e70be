"""Results and runs: creation, the time-driven life cycle, and their JSON shapes.

A run stores only when it was created; its status is derived from the clock each time it
is served, so the simulator needs no background worker and no per-tick work.
The store is not thread-safe on its own: the simulator calls it under its lock.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ._model import ScenarioScript, Variants

MetricFormat = Literal["canonical", "legacy"]

TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled"})
_NOT_STARTED = frozenset({"pending", "in_queue"})
_TERMINAL_BY_OUTCOME = {
    "pass": "completed",
    "fail": "completed",
    "rubric_fail": "completed",
    "never_connected": "completed",
    "evaluated_nothing": "completed",
    "error": "failed",
    "timeout": "timeout",
    "cancelled": "cancelled",
}
_DEFAULT_ERROR = {
    "error": "Bot did not join the room",
    "timeout": "Run timed out: the call exceeded its maximum duration",
    "cancelled": "Run was cancelled",
    "never_connected": "The testing agent could not join the Pipecat room",
}
_ENDED_REASON = {
    "pass": "testing_agent_ended_call",
    "fail": "testing_agent_ended_call",
    "rubric_fail": "testing_agent_ended_call",
    "evaluated_nothing": "testing_agent_ended_call",
    "never_connected": "pipecat_connection_failed",
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
    room_url: str = ""
    token: str | None = None
    mocked_tool_names: tuple[str, ...] = ()

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
    name: str = ""
    mock_tool_names: list[str] | None = None  # as the start body sent it (null: all)


def _phase(script: ScenarioScript, elapsed: float) -> str:
    s = script.seconds
    if elapsed < 0.1 * s:
        return "pending"
    if script.outcome == "pending_forever":
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

    def create(
        self,
        agent: int,
        entries: list[tuple[ScenarioScript, str, str | None]],
        now: float,
        wall: float,
        *,
        name: str = "",
        mock_tool_names: list[str] | None = None,
        mocked: tuple[str, ...] = (),
    ) -> Result:
        """One result with a run per ``(script, room url, token)`` entry."""
        result = Result(
            id=self._next_result,
            agent=agent,
            created_wall=wall,
            name=name or f"Pipecat run {self._next_result}",
            mock_tool_names=mock_tool_names,
        )
        self._next_result += 1
        for script, room_url, token in entries:
            run = Run(
                id=self._next_run,
                result_id=result.id,
                script=script,
                created=now,
                created_wall=wall,
                room_url=room_url,
                token=token,
                mocked_tool_names=mocked,
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

    def all_results(self) -> list[Result]:
        return list(self._results.values())

    def live_rooms(self, now: float) -> set[str]:
        """Room URLs of every run not yet terminal: someone is (or will be) in that room."""
        return {run.room_url for run in self._runs.values() if run.status(now) not in TERMINAL}

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


def _explained(name: str, passed: bool) -> list[str]:
    if passed:
        return [f"The agent satisfied '{name}' throughout the call."]
    return [f"The agent did not satisfy '{name}' during the call."]


def _metric(index: int, name: str, passed: bool, fmt: MetricFormat) -> dict[str, Any]:
    """A binary metric: canonical ``eval_type``/``passed``, or legacy ``type``/``score``."""
    data: dict[str, Any] = {"id": index, "name": name}
    if fmt == "canonical":
        data.update(eval_type="binary", passed=passed)
    else:
        # Both legacy type names are served; "score_normalized" on every other metric.
        data["type"] = "binary_workflow_adherence" if index % 2 else "binary_qualitative"
        data["score"] = 5 if passed else 0
        if index % 2:
            data["score_normalized"] = 1.0 if passed else 0.0
    data["explanation"] = _explained(name, passed)
    return data


def _numeric_metric(index: int, name: str, value: float, fmt: MetricFormat) -> dict[str, Any]:
    data: dict[str, Any] = {"id": index, "name": name, "type": "numeric", "score": value}
    if fmt == "canonical":
        data["eval_type"] = "numeric"
    data["explanation"] = [f"Measured {value:g} for '{name}'."]
    return data


def _enum_metric(index: int, name: str, label: str, fmt: MetricFormat) -> dict[str, Any]:
    data: dict[str, Any] = {"id": index, "name": name, "type": "enum", "enum": label}
    if fmt == "canonical":
        data["eval_type"] = "enum"
    data["value"] = label
    data["explanation"] = [f"'{name}' was classified as {label!r}."]
    return data


_RUBRIC_METRIC = ("Latency (ms)", 2300.0)
_RUBRIC_LIMIT = 1500


def _metrics(
    script: ScenarioScript, failed: tuple[str, ...], fmt: MetricFormat
) -> list[dict[str, Any]]:
    names = [(name, False) for name in failed]
    if script.outcome == "pass" or not failed:
        names.insert(0, ("Task completed", True))
    names.append((_PASSING_METRIC, True))
    metrics = [_metric(i, name, ok, fmt) for i, (name, ok) in enumerate(names, start=1)]
    numeric = script.numeric_metrics
    if script.outcome == "rubric_fail" and not numeric:
        numeric = (_RUBRIC_METRIC,)
    for name, value in numeric:
        metrics.append(_numeric_metric(len(metrics) + 1, name, value, fmt))
    for name, label in script.enum_metrics:
        metrics.append(_enum_metric(len(metrics) + 1, name, label, fmt))
    return metrics


def _outcome(score: float, explanation: list[str]) -> dict[str, Any]:
    return {"score": score, "explanation": explanation, "outcome_alignments": []}


def _verdict_fields(script: ScenarioScript, fmt: MetricFormat) -> dict[str, Any]:
    """The fields a run carries once it reached its scripted terminal status."""
    outcome = script.outcome
    fields: dict[str, Any] = {"metadata": {"ended_reason": _ENDED_REASON.get(outcome)}}
    met = _outcome(100 if script.score is None else script.score, ["The expected outcome was met."])
    if outcome in ("pass", "evaluated_nothing"):
        fields["success"] = True
        if outcome == "pass":
            fields["expected_outcome"] = met
            fields["evaluation"] = {"metrics": _metrics(script, (), fmt)}
    elif outcome == "fail":
        fields["success"] = False
        fields["expected_outcome"] = _outcome(
            40 if script.score is None else script.score,
            list(script.reasons) or ["The agent did not achieve the expected outcome."],
        )
        fields["evaluation"] = {"metrics": _metrics(script, script.failed_metrics, fmt)}
    elif outcome == "rubric_fail":
        fields["success"] = False
        fields["expected_outcome"] = met
        metrics = _metrics(script, (), fmt)
        measured = next(m for m in metrics if m.get("type") == "numeric")
        fields["evaluation"] = {"metrics": metrics}
        fields["rubric"] = [
            {
                "metric_id": measured["id"],
                "metric_name": measured["name"],
                "value": measured["score"],
                "explanation": list(script.reasons)
                or [f"{measured['name']} was {measured['score']:g}, above {_RUBRIC_LIMIT}."],
                "passed": False,
                "conditions": f"value lte {_RUBRIC_LIMIT}",
                "expected_conditions": {"operator": "lte", "value": _RUBRIC_LIMIT},
            }
        ]
    elif outcome == "never_connected":
        fields["success"] = False
        fields["error_message"] = "; ".join(script.reasons) or _DEFAULT_ERROR[outcome]
    else:
        fields["error_message"] = "; ".join(script.reasons) or _DEFAULT_ERROR[outcome]
    if script.review and "success" in fields:
        fields["success"] = script.review == "success"
        fields["is_reviewed"] = True
        fields["evaluation_status"] = f"reviewed_{script.review}"
    elif "success" in fields:
        fields["evaluation_status"] = "success" if fields["success"] else "failure"
    return fields


def _echo(run: Run) -> str:
    """What ``echo_secrets`` leaks: the room and its token, verbatim."""
    return f"joined {run.room_url} with token {run.token}"


def render_run(
    run: Run,
    now: float,
    variants: Variants,
    fmt: MetricFormat = "canonical",
    echo: bool = False,
) -> dict[str, Any]:
    """The run as ``GET results/{id}/`` serves it."""
    script = run.script
    status = run.status(now)
    elapsed = run.elapsed(now)
    started = elapsed >= 0.2 * script.seconds and status not in _NOT_STARTED
    data: dict[str, Any] = {
        "id": run.id,
        "result": run.result_id,
        "result_id": run.result_id,
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
        "is_reviewed": False,
        "evaluation_status": None,
        "mocked_tool_names": list(run.mocked_tool_names),
        "trace_id": "",
    }
    if run.ended_at is not None:
        data["error_message"] = "Call ended by API"
        data["metadata"] = {"ended_reason": "ended_by_api"}
    elif status in TERMINAL:
        data.update(_verdict_fields(script, fmt))
        if script.expected_outcome_as_string:
            explanation = data["expected_outcome"].get("explanation", [])
            data["expected_outcome"] = " ".join(explanation)
        if script.non_finite == "duration":
            data["duration"] = math.inf
        elif script.non_finite == "score":
            data["expected_outcome"] = _outcome(math.nan, ["The score could not be computed."])
    if echo:
        data["error_message"] = "; ".join(m for m in (data["error_message"], _echo(run)) if m)
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


def render_full_run(
    run: Run,
    now: float,
    variants: Variants,
    base_url: str,
    fmt: MetricFormat = "canonical",
    echo: bool = False,
) -> dict[str, Any]:
    """The run as ``GET runs/bulk/`` and ``runs-external/{id}/`` serve it: with transcript."""
    data = render_run(run, now, variants, fmt, echo)
    # Only a call that ran to its end has a conversation to show.
    conversed = (
        run.status(now) == "completed"
        and run.ended_at is None
        and run.script.outcome not in ("never_connected",)
    )
    turns = transcript_turns(run.script) if conversed else []
    if echo:
        turns = [{"role": "Testing Agent", "content": _echo(run)}, *turns]
    data["transcript"] = "\n".join(
        f"{t['role']}: {t['content']}" if t["role"] else t["content"] for t in turns
    )
    data["transcript_object"] = turns
    data["voice_recording_url"] = f"{base_url}/recordings/{run.id}.wav"
    return data


def result_status(result: Result, now: float) -> str:
    statuses = [run.status(now) for run in result.runs]
    orphans = [run for run in result.runs if run.script.outcome == "pending_forever"]
    others = [
        s
        for run, s in zip(result.runs, statuses, strict=True)
        if run.script.outcome != "pending_forever"
    ]
    waited = all(now - run.created >= run.script.seconds for run in orphans)
    if orphans and waited and all(s in TERMINAL for s in others):
        # Cekura gave up on the batch; the orphaned run never moves again.
        return "failed"
    if "completed" in statuses:
        return "completed"
    if statuses and all(s in TERMINAL for s in statuses):
        # Not in the brief's rule, which would leave an all-error result "running" forever.
        return "failed"
    if any(s not in _NOT_STARTED for s in statuses):
        return "running"
    return "pending"


def render_result(
    result: Result,
    now: float,
    variants: Variants,
    fmt: MetricFormat = "canonical",
    echo: bool = False,
    with_runs: bool = True,
) -> dict[str, Any]:
    """The result as ``GET results/{id}/`` (v1 and v2) serves it."""
    rendered = [render_run(run, now, variants, fmt, echo) for run in result.runs]
    statuses = [run.status(now) for run in result.runs]
    total = len(rendered)
    success = sum(1 for r in rendered if r["success"] is True)
    terminal = sum(1 for s in statuses if s in TERMINAL)
    failed = sum(
        1
        for r, s in zip(rendered, statuses, strict=True)
        if s in TERMINAL and r["success"] is not True
    )
    counts: dict[str, Any] = {
        "total_runs_count": total,
        "success_runs_count": success,
        "failed_runs_count": failed,
        "completed_runs_count": terminal,
    }
    if variants.counts_as_strings:
        counts = {k: str(v) for k, v in counts.items()}
    scenario_ids = list(dict.fromkeys(run.script.id for run in result.runs))
    data: dict[str, Any] = {
        "id": result.id,
        "name": result.name,
        "agent": result.agent,
        "status": result_status(result, now),
        "run_as_text": False,
        **counts,
        "success_rate": round(100.0 * success / total, 2) if total else 0.0,
        "total_duration": _mmss(sum(run.elapsed(now) for run in result.runs)),
        "scenarios": scenario_ids,
        "mock_tool_names": result.mock_tool_names,
        "created_at": iso(result.created_wall),
    }
    if with_runs:
        runs: list[dict[str, Any]] | dict[str, dict[str, Any]]
        runs = rendered if variants.runs_as_list else {str(r["id"]): r for r in rendered}
        data["runs"] = runs
    return data


def render_created(result: Result, variants: Variants) -> dict[str, Any]:
    """The result as the start POST answers it: runs as a list, everything pending."""
    return {
        "id": result.id,
        "name": result.name,
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
        "mock_tool_names": result.mock_tool_names,
        "created_at": iso(result.created_wall),
    }

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
_QUEUED = frozenset({"pending", "in_queue", "scaling_up"})
# The default life cycle, as fractions of a script's ``seconds``.
_DEFAULT_PHASES = (
    ("pending", 0.1),
    ("in_queue", 0.05),
    ("scaling_up", 0.05),
    ("in_progress", 0.6),
    ("evaluating", 0.2),
)
_NEVER_ENDS = frozenset({"stuck", "pending_forever"})
_TERMINAL_BY_OUTCOME = {
    "no_verdict": "completed",
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
    "no_verdict": "testing_agent_ended_call",
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

    def landed_at(self) -> float | None:
        """Clock time the run ends for good, its verdict landed (None: never, unless its
        call is ended)."""
        if self.ended_at is not None:
            return self.ended_at
        if self.script.outcome in _NEVER_ENDS:
            return None
        return self.created + self.script.seconds + self.script.verdict_after

    def landed(self, now: float) -> bool:
        """Terminal with its verdict: what a result waits for before it ends."""
        at = self.landed_at()
        return at is not None and now >= at

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


def _phases(script: ScenarioScript) -> tuple[tuple[str, float], ...]:
    if script.phases:
        return script.phases
    return tuple((name, share * script.seconds) for name, share in _DEFAULT_PHASES)


def _phase(script: ScenarioScript, elapsed: float) -> str:
    if script.outcome == "pending_forever":
        return "pending"
    at = 0.0
    for name, length in _phases(script):
        at += length
        if elapsed < at:
            if script.outcome == "stuck" and name not in _QUEUED:
                return "running"
            return name
    if script.outcome == "stuck":
        return "running"
    return _TERMINAL_BY_OUTCOME[script.outcome]


class RunStore:
    """Every result and run the simulator created; ids are never reused, even after clear()."""

    def __init__(self, scripts: dict[int, ScenarioScript], default: ScenarioScript | None) -> None:
        self._scripts = scripts
        self._default = default
        self._listed = frozenset(scripts)  # what a scenario list shows: the scripted ids
        self._results: dict[int, Result] = {}
        self._runs: dict[int, Run] = {}
        self._next_run = FIRST_RUN_ID
        self._next_result = FIRST_RESULT_ID
        self._played: dict[int, int] = {}  # runs created per scenario id with later outcomes

    def script_for(self, scenario_id: int) -> ScenarioScript | None:
        script = self._scripts.get(scenario_id)
        if script is None and self._default is not None:
            # Cached so a benchmark with one default script does not rebuild it per run.
            script = dataclasses.replace(
                self._default, id=scenario_id, name=f"Scenario {scenario_id}"
            )
            self._scripts[scenario_id] = script
        return script

    def listed(self) -> list[ScenarioScript]:
        """The scenarios a list shows: the scripted ones (a default script plays any id, but
        lists none)."""
        return [self._scripts[i] for i in sorted(self._listed)]

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
                script=self._in_turn(script),
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

    def _in_turn(self, script: ScenarioScript) -> ScenarioScript:
        """The script a new run of the scenario plays: its ``then`` outcomes in turn."""
        if not script.then:
            return script
        before = self._played.get(script.id, 0)
        self._played[script.id] = before + 1
        if before == 0:
            return script
        outcome = script.then[min(before, len(script.then)) - 1]
        return dataclasses.replace(script, outcome=outcome, then=(), failed_metrics=())

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
        self._played.clear()
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
    elif outcome == "no_verdict":
        return fields  # completed, success null, nothing evaluated
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
        "agent_version": script.agent_version,
    }
    if run.ended_at is not None:
        data["error_message"] = "Call ended by API"
        data["metadata"] = {"ended_reason": "ended_by_api"}
    elif status in TERMINAL and not run.landed(now):
        # The call is over; its evaluation has not landed yet.
        data["success"] = False if script.early_success == "false" else None
        data["metadata"] = {"ended_reason": _ENDED_REASON.get(script.outcome)}
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


def transcript_turns(script: ScenarioScript) -> list[dict[str, Any]]:
    """The transcript as ``{"role", "content"}`` turns: the script's ``turns``, or parsed
    from ``Speaker: text`` lines."""
    if script.turns:
        return [dict(turn) for turn in script.turns]
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
    turns: list[dict[str, Any]] = []
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


def result_end(result: Result) -> float | None:
    """Clock time the result ends: once every run has ended, its verdict landed (None:
    not foreseeable, a run never ends unless its call is ended). A run that never leaves
    ``pending`` is given up on once every other run ended and its ``seconds`` passed."""
    ends: list[float] = []
    for run in result.runs:
        at = run.landed_at()
        if at is None and run.script.outcome == "pending_forever":
            at = run.created + run.script.seconds
        if at is None:
            return None
        ends.append(at)
    return max(ends) if ends else None


def result_status(result: Result, now: float, early_completed: bool = False) -> str:
    """The result's status: terminal only once every run has ended (Cekura's newer
    statement); ``early_completed``: ``completed`` as soon as any run completed (the older
    reading, still published)."""
    statuses = [run.status(now) for run in result.runs]
    landed = [run.landed(now) for run in result.runs]
    end = result_end(result)
    if end is not None and now >= end:
        return _final_status(result, statuses, landed)
    if early_completed and any(
        s == "completed" and done for s, done in zip(statuses, landed, strict=True)
    ):
        return "completed"
    live = {s for s, done in zip(statuses, landed, strict=True) if not done}
    if not any(done or s not in _QUEUED for s, done in zip(statuses, landed, strict=True)):
        return next(q for q in ("scaling_up", "in_queue", "pending") if q in live)
    if live <= {"evaluating"} | TERMINAL:
        return "evaluating"  # every call is over: only evaluations are left
    return "running"


def _final_status(result: Result, statuses: list[str], landed: list[bool]) -> str:
    if not all(landed):
        return "failed"  # Cekura gave up on a run that never left pending
    if "completed" in statuses:
        return "completed"
    for status in ("cancelled", "timeout"):
        if all(s == status for s in statuses):
            return status
    return "failed"


_SUMMARY_REASON = {
    "fail": "the agent did not achieve the expected outcome",
    "rubric_fail": "a rubric rule did not hold",
    "no_verdict": "the run ended without a verdict",
}


def _failure_reason(run: Run) -> str | None:
    """What Cekura's summary says of a run that did not pass (None: it passed)."""
    script = run.script
    if run.ended_at is not None:
        return "the call was ended by API"
    if script.outcome in ("pass", "evaluated_nothing"):
        return None if script.review != "failure" else "marked failed by a reviewer"
    if script.review == "success":
        return None
    if script.reasons:
        return script.reasons[0]
    if script.outcome == "fail" and script.failed_metrics:
        return f"metric '{script.failed_metrics[0]}' did not pass"
    return _SUMMARY_REASON.get(script.outcome) or _DEFAULT_ERROR.get(script.outcome, "it failed")


def _summary_fields(result: Result, now: float, after: float) -> dict[str, Any]:
    """``ai_summary`` and ``failed_reasons``: written ``after`` seconds after the end."""
    end = result_end(result)
    if end is None or now < end + after:
        return {"ai_summary_status": "pending", "ai_summary": None, "failed_reasons": None}
    failing = [(run, reason) for run in result.runs if (reason := _failure_reason(run))]
    if not failing:
        return {
            "ai_summary_status": "skipped_no_failures",
            "ai_summary": None,
            "failed_reasons": None,
        }
    named = "; ".join(f"{run.script.name} (run {run.id}): {reason}" for run, reason in failing)
    return {
        "ai_summary_status": "completed",
        "ai_summary": f"{len(failing)} of {len(result.runs)} runs did not pass. {named}.",
        "failed_reasons": {str(run.id): [reason] for run, reason in failing},
    }


def render_result(
    result: Result,
    now: float,
    variants: Variants,
    fmt: MetricFormat = "canonical",
    echo: bool = False,
    with_runs: bool = True,
    *,
    summary_after: float = 0.0,
    early_completed: bool = False,
) -> dict[str, Any]:
    """The result as ``GET results/{id}/`` (v1 and v2) serves it."""
    rendered = [render_run(run, now, variants, fmt, echo) for run in result.runs]
    landed = [run.landed(now) for run in result.runs]
    total = len(rendered)
    success = sum(1 for r, done in zip(rendered, landed, strict=True) if done and r["success"])
    ended = sum(landed)
    counts: dict[str, Any] = {
        "total_runs_count": total,
        "success_runs_count": success,
        "failed_runs_count": ended - success,
        "completed_runs_count": ended,
    }
    if variants.counts_as_strings:
        counts = {k: str(v) for k, v in counts.items()}
    scenario_ids = list(dict.fromkeys(run.script.id for run in result.runs))
    data: dict[str, Any] = {
        "id": result.id,
        "name": result.name,
        "agent": result.agent,
        "status": result_status(result, now, early_completed),
        "run_as_text": False,
        **counts,
        "success_rate": round(100.0 * success / total, 2) if total else 0.0,
        "total_duration": _mmss(sum(run.elapsed(now) for run in result.runs)),
        "scenarios": scenario_ids,
        "agent_version": result.runs[0].script.agent_version if result.runs else None,
        "mock_tool_names": result.mock_tool_names,
        "created_at": iso(result.created_wall),
        **_summary_fields(result, now, summary_after),
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

"""One typed record per case, built by one function from its verdict and pytest's report.

A ``CaseRecord`` (with a ``RunRecord`` per run) is what every output renders from: the
terminal table, the JSON report, the step summary, the PR comment, the annotations. It
crosses processes (xdist) and files (the JSON report, ``report merge``) as plain builtins
through ``to_json``/``from_json``, whose shape is a case of ``report.schema.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .._text import plain

if TYPE_CHECKING:
    import pytest

    from .._config.case import Case
    from .._judge.gating import Gating
    from .._judge.verdict import CaseVerdict

_T = TypeVar("_T")
Json = Mapping[str, Any]  # a decoded JSON object, read once at the boundary


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _objects(data: Json, key: str) -> list[Json]:
    """The JSON objects listed under ``key`` (a report edited by hand may hold others)."""
    return [item for item in data.get(key) or () if isinstance(item, Mapping)]


@dataclass(frozen=True)
class FailedMetric:
    name: str
    explanation: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "explanation": list(self.explanation)}

    @classmethod
    def from_json(cls, data: Json) -> FailedMetric:
        return cls(str(data.get("name", "")), tuple(data.get("explanation") or ()))


@dataclass(frozen=True)
class ThresholdResult:
    """A threshold against one run: held, broken or missing, and what was measured."""

    threshold: str
    state: str
    measured: bool | int | float | str | None = None

    def to_json(self) -> dict[str, object]:
        return {"threshold": self.threshold, "state": self.state, "measured": self.measured}

    @classmethod
    def from_json(cls, data: Json) -> ThresholdResult:
        return cls(str(data.get("threshold", "")), str(data.get("state", "")), data.get("measured"))


@dataclass(frozen=True)
class QuarantineRecord:
    """A case's quarantine as it stood on the day of the session."""

    until: str
    reason: str
    owner: str | None = None
    issue: str | None = None
    active: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "until": self.until,
            "reason": self.reason,
            "owner": self.owner,
            "issue": self.issue,
            "active": self.active,
        }

    @classmethod
    def from_json(cls, data: Json) -> QuarantineRecord:
        return cls(
            str(data.get("until", "")),
            str(data.get("reason", "")),
            data.get("owner"),
            data.get("issue"),
            bool(data.get("active")),
        )


@dataclass(frozen=True)
class AdaptiveRecord:
    """Runs an adaptive case planned, fired and saved."""

    planned: int
    fired: int
    saved: int

    def to_json(self) -> dict[str, object]:
        return {"planned": self.planned, "fired": self.fired, "saved": self.saved}

    @classmethod
    def from_json(cls, data: Json) -> AdaptiveRecord:
        return cls(
            int(data.get("planned", 0)), int(data.get("fired", 0)), int(data.get("saved", 0))
        )


@dataclass(frozen=True)
class Artifact:
    """A file of evidence written for a run that did not pass (``--cekura-artifacts``):
    ``kind`` ``recording`` or ``transcript``, its path as the user reads it (relative to
    the directory pytest was invoked in, when inside it), its size in bytes, and whether it
    was cut at the size cap."""

    kind: str
    path: str
    size: int
    truncated: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "size": self.size,
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, data: Json) -> Artifact:
        return cls(
            str(data.get("kind", "")),
            str(data.get("path", "")),
            int(data.get("size") or 0),
            bool(data.get("truncated")),
        )


@dataclass(frozen=True)
class ConfirmRecord:
    """A failing case's confirmation runs (confirm = N): fired, passed, and the verdict:
    ``flaky`` (one passed: it does not block) or ``confirmed`` (it blocks)."""

    fired: int
    passed: int
    verdict: str

    def to_json(self) -> dict[str, object]:
        return {"fired": self.fired, "passed": self.passed, "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: Json) -> ConfirmRecord:
        return cls(
            int(data.get("fired", 0)), int(data.get("passed", 0)), str(data.get("verdict", ""))
        )


@dataclass(frozen=True)
class ComparisonRecord:
    """A case's pass rate against the baseline's (Fisher's exact test, one-sided)."""

    verdict: str  # regression, no change, inconclusive
    p_value: float
    passed: int
    runs: int
    baseline_passed: int
    baseline_runs: int
    errored: tuple[str, ...] = ()  # this session's errored runs, left out

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "p_value": self.p_value,
            "passed": self.passed,
            "runs": self.runs,
            "baseline_passed": self.baseline_passed,
            "baseline_runs": self.baseline_runs,
            "errored": list(self.errored),
        }

    @classmethod
    def from_json(cls, data: Json) -> ComparisonRecord:
        return cls(
            str(data.get("verdict", "")),
            float(data.get("p_value", 1.0)),
            int(data.get("passed", 0)),
            int(data.get("runs", 0)),
            int(data.get("baseline_passed", 0)),
            int(data.get("baseline_runs", 0)),
            tuple(str(e) for e in data.get("errored") or ()),
        )


@dataclass(frozen=True)
class RunRecord:
    """One run of a case: Cekura's ids and status, and the verdict under the case's gate."""

    run_id: int | None
    result_id: int | None
    status: str
    success: bool | None
    verdict: str | None
    score: float | None = None
    failed_metrics: tuple[FailedMetric, ...] = ()
    error_message: str | None = ""
    duration: float | None = None
    dashboard_url: str | None = None
    thresholds: tuple[ThresholdResult, ...] = ()
    ai_summary: str = ""
    failed_reasons: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    # What JUnit shows besides (``junit_properties``): set where the case is judged, not
    # carried by ``to_json`` (the report has no place for them). ``cekura_verdict`` is
    # Cekura's own verdict of the run, before the case's thresholds.
    scenario_id: int | None = None
    cekura_verdict: str | None = None
    recording_url: str | None = field(default=None, repr=False)  # signed links: no repr
    recovered: str = ""
    agent_version: str | None = None  # the version of the agent the run called

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "run_id": self.run_id,
            "result_id": self.result_id,
            "status": self.status,
            "success": self.success,
            "verdict": self.verdict,
            "score": self.score,
            "failed_metrics": [m.to_json() for m in self.failed_metrics],
            "error_message": self.error_message,
            "duration": self.duration,
            "dashboard_url": self.dashboard_url,
        }
        if self.thresholds:
            data["thresholds"] = [t.to_json() for t in self.thresholds]
        if self.ai_summary:
            data["ai_summary"] = self.ai_summary
        if self.failed_reasons:
            data["failed_reasons"] = list(self.failed_reasons)
        if self.artifacts:
            data["artifacts"] = [a.to_json() for a in self.artifacts]
        if self.agent_version is not None:
            data["agent_version"] = self.agent_version
        return data

    @classmethod
    def from_json(cls, data: Json) -> RunRecord:
        return cls(
            run_id=data.get("run_id"),
            result_id=data.get("result_id"),
            status=str(data.get("status", "")),
            success=data.get("success"),
            verdict=data.get("verdict"),
            score=data.get("score"),
            failed_metrics=tuple(
                FailedMetric.from_json(m) for m in data.get("failed_metrics") or ()
            ),
            error_message=data.get("error_message", ""),
            duration=data.get("duration"),
            dashboard_url=data.get("dashboard_url"),
            thresholds=tuple(ThresholdResult.from_json(t) for t in _objects(data, "thresholds")),
            ai_summary=data.get("ai_summary") or "",
            failed_reasons=tuple(data.get("failed_reasons") or ()),
            artifacts=tuple(Artifact.from_json(a) for a in _objects(data, "artifacts")),
            agent_version=_text_or_none(data.get("agent_version")),
        )


@dataclass(frozen=True)
class CaseRecord:
    """A case as every output shows it. ``outcome`` (pytest's final one), ``failure`` and
    ``fired`` are known once the test is over (``Summary`` fills them in); ``notes`` are
    the session's notes riding on the record to the controller (never in the report)."""

    name: str
    nodeid: str
    scenario: int
    path: str | None = None
    line: int | None = None
    agent: int | None = None
    scenario_name: str = ""
    verdict: str | None = None
    outcome: str | None = None
    reason: str = ""
    failure: str = ""
    rerun: int = 0
    fired: int | None = None  # None: not known (a report that did not say)
    runs: tuple[RunRecord, ...] = ()
    baseline: str | None = None
    quarantine: QuarantineRecord | None = None
    adaptive: AdaptiveRecord | None = None
    confirm: ConfirmRecord | None = None
    comparison: ComparisonRecord | None = None
    notes: tuple[str, ...] = ()
    # What the runs of its last attempt cost, estimated from their durations and metrics at
    # the spend pricing (``_fire/credits.py``); None: no run started, or none said how long.
    credits: float | None = None
    # The evaluator that judged it: its scenario's version and metric hash (None: not read).
    scenario_version: str | None = None
    metrics_hash: str | None = None

    @property
    def duration(self) -> float | None:
        """The longest run's duration (repeats run side by side)."""
        known = [r.duration for r in self.runs if r.duration is not None]
        return max(known) if known else None

    @property
    def dashboard_url(self) -> str | None:
        return next((r.dashboard_url for r in self.runs if r.dashboard_url), None)

    @property
    def runs_fired(self) -> int:
        return len(self.runs) if self.fired is None else self.fired

    def with_notes(self, notes: tuple[str, ...]) -> CaseRecord:
        return replace(self, notes=notes)

    def to_json(self) -> dict[str, object]:
        """A case of ``report.schema.json`` (plus ``notes`` while the record travels)."""
        data: dict[str, object] = {
            "name": self.name,
            "nodeid": self.nodeid,
            "path": self.path,
            "line": self.line,
            "scenario": self.scenario,
            "agent": self.agent,
            "scenario_name": self.scenario_name,
            "verdict": self.verdict,
            "outcome": self.outcome,
            "reason": self.reason,
            "failure": self.failure,
            "rerun": self.rerun,
        }
        if self.fired is not None:
            data["fired"] = self.fired
        data["duration"] = self.duration
        data["dashboard_url"] = self.dashboard_url
        data["runs"] = [r.to_json() for r in self.runs]
        if self.scenario_version is not None:
            data["scenario_version"] = self.scenario_version
        if self.metrics_hash is not None:
            data["metrics_hash"] = self.metrics_hash
        if self.baseline is not None:
            data["baseline"] = self.baseline
        if self.quarantine is not None:
            data["quarantine"] = self.quarantine.to_json()
        if self.adaptive is not None:
            data["adaptive"] = self.adaptive.to_json()
        if self.credits is not None:
            data["credits"] = self.credits
        if self.confirm is not None:
            data["confirm"] = self.confirm.to_json()
        if self.comparison is not None:
            data["comparison"] = self.comparison.to_json()
        if self.notes:
            data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_json(cls, data: Json) -> CaseRecord:
        quarantine = data.get("quarantine")
        adaptive = data.get("adaptive")
        return cls(
            name=str(data["name"]),
            nodeid=str(data["nodeid"]),
            scenario=int(data["scenario"]),
            path=data.get("path"),
            line=data.get("line"),
            agent=data.get("agent"),
            scenario_name=data.get("scenario_name") or "",
            verdict=data.get("verdict"),
            outcome=data.get("outcome"),
            reason=data.get("reason") or "",
            failure=data.get("failure") or "",
            rerun=data.get("rerun") or 0,
            fired=data.get("fired"),
            runs=tuple(RunRecord.from_json(r) for r in _objects(data, "runs")),
            baseline=data.get("baseline"),
            quarantine=QuarantineRecord.from_json(quarantine)
            if isinstance(quarantine, Mapping)
            else None,
            adaptive=AdaptiveRecord.from_json(adaptive) if isinstance(adaptive, Mapping) else None,
            confirm=_nested(data, "confirm", ConfirmRecord.from_json),
            comparison=_nested(data, "comparison", ComparisonRecord.from_json),
            notes=tuple(data.get("notes") or ()),
            credits=number(data.get("credits")),
            scenario_version=_text_or_none(data.get("scenario_version")),
            metrics_hash=_text_or_none(data.get("metrics_hash")),
        )


def case_record(
    case: Case,
    nodeid: str,
    verdict: CaseVerdict,
    report: pytest.TestReport,
    *,
    attempt: int,
    gating: Gating,
    credits: float | None = None,
) -> CaseRecord:
    """The record of one attempt at a case: its runs under the case's gate, where it is
    declared (a ``cekura.toml`` line, else the test's location), its gating and, for an
    adaptive case, the runs it saved."""
    path: str | None = None
    line: int | None = None
    if report.location:
        path = report.location[0]
        lineno = report.location[1]
        line = None if lineno is None else lineno + 1
    runs = verdict.runs
    adaptive = None
    if case.adaptive:
        adaptive = AdaptiveRecord(case.repeat, len(runs), max(case.repeat - len(runs), 0))
    return CaseRecord(
        name=case.name,
        nodeid=nodeid,
        scenario=case.scenario,
        path=path,
        line=line,
        agent=case.agent,
        scenario_name=next((r.scenario_name for r in runs if r.scenario_name), ""),
        verdict=verdict.outcome,
        reason=verdict.first_reason,
        rerun=attempt,
        runs=run_records(verdict),
        baseline=gating.baseline,
        quarantine=_quarantine(gating),
        adaptive=adaptive,
        credits=credits,
        scenario_version=gating.evaluator.scenario_version if gating.evaluator else None,
        metrics_hash=gating.evaluator.metrics_hash if gating.evaluator else None,
        confirm=_confirm(gating),
        comparison=_comparison(gating),
    )


def _nested(data: Json, key: str, read: Callable[[Json], _T]) -> _T | None:
    value = data.get(key)
    return read(value) if isinstance(value, Mapping) else None


def _confirm(gating: Gating) -> ConfirmRecord | None:
    c = gating.confirmation
    return None if c is None else ConfirmRecord(c.fired, c.passed, c.verdict)


def _comparison(gating: Gating) -> ComparisonRecord | None:
    if gating.compared is None:
        return None
    c = gating.compared.comparison
    return ComparisonRecord(
        c.verdict,
        c.p_value,
        c.now.passed,
        c.now.runs,
        c.before.passed,
        c.before.runs,
        gating.compared.errored,
    )


def number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (a boolean included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _quarantine(gating: Gating) -> QuarantineRecord | None:
    q = gating.quarantine
    if q is None:
        return None
    return QuarantineRecord(
        q.until.isoformat(), q.reason, q.owner, q.issue, gating.quarantine_active
    )


def run_records(verdict: CaseVerdict) -> tuple[RunRecord, ...]:
    """Each run of the verdict, with its judgement (thresholds) when the case had one."""
    judged: Sequence[Any] = verdict.judged or (None,) * len(verdict.runs)
    return tuple(
        RunRecord(
            run_id=r.run_id,
            result_id=r.result_id,
            status=r.status,
            success=r.success,
            verdict=j.outcome if j is not None else r.verdict,
            score=r.expected_outcome.score,
            failed_metrics=tuple(
                FailedMetric(m.name, tuple(m.explanation)) for m in r.metrics if m.passed is False
            ),
            error_message=r.error_message,
            duration=r.duration,
            dashboard_url=r.dashboard_url,
            thresholds=tuple(
                ThresholdResult.from_json(c.to_json()) for c in (j.checks if j else ())
            ),
            ai_summary=r.ai_summary,
            failed_reasons=tuple(r.failed_reasons),
            scenario_id=r.scenario_id,
            cekura_verdict=r.verdict,
            recording_url=r.recording_url,
            recovered=r.recovered,
            agent_version=r.agent_version,
        )
        for r, j in zip(verdict.runs, judged, strict=True)
    )


@dataclass(frozen=True)
class Provenance:
    """Where a case's verdict comes from, as its JUnit properties say: the evaluator (its
    scenario's version and metric hash), the plugin and Cekura API versions, and the commit
    and branch (None: not known)."""

    scenario_version: str | None = None
    metrics_hash: str | None = None
    plugin_version: str | None = None
    api_version: str | None = None
    commit: str | None = None
    branch: str | None = None

    def properties(self) -> list[tuple[str, object]]:
        values = [
            ("cekura_scenario_version", self.scenario_version),
            ("cekura_metrics_hash", self.metrics_hash),
            ("cekura_plugin_version", self.plugin_version),
            ("cekura_api_version", self.api_version),
            ("cekura_commit", self.commit),
            ("cekura_branch", self.branch),
        ]
        return [(k, plain(v, one_line=True)) for k, v in values if v]


def junit_properties(
    runs: Sequence[RunRecord], indexed: bool = False, provenance: Provenance | None = None
) -> list[tuple[str, object]]:
    """JUnit properties: one set per run, plain strings so they survive pytest-xdist, and
    the case's ``provenance`` once.

    ``indexed`` (a case of several runs) adds each run's set again under names carrying
    its 1-based index (``cekura_run_2_id``), so consumers that map properties by name
    (keeping one value per name) still see every run."""
    props: list[tuple[str, object]] = []
    for index, run in enumerate(runs, 1):
        values: list[tuple[str, str | None]] = [
            ("scenario_id", str(run.scenario_id)),
            ("result_id", "" if run.result_id is None else str(run.result_id)),
            ("run_id", "" if run.run_id is None else str(run.run_id)),
            ("status", run.status),
            ("verdict", run.cekura_verdict),
            ("dashboard_url", run.dashboard_url or None),
            ("recording_url", run.recording_url or None),
            ("recovered", run.recovered or None),
            ("agent_version", run.agent_version or None),
        ]
        # Outside text (a recording link, a status) on one line, capped, inert.
        values = [(k, None if v is None else plain(v, one_line=True)) for k, v in values]
        props.extend((f"cekura_{key}", value) for key, value in values if value is not None)
        if indexed:
            props.extend(
                (f"cekura_run_{index}_{key.removeprefix('run_')}", value)
                for key, value in values
                if value is not None
            )
    if provenance is not None:
        props.extend(provenance.properties())
    return props

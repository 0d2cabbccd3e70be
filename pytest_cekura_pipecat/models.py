"""Pydantic models of Cekura's responses: tolerant, because the public sources disagree.

Every documented variant is accepted (see ``shared/cekura-api.md``): runs as a dict keyed by
run id or as a list, counts as strings, ``scenario`` as an int or an object, ``canceled`` for
``cancelled``, legacy metrics scored 5/0 instead of ``passed``. Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

TERMINAL_STATUSES = frozenset({"completed", "failed", "timeout", "cancelled"})
KNOWN_STATUSES = TERMINAL_STATUSES | {
    "pending",
    "in_queue",
    "scaling_up",
    "running",
    "in_progress",
    "evaluating",
}


def normalize_status(value: object) -> str:
    status = str(value or "pending").strip().lower()
    return "cancelled" if status == "canceled" else status


def _as_text_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list | tuple):
        return [str(item) for item in value if item not in (None, "")]
    return [str(value)]


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


def _none_as_empty(value: object) -> object:
    return "" if value is None else value


class Metric(_ApiModel):
    name: str = ""
    passed: bool | None = None
    explanation: list[str] = Field(default_factory=list)

    _text = field_validator("explanation", mode="before")(_as_text_list)
    _name = field_validator("name", mode="before")(_none_as_empty)

    @model_validator(mode="before")
    @classmethod
    def _legacy_score(cls, data: Any) -> Any:
        # Older runs carry ``type`` + ``score`` (5 pass / 0 fail) instead of ``passed``.
        if isinstance(data, dict) and data.get("passed") is None:
            score = data.get("score")
            kind = data.get("type") or data.get("eval_type")
            if kind == "binary" and isinstance(score, int | float) and not isinstance(score, bool):
                return {**data, "passed": score >= 5}
        return data


class Evaluation(_ApiModel):
    metrics: list[Metric] = Field(default_factory=list)

    @field_validator("metrics", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return value or []


class ExpectedOutcome(_ApiModel):
    score: float | None = None
    explanation: list[str] = Field(default_factory=list)

    _text = field_validator("explanation", mode="before")(_as_text_list)


class Run(_ApiModel):
    id: int
    status: str = "pending"
    success: bool | None = None
    scenario: int | None = None
    scenario_name: str = ""
    expected_outcome: ExpectedOutcome = Field(default_factory=ExpectedOutcome)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    error_message: str = ""
    ended_reason: str = ""
    duration: str | None = None
    transcript: str | None = None
    voice_recording_url: str | None = None

    _status = field_validator("status", mode="before")(normalize_status)

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        scenario = data.get("scenario")
        if isinstance(scenario, dict):
            data["scenario"] = scenario.get("id")
            if not data.get("scenario_name"):
                data["scenario_name"] = scenario.get("name") or ""
        for key in ("expected_outcome", "evaluation"):
            if not isinstance(data.get(key), dict) or not data.get(key):
                data.pop(key, None)
        if isinstance(data.get("success"), str):
            data["success"] = {"true": True, "false": False}.get(data["success"].strip().lower())
        duration = data.get("duration")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            data["duration"] = f"{int(duration) // 60:02d}:{int(duration) % 60:02d}"
        elif duration is not None and not isinstance(duration, str):
            data.pop("duration")
        for key in ("error_message", "scenario_name"):
            if data.get(key) is None:
                data.pop(key, None)
        metadata = data.get("metadata")
        if isinstance(metadata, dict) and metadata.get("ended_reason"):
            data["ended_reason"] = str(metadata["ended_reason"])
        transcript = data.get("transcript")
        if transcript is not None and not isinstance(transcript, str):
            data["transcript"] = str(transcript)
        return data

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _runs_variants(value: Any) -> Any:
    """Runs come as a list, or as a dict keyed by run id (the id may be missing inside)."""
    if isinstance(value, dict):
        runs = []
        for key, run in value.items():
            if isinstance(run, dict) and "id" not in run:
                run = {**run, "id": key}
            runs.append(run)
        return runs
    return value or []


class Result(_ApiModel):
    """A result and its runs. Runs are read one by one: one odd run makes that run
    ``unreadable`` (by id, with the field and the problem), never the whole result."""

    id: int
    status: str = "pending"
    agent: int | None = None
    runs: list[Run] = Field(default_factory=list)
    raw_runs: dict[int, dict[str, Any]] = Field(default_factory=dict)
    unreadable: dict[int, str] = Field(default_factory=dict)

    _status = field_validator("status", mode="before")(normalize_status)

    @model_validator(mode="before")
    @classmethod
    def _read_runs(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        raw = _runs_variants(data.get("runs"))
        if not isinstance(raw, list):
            return data  # the field validation names the problem
        runs: list[Run] = []
        raws: dict[int, dict[str, Any]] = {}
        unreadable: dict[int, str] = {}
        for item in raw:
            try:
                run = Run.model_validate(item)
            except ValidationError as exc:
                raw_id = item.get("id") if isinstance(item, dict) else None
                try:
                    run_id = int(raw_id) if raw_id is not None else None
                except (TypeError, ValueError):
                    run_id = None
                if run_id is not None:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"]) or "(run)"
                    unreadable[run_id] = f"{where}: {first['msg']}"
                continue
            runs.append(run)
            raws[run.id] = item
        return {**data, "runs": runs, "raw_runs": raws, "unreadable": unreadable}


class Agent(_ApiModel):
    id: int | None = None
    project: int | str | None = None

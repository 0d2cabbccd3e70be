"""Pydantic models of Cekura's responses: tolerant, because the public sources disagree.

Every documented variant is accepted (see ``shared/cekura-api.md``): runs as a dict keyed by
run id or as a list, counts as strings, ``scenario`` as an int or an object, ``canceled`` for
``cancelled``, ``success`` as a string, ``expected_outcome`` as a string or an object, binary
metrics in the canonical (``eval_type`` + ``passed``) and the legacy (``type`` ``binary_*`` +
``score`` 5/0) formats, numeric and enum metrics, rubric rules, human review. Unknown fields are
ignored. An absurd value (a duration of Infinity, a NaN score, a list where a flag belongs)
costs that one field, read as unknown, never the run; a run that cannot be read at all costs
that run (``Result.unreadable``), never the result.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
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
REVIEWED_STATUSES = frozenset({"reviewed_success", "reviewed_failure"})
# ``ai_summary_status`` values under which Cekura is still writing its summary.
SUMMARY_PENDING = frozenset({"pending", "in_progress", "running"})


def _bounded_repr() -> reprlib.Repr:
    # Keyword arguments to Repr() arrived in Python 3.12.
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 200, 200
    short.maxlist = short.maxtuple = short.maxdict = 10
    return short


_short = _bounded_repr()


def short_text(value: object) -> str:
    """A container as a short, bounded repr: never deep (no recursion), never huge."""
    return _short.repr(value)


def normalize_status(value: object) -> str:
    status = _text(value).strip().lower() or "pending"
    return "cancelled" if status == "canceled" else status


# Type tuples, not ``int | float`` unions: a union is built anew at every call, and these
# checks run for every field of every run read.
_NUMBER = (int, float)
_NUMBER_OR_TEXT = (int, float, str)
_SEQUENCE = (list, tuple)
_IDENTIFIER = (int, str)


def _text(value: object) -> str:
    """A scalar as text; a container as a short, bounded repr (no recursion into it)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, _NUMBER):  # bool is an int
        return str(value)
    return short_text(value)


def _as_text_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, _SEQUENCE):
        return [_text(item) for item in value if item not in (None, "")]
    return [_text(value)]


def _finite(value: object) -> float | None:
    """A finite number, from a number or a numeric string; anything else is unknown."""
    if value is None or isinstance(value, bool) or not isinstance(value, _NUMBER_OR_TEXT):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _flag(value: object) -> bool | None:
    """``true``/``false`` as a bool, a string or 0/1; anything else is unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _identifier(value: object) -> int | str | None:
    if isinstance(value, bool):
        return None
    return value if isinstance(value, _IDENTIFIER) else None


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _version_text(value: object) -> str | None:
    """A version as text (Cekura may send a number or an object with an id); None when
    it sent none."""
    if isinstance(value, dict):
        value = value.get("version", value.get("id"))
    if value is None or isinstance(value, dict | list):
        return None
    return _text(value).strip() or None


def _to_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, _SEQUENCE) else []


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


class Metric(_ApiModel):
    """One evaluation metric. ``passed`` is None for numeric and enum metrics unless the API
    says; a legacy binary metric (``type`` ``binary_*``) is passed when its score is 5."""

    id: int | str | None = None
    name: str = ""
    type: str = ""
    eval_type: str = ""
    passed: bool | None = None
    score: float | None = None
    score_normalized: float | None = None
    value: Any = None
    enum: Any = None
    explanation: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["id"] = _identifier(data.get("id"))
        for key in ("name", "type", "eval_type"):
            data[key] = _text(data.get(key)).strip()
        data["passed"] = _flag(data.get("passed"))
        data["score"] = _finite(data.get("score"))
        data["score_normalized"] = _finite(data.get("score_normalized"))
        data["explanation"] = _as_text_list(data.get("explanation"))
        if not isinstance(data.get("extra"), dict):
            data["extra"] = {}
        if data["passed"] is None and (data["type"] or data["eval_type"]).startswith("binary"):
            # Legacy binary metrics (notably on v1 reads): score 5 pass / 0 fail, and
            # sometimes score_normalized 1.0 / 0.0.
            if data["score"] is not None:
                data["passed"] = data["score"] >= 5
            elif data["score_normalized"] is not None:
                data["passed"] = data["score_normalized"] >= 1
        return data

    @property
    def kind(self) -> str:
        return self.type or self.eval_type


def _metrics(value: object) -> list[Metric]:
    metrics: list[Metric] = []
    for item in _to_list(value):
        try:
            metrics.append(Metric.model_validate(item))
        except ValidationError:
            continue  # one unreadable metric is not a reason to lose the others
    return metrics


class Evaluation(_ApiModel):
    metrics: list[Metric] = Field(default_factory=list)

    @field_validator("metrics", mode="before")
    @classmethod
    def _readable(cls, value: Any) -> Any:
        return _metrics(value)


class RubricRule(_ApiModel):
    """A rubric rule of a run: ``conditions`` such as ``"value lte 1500"``, ``value`` measured."""

    metric_id: int | str | None = None
    metric_name: str = ""
    value: Any = None
    explanation: list[str] = Field(default_factory=list)
    passed: bool | None = None
    conditions: str = ""
    expected_conditions: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["metric_id"] = _identifier(data.get("metric_id"))
        data["metric_name"] = _text(data.get("metric_name") or data.get("name")).strip()
        data["explanation"] = _as_text_list(data.get("explanation"))
        data["passed"] = _flag(data.get("passed"))
        data["conditions"] = _text(data.get("conditions")).strip()
        if not isinstance(data.get("expected_conditions"), dict):
            data["expected_conditions"] = {}
        return data


def _rubric(value: object) -> list[RubricRule]:
    rules: list[RubricRule] = []
    for item in _to_list(value):
        try:
            rules.append(RubricRule.model_validate(item))
        except ValidationError:
            continue
    return rules


class ExpectedOutcome(_ApiModel):
    """``{"score": 0..100, "explanation": [...]}``; a plain string is the explanation."""

    score: float | None = None
    explanation: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"explanation": _as_text_list(data.strip())}
        if not isinstance(data, dict):
            return {}
        return {
            "score": _finite(data.get("score")),
            "explanation": _as_text_list(data.get("explanation")),
        }


def _duration(value: object) -> str | None:
    """``"MM:SS"`` as sent, or seconds as ``"MM:SS"``; absurd numbers are unknown."""
    if isinstance(value, str):
        return value.strip() or None
    seconds = _finite(value) if isinstance(value, _NUMBER) else None
    if seconds is None or seconds < 0:
        return None
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


class Run(_ApiModel):
    id: int
    status: str = "pending"
    success: bool | None = None
    scenario: int | None = None
    scenario_name: str = ""
    expected_outcome: ExpectedOutcome = Field(default_factory=ExpectedOutcome)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    rubric: list[RubricRule] = Field(default_factory=list)
    error_message: str = ""
    ended_reason: str = ""
    duration: str | None = None
    is_reviewed: bool = False
    evaluation_status: str = ""
    mocked_tool_names: list[str] | None = None
    trace_id: str | None = None
    transcript: str | None = None
    voice_recording_url: str | None = None
    agent_version: str | None = None  # the version of the agent the run called

    _status = field_validator("status", mode="before")(normalize_status)

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        scenario = data.get("scenario")
        if isinstance(scenario, dict):
            if not data.get("scenario_name"):
                data["scenario_name"] = scenario.get("name")
            scenario = scenario.get("id")
        data["scenario"] = _whole_number(scenario)
        for key in ("scenario_name", "error_message", "evaluation_status"):
            data[key] = _text(data.get(key)).strip()
        data["evaluation_status"] = data["evaluation_status"].lower()
        data["success"] = _flag(data.get("success"))
        data["is_reviewed"] = bool(_flag(data.get("is_reviewed")))
        if not isinstance(data.get("expected_outcome"), dict | str):
            data.pop("expected_outcome", None)
        evaluation = data.get("evaluation")
        data["evaluation"] = (
            {"metrics": evaluation.get("metrics")} if isinstance(evaluation, dict) else {}
        )
        data["rubric"] = _rubric(data.get("rubric"))
        data["duration"] = _duration(data.get("duration"))
        metadata = data.get("metadata")
        ended = metadata.get("ended_reason") if isinstance(metadata, dict) else None
        data["ended_reason"] = _text(ended).strip()
        tools = data.get("mocked_tool_names")
        data["mocked_tool_names"] = (
            [_text(t) for t in tools if t is not None] if isinstance(tools, list) else None
        )
        for key in ("trace_id", "transcript", "voice_recording_url"):
            data[key] = _optional_text(data.get(key))
        data["agent_version"] = _version_text(data.get("agent_version"))
        return data

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def evaluated(self) -> bool:
        """The run carries its verdict and the evidence it rests on: a human review, a
        ``success`` backed by an expected outcome, a metric or a rubric rule, or a failure
        to connect (``success`` false with an ``error_message``). A run that
        reads ``completed`` may still be waiting for its evaluation to land (``success``
        null, or false with nothing evaluated yet)."""
        if self.evaluation_status in REVIEWED_STATUSES:
            return True
        if self.success is False and self.error_message:
            return True  # the call never connected: there is nothing to evaluate
        outcome = self.expected_outcome
        return self.success is not None and bool(
            outcome.score is not None
            or outcome.explanation
            or self.evaluation.metrics
            or self.rubric
        )


def _whole_number(value: object) -> int | None:
    number = _finite(value)
    return int(number) if number is not None and number.is_integer() else None


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


def _unreadable_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(run)"
        return f"{where}: {first['msg']}"
    if isinstance(exc, RecursionError):
        return "(run): nested too deeply to read"
    return f"(run): {type(exc).__name__}"


_LIGHT_KEYS = ("id", "status", "scenario", "scenario_name")


def _light(item: Any, settled: Container[int]) -> Any:
    """A run that has not finished, or whose verdict was taken from an earlier read, cut to
    the fields the watcher reads while waiting: a result is polled many times, and neither
    needs its metrics or transcript parsed again."""
    if not isinstance(item, dict):
        return item
    if _whole_number(item.get("id")) not in settled and (
        normalize_status(item.get("status")) in TERMINAL_STATUSES
    ):
        return item
    return {key: item[key] for key in _LIGHT_KEYS if key in item}


_RUN_KEYS = ("run_id", "run", "id")
_REASON_KEYS = ("reason", "reasons", "failed_reason", "message", "explanation", "summary")


def _summary_text(value: object) -> str:
    """``ai_summary`` as text: a string, the text of an object, or a list's items joined."""
    if isinstance(value, dict):
        value = next((value[k] for k in ("summary", "text", "content") if value.get(k)), value)
    if isinstance(value, _SEQUENCE):
        return " ".join(_as_text_list(value)).strip()
    return _text(value).strip()


def _failed_reasons(value: object) -> tuple[dict[int, list[str]], list[str]]:
    """``failed_reasons`` as (reasons by the run they name, reasons that name no run). Its
    shape is not published: a mapping keyed by run id, a list of ``{"run_id", "reason"}``
    objects and a list of strings are read; anything else is kept as text."""
    by_run: dict[int, list[str]] = {}
    general: list[str] = []

    def add(run: object, reason: object) -> None:
        texts = _as_text_list(reason) if isinstance(reason, _SEQUENCE) else [_summary_text(reason)]
        texts = [t.strip() for t in texts if t and t.strip()]
        run_id = _whole_number(run)
        if run_id is not None:
            by_run.setdefault(run_id, []).extend(texts)
        elif run is not None:
            general.extend(f"{_text(run)}: {t}" for t in texts)
        else:
            general.extend(texts)

    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, _SEQUENCE):
        items = value
    else:
        items = [] if value is None else [value]
    for item in items:
        if isinstance(item, tuple):
            add(item[0], item[1])
        elif isinstance(item, dict):
            run = next((item[k] for k in _RUN_KEYS if item.get(k) is not None), None)
            reason = next((item[k] for k in _REASON_KEYS if item.get(k)), None)
            add(run, reason if reason is not None else item)
        else:
            add(None, item)
    return by_run, general


class Result(_ApiModel):
    """A result and its runs. Runs are read one by one: one odd run makes that run
    ``unreadable`` (by id, with the field and the problem), never the whole result. Runs
    named ``settled`` in the validation context (their verdicts already taken) are read
    for their id, status and scenario only.

    ``ai_summary`` and ``failed_reasons`` are Cekura's own account of the failures,
    written after the result ended (``ai_summary_status`` pending, then completed or
    skipped_no_failures)."""

    id: int
    status: str = "pending"
    agent: int | None = None
    runs: list[Run] = Field(default_factory=list)
    ai_summary: str = ""
    ai_summary_status: str = ""
    agent_version: str | None = None  # its runs' unless a run says otherwise
    # Filled by the reader below, from data it already checked: not validated again.
    raw_runs: Annotated[dict[int, dict[str, Any]], SkipValidation] = Field(default_factory=dict)
    unreadable: Annotated[dict[int, str], SkipValidation] = Field(default_factory=dict)
    failed_reasons: Annotated[dict[int, list[str]], SkipValidation] = Field(default_factory=dict)
    general_reasons: Annotated[list[str], SkipValidation] = Field(default_factory=list)
    stated: bool = True  # False: the answer carried no status (then its runs say when it ends)

    _status = field_validator("status", mode="before")(normalize_status)

    @field_validator("agent", mode="before")
    @classmethod
    def _agent(cls, value: Any) -> Any:
        return _whole_number(value) if value is not None else None

    @model_validator(mode="before")
    @classmethod
    def _summary(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        by_run, general = _failed_reasons(data.get("failed_reasons"))
        return {
            **data,
            "ai_summary": _summary_text(data.get("ai_summary")),
            "ai_summary_status": _text(data.get("ai_summary_status")).strip().lower(),
            "agent_version": _version_text(data.get("agent_version")),
            "failed_reasons": by_run,
            "general_reasons": general,
            "stated": data.get("status") not in (None, ""),
        }

    @property
    def ended(self) -> bool:
        """Every run of the result has ended, evaluation included. Both published readings
        are tolerated: a result ends only once every run has (the newer), or it reads
        ``completed`` once any run completed (the older: then its runs must say so too)."""
        all_runs = bool(self.runs) and all(run.terminal for run in self.runs)
        if not self.stated:
            return all_runs
        if self.status not in TERMINAL_STATUSES:
            return False
        return self.status != "completed" or all_runs

    def verdict_ready(self, run: Run) -> bool:
        """Whether ``run``'s verdict may be taken now: it is terminal, and its evaluation
        has landed (it failed to run, it carries its evidence, or its result has ended)."""
        if not run.terminal:
            return False
        return run.status != "completed" or run.evaluated or self.ended

    @property
    def summary_pending(self) -> bool:
        """Cekura is still writing its summary of the failures."""
        return self.ai_summary_status in SUMMARY_PENDING

    def cekura_reasons(self, run_id: int | None) -> tuple[str, tuple[str, ...]]:
        """Cekura's own account of a run that did not pass: the result's summary, and the
        failed reasons that name the run (or name none)."""
        named = self.failed_reasons.get(run_id, []) if run_id is not None else []
        return self.ai_summary, tuple(dict.fromkeys([*named, *self.general_reasons]))

    @model_validator(mode="before")
    @classmethod
    def _read_runs(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        settled = (info.context or {}).get("settled", ())
        raw = _runs_variants(data.get("runs"))
        if not isinstance(raw, list):
            return {**data, "raw_runs": {}, "unreadable": {}}  # the field names the problem
        runs: list[Run] = []
        raws: dict[int, dict[str, Any]] = {}
        unreadable: dict[int, str] = {}
        for item in raw:
            try:
                run = Run.model_validate(_light(item, settled))
            except (ValidationError, RecursionError, TypeError, ValueError) as exc:
                raw_id = item.get("id") if isinstance(item, dict) else None
                run_id = _whole_number(raw_id)
                if run_id is not None:
                    unreadable[run_id] = _unreadable_reason(exc)
                continue
            runs.append(run)
            raws[run.id] = item
        return {**data, "runs": runs, "raw_runs": raws, "unreadable": unreadable}


@dataclass(frozen=True)
class ListedResult:
    """A result as the results list shows it (``GET v2/results/``): its status and run
    counts, what tells the watcher whether the result moved since it was last read; its
    agent, creation time and scenarios, what finds the result of a start request whose
    answer was lost. Fields it cannot read are None (counts may come as strings)."""

    id: int
    status: str
    total: int | None
    success: int | None
    failed: int | None
    completed: int | None
    agent: int | None = None
    created_at: float | None = None  # epoch seconds, on Cekura's clock
    scenarios: frozenset[int] | None = None  # the scenario ids of its runs

    @staticmethod
    def read(item: object) -> ListedResult | None:
        if not isinstance(item, dict):
            return None
        number = _whole_number(item.get("id"))
        if number is None:
            return None
        scenarios = item.get("scenarios")
        ids = None
        if isinstance(scenarios, list):
            ids = frozenset(n for n in map(_whole_number, map(_ref, scenarios)) if n is not None)
        total, success, failed, completed = (
            _whole_number(item.get(f"{name}_runs_count")) for name in _COUNTS
        )
        return ListedResult(
            number,
            normalize_status(item.get("status")) if item.get("status") else "",
            total,
            success,
            failed,
            completed,
            agent=_whole_number(item.get("agent")),
            created_at=_epoch(item.get("created_at")),
            scenarios=ids,
        )

    @property
    def ended(self) -> bool:
        """The list says every run ended: a terminal status, and (when it is ``completed``
        and counts are given) as many runs completed as there are."""
        if self.status not in TERMINAL_STATUSES:
            return False
        if self.status != "completed" or self.total is None or self.completed is None:
            return True
        return self.completed >= self.total


_COUNTS = ("total", "success", "failed", "completed")


class Snapshot(Mapping[str, Any]):
    """A run as Cekura sent it, read-only: held as its JSON text and decoded on first read.

    Between the watcher reading a run and its test reporting, thousands of them wait; as
    nested dicts each would be a dozen objects that every full garbage collection scans,
    and about four times the memory. Data that cannot be written as JSON (a lone surrogate
    in a string) is kept as it is. Its size is known without decoding, so testing it for
    emptiness never decodes."""

    __slots__ = ("_data", "_size", "_text")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data: Mapping[str, Any] | None = None
        self._size = len(data)
        self._text: bytes | str | None = None
        try:
            self._text = pydantic_core.to_json(data)
        except ValueError:
            self._data = MappingProxyType(dict(data))

    @classmethod
    def of_text(cls, text: bytes | str, size: int) -> Snapshot:
        """A snapshot from the JSON text of a mapping of ``size`` keys (as ``text()``
        wrote it): nothing is decoded until read."""
        snapshot = cls.__new__(cls)
        snapshot._data, snapshot._size, snapshot._text = None, size, text
        return snapshot

    @staticmethod
    def text(data: Mapping[str, Any]) -> str:
        """The JSON text of a snapshot (or of any mapping of JSON values), never decoded
        to be written; a lone surrogate is written escaped, as ``json`` reads it back."""
        if isinstance(data, Snapshot) and data._text is not None:
            text = data._text
            return text.decode() if isinstance(text, bytes) else text
        return json.dumps(dict(data))

    def _read(self) -> Mapping[str, Any]:
        data = self._data
        if data is None:
            assert self._text is not None  # one of the two is always set
            data = self._data = MappingProxyType(json.loads(self._text))
        return data

    def __getitem__(self, key: str) -> Any:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"Snapshot({dict(self._read())!r})"


class Agent(_ApiModel):
    id: int | None = None
    project: int | str | None = None


@dataclass(frozen=True)
class RunDetails:
    """What ``runs/bulk`` adds to a finished run: its transcript and recording."""

    run_id: int
    transcript: str | None
    recording_url: str | None
    conversation: str | None = None  # ``transcript_object`` as JSON text; None: absent

    @staticmethod
    def read(item: object) -> RunDetails | None:
        if not isinstance(item, dict):
            return None
        return RunDetails._of(
            item.get("id"),
            item.get("transcript"),
            item.get("voice_recording_url"),
            item.get("transcript_object"),
        )

    @staticmethod
    def _of(
        run_id: object, transcript: object, recording_url: object, turns: object = None
    ) -> RunDetails | None:
        number = _whole_number(run_id)
        if number is None:
            return None
        # Kept as text: a run's dozens of turn dicts are built only when a test reads them.
        conversation = json.dumps(turns) if isinstance(turns, list) else None
        return RunDetails(
            number, _optional_text(transcript), _optional_text(recording_url), conversation
        )

    @staticmethod
    def read_list(body: bytes) -> list[RunDetails | None] | None:
        """``runs/bulk``'s usual answer (a list of runs) read straight from its bytes, with
        only the fields read turned into Python objects: a full run's metrics are never
        built, and its ``transcript_object`` is turned back into text at once, so a 50-run
        answer leaves the garbage collector nothing to walk. None when the body is anything else
        (a page object, an item that is not an object, text that is not JSON): the caller
        reads it as JSON, tolerantly."""
        if body.lstrip()[:1] != b"[":
            return None
        try:
            items = _BULK.validate_json(body)
        except ValidationError:
            return None
        return [
            RunDetails._of(i.id, i.transcript, i.voice_recording_url, i.transcript_object)
            for i in items
        ]


class _BulkRun(_ApiModel):
    id: Any = None
    transcript: Any = None
    voice_recording_url: Any = None
    transcript_object: Any = None


_BULK = TypeAdapter(list[_BulkRun])


def _ref(value: object) -> object:
    """An id, or an object carrying one (``{"id": 101, "name": ...}``)."""
    return value.get("id") if isinstance(value, dict) else value


def _epoch(value: object) -> float | None:
    """An ISO 8601 time (``2026-08-18T10:00:00.123Z``; no zone: UTC) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()

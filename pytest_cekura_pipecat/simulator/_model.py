"""Value types of the simulator: scripts, fault switches, response variants, records."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

Outcome = Literal[
    "pass",
    "fail",
    "error",
    "timeout",
    "stuck",
    "cancelled",
    "rubric_fail",
    "never_connected",
    "evaluated_nothing",
    "pending_forever",
    "no_verdict",
]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
# The statuses a run passes through before its terminal one, as ``phases`` names them.
PHASES = ("pending", "in_queue", "scaling_up", "running", "in_progress", "evaluating")
EarlySuccess = Literal["null", "false"]
EARLY_SUCCESS: tuple[str, ...] = get_args(EarlySuccess)
Review = Literal["", "success", "failure"]
REVIEWS: tuple[str, ...] = get_args(Review)
NonFinite = Literal["", "duration", "score"]
NON_FINITE: tuple[str, ...] = get_args(NonFinite)
V1Reads = Literal["canonical", "legacy", "removed"]
V1_READS: tuple[str, ...] = get_args(V1Reads)
EntryErrors = Literal["entry", "field"]


class SimulatorConfigError(ValueError):
    """A scenario script or simulator option is invalid; the message is one line."""


def _check_timing_field(field: str, value: object) -> str | None:
    """The problem with a field of the run's timing (``seconds``, ``phases``,
    ``verdict_after``, ``early_success``); "" for a field that is not one of them."""
    if field == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__}"
        return f"must be a finite number >= 0, got {value!r}" if _bad_seconds(value) else None
    if field == "phases":
        pairs = _pairs(value)
        if pairs is None:
            return "must map statuses to seconds"
        for name, seconds in pairs:
            if name not in PHASES:
                return f"{name!r} is not a status a run passes through ({', '.join(PHASES)})"
            if _bad_seconds(seconds):
                return f"{name}: must be a finite number >= 0, got {seconds!r}"
        return None
    if field == "verdict_after":
        return f"must be a finite number >= 0, got {value!r}" if _bad_seconds(value) else None
    if field == "early_success":
        return None if value in EARLY_SUCCESS else f"must be null or false, got {value!r}"
    return ""


def _check_turns_field(field: str, value: object) -> str | None:
    """The problem with ``turns``, None when fine, "" for any other field."""
    if field != "turns":
        return ""
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, Mapping) for t in value):
        return "must be a list of tables (role, content, start_time, end_time, tool_calls)"
    for index, turn in enumerate(value):
        if not isinstance(turn.get("role", ""), str) or not isinstance(
            turn.get("content", ""), str
        ):
            return f"turn {index}: role and content must be strings"
        calls = turn.get("tool_calls", [])
        if not isinstance(calls, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in calls
        ):
            return f"turn {index}: tool_calls must be a list of tables with a name"
    return None


def _check_catalogue_field(field: str, value: object) -> str | None:
    """A catalogue field's problem, None when fine, "" when the field is not one of them."""
    if field == "agent":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        return None if ok else f"must be an agent id (an integer), got {value!r}"
    if field in ("folder_path", "version"):
        return None if isinstance(value, str) else f"must be a string, got {type(value).__name__}"
    if field == "agent_version":
        ok = value is None or isinstance(value, str)
        return None if ok else f"must be a string, got {type(value).__name__}"
    if field == "tags":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    if field == "metrics":
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        return None if ok else "must be a list of metric ids (integers)"
    if field == "max_duration":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 10 <= value <= 3600
        return None if ok else f"must be a number of seconds from 10 to 3600, got {value!r}"
    return ""


def _bad_seconds(value: object) -> bool:
    return (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    )


def check_script_field(field: str, value: object) -> str | None:
    """The problem with one ``ScenarioScript`` field value, or None when it is fine.

    Shared by the dataclass and the TOML loader so both report the same words.
    """
    for early in (_check_timing_field, _check_catalogue_field, _check_turns_field):
        problem = early(field, value)
        if problem != "":
            return problem
    check = _FIELD_CHECKS.get(field)
    return "unknown key" if check is None else check(value)


def _check_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, got {type(value).__name__}"
    return None


def _check_text(value: object) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {type(value).__name__}"


def _check_flag(value: object) -> str | None:
    return None if isinstance(value, bool) else f"must be a boolean, got {type(value).__name__}"


def _check_strings(value: object) -> str | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return "must be a list of strings"
    return None


def _one_of(choices: tuple[str, ...], shown: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if value in choices else f"must be one of {shown}, got {value!r}"

    return check


def _check_numeric_metrics(value: object) -> str | None:
    pairs = _pairs(value)
    if pairs is None or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for _, v in pairs
    ):
        return "must map metric names to finite numbers"
    return None


def _check_score(value: object) -> str | None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        return f"must be a number from 0 to 100, got {value!r}"
    return None


def _check_enum_metrics(value: object) -> str | None:
    pairs = _pairs(value)
    if pairs is None or not all(isinstance(v, str) for _, v in pairs):
        return "must map metric names to strings"
    return None


def _check_then(value: object) -> str | None:
    if not isinstance(value, (list, tuple)) or not all(v in OUTCOMES for v in value):
        return f"must be a list of outcomes ({', '.join(OUTCOMES)})"
    return None


# The check of each field beyond the timing ones, by name.
_FIELD_CHECKS: Mapping[str, Callable[[object], str | None]] = MappingProxyType(
    {
        "id": _check_id,
        "name": _check_text,
        "transcript": _check_text,
        "outcome": _one_of(OUTCOMES, ", ".join(OUTCOMES)),
        "reasons": _check_strings,
        "failed_metrics": _check_strings,
        "review": _one_of(REVIEWS, "'', success, failure"),
        "non_finite": _one_of(NON_FINITE, "'', duration, score"),
        "expected_outcome_as_string": _check_flag,
        "numeric_metrics": _check_numeric_metrics,
        "score": _check_score,
        "enum_metrics": _check_enum_metrics,
        "then": _check_then,
    }
)


def _pairs(value: object) -> tuple[tuple[str, Any], ...] | None:
    """``{name: value}`` or ``[(name, value), ...]`` as a tuple of pairs; None when neither."""
    items: Any = value.items() if isinstance(value, Mapping) else value
    if not isinstance(items, (list, tuple)) and not isinstance(value, Mapping):
        return None
    pairs = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            return None
        pairs.append((item[0], item[1]))
    return tuple(pairs)


@dataclass(frozen=True)
class ScenarioScript:
    """How the simulator plays one scenario id.

    ``transcript`` left empty means a short generated two-speaker transcript, built when a
    run is served, so that a default script reused for many ids names each one.

    Outcomes beyond pass/fail/error/timeout/stuck/cancelled (see the package docstring):
    ``rubric_fail`` (success false only because a rubric rule failed), ``never_connected``
    (completed, success false, an ``error_message``, no evaluation at all),
    ``evaluated_nothing`` (success true with no score and no metrics), ``pending_forever``
    (the run never leaves ``pending``; its result turns ``failed`` once every other run
    is terminal and ``seconds`` passed).

    ``review`` makes the run human-reviewed (``is_reviewed``, ``evaluation_status``
    ``reviewed_success``/``reviewed_failure``, and ``success`` as the reviewer decided).
    ``expected_outcome_as_string`` serves ``expected_outcome`` as a plain string.
    ``non_finite`` writes ``"duration": Infinity`` or a ``NaN`` expected-outcome score into
    the raw JSON (not strict JSON, on purpose) for this scenario's runs once terminal.
    ``numeric_metrics`` (name -> number, e.g. latency in ms) and ``enum_metrics``
    (name -> label) are added to the run's evaluation. ``score`` replaces the expected-outcome
    score a pass (100) or a fail (40) carries. ``no_verdict``: the run completes with
    ``success`` null and nothing evaluated, for good.

    Timing: ``phases`` (status -> seconds, in order, e.g. ``{"in_queue": 1, "scaling_up":
    2, "in_progress": 25, "evaluating": 2}``) replaces the default life cycle, and
    ``seconds`` becomes their sum. ``verdict_after``: seconds the run reads its terminal
    status before its verdict lands (``success`` reads ``early_success``, null or false,
    with nothing evaluated; its result reads ``evaluating`` meanwhile).
    """

    id: int
    name: str = ""
    outcome: Outcome = "pass"
    seconds: float = 1.0
    reasons: tuple[str, ...] = ()
    failed_metrics: tuple[str, ...] = ()
    transcript: str = ""
    review: Review = ""
    expected_outcome_as_string: bool = False
    non_finite: NonFinite = ""
    numeric_metrics: tuple[tuple[str, float], ...] = ()
    enum_metrics: tuple[tuple[str, str], ...] = ()
    score: float | None = None
    phases: tuple[tuple[str, float], ...] = ()
    verdict_after: float = 0.0
    early_success: EarlySuccess = "null"
    # What the scenario endpoints serve (``GET v1/scenarios/{id}/`` and the list): the agent
    # it belongs to (None: any agent's), its folder and tags, its metric ids, its longest
    # call in seconds (Cekura allows 10 to 3600) and its version.
    agent: int | None = None
    folder_path: str = ""
    tags: tuple[str, ...] = ()
    metrics: tuple[int, ...] = ()
    max_duration: float = 300.0
    version: str = "v1"
    # The ``agent_version`` its runs (and a result whose first run it is) carry; None: null.
    agent_version: str | None = None
    # The conversation served as ``transcript_object``, turn by turn as Cekura's webhook
    # shows it (``role``, ``content``, ``start_time``, ``end_time`` in seconds, and an agent
    # turn's ``tool_calls``: ``[{name, arguments, result}]``); the text ``transcript`` is
    # made from it. Empty: a short generated conversation.
    turns: tuple[Mapping[str, Any], ...] = ()
    # The outcomes of this scenario's later runs, in turn (the first run plays ``outcome``;
    # past the end, the last one repeats): a flaky scenario, ``("pass",)`` after a fail.
    then: tuple[Outcome, ...] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = check_script_field(f.name, getattr(self, f.name))
            if problem:
                raise SimulatorConfigError(f"scenario {self.id!r}: {f.name}: {problem}")
        # Frozen: the defaults that depend on other fields are filled through object.
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "failed_metrics", tuple(self.failed_metrics))
        object.__setattr__(self, "seconds", float(self.seconds))
        object.__setattr__(self, "numeric_metrics", _pairs(self.numeric_metrics))
        object.__setattr__(self, "enum_metrics", _pairs(self.enum_metrics))
        phases = tuple((name, float(seconds)) for name, seconds in _pairs(self.phases) or ())
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "verdict_after", float(self.verdict_after))
        object.__setattr__(self, "turns", tuple(dict(t) for t in self.turns))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "then", tuple(self.then))
        object.__setattr__(self, "max_duration", float(self.max_duration))
        if phases:
            object.__setattr__(self, "seconds", sum(seconds for _, seconds in phases))
        if not self.name:
            object.__setattr__(self, "name", f"Scenario {self.id}")
        if self.outcome == "fail" and not self.failed_metrics:
            object.__setattr__(self, "failed_metrics", ("Task completed",))


@dataclass
class Faults:
    """Fault switches, mutable at runtime; the simulator reads them under its lock.

    Counters count down, one per request they hit. ``post_429``/``get_429``: answer 429 with
    ``Retry-After: retry_after`` (a throttled start creates nothing). ``get_5xx_every`` /
    ``get_non_json_every`` N: every Nth GET is an HTML 503 / an HTML 200. ``drip_gets`` /
    ``drip_posts``: the whole response (status line included) leaves one byte every
    ``drip_interval`` seconds; a dripped start POST has created its runs (``drip_posts_after``
    POSTs are answered at once before ``drip_posts`` starts counting). ``reset_gets`` /
    ``reset_posts``: the connection is reset (TCP RST, no answer); a reset start POST has
    created its runs. ``drop_connection_on_post``: the start POST creates its runs, then the
    connection closes without an answer. ``post_500_after_create``: runs created, then 500;
    ``post_500_before_create``: 500 and nothing created. ``post_non_result``: runs created,
    then an answer of status ``post_non_result_status`` (200 or 202, say) whose body is not
    a result. ``post_twin``: the start POST also creates, just before its own, a result of
    the same entries, as another pipeline firing the same scenarios at the same moment
    would (not counted by ``entries_fired``).
    ``get_404_new`` N: the first N reads of each result (v1 and v2 alike) answer 404, as a
    replica that has not seen the new result yet would.
    """

    latency: float = 0.0
    post_429: int = 0
    retry_after: str = "1"
    get_5xx_every: int = 0
    get_non_json_every: int = 0
    post_500_after_create: int = 0
    post_500_before_create: int = 0
    post_non_result: int = 0
    post_non_result_status: int = 200
    post_twin: int = 0
    post_400_entry: int | None = None
    credit_exhausted: bool = False
    drop_connection_on_post: int = 0
    get_429: int = 0
    drip_gets: int = 0
    drip_posts: int = 0
    drip_posts_after: int = 0
    drip_interval: float = 1.0
    reset_gets: int = 0
    reset_posts: int = 0
    get_404_new: int = 0

    def clear(self) -> None:
        """Back to no faults, in place, so references held by callers stay live."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.default)


@dataclass(frozen=True)
class Variants:
    """Which documented response variant to serve (see cekura-api.md)."""

    runs_as_list: bool = False
    scenario_as_object: bool = False
    counts_as_strings: bool = False
    canceled_spelling: bool = False
    post_status: int = 200

    def __post_init__(self) -> None:
        if self.post_status not in (200, 201, 202):
            raise SimulatorConfigError(
                f"post_status must be 200, 201 or 202, got {self.post_status!r}"
            )


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator saw it, and what it answered (0: connection dropped)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    at: float

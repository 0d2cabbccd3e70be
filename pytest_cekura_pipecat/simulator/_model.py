"""Value types of the simulator: scripts, fault switches, response variants, records."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

Outcome = Literal["pass", "fail", "error", "timeout", "stuck", "cancelled"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)


class SimulatorConfigError(ValueError):
    """A scenario script or simulator option is invalid; the message is one line."""


def check_script_field(field: str, value: object) -> str | None:
    """The problem with one ``ScenarioScript`` field value, or None when it is fine.

    Shared by the dataclass and the TOML loader so both report the same words.
    """
    if field == "id":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {type(value).__name__}"
    elif field in ("name", "transcript"):
        if not isinstance(value, str):
            return f"must be a string, got {type(value).__name__}"
    elif field == "outcome":
        if value not in OUTCOMES:
            return f"must be one of {', '.join(OUTCOMES)}, got {value!r}"
    elif field == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__}"
        if not math.isfinite(value) or value < 0:
            return f"must be a finite number >= 0, got {value!r}"
    elif field in ("reasons", "failed_metrics"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return "must be a list of strings"
    else:
        return "unknown key"
    return None


@dataclass(frozen=True)
class ScenarioScript:
    """How the simulator plays one scenario id.

    ``transcript`` left empty means a short generated two-speaker transcript, built when a
    run is served, so that a default script reused for many ids names each one.
    """

    id: int
    name: str = ""
    outcome: Outcome = "pass"
    seconds: float = 1.0
    reasons: tuple[str, ...] = ()
    failed_metrics: tuple[str, ...] = ()
    transcript: str = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = check_script_field(f.name, getattr(self, f.name))
            if problem:
                raise SimulatorConfigError(f"scenario {self.id!r}: {f.name}: {problem}")
        # Frozen: the defaults that depend on other fields are filled through object.
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "failed_metrics", tuple(self.failed_metrics))
        object.__setattr__(self, "seconds", float(self.seconds))
        if not self.name:
            object.__setattr__(self, "name", f"Scenario {self.id}")
        if self.outcome == "fail" and not self.failed_metrics:
            object.__setattr__(self, "failed_metrics", ("Task completed",))


@dataclass
class Faults:
    """Fault switches, mutable at runtime; the simulator reads them under its lock."""

    latency: float = 0.0
    post_429: int = 0
    retry_after: str = "1"
    get_5xx_every: int = 0
    get_non_json_every: int = 0
    post_500_after_create: int = 0
    post_400_entry: int | None = None
    credit_exhausted: bool = False
    drop_connection_on_post: int = 0

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
        if self.post_status not in (200, 201):
            raise SimulatorConfigError(f"post_status must be 200 or 201, got {self.post_status!r}")


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

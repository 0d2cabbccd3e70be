"""Thresholds a case's runs must meet beyond Cekura's own verdict, and quarantines: typed
values parsed from what users write. Pure: no I/O, no pydantic.

A threshold is ``key = "OP VALUE"``: the key is ``expected_outcome_score`` or a Cekura metric
name; the value is ``>= N``, ``<= N``, ``> N``, ``< N``, ``== N``, ``pass`` or
``in [a, b, ...]``. Parsing is strict: anything else is a ValueError with one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

SCORE = "expected_outcome_score"
POOLED = " (pooled)"  # a threshold over the turns of every run of the case, pooled
# ``latency_ms`` / ``first_word_ms`` with an optional statistic: ``latency_p95_ms (pooled)``.
_POOLED_KEY = re.compile(r"^(latency|first_word)(?:_(p\d{1,2}|mean|max|min))?_ms$")
POOLED_FORMS = "latency_ms or first_word_ms, optionally with _pNN, _mean, _max or _min before _ms"

Op = Literal[">=", "<=", ">", "<", "==", "pass", "in"]
_COMPARE = re.compile(r"^(>=|<=|==|>|<)\s*(\S.*)$")
_CHOICES = re.compile(r"^in\s*\[(.*)\]$", re.S)
_FORMS = "want '>= N', '<= N', '> N', '< N', '== N', 'pass' or 'in [a, b]'"


@dataclass(frozen=True)
class Threshold:
    """One threshold: ``key`` (a metric name or ``expected_outcome_score``), ``op``, and the
    bound: ``number`` for comparisons, ``choices`` for ``in``, neither for ``pass``."""

    key: str
    op: Op
    number: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The threshold as the user wrote it, normalized: ``Latency <= 1500``."""
        if self.op == "pass":
            bound = "pass"
        elif self.op == "in":
            bound = "in [" + ", ".join(self.choices) + "]"
        else:
            bound = f"{self.op} {self.number:g}"
        return f"{self.key} {bound}"

    @property
    def pooled(self) -> bool:
        """Over the turns of every run of the case (``latency_p95_ms (pooled)``), not per run."""
        return self.key.endswith(POOLED)

    def holds_number(self, value: float) -> bool:
        assert self.number is not None
        bound = self.number
        return {
            ">=": value >= bound,
            "<=": value <= bound,
            ">": value > bound,
            "<": value < bound,
            "==": value == bound,
        }[self.op]

    def holds_choice(self, value: Any) -> bool:
        """``in [..]``: the measured label (or number) is one of the choices; labels are
        compared without regard to case or surrounding space."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers = [_number(choice) for choice in self.choices]
            return any(n is not None and n == float(value) for n in numbers)
        label = str(value).strip().casefold()
        return any(label == choice.casefold() for choice in self.choices)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_threshold(key: str, text: str) -> Threshold:
    """One threshold; a ValueError says what is wrong in one line, naming the key."""
    where = f"thresholds: {key!r}"
    if not key.strip():
        raise ValueError("thresholds: a key is empty (use expected_outcome_score or a metric name)")
    spec = text.strip()
    if key.endswith(POOLED) and pooled_figure(key) is None:
        raise ValueError(
            f"{where}: a pooled threshold is {POOLED_FORMS}, e.g. 'latency_p95_ms{POOLED}'"
        )
    if key.endswith(POOLED) and not _COMPARE.match(spec):
        raise ValueError(
            f"{where}: {spec!r}: a pooled figure is a number: compare it, e.g. '<= 1500'"
        )
    if spec.casefold() == "pass":
        if key == SCORE:
            raise ValueError(f"{where}: the score is a number: compare it, e.g. '>= 80'")
        return Threshold(key, "pass")
    choices = _CHOICES.match(spec)
    if choices:
        items = tuple(part.strip().strip("'\"").strip() for part in choices.group(1).split(","))
        if not all(items):
            raise ValueError(f"{where}: {spec!r}: an empty choice in 'in [..]'")
        if key == SCORE:
            raise ValueError(f"{where}: the score is a number: compare it, e.g. '>= 80'")
        return Threshold(key, "in", choices=items)
    compare = _COMPARE.match(spec)
    if compare:
        number = _number(compare.group(2).strip())
        if number is None:
            raise ValueError(f"{where}: {spec!r}: {compare.group(2).strip()!r} is not a number")
        op: Op = compare.group(1)  # type: ignore[assignment]
        return Threshold(key, op, number=number)
    raise ValueError(f"{where}: {spec!r}: {_FORMS}")


def pooled_figure(key: str) -> tuple[str, str] | None:
    """``latency_p95_ms (pooled)`` as ``("latency", "p95")``; the statistic is ``p95`` when
    the key names none. None when the key is not a pooled figure."""
    if not key.endswith(POOLED):
        return None
    match = _POOLED_KEY.match(key[: -len(POOLED)].strip())
    if match is None:
        return None
    stat = match.group(2) or "p95"
    if stat.startswith("p") and not 1 <= int(stat[1:]) <= 99:
        return None
    return match.group(1), stat


def parse_thresholds(spec: dict[str, str]) -> tuple[Threshold, ...]:
    return tuple(parse_threshold(key, text) for key, text in spec.items())


def merge_thresholds(
    base: tuple[Threshold, ...], override: tuple[Threshold, ...]
) -> tuple[Threshold, ...]:
    """The suite's thresholds with a case's on top: a case's key replaces the suite's."""
    keys = {t.key for t in override}
    return tuple(t for t in base if t.key not in keys) + override


@dataclass(frozen=True)
class Quarantine:
    """A case whose failures do not block until ``until`` (inclusive)."""

    until: date
    reason: str
    owner: str | None = None
    issue: str | None = None

    def active(self, today: date) -> bool:
        return today <= self.until

    def describe(self) -> str:
        """``until 2026-12-31, owner @ana: flaky tool call (https://…)``."""
        text = f"until {self.until.isoformat()}"
        if self.owner:
            text += f", owner {self.owner}"
        text += f": {self.reason}"
        if self.issue:
            text += f" ({self.issue})"
        return text

    def to_json(self, today: date) -> dict[str, Any]:
        return {
            "until": self.until.isoformat(),
            "reason": self.reason,
            "owner": self.owner,
            "issue": self.issue,
            "active": self.active(today),
        }


def parse_date(value: Any) -> date:
    """A TOML date or an ISO ``YYYY-MM-DD`` string; a ValueError otherwise."""
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("quarantine.until: want a date, YYYY-MM-DD")

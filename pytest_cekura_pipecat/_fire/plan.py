"""Typed data that flows between the stages: what was fired (``Slot``, ``Plan``).

A slot is one run of one case: the entry it was fired as, and once fired the result and run
it became, or why it never started. Slots cross process boundaries under pytest-xdist (as
JSON files in the shared directory), so they convert to and from JSON through pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from pydantic import TypeAdapter

from .._api.catalogue import Evaluator
from .credits import Forecast


@dataclass
class Slot:
    """One run of one case. ``attempt`` is 0, then 1, 2... for pytest-rerunfailures reruns."""

    nodeid: str
    index: int
    scenario: int
    timeout: float
    attempt: int = 0
    fired_at: float | None = None  # wall time the start request was answered
    result_id: int | None = None
    run_id: int | None = None
    error: str | None = None  # why it never started (None once fired)
    dashboard_url: str | None = None
    recovered: str | None = None  # how a start request whose answer was lost was recovered
    agent: int | None = None  # the result's agent, as the start answer gave it

    @property
    def key(self) -> str:
        return f"{self.attempt}:{self.index}:{self.nodeid}"

    @property
    def deadline(self) -> float:
        """Wall time by which the slot must have a verdict (its case's timeout counts from
        the moment its own run was fired)."""
        return (self.fired_at or 0.0) + self.timeout


@dataclass
class Plan:
    """Every slot of every selected case, by node id, plus notes about the firing."""

    fired_at: float
    slots: dict[str, list[Slot]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    requests: int = 0
    forecast: Forecast | None = None  # the spend pre-flight's, of the first firing
    # Each selected scenario's version and metric hash, from the pre-flight's one read.
    evaluators: dict[int, Evaluator] = field(default_factory=dict)

    def all_slots(self) -> list[Slot]:
        return [slot for slots in self.slots.values() for slot in slots]


@cache
def _slots_adapter() -> TypeAdapter[list[Slot]]:
    return TypeAdapter(list[Slot])


@cache
def _plan_adapter() -> TypeAdapter[Plan]:
    return TypeAdapter(Plan)


def slots_to_json(slots: list[Slot]) -> bytes:
    return _slots_adapter().dump_json(slots)


def slots_from_json(data: bytes | str) -> list[Slot]:
    return _slots_adapter().validate_json(data)


def plan_to_json(plan: Plan) -> bytes:
    return _plan_adapter().dump_json(plan)


def plan_from_json(data: bytes | str) -> Plan:
    return _plan_adapter().validate_json(data)

"""Cekura's scenarios and billing as the plugin reads them: what a forecast, a pre-flight and
a selection by folder or tags need. Tolerant like every API model: unknown fields are
ignored, a missing one is None or empty."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

_HASH_LENGTH = 12  # hex digits of a metric hash: short enough to read, long enough to differ


@dataclass(frozen=True)
class Evaluator:
    """What judged a case's runs, as its scenario read said: the scenario's ``version`` and
    a short hash of its metric definitions (None: not known)."""

    scenario_version: str | None = None
    metrics_hash: str | None = None

    def changed(self, before: Evaluator) -> str | None:
        """What changed since ``before`` (one phrase), or None: the same, or not known on
        either side."""
        changes = []
        if None not in (self.scenario_version, before.scenario_version) and (
            self.scenario_version != before.scenario_version
        ):
            changes.append(f"scenario version {before.scenario_version} -> {self.scenario_version}")
        if None not in (self.metrics_hash, before.metrics_hash) and (
            self.metrics_hash != before.metrics_hash
        ):
            changes.append(f"metric definitions {before.metrics_hash} -> {self.metrics_hash}")
        return ", ".join(changes) or None


def metrics_hash(value: Any) -> str | None:
    """A short hash of a scenario's ``metrics`` as Cekura sent them (ids or whole metric
    objects), order aside; None when it sent none."""
    if not isinstance(value, list):
        return None
    items = sorted(json.dumps(item, sort_keys=True, default=str) for item in value)
    digest = hashlib.sha256(json.dumps(items).encode("utf-8")).hexdigest()
    return digest[:_HASH_LENGTH]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


def _ref(value: Any) -> Any:
    """``5`` or ``{"id": 5, ...}``: the id either way (Cekura nests some references)."""
    return value.get("id") if isinstance(value, dict) else value


class Scenario(_Model):
    """``GET /test_framework/v1/scenarios/{id}/`` or one item of the scenario list."""

    id: int
    name: str = ""
    agent: int | None = None
    folder_path: str = ""
    tags: tuple[str, ...] = ()
    metrics: tuple[int, ...] = ()  # metric ids
    max_duration: float | None = None  # seconds
    version: str | None = None
    metrics_hash: str | None = None  # of the metric definitions as sent (``metrics_hash``)

    @model_validator(mode="before")
    @classmethod
    def _hash(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**data, "metrics_hash": metrics_hash(data.get("metrics"))}
        return data

    @property
    def evaluator(self) -> Evaluator:
        return Evaluator(self.version, self.metrics_hash)

    @field_validator("agent", mode="before")
    @classmethod
    def _agent(cls, value: Any) -> Any:
        return _ref(value)

    @field_validator("folder_path", "name", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, list):
            return tuple(
                str(_ref(t) if not isinstance(t, dict) else t.get("name", "")) for t in value
            )
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, list):
            return tuple(_ref(m) for m in value)
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return None if value is None else str(value)


class Billing(_Model):
    """``GET /test_framework/billing/info/`` (its figures lag up to 30 minutes)."""

    credits_remaining: float | None = None
    credits_used: float | None = None

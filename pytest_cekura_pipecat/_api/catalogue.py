"""Cekura's scenarios and billing as the plugin reads them: what a forecast, a pre-flight and
a selection by folder or tags need. Tolerant like every API model: unknown fields are
ignored, a missing one is None or empty."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


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

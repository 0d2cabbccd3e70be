"""The scenario catalogue and the billing info the simulator serves.

``GET /test_framework/v1/scenarios/{id}/``, ``GET /test_framework/v1/scenarios/`` (filtered
by ``agent_id``, ``folder_path``, ``tags`` and ``tag_filter_type``, paginated like Cekura's
lists: ``count``, ``next``, ``previous``, ``results``) and ``GET
/test_framework/billing/info/``. Pure functions over scripts: the app holds the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ._model import ScenarioScript

PAGE_SIZE = 50  # the default page of a scenario list
MAX_PAGE_SIZE = 500
# How several tags combine: any of them (the default) or all of them. Cekura's documents
# name the parameter but not its values; both spellings are accepted.
_ALL = frozenset({"all", "and"})
_ANY = frozenset({"any", "or", ""})


def scenario_json(script: ScenarioScript) -> dict[str, Any]:
    """One scenario as Cekura serves it (the fields this project reads, and a few more)."""
    return {
        "id": script.id,
        "name": script.name,
        "agent": script.agent,
        "folder_path": script.folder_path,
        "tags": list(script.tags),
        "metrics": list(script.metrics),
        "max_duration": script.max_duration,
        "version": script.version,
        "scenario_type": "instruction",
        "personality_name": "Simulated caller",
    }


def _folder(path: str) -> str:
    """``Booking``, ``/Booking/`` and ``Booking/`` are one folder: ``Booking/``."""
    path = path.strip().strip("/")
    return f"{path}/" if path else ""


def _tags(values: Sequence[str]) -> list[str]:
    """``tags`` repeated or comma-separated, blanks dropped."""
    return [tag.strip() for value in values for tag in value.split(",") if tag.strip()]


class QueryError(ValueError):
    """A query parameter Cekura would refuse (the message names it)."""


def _first(query: Mapping[str, list[str]], name: str) -> str:
    values = query.get(name) or [""]
    return values[0]


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    text = _first(query, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name}: a valid integer is required") from None
    if value < 1:
        raise QueryError(f"{name}: must be 1 or more")
    return value


def selected(
    scripts: Iterable[ScenarioScript], query: Mapping[str, list[str]]
) -> list[ScenarioScript]:
    """The scripts a list request selects, by id. Raises QueryError."""
    agent_text = _first(query, "agent_id")
    try:
        agent = int(agent_text) if agent_text else None
    except ValueError:
        raise QueryError("agent_id: a valid integer is required") from None
    folder = _folder(_first(query, "folder_path"))
    wanted = _tags(query.get("tags", []))
    mode = _first(query, "tag_filter_type").lower()
    if mode not in _ALL | _ANY:
        raise QueryError(f"tag_filter_type: must be any or all, got {mode!r}")
    combine = all if mode in _ALL else any
    out = []
    for script in sorted(scripts, key=lambda s: s.id):
        if agent is not None and script.agent not in (None, agent):
            continue
        if folder and not _folder(script.folder_path).startswith(folder):
            continue
        if wanted and not combine(tag in script.tags for tag in wanted):
            continue
        out.append(script)
    return out


def page(
    items: Sequence[ScenarioScript], query: Mapping[str, list[str]], base: str
) -> dict[str, Any]:
    """One page of a list, DRF style, with absolute ``next``/``previous`` links."""
    number = _int_param(query, "page", 1)
    size = min(_int_param(query, "page_size", PAGE_SIZE), MAX_PAGE_SIZE)
    start = (number - 1) * size
    if start and start >= len(items):
        raise QueryError("page: invalid page")

    def link(to: int) -> str:
        params = {k: v[0] for k, v in query.items() if v and k != "page"}
        return f"{base}?{urlencode({**params, 'page': to})}"

    return {
        "count": len(items),
        "next": link(number + 1) if start + size < len(items) else None,
        "previous": link(number - 1) if number > 1 else None,
        "results": [scenario_json(s) for s in items[start : start + size]],
    }


def billing_json(credits_remaining: float, credits_used: float) -> dict[str, Any]:
    return {
        "plan": "simulated",
        "credits_remaining": credits_remaining,
        "credits_used": credits_used,
    }

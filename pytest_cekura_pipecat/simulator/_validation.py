"""Validation of the start POST body, with Django REST framework's error shapes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Errors = dict[str, list[str]]

_REQUIRED = "This field is required."
_NOT_INT = "A valid integer is required."
_NOT_STR = "Not a valid string."
_BLANK = "This field may not be blank."


@dataclass(frozen=True)
class StartRequest:
    agent: int | None
    scenario_ids: list[int]  # one per run to create
    requested_ids: tuple[int, ...] = ()  # as the body listed them (v2: before frequency)
    entry_field: str = (
        ".scenario"  # how a 400 names an entry: v1 "scenarios[i].scenario", v2 "scenarios[i]"
    )
    rooms: tuple[tuple[str, str | None], ...] = ()  # v1: (room url, token) per run
    mock_tool_names: list[str] | None = None  # None: mock every tool of the agent
    name: str = ""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_type_error(value: object) -> str:
    return f'Expected a list of items but got type "{type(value).__name__}".'


def _dict_type_error(value: object) -> str:
    return f"Invalid data. Expected a dictionary, but got {type(value).__name__}."


def validate_start(body: Any, is_known: Callable[[int], bool]) -> StartRequest | Errors:
    """The parsed request, or every problem keyed by location (``scenarios[2].scenario``)."""
    if not isinstance(body, dict):
        return {"non_field_errors": [_dict_type_error(body)]}
    errors: Errors = {}
    agent = body.get("agent")
    if agent is not None and not _is_int(agent):
        errors["agent"] = [_NOT_INT]
    mock = body.get("mock_tool_names")
    if mock is not None:
        if not isinstance(mock, list):
            errors["mock_tool_names"] = [_list_type_error(mock)]
        else:
            for j, name in enumerate(mock):
                if not isinstance(name, str):
                    errors[f"mock_tool_names[{j}]"] = [_NOT_STR]
    ids: list[int] = []
    rooms: list[tuple[str, str | None]] = []
    for i, entry in enumerate(_scenarios(body, errors)):
        scenario_id = _check_entry(f"scenarios[{i}]", entry, is_known, errors)
        if scenario_id is not None:
            ids.append(scenario_id)
            rooms.append((entry["pipecat_room_url"], entry.get("pipecat_token")))
    if errors:
        return errors
    return StartRequest(agent=agent, scenario_ids=ids, rooms=tuple(rooms), mock_tool_names=mock)


def _scenarios(body: dict[str, Any], errors: Errors) -> list[Any]:
    """The body's ``scenarios`` list; empty, with the error noted, when it is missing, not a
    list or empty."""
    scenarios = body.get("scenarios")
    if "scenarios" not in body:
        errors["scenarios"] = [_REQUIRED]
    elif not isinstance(scenarios, list):
        errors["scenarios"] = [_list_type_error(scenarios)]
    elif not scenarios:
        errors["scenarios"] = ["This list may not be empty."]
    else:
        return scenarios
    return []


def _check_entry(
    where: str, entry: object, is_known: Callable[[int], bool], errors: Errors
) -> int | None:
    if not isinstance(entry, dict):
        errors[where] = [_dict_type_error(entry)]
        return None
    scenario: Any = entry.get("scenario")
    if "scenario" not in entry:
        errors[f"{where}.scenario"] = [_REQUIRED]
    elif not _is_int(scenario):
        errors[f"{where}.scenario"] = [_NOT_INT]
    elif not is_known(scenario):
        errors[f"{where}.scenario"] = [f'Invalid pk "{scenario}" - object does not exist.']
    room = entry.get("pipecat_room_url")
    if "pipecat_room_url" not in entry or room is None:
        errors[f"{where}.pipecat_room_url"] = [_REQUIRED]
    elif not isinstance(room, str):
        errors[f"{where}.pipecat_room_url"] = [_NOT_STR]
    elif not room.strip():
        errors[f"{where}.pipecat_room_url"] = [_BLANK]
    if "pipecat_token" in entry and not isinstance(entry["pipecat_token"], str):
        errors[f"{where}.pipecat_token"] = [_NOT_STR]
    # publish_data_message is any JSON: nothing to check.
    if any(key.startswith(f"{where}.") for key in errors):
        return None
    return scenario if _is_int(scenario) else None


def validate_start_v2(body: Any, is_known: Callable[[int], bool]) -> StartRequest | Errors:
    """The Pipecat v2 start, as the official ``cekura`` CLI sends it (``run start --mode pipecat``).

    ``{"agent_id": int, "scenarios": [int, ...], "frequency"?: int, ...}``: no rooms (Cekura
    starts the Pipecat session itself), each scenario run ``frequency`` times. Selecting by
    ``tags`` or ``folder_path`` is not simulated: list the scenario ids.
    """
    if not isinstance(body, dict):
        return {"non_field_errors": [_dict_type_error(body)]}
    errors: Errors = {}
    agent = body.get("agent_id")
    if "agent_id" not in body:
        errors["agent_id"] = [_REQUIRED]
    elif not _is_int(agent):
        errors["agent_id"] = [_NOT_INT]
    mock = body.get("mock_tool_names")
    if mock is not None and (
        not isinstance(mock, list) or not all(isinstance(m, str) for m in mock)
    ):
        errors["mock_tool_names"] = [_list_type_error(mock)]
    name = body.get("name") or ""
    if not isinstance(name, str):
        errors["name"] = [_NOT_STR]
    frequency = body.get("frequency", 1)
    if not _is_int(frequency) or frequency < 1:
        errors["frequency"] = ["Ensure this value is a positive integer."]
    ids: list[int] = []
    for i, scenario in enumerate(_scenarios(body, errors)):
        if not _is_int(scenario):
            errors[f"scenarios[{i}]"] = [_NOT_INT]
        elif not is_known(scenario):
            errors[f"scenarios[{i}]"] = [f'Invalid pk "{scenario}" - object does not exist.']
        else:
            ids.append(scenario)
    if errors:
        return errors
    return StartRequest(
        agent=agent,
        scenario_ids=[sid for sid in ids for _ in range(frequency)],
        requested_ids=tuple(ids),
        entry_field="",
        mock_tool_names=mock,
        name=name,
    )


_INT = re.compile(r"\s*[+-]?\d+\s*")
_ENTRY_KEY = re.compile(r"scenarios\[(\d+)\]\.?(\w+)")
_MOCK_KEY = re.compile(r"mock_tool_names\[(\d+)\]")


def form_to_body(fields: list[tuple[str, str]]) -> dict[str, Any]:
    """A form body (urlencoded or multipart) as the JSON body it stands for.

    Django REST framework's HTML-form conventions: entries as ``scenarios[0]scenario`` (a
    ``scenarios[0].scenario`` spelling is accepted too), ``mock_tool_names`` repeated or as
    ``mock_tool_names[0]``; integer fields arrive as strings and are parsed as DRF does. A
    form cannot say ``null`` or ``[]``: without ``mock_tool_names`` every tool is mocked.
    """
    body: dict[str, Any] = {}
    entries: dict[int, dict[str, Any]] = {}
    mocks: list[tuple[int, str]] = []
    for key, value in fields:
        entry = _ENTRY_KEY.fullmatch(key)
        mock = _MOCK_KEY.fullmatch(key)
        if entry:
            field = entry.group(2)
            parsed: Any = value
            if field == "scenario" and _INT.fullmatch(value):
                parsed = int(value)
            entries.setdefault(int(entry.group(1)), {})[field] = parsed
        elif key == "mock_tool_names" or mock:
            mocks.append((int(mock.group(1)) if mock else len(mocks), value))
        elif key == "agent" and _INT.fullmatch(value):
            body["agent"] = int(value)
        else:
            body[key] = value
    if entries:
        body["scenarios"] = [entries[i] for i in sorted(entries)]
    if mocks:
        body["mock_tool_names"] = [name for _, name in sorted(mocks)]
    return body

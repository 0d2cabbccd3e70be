"""Loading scenario scripts from a TOML file or from Python values."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from ._model import ScenarioScript, SimulatorConfigError, check_script_field

ScenariosArg = (
    Mapping[int, ScenarioScript] | Iterable[ScenarioScript] | str | os.PathLike[str] | None
)

_TUPLE_FIELDS = ("reasons", "failed_metrics", "tags", "metrics")


def load_scenarios(path: str | os.PathLike[str]) -> dict[int, ScenarioScript]:
    """Read a scenarios TOML file into scripts keyed by scenario id.

    Raises ``SimulatorConfigError`` on the first problem, as one line
    ``FILE: scenario N: FIELD: MESSAGE`` (``scenario #K`` when the entry has no usable id).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SimulatorConfigError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SimulatorConfigError(f"{name}: invalid TOML: {exc}") from exc
    except RecursionError:  # the parser recurses once per level of inline nesting
        raise SimulatorConfigError(f"{name}: tables and arrays nested too deeply") from None
    for key in data:
        if key != "scenario":
            raise SimulatorConfigError(f"{name}: {key}: unknown key (expected [[scenario]] tables)")
    entries = data.get("scenario", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SimulatorConfigError(f"{name}: scenario: must be an array of tables ([[scenario]])")
    scripts: dict[int, ScenarioScript] = {}
    for index, entry in enumerate(entries, start=1):
        script = _script_from_table(name, index, entry)
        if script.id in scripts:
            raise SimulatorConfigError(f"{name}: scenario {script.id}: id: duplicate id")
        scripts[script.id] = script
    return scripts


def _script_from_table(name: str, index: int, entry: dict[str, Any]) -> ScenarioScript:
    raw_id = entry.get("id")
    id_ok = check_script_field("id", raw_id) is None
    where = f"{name}: scenario {raw_id}" if id_ok else f"{name}: scenario #{index}"
    if "id" not in entry:
        raise SimulatorConfigError(f"{where}: id: required")
    if "phases" in entry and "seconds" in entry:
        raise SimulatorConfigError(
            f"{where}: seconds: give seconds or phases, not both (the phases add up to the "
            "run's length)"
        )
    for key, value in entry.items():
        problem = check_script_field(key, value)
        if problem:
            raise SimulatorConfigError(f"{where}: {key}: {problem}")
    values: dict[str, Any] = {k: tuple(v) if k in _TUPLE_FIELDS else v for k, v in entry.items()}
    try:
        return ScenarioScript(**values)
    except SimulatorConfigError as exc:  # pragma: no cover - fields were checked above
        raise SimulatorConfigError(f"{name}: {exc}") from exc


def coerce_scenarios(scenarios: ScenariosArg) -> dict[int, ScenarioScript]:
    """Turn any accepted form of the ``scenarios`` argument into scripts keyed by id."""
    if scenarios is None:
        return {}
    if isinstance(scenarios, (str, os.PathLike)):
        return load_scenarios(scenarios)
    if isinstance(scenarios, Mapping):
        out = dict(scenarios)
        for key, script in out.items():
            if not isinstance(script, ScenarioScript) or script.id != key:
                raise SimulatorConfigError(
                    f"scenario {key}: key does not match a ScenarioScript with that id"
                )
        return out
    result: dict[int, ScenarioScript] = {}
    for script in scenarios:
        if not isinstance(script, ScenarioScript):
            raise SimulatorConfigError(f"expected ScenarioScript, got {type(script).__name__}")
        if script.id in result:
            raise SimulatorConfigError(f"scenario {script.id}: id: duplicate id")
        result[script.id] = script
    return result

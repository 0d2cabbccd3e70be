"""Scenarios into code: ``pull`` writes Cekura's scenarios into a ``cekura.toml`` as
``[[case]]`` tables, ``check`` compares the file with Cekura (``python -m
pytest_cekura_pipecat``).

A file is edited in place, line by line: the rest of it (comments, other tables, a case's
other keys) stays as written. Every edit is proved before anything is written: the new
text, read back with ``tomllib``, must be the old document with exactly the intended
changes.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._api.client import CekuraClient
from .._errors import ApiError, ConfigError
from . import toml_text
from .schema import TomlFile, case_spots, one_line
from .select import Listed, case_name


@dataclass(frozen=True)
class Pulled:
    """A file's new text and what changed: ids added, (id, old name, new name) renamed."""

    text: str
    added: tuple[int, ...] = ()
    renamed: tuple[tuple[int, str, str], ...] = ()
    kept: tuple[int, ...] = ()


def is_pulled_name(name: str | None, scenario_id: int) -> bool:
    """Whether a case's name is one ``pull`` gives (or none): a name someone chose is kept."""
    return name is None or name.endswith(f"-{scenario_id}") or name == f"scenario-{scenario_id}"


def _document(text: str, display: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{display}: invalid TOML: {exc}"]) from None


@dataclass
class _Plan:
    """The line edits of one pull (1-based line -> new line, or lines to insert after it)."""

    replace: dict[int, str] = field(default_factory=dict)
    insert: dict[int, list[str]] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)

    def apply(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        out: list[str] = []
        for number, line in enumerate(lines, 1):
            if number in self.replace:
                ending = line[len(line.rstrip("\r\n")) :] or "\n"
                indent = line[: len(line) - len(line.lstrip())]
                line = indent + self.replace[number] + ending
            out.append(line)
            out.extend(f"{extra}\n" for extra in self.insert.get(number, ()))
        if self.tail:
            if out and not out[-1].endswith("\n"):
                out[-1] += "\n"
            tail = "".join(self.tail)
            out.append(tail if "".join(out).strip() else tail.lstrip("\n"))
        return "".join(out)


def pull_into(text: str, scenarios: Sequence[Listed], agent: int, display: str) -> Pulled:
    """``text`` with a ``[[case]]`` for every scenario: a case already naming its id gets
    the scenario's current name (unless its name is one someone chose), the others are
    appended. A ConfigError when the file cannot be edited in place safely."""
    document = _document(text, display)
    raw = document.get("case", [])
    spots = case_spots(text)
    if (
        not isinstance(raw, list)
        or not all(isinstance(c, dict) for c in raw)
        or len(spots) != len(raw)
    ):
        raise ConfigError(
            [f"{display}: cases are written other than as [[case]] tables: cannot update in place"]
        )
    where = {c.get("scenario"): i for i, c in reversed(list(enumerate(raw)))}
    expected = copy.deepcopy(document)
    plan = _Plan()
    added: list[int] = []
    renamed: list[tuple[int, str, str]] = []
    kept: list[int] = []
    for scenario in sorted(scenarios, key=lambda s: s.id):
        name = case_name(scenario.name, scenario.id)
        index = where.get(scenario.id)
        if index is None:
            fields: list[tuple[str, toml_text.Value]] = [
                ("name", name),
                ("scenario", scenario.id),
            ]
            if document.get("agent") != agent:
                fields.append(("agent", agent))
            plan.tail.append("\n" + toml_text.table("case", fields))
            expected.setdefault("case", []).append(dict(fields))
            added.append(scenario.id)
            continue
        old = raw[index].get("name")
        if old == name or not is_pulled_name(old, scenario.id):
            kept.append(scenario.id)
            continue
        header, keys = spots[index]
        if "name" in keys:
            plan.replace[keys["name"]] = toml_text.pair("name", name)
        else:
            plan.insert.setdefault(header, []).append(toml_text.pair("name", name))
        expected["case"][index]["name"] = name
        renamed.append((scenario.id, str(old or f"scenario-{scenario.id}"), name))
    new = plan.apply(text)
    try:
        proved = tomllib.loads(new) == expected
    except tomllib.TOMLDecodeError:
        proved = False
    if not proved:
        raise ConfigError(
            [f"{display}: the file is written in a way pull cannot edit safely: nothing written"]
        )
    return Pulled(new, tuple(added), tuple(renamed), tuple(kept))


# -- check -------------------------------------------------------------------------------


def differences(parsed: TomlFile, found: Mapping[int, Listed | None], display: str) -> list[str]:
    """One line per ``[[case]]`` that no longer matches Cekura: its scenario is gone, is now
    another agent's, or was renamed (for a case named the way ``pull`` names it)."""
    lines: list[str] = []
    for index, case in enumerate(parsed.case, 1):
        shown = case.name or f"#{index}"
        where = f"{display}: case {shown}"
        scenario = found.get(case.scenario)
        if scenario is None:
            lines.append(f"{where}: scenario {case.scenario} no longer exists on Cekura")
            continue
        agent = case.agent or parsed.agent
        if agent is not None and scenario.agent is not None and scenario.agent != agent:
            lines.append(
                f"{where}: scenario {case.scenario} belongs to agent {scenario.agent}, "
                f"not agent {agent}"
            )
        name = case_name(scenario.name, scenario.id)
        if is_pulled_name(case.name, case.scenario) and case.name not in (None, name):
            lines.append(
                f"{where}: scenario {case.scenario} is now named {scenario.name!r} "
                f"(pull renames the case {name})"
            )
    return [one_line(line) for line in lines]


async def scenarios_of(
    client: CekuraClient, ids: Sequence[int], agents: Sequence[int]
) -> dict[int, Listed | None]:
    """Each id's scenario on Cekura (None: it has none). The agents' lists are read first
    (a page per 100 scenarios); an id none of them holds is asked for on its own."""
    found: dict[int, Listed | None] = {}
    for agent in dict.fromkeys(agents):
        for scenario in await client.scenarios(agent_id=agent):
            found[scenario.id] = Listed.of(scenario)
    for scenario_id in dict.fromkeys(ids):
        if scenario_id in found:
            continue
        try:
            found[scenario_id] = Listed.of(await client.scenario(scenario_id))
        except ApiError as exc:
            if exc.status != 404:
                raise
            found[scenario_id] = None
    return found

"""A case: one scenario to evaluate, as the user declared it, and the entries it fires."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .._errors import ConfigError
from .thresholds import Quarantine, Threshold

DEFAULT_TIMEOUT = 1800.0
MAX_TIMEOUT = 24 * 3600.0

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# The layers a case's settings come from, nearest first (see ``_config.nearest``).
LAYERS = ("case", "marker", "file", "flag", "ini")


@dataclass(frozen=True)
class BotSource:
    """Where a case's bot comes from, and which layer chose it: ``kind`` is ``room`` (a
    static ``pipecat_room_url``), ``start_url`` (one bot session per run from
    ``bot_start_url``) or ``cloud`` (the Pipecat Cloud preset); ``layer`` is one of
    :data:`LAYERS`; ``key`` is the setting as the user wrote it there."""

    kind: str
    layer: str
    key: str


@dataclass(frozen=True)
class Case:
    """A Cekura evaluator case, declared in ``cekura.toml`` or with ``@pytest.mark.cekura``.

    String fields keep their ``${VAR}`` templates: they are expanded when the case is fired,
    so collection needs no secrets. ``pipecat_token`` is never part of the repr.
    """

    name: str
    scenario: int
    source: str
    agent: int | None = None
    pipecat_room_url: str | None = None
    pipecat_token: str | None = field(default=None, repr=False)
    publish_data_message: Any = None
    repeat: int = 1
    min_passes: int = 1
    timeout: float = 1800.0
    project: str | None = None
    marks: tuple[str, ...] = ()
    mock_tool_names: tuple[str, ...] | None = None  # None: not sent (Cekura mocks every tool)
    room_concurrency: int = 1  # live runs at once in one static room
    max_live_runs: int | None = None  # live runs at once in the session (None: no cap)
    # A Pipecat start URL that starts one bot session (with its Daily room) per run, for a
    # case without a pipecat_room_url; headers (``${VAR}`` templates: secrets once expanded)
    # and extra body fields go with it.
    bot_start_url: str | None = None
    bot_start_headers: Mapping[str, str] | None = field(default=None, repr=False)
    bot_start_body: Mapping[str, Any] | None = None
    thresholds: tuple[Threshold, ...] = ()  # every run must meet them, beyond Cekura's verdict
    allow_unevaluated: bool = False  # a successful run with no score and no metric may pass
    # Pooled thresholds: fewer samples (turns, or runs for first_word_ms) than this and the
    # case errors as inconclusive, never passes.
    min_samples: int = 1
    quarantine: Quarantine | None = None  # until its date, a failure does not block
    canary: bool = False  # fired first and alone; if it errors, nothing else is fired
    adaptive: bool = False  # fire min_passes runs, then one more per run that did not pass
    # A failure that would block is fired this many more runs first; one that passes
    # makes the case flaky (non-blocking).
    confirm: int = 0
    priority: int = 0  # under a credit cap, higher is admitted first (then collection order)
    bot_source: BotSource | None = None  # None: no layer chose; a room hook must give a room

    @property
    def first_runs(self) -> int:
        """How many runs the first firing starts: all of ``repeat``, or ``min_passes`` when
        adaptive (more follow only while they can still change the verdict)."""
        return self.min_passes if self.adaptive else self.repeat

    def first_firing(self) -> Case:
        """The case as its first firing sees it: ``repeat`` cut to ``first_runs`` (itself,
        not a copy, when nothing is cut)."""
        first = self.first_runs
        return self if first == self.repeat else replace(self, repeat=first)


@dataclass(frozen=True)
class Entry:
    """One element of ``scenarios`` in a start request: one run of a case."""

    scenario: int
    pipecat_room_url: str
    pipecat_token: str | None = field(default=None, repr=False)
    publish_data_message: Any = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = EntryJson(
            scenario=self.scenario, pipecat_room_url=self.pipecat_room_url
        )
        if self.pipecat_token:
            body["pipecat_token"] = self.pipecat_token
        if self.publish_data_message is not None:
            body["publish_data_message"] = self.publish_data_message
        return body


class EntryJson(dict[str, Any]):
    """An outgoing entry; its repr (pluggy's --debug trace logs hook arguments) masks the
    room token."""

    def __repr__(self) -> str:
        return repr({k: ("***" if k == "pipecat_token" else v) for k, v in self.items()})


def expand(value: str, env: Mapping[str, str], where: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; a missing variable is a ConfigError."""
    if "${" not in value:
        return value  # most values name no variable: no match to look for

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        got = env.get(name)
        if got:
            return got
        if default is not None:
            return default
        raise ConfigError(
            [
                f"{where}: environment variable {name} is not set (export it, or write ${{{name}:-default}})"
            ]
        )

    return _VAR.sub(sub, value)


def expand_json(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        return expand(value, env, where)
    if isinstance(value, list):
        return [expand_json(item, env, where) for item in value]
    if isinstance(value, dict):
        return {key: expand_json(item, env, where) for key, item in value.items()}
    return value


def has_template(value: str | None) -> bool:
    return bool(value) and _VAR.search(value or "") is not None


def environ() -> Mapping[str, str]:
    return os.environ


@dataclass(frozen=True)
class Room:
    """A Daily room for one run: its URL and the tester's meeting token (a secret)."""

    url: str
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Defaults:
    """Values from ini keys and command-line options: the layer under ``cekura.toml``."""

    agent: int | None = None
    pipecat_room_url: str | None = None
    project: str | None = None
    timeout: float | None = None
    mock_tool_names: tuple[str, ...] | None = None
    room_concurrency: int = 1
    max_live_runs: int | None = None
    bot_start_url: str | None = None
    pipecat_cloud_agent: str | None = None  # the Pipecat Cloud preset of bot_start_url
    confirm: int | None = None
    flag_keys: frozenset[str] = frozenset()  # the keys above set on the command line, not ini


@dataclass(frozen=True)
class BotKeys:
    """The bot keys of one ``cekura.toml``'s top level (``bot_command`` and company), with
    where they came from: a relative command runs in the file's directory."""

    source: str
    directory: str
    command: str | None = None
    ready_url: str | None = None
    start_timeout: float | None = None

"""Validation of what users write: ``cekura.toml`` documents and ``@pytest.mark.cekura`` kwargs.

The models are strict (unknown keys, wrong types and out-of-range values are errors) and every
problem becomes one line naming the file, the case and the field. Values are never echoed
(``hide_input_in_errors``): a token typed into the wrong field must not reach the terminal.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._errors import ConfigError
from .case import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    BotKeys,
    BotSource,
    Case,
    Defaults,
    has_template,
)
from .thresholds import Quarantine, merge_thresholds, parse_date, parse_thresholds

MAX_REPEAT = 100  # Cekura's own frequency cap
# Levels of tables and arrays a document (or a marker's arguments) may nest: far more than a
# configuration needs, far less than what exhausts the stack of a parser or a validator.
MAX_DEPTH = 64

PositiveInt = Annotated[int, Field(ge=1)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True, frozen=True)


def _no_template(value: Any, info: ValidationInfo) -> Any:
    """A field fixed at collection (a name, a mark, a threshold) or a mapping's keys take no
    ``${VAR}``: one there would be sent or shown as written, so it is an error."""
    keys_only = info.field_name in _EXPANDED_VALUES
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not keys_only and has_template(item):
                raise ValueError(
                    f"{info.field_name}: ${{VAR}} is not expanded here (this field is fixed "
                    "at collection): write the value itself"
                )
        elif isinstance(item, Mapping):
            if any(isinstance(key, str) and has_template(key) for key in item):
                raise ValueError(
                    f"{info.field_name}: ${{VAR}} is not expanded in a key (only in values)"
                )
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


# Fields whose string values take ``${VAR}`` but whose keys do not.
_EXPANDED_VALUES = frozenset({"publish_data_message", "bot_start_headers", "bot_start_body"})


class QuarantineFields(_Strict):
    until: date
    reason: NonEmpty
    owner: NonEmpty | None = None
    issue: NonEmpty | None = None

    _fixed_quarantine = field_validator("until", "reason", "owner", "issue", mode="before")(
        _no_template
    )

    @field_validator("until", mode="before")
    @classmethod
    def _date(cls, value: Any) -> date:
        return parse_date(value)

    def value(self) -> Quarantine:
        return Quarantine(self.until, self.reason, self.owner, self.issue)


class _Common(_Strict):
    agent: PositiveInt | None = None
    pipecat_room_url: NonEmpty | None = None
    pipecat_token: NonEmpty | None = None
    publish_data_message: JsonValue = None
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT)] | None = None
    project: PositiveInt | NonEmpty | None = None
    mock_tool_names: list[NonEmpty] | None = None
    room_concurrency: PositiveInt | None = None
    max_live_runs: PositiveInt | None = None
    bot_start_url: NonEmpty | None = None
    bot_start_headers: dict[NonEmpty, str] | None = None
    bot_start_body: dict[str, JsonValue] | None = None
    thresholds: dict[str, str] | None = None
    allow_unevaluated: bool | None = None
    min_samples: PositiveInt | None = None
    quarantine: QuarantineFields | None = None
    adaptive: bool | None = None
    confirm: Annotated[int, Field(ge=0, le=MAX_REPEAT)] | None = None

    _fixed_common = field_validator(
        "agent",
        "timeout",
        "project",
        "mock_tool_names",
        "room_concurrency",
        "max_live_runs",
        "thresholds",
        "allow_unevaluated",
        "min_samples",
        "adaptive",
        "confirm",
        *_EXPANDED_VALUES,
        mode="before",
    )(_no_template)

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            parse_thresholds(value)  # a ValueError names the key and the problem
        return value

    @model_validator(mode="after")
    def _one_bot_choice(self) -> Self:
        problem = contradiction([key for key in BOT_CHOICE if getattr(self, key, None) is not None])
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("publish_data_message")
    @classmethod
    def _json_compliant(cls, value: JsonValue) -> JsonValue:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("publish_data_message: nan and inf are not JSON") from None
        return value


class _CaseFields(_Common):
    scenario: PositiveInt
    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)] = 1
    min_passes: PositiveInt | None = None
    canary: bool = False
    priority: StrictInt = 0

    _fixed_case_fields = field_validator(
        "scenario", "repeat", "min_passes", "canary", "priority", mode="before"
    )(_no_template)

    @model_validator(mode="after")
    def _min_passes_fits(self) -> _CaseFields:
        if self.min_passes is not None and self.min_passes > self.repeat:
            raise ValueError(f"min_passes: {self.min_passes} is more than repeat ({self.repeat})")
        return self


# pytest marks that mean something only on a Python test function.
_FUNCTION_ONLY_MARKS = frozenset({"parametrize", "usefixtures"})


class TomlCase(_CaseFields):
    name: NonEmpty | None = None
    marks: list[NonEmpty] = Field(default_factory=list)

    _fixed_case = field_validator("name", "marks", mode="before")(_no_template)

    @field_validator("marks")
    @classmethod
    def _mark_names(cls, value: list[str]) -> list[str]:
        return _mark_names(value)


def _mark_names(value: list[str]) -> list[str]:
    for mark in value:
        if not mark.isidentifier() or mark.startswith("_"):
            raise ValueError(
                f"marks: {mark!r} is not a mark name (a Python identifier, not starting with '_')"
            )
        if mark in _FUNCTION_ONLY_MARKS:
            raise ValueError(f"marks: {mark!r} applies only to Python test functions")
    return value


class TomlSelect(_Common):
    """A ``[[select]]`` table: the agent's scenarios in a Cekura folder and/or with tags, each
    a case with this table's keys as its own (resolved in ``select.py``)."""

    folder_path: NonEmpty | None = None
    tags: list[NonEmpty] | None = None
    tag_filter_type: Literal["any", "all"] | None = None
    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)] = 1
    min_passes: PositiveInt | None = None
    marks: list[NonEmpty] = Field(default_factory=list)

    _fixed_select = field_validator(
        "folder_path", "tags", "tag_filter_type", "repeat", "min_passes", "marks", mode="before"
    )(_no_template)

    @field_validator("marks")
    @classmethod
    def _mark_names(cls, value: list[str]) -> list[str]:
        return _mark_names(value)

    @field_validator("tags")
    @classmethod
    def _no_comma(cls, value: list[str] | None) -> list[str] | None:
        for tag in value or ():
            if "," in tag:
                raise ValueError(f"tags: {tag!r} has a comma (give each tag as its own string)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.tag_filter_type is not None and not self.tags:
            raise ValueError("tag_filter_type: applies only with tags")
        if self.min_passes is not None and self.min_passes > self.repeat:
            raise ValueError(f"min_passes: {self.min_passes} is more than repeat ({self.repeat})")
        return self


class TomlFile(_Common):
    case: list[TomlCase] = Field(default_factory=list)
    select: list[TomlSelect] = Field(default_factory=list)
    # The bot under test, started once per session (top level only).
    bot_command: NonEmpty | None = None
    bot_ready_url: NonEmpty | None = None
    bot_start_timeout: Annotated[float, Field(gt=0)] | None = None

    _fixed_file = field_validator("bot_start_timeout", mode="before")(_no_template)


class MarkerArgs(_CaseFields):
    pass


TOML_CASE_KEYS = sorted(TomlCase.model_fields)
TOML_TOP_KEYS = sorted(TomlFile.model_fields)
TOML_SELECT_KEYS = sorted(TomlSelect.model_fields)
MARKER_KEYS = sorted(MarkerArgs.model_fields)


def _did_you_mean(key: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_problem(error: Mapping[str, Any], loc: Sequence[str | int], keys: Sequence[str]) -> str:
    field = ".".join(str(part) for part in loc) or "(document)"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        if keys is TOML_TOP_KEYS and len(loc) == 1 and field in TOML_CASE_KEYS:
            return f"'{field}' cannot be a default at the top of the file: set it in each [[case]]"
        return f"unknown key '{field}'{_did_you_mean(str(loc[-1]), keys)}"
    if kind == "missing":
        return f"{field}: required"
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        return message.removeprefix("Value error, ")
    return f"{field}: {message}"


def _problems(exc: ValidationError, where: str, cases: list[Any] | None = None) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        loc = list(error["loc"])
        prefix = where
        keys = TOML_TOP_KEYS
        if cases is not None and len(loc) >= 2 and loc[0] == "case" and isinstance(loc[1], int):
            index = loc[1]
            raw = cases[index] if index < len(cases) else None
            label = raw.get("name") if isinstance(raw, dict) else None
            shown = label if isinstance(label, str) and label else f"#{index + 1}"
            prefix = f"{where}: case {shown}"
            loc = loc[2:]
            keys = TOML_CASE_KEYS
        elif cases is not None and len(loc) >= 2 and loc[0] == "select":
            prefix = f"{where}: select #{int(loc[1]) + 1}"
            loc = loc[2:]
            keys = TOML_SELECT_KEYS
        elif cases is None:
            keys = MARKER_KEYS
        lines.append(one_line(f"{prefix}: {_field_problem(error, loc, keys)}"))
    return lines


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)  # pure; a suite's cases mostly share a few rooms
def room_url_problem(url: str) -> str | None:
    """Why a (fully expanded) room URL is unusable, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname  # parsing the host is what may raise
    except ValueError:
        return "pipecat_room_url is not a valid URL"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host and _is_loopback(host):
        return None
    return "pipecat_room_url must be an https:// URL (plain http only on loopback)"


def start_url_problem(url: str) -> str | None:
    """Why a (fully expanded) bot start URL is unusable, or None."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - parsing the host is what may raise
    except ValueError:
        return "is not a valid URL"
    if parts.scheme in ("https", "http") and parts.hostname:
        return None
    return "must be an http:// or https:// URL"


# Where a case's bot comes from: one choice, made by the nearest layer that sets one of these
# (the Pipecat Cloud preset exists only as an ini key and a flag).
BOT_CHOICE = ("pipecat_room_url", "bot_start_url", "pipecat_cloud_agent")
_BOT_KIND = {
    "pipecat_room_url": "room",
    "bot_start_url": "start_url",
    "pipecat_cloud_agent": "cloud",
}


@dataclass(frozen=True)
class Layer:
    """One level of settings: ``values`` holds what it sets (a key set to None is not)."""

    name: str
    values: Mapping[str, Any]


class Choice(NamedTuple):
    key: str
    value: Any
    depth: int  # the index of the deciding layer
    layer: str


def contradiction(keys: Sequence[str]) -> str | None:
    """Why two settings of one layer contradict each other (both choose the bot), or None."""
    given = [key for key in BOT_CHOICE if key in keys]
    if len(given) < 2:
        return None
    return (
        f"{given[0]} and {given[1]} are both set: each chooses where the bot is (a static "
        "room, or one bot session per run); keep one"
    )


def nearest(layers: Sequence[Layer], keys: Sequence[str]) -> Choice | None:
    """The precedence rule, for every key: the nearest layer that sets a key decides. Keys
    that are one choice (:data:`BOT_CHOICE`) are decided together: a case's own start URL
    beats an inherited room, and its own room an inherited start URL. Two of them at the
    deciding layer contradict each other: a ConfigError (validation says it first)."""
    if len(keys) == 1:  # most keys: nothing can contradict them
        key = keys[0]
        for depth, layer in enumerate(layers):
            value = layer.values.get(key)
            if value is not None:
                return Choice(key, value, depth, layer.name)
        return None
    for depth, layer in enumerate(layers):
        values = layer.values
        found: str | None = None
        for key in keys:
            if values.get(key) is not None:
                if found is not None:
                    raise ConfigError([f"{layer.name}: {contradiction([found, key])}"])
                found = key
        if found is not None:
            return Choice(found, values[found], depth, layer.name)
    return None


@functools.lru_cache(maxsize=8)  # pure; one Defaults per session
def _option_layers(defaults: Defaults) -> tuple[Layer, Layer]:
    """The command line's and the ini file's layers of ``defaults``."""
    values = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(Defaults)}
    flags = {key: value for key, value in values.items() if key in defaults.flag_keys}
    ini = {key: value for key, value in values.items() if key not in defaults.flag_keys}
    return Layer("flag", flags), Layer("ini", ini)


def layers(
    fields: _CaseFields, level: str, file: _Common | None, defaults: Defaults
) -> list[Layer]:
    """A case's layers, nearest first: itself (``case`` or ``marker``), the top of its
    ``cekura.toml``, the command line, the ini file."""
    # A model's __dict__ holds its fields' values: read, never written.
    found = [Layer(level, fields.__dict__)]
    if file is not None:
        found.append(Layer("file", file.__dict__))
    found.extend(_option_layers(defaults))
    return found


def _key_label(key: str, layer: str) -> str:
    if layer == "flag":
        return "--cekura-" + key.replace("_", "-")
    if layer == "ini":
        return f"ini key cekura_{key}"
    return key


def bot_source(choice: Choice | None) -> BotSource | None:
    if choice is None:
        return None
    return BotSource(_BOT_KIND[choice.key], choice.layer, _key_label(choice.key, choice.layer))


def _bot_start(
    found: Sequence[Layer], choice: Choice | None
) -> tuple[str | None, dict[str, str] | None, dict[str, Any] | None]:
    """The case's start URL, and the headers and body that go with it: those of the level
    that names the URL and of the more specific levels, never of a less specific one (a case
    that names its own start URL must not send the file's Authorization header there)."""
    if choice is None or choice.key != "bot_start_url":
        return None, None, None
    headers: dict[str, str] = {}
    body: dict[str, Any] = {}
    for layer in reversed(found[: choice.depth + 1]):  # least specific first; nearer wins
        headers.update(layer.values.get("bot_start_headers") or {})
        body = _deep_merge(body, layer.values.get("bot_start_body") or {})
    return choice.value, headers or None, body or None


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _merge(
    fields: _CaseFields,
    *,
    name: str,
    source: str,
    file_defaults: _Common | None,
    defaults: Defaults,
    marks: tuple[str, ...] = (),
    level: str = "case",
) -> Case:
    found = layers(fields, level, file_defaults, defaults)

    def pick(key: str) -> Any:
        choice = nearest(found, (key,))
        return choice.value if choice is not None else None

    project = pick("project")
    timeout = pick("timeout")
    bot = nearest(found, BOT_CHOICE)
    start_url, start_headers, start_body = _bot_start(found, bot)
    room = bot.value if bot is not None and bot.key == "pipecat_room_url" else None
    suite = getattr(file_defaults, "thresholds", None) if file_defaults is not None else None
    quarantine = pick("quarantine")
    allow_unevaluated = pick("allow_unevaluated")
    return Case(
        name=name,
        scenario=fields.scenario,
        source=source,
        agent=pick("agent"),
        pipecat_room_url=room,
        pipecat_token=pick("pipecat_token") if room is not None else None,
        publish_data_message=pick("publish_data_message"),
        repeat=fields.repeat,
        min_passes=fields.min_passes if fields.min_passes is not None else fields.repeat,
        timeout=float(timeout) if timeout is not None else DEFAULT_TIMEOUT,
        project=str(project) if project is not None else None,
        marks=marks,
        mock_tool_names=tuple(mock) if (mock := pick("mock_tool_names")) is not None else None,
        room_concurrency=pick("room_concurrency") or 1,
        max_live_runs=pick("max_live_runs"),
        bot_start_url=start_url,
        bot_start_headers=start_headers,
        bot_start_body=start_body,
        thresholds=merge_thresholds(
            parse_thresholds(suite or {}), parse_thresholds(fields.thresholds or {})
        ),
        allow_unevaluated=bool(allow_unevaluated),
        min_samples=pick("min_samples") or 1,
        quarantine=quarantine.value() if quarantine is not None else None,
        canary=fields.canary,
        priority=fields.priority,
        adaptive=bool(pick("adaptive")),
        confirm=pick("confirm") or 0,
        bot_source=bot_source(bot),
    )


def _room_problems(
    case: Case, where: str, have_room_provider: bool, looked_for: Sequence[str] = ()
) -> list[str]:
    url = case.pipecat_room_url
    if case.bot_source is not None and case.bot_source.kind == "cloud":
        return []
    if url is None:
        start = case.bot_start_url
        if start is not None:
            problem = None if has_template(start) else start_url_problem(start)
            return [f"{where}: bot_start_url {problem}"] if problem else []
        if have_room_provider:
            return []
        if looked_for:
            return [
                f"{where}: pipecat_room_url: no room URL for this case (set it in the marker, "
                "at the top of a cekura.toml, or with the cekura_pipecat_room_url ini key; "
                f"no cekura.toml at {', '.join(looked_for)})"
            ]
        return [
            f"{where}: pipecat_room_url: no room URL for this case (set pipecat_room_url or "
            "bot_start_url on the case, at the top of cekura.toml, or with the "
            "cekura_pipecat_room_url / cekura_bot_start_url ini keys)"
        ]
    if has_template(url):
        return []  # checked once expanded, when the case is fired
    problem = room_url_problem(url)
    return [f"{where}: {problem}"] if problem else []


def one_line(text: str) -> str:
    """Control characters (a newline in a quoted key or a name) shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether tables and arrays nest more than ``limit`` levels (walked without recursion:
    a value nested thousands of levels deep must not exhaust the stack here either)."""
    if not isinstance(value, dict | list | tuple):
        return False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list | tuple):
                if depth + 1 >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


_TOO_DEEP = f"tables and arrays nested more than {MAX_DEPTH} levels deep: flatten them"


def parse_toml(path: Path, display: str | None = None) -> dict[str, Any]:
    """A ``cekura.toml`` as a document; any problem is a one-line ConfigError naming it.
    Nesting is capped here, at the file's boundary, so no later stage (validation, JSON,
    ``${VAR}`` expansion) recurses thousands of levels deep."""
    where = display or str(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: invalid TOML: {exc}"]) from None
    except RecursionError:  # the parser recurses once per level of inline nesting
        raise ConfigError([f"{where}: {_TOO_DEEP}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{where}: cannot read: {exc}"]) from None
    if too_deep(document):
        raise ConfigError([f"{where}: {_TOO_DEEP}"])
    return document


def nearest_toml(directory: Path, rootdir: Path) -> tuple[Path | None, list[Path]]:
    """The ``cekura.toml`` whose defaults a marked test in ``directory`` inherits: the
    nearest one from its directory up to the rootdir (included), and every path looked at."""
    looked: list[Path] = []
    current = directory
    while True:
        candidate = current / "cekura.toml"
        looked.append(candidate)
        if candidate.is_file():
            return candidate, looked
        if current == rootdir or current.parent == current or rootdir not in current.parents:
            return None, looked
        current = current.parent


def case_spots(text: str) -> list[tuple[int, dict[str, int]]]:
    """Each ``[[case]]`` header's line (1-based) with the line of each of its keys, in one
    pass over the document."""
    spots: list[tuple[int, dict[str, int]]] = []
    keys: dict[str, int] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            keys = None
            if stripped.replace(" ", "").startswith("[[case]]"):
                keys = {}
                spots.append((number, keys))
            continue
        if keys is not None and "=" in stripped:
            keys.setdefault(stripped.split("=", 1)[0].strip(), number)
    return spots


def case_line(
    spots: list[tuple[int, dict[str, int]]], index: int, key: str | None = None
) -> int | None:
    """The line of the ``index``-th ``[[case]]`` header, or of its ``key`` key when given
    and present; None when the document has fewer ``[[case]]`` tables."""
    if index >= len(spots):
        return None
    header, keys = spots[index]
    return keys.get(key, header) if key is not None else header


def case_lines(text: str, count: int) -> list[int | None]:
    """The ``[[case]]`` line (1-based) of each of a document's ``count`` cases; all None
    unless the document has exactly ``count`` ``[[case]]`` headers (cases written another
    way cannot be placed, and a wrong line is worse than none)."""
    spots = case_spots(text)
    if len(spots) != count:
        return [None] * count
    return [header for header, _ in spots]


def file_defaults(path: Path) -> _Common:
    """The top-level defaults of a ``cekura.toml``, for marked tests beside it."""
    document = parse_toml(path)
    try:
        return TomlFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, str(path), document.get("case"))) from None


def bot_keys(document: _Common | None, path: Path, source: str) -> BotKeys | None:
    """The top-level bot keys of a validated ``cekura.toml`` (None when it sets none)."""
    if not isinstance(document, TomlFile):
        return None
    keys = (document.bot_command, document.bot_ready_url, document.bot_start_timeout)
    if all(key is None for key in keys):
        return None
    return BotKeys(
        source=source,
        directory=str(path.parent),
        command=document.bot_command,
        ready_url=document.bot_ready_url,
        start_timeout=document.bot_start_timeout,
    )


def load_cases(
    path: Path, display: str, defaults: Defaults, have_room_provider: bool
) -> list[Case]:
    """All cases of a ``cekura.toml``; a ConfigError lists every problem in the file."""
    return load_file(path, display, defaults, have_room_provider)[1]


def load_file(
    path: Path, display: str, defaults: Defaults, have_room_provider: bool
) -> tuple[TomlFile, list[Case]]:
    """A ``cekura.toml`` read once: its validated document (top-level keys) and its cases."""
    parsed = read_file(path, display)
    return parsed, file_cases(parsed, display, defaults, have_room_provider)


def read_file(path: Path, display: str) -> TomlFile:
    """A ``cekura.toml``, validated; a ConfigError lists every problem in the file."""
    document = parse_toml(path, display)
    raw_cases = document.get("case")
    try:
        return TomlFile.model_validate(document)
    except ValidationError as exc:
        raw = raw_cases if isinstance(raw_cases, list) else []
        raise ConfigError(_problems(exc, display, raw)) from None


def file_cases(
    parsed: TomlFile,
    display: str,
    defaults: Defaults,
    have_room_provider: bool,
    selected: Sequence[TomlCase] = (),
) -> list[Case]:
    """The cases of a validated ``cekura.toml``: its ``[[case]]`` tables, then the entries
    its ``[[select]]`` tables chose (``select.py``)."""
    problems: list[str] = []
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate([*parsed.case, *selected]):
        name = entry.name or f"scenario-{entry.scenario}"
        where = f"{display}: case {name}"
        if "::" in name or "[" in name or "/" in name:
            problems.append(f"{where}: name: may not contain '::', '[' or '/'")
        if name in seen:
            problems.append(
                f"{where}: name: duplicate of case #{seen[name] + 1} (give each case a unique name)"
            )
        seen.setdefault(name, index)
        case = _merge(
            entry,
            name=name,
            source=display,
            file_defaults=parsed,
            defaults=defaults,
            marks=tuple(entry.marks),
        )
        problems.extend(_room_problems(case, where, have_room_provider))
        cases.append(case)
    if problems:
        raise ConfigError([one_line(p) for p in problems])
    return cases


def merge_markers(kwargs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The keyword arguments of a test's markers, farthest first: a closer marker's value
    wins, key by key, and a closer marker that chooses the bot (:data:`BOT_CHOICE`) replaces
    the farther markers' choice (a function's start URL beats its class's room)."""
    merged: dict[str, Any] = {}
    for one in kwargs:
        if any(one.get(key) is not None for key in BOT_CHOICE):
            for key in BOT_CHOICE:
                merged.pop(key, None)
        merged.update(one)
    return merged


def case_from_marker(
    kwargs: Mapping[str, Any],
    *,
    name: str,
    source: str,
    file_defaults: _Common | None,
    defaults: Defaults,
    have_room_provider: bool,
    looked_for: Sequence[str] = (),
) -> Case:
    where = f"{source}: @pytest.mark.cekura"
    if too_deep(kwargs, MAX_DEPTH - 1):  # the arguments sit one level higher than in a file
        raise ConfigError(
            [f"{where}: dicts and lists nested more than {MAX_DEPTH} levels deep: flatten them"]
        )
    try:
        fields = MarkerArgs.model_validate(dict(kwargs))
    except ValidationError as exc:
        raise ConfigError(_problems(exc, where)) from None
    case = _merge(
        fields,
        name=name,
        source=source,
        file_defaults=file_defaults,
        defaults=defaults,
        level="marker",
    )
    problems = _room_problems(case, where, have_room_provider, looked_for)
    if problems:
        raise ConfigError(problems)
    return case

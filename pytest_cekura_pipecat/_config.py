"""Validation of what users write: ``cekura.toml`` documents and ``@pytest.mark.cekura`` kwargs.

The models are strict (unknown keys, wrong types and out-of-range values are errors) and every
problem becomes one line naming the file, the case and the field. Values are never echoed
(``hide_input_in_errors``): a token typed into the wrong field must not reach the terminal.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from ._case import DEFAULT_TIMEOUT, MAX_TIMEOUT, Case, Defaults, has_template
from ._errors import ConfigError
from ._thresholds import Quarantine, merge_thresholds, parse_date, parse_thresholds

MAX_REPEAT = 100  # Cekura's own frequency cap

PositiveInt = Annotated[int, Field(ge=1)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True, frozen=True)


class QuarantineFields(_Strict):
    until: date
    reason: NonEmpty
    owner: NonEmpty | None = None
    issue: NonEmpty | None = None

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
    thresholds: dict[str, str] | None = None
    allow_unevaluated: bool | None = None
    quarantine: QuarantineFields | None = None
    adaptive: bool | None = None

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            parse_thresholds(value)  # a ValueError names the key and the problem
        return value

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

    @model_validator(mode="after")
    def _min_passes_fits(self) -> _CaseFields:
        if self.min_passes is not None and self.min_passes > self.repeat:
            raise ValueError(f"min_passes: {self.min_passes} is more than repeat ({self.repeat})")
        return self


class TomlCase(_CaseFields):
    name: NonEmpty | None = None
    marks: list[NonEmpty] = Field(default_factory=list)


class TomlFile(_Common):
    case: list[TomlCase] = Field(default_factory=list)


class MarkerArgs(_CaseFields):
    pass


TOML_CASE_KEYS = sorted(TomlCase.model_fields)
TOML_TOP_KEYS = sorted(TomlFile.model_fields)
MARKER_KEYS = sorted(MarkerArgs.model_fields)


def _did_you_mean(key: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_problem(error: Mapping[str, Any], loc: Sequence[str | int], keys: Sequence[str]) -> str:
    field = ".".join(str(part) for part in loc) or "(document)"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
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


def room_url_problem(url: str) -> str | None:
    """Why a (fully expanded) room URL is unusable, or None."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - parsing the host is what may raise
    except ValueError:
        return "pipecat_room_url is not a valid URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None
    return "pipecat_room_url must be an https:// URL (plain http only on loopback)"


def _merge(
    fields: _CaseFields,
    *,
    name: str,
    source: str,
    file_defaults: _Common | None,
    defaults: Defaults,
    marks: tuple[str, ...] = (),
) -> Case:
    def pick(key: str) -> Any:
        value = getattr(fields, key)
        if value is None and file_defaults is not None:
            value = getattr(file_defaults, key)
        if value is None:
            value = getattr(defaults, key, None)
        return value

    project = pick("project")
    timeout = pick("timeout")
    suite = getattr(file_defaults, "thresholds", None) if file_defaults is not None else None
    quarantine = pick("quarantine")
    allow_unevaluated = pick("allow_unevaluated")
    return Case(
        name=name,
        scenario=fields.scenario,
        source=source,
        agent=pick("agent"),
        pipecat_room_url=pick("pipecat_room_url"),
        pipecat_token=pick("pipecat_token"),
        publish_data_message=pick("publish_data_message"),
        repeat=fields.repeat,
        min_passes=fields.min_passes if fields.min_passes is not None else fields.repeat,
        timeout=float(timeout) if timeout is not None else DEFAULT_TIMEOUT,
        project=str(project) if project is not None else None,
        marks=marks,
        mock_tool_names=tuple(mock) if (mock := pick("mock_tool_names")) is not None else None,
        thresholds=merge_thresholds(
            parse_thresholds(suite or {}), parse_thresholds(fields.thresholds or {})
        ),
        allow_unevaluated=bool(allow_unevaluated),
        quarantine=quarantine.value() if quarantine is not None else None,
        canary=fields.canary,
        adaptive=bool(pick("adaptive")),
    )


def _room_problems(case: Case, where: str, have_room_provider: bool) -> list[str]:
    url = case.pipecat_room_url
    if url is None:
        if have_room_provider:
            return []
        return [
            f"{where}: pipecat_room_url: no room URL for this case (set it on the case, at the "
            "top of cekura.toml, or with the cekura_pipecat_room_url ini key)"
        ]
    if has_template(url):
        return []  # checked once expanded, when the case is fired
    problem = room_url_problem(url)
    return [f"{where}: {problem}"] if problem else []


def one_line(text: str) -> str:
    """Control characters (a newline in a quoted key or a name) shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def parse_toml(path: Path, display: str | None = None) -> dict[str, Any]:
    where = display or str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: invalid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{where}: cannot read: {exc}"]) from None


def file_defaults(path: Path) -> _Common:
    """The top-level defaults of a ``cekura.toml``, for marked tests beside it."""
    document = parse_toml(path)
    try:
        return TomlFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, str(path), document.get("case"))) from None


def load_cases(
    path: Path, display: str, defaults: Defaults, have_room_provider: bool
) -> list[Case]:
    """All cases of a ``cekura.toml``; a ConfigError lists every problem in the file."""
    document = parse_toml(path, display)
    raw_cases = document.get("case")
    try:
        parsed = TomlFile.model_validate(document)
    except ValidationError as exc:
        raw = raw_cases if isinstance(raw_cases, list) else []
        raise ConfigError(_problems(exc, display, raw)) from None
    problems: list[str] = []
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(parsed.case):
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


def case_from_marker(
    kwargs: Mapping[str, Any],
    *,
    name: str,
    source: str,
    file_defaults: _Common | None,
    defaults: Defaults,
    have_room_provider: bool,
) -> Case:
    where = f"{source}: @pytest.mark.cekura"
    try:
        fields = MarkerArgs.model_validate(dict(kwargs))
    except ValidationError as exc:
        raise ConfigError(_problems(exc, where)) from None
    case = _merge(fields, name=name, source=source, file_defaults=file_defaults, defaults=defaults)
    problems = _room_problems(case, where, have_room_provider)
    if problems:
        raise ConfigError(problems)
    return case

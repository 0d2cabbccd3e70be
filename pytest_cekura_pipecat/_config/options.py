"""Command-line options and ini keys. Every option has both; the command line wins.

Secrets never come from here: the API key is read from ``CEKURA_API_KEY`` and room tokens
from ``${VAR}`` references, so argv (recorded by ``--debug``, shipped to xdist workers)
never holds one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from .case import DEFAULT_TIMEOUT, MAX_TIMEOUT, Defaults, has_template
from .shard import SHARD_AUTO, ShardEnvError, resolve_shard

# This module is imported by every pytest run that has the plugin installed: it must stay
# light (no httpx, pydantic or tenacity).
DEFAULT_API_URL = "https://api.cekura.ai"
DEFAULT_DASHBOARD_URL = "https://dashboard.cekura.ai"
PIPECAT_CLOUD_URL = "https://api.pipecat.daily.co"
PLUGIN_KEY = pytest.StashKey[Any]()  # the CekuraPlugin of this config
DEFAULT_MAX_RUNS = 1000  # runs a session may start unless told otherwise


@dataclass(frozen=True)
class _Option:
    name: str  # ini key; the flag is --cekura-<name with dashes>
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text} is not a positive number")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text} is not a number of 0 or more")
    return value


def _timeout(text: str) -> float:
    value = _positive_float(text)
    if value > MAX_TIMEOUT:
        raise ValueError(f"{text} is more than 24 h")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


def _tool_names(text: str) -> tuple[str, ...]:
    """``[]`` (mock no tool) or comma-separated tool names."""
    if text.strip() in ("[]", ""):
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(f"{text} has an empty tool name")
    return names


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(f"{text} has an empty name")
    return names


def _shard(text: str) -> tuple[int, int]:
    if text == "auto":
        return SHARD_AUTO  # resolved from the CI system's variables: resolve_shard
    k, _, n = text.partition("/")
    shard, total = int(k), int(n)
    if not 1 <= shard <= total:
        raise ValueError(f"{text}: want K/N with 1 <= K <= N")
    return shard, total


OPTIONS = [
    _Option(
        "cekura_api_url",
        "Cekura API base URL (env CEKURA_API_URL; default https://api.cekura.ai).",
        metavar="URL",
    ),
    _Option(
        "cekura_agent",
        "Default Cekura agent id for cases that name none.",
        _positive_int,
        metavar="ID",
    ),
    _Option(
        "cekura_project", "Cekura project id, for dashboard links in failures.", str, metavar="ID"
    ),
    _Option(
        "cekura_pipecat_room_url", "Default Daily room URL for cases that name none.", metavar="URL"
    ),
    _Option("cekura_batch_size", "Entries per start request (default 50).", _positive_int, 50, "N"),
    _Option(
        "cekura_room_concurrency",
        "Live runs at once in one static Daily room (default 1: the runs of cases sharing a room go one after another).",
        _positive_int,
        1,
        "N",
    ),
    _Option(
        "cekura_max_live_runs",
        "Live runs at once in the whole session (Cekura's concurrency limit or the bot's capacity); the rest are fired in waves as runs end.",
        _positive_int,
        None,
        "N",
    ),
    _Option(
        "cekura_poll_interval",
        "Seconds between polls of a result (default 3).",
        _positive_float,
        3.0,
        "S",
    ),
    _Option(
        "cekura_poll_max_interval",
        "Longest wait between polls of a result whose reads keep failing (default 30).",
        _positive_float,
        30.0,
        "S",
    ),
    _Option(
        "cekura_max_reads_per_minute",
        "Reads of results in the whole session, at most, in any minute (default 60: Cekura asks for a read of a result every 15-30 s); results of one agent are read through its results list.",
        _positive_int,
        60,
        "N",
    ),
    _Option(
        "cekura_timeout",
        "Seconds a case may take, from the moment its run is fired, before it errors and its call is ended (default 1800, at most 86400).",
        _timeout,
        None,
        "S",
    ),
    _Option(
        "cekura_http_timeout",
        "Total deadline of each HTTP request: connect, send and the whole answer (default 30).",
        _positive_float,
        30.0,
        "S",
    ),
    _Option(
        "cekura_retry_window",
        "How long transient errors are ridden out (default 150): reads of results and runs, and start requests that provably did not reach the server (refused connection, 429).",
        _positive_float,
        150.0,
        "S",
    ),
    _Option(
        "cekura_max_runs",
        f"Refuse to fire a session that would start more than N runs (default {DEFAULT_MAX_RUNS}, 0: no ceiling); reruns count too.",
        _non_negative_int,
        DEFAULT_MAX_RUNS,
        "N",
    ),
    _Option(
        "cekura_max_credits",
        "Fire only the cases whose estimated worst case fits in N credits (higher priority first, then collection order); the others error. Reruns count too.",
        _positive_float,
        None,
        "N",
    ),
    _Option(
        "cekura_credits_per_minute",
        "Credits a voice minute costs, for the spend forecast (default 5, Cekura's documented price).",
        _positive_float,
        5.0,
        "N",
    ),
    _Option(
        "cekura_credits_per_metric",
        "Credits an LLM metric costs, for the spend forecast (default 0.2, Cekura's documented price).",
        _non_negative_float,
        0.2,
        "N",
    ),
    _Option(
        "cekura_breaker_after",
        "Stop waiting when the first K finished runs all errored the same way (default 5, 0: never).",
        _non_negative_int,
        5,
        "K",
    ),
    _Option(
        "cekura_shard",
        "Fire and run only shard K of N of the selected Cekura cases (K/N, or auto from the CI's variables): cases dealt largest-first by run count to the lightest shard, ties by node id; other tests run in every shard.",
        _shard,
        None,
        "K/N",
    ),
    _Option(
        "cekura_progress_interval",
        "Seconds between progress lines when not on a terminal (default 30).",
        _positive_float,
        30.0,
        "S",
    ),
    _Option(
        "cekura_report",
        "Write a versioned JSON report of every case and run to PATH.",
        str,
        None,
        "PATH",
    ),
    _Option(
        "cekura_pipecat_cloud_agent",
        "Start one Pipecat Cloud session per run of this agent for cases whose room or start URL no nearer layer sets (key: PIPECAT_CLOUD_API_KEY).",
        str,
        None,
        "NAME",
    ),
    _Option(
        "cekura_pipecat_cloud_url",
        f"Pipecat Cloud API base URL (default {PIPECAT_CLOUD_URL}).",
        str,
        PIPECAT_CLOUD_URL,
        "URL",
    ),
    _Option(
        "cekura_bot_start_url",
        "For cases whose room or start URL no nearer layer sets: POST here once per run to start a bot session with its own Daily room (Pipecat's runner: http://HOST:7860/start).",
        str,
        None,
        "URL",
    ),
    _Option(
        "cekura_bot_command",
        "Start the bot under test with this command before firing (e.g. 'python bot.py -t daily'); stopped at the end of the session.",
        str,
        None,
        "CMD",
    ),
    _Option(
        "cekura_bot_ready_url",
        "The started bot is ready when GET URL answers 2xx (default: the start URL's origin + /status).",
        str,
        None,
        "URL",
    ),
    _Option(
        "cekura_bot_start_timeout",
        "Seconds the started bot may take to become ready (default 60).",
        _positive_float,
        None,
        "S",
    ),
    _Option(
        "cekura_bot_log",
        "Where the started bot's output goes (default cekura-bot.log in the rootdir).",
        str,
        None,
        "PATH",
    ),
    _Option(
        "cekura_mock_tool_names",
        "Tools Cekura mocks, for cases that name none: comma-separated names, or [] for none (default: not sent, Cekura mocks every tool of the agent).",
        _tool_names,
        None,
        "NAMES",
    ),
    _Option(
        "cekura_canary",
        "Fire these cases (comma-separated names) first and alone; the rest only if no canary run errored.",
        _names,
        (),
        "NAMES",
    ),
    _Option(
        "cekura_baseline",
        "A JSON report (--cekura-report) of an earlier run: a case that did not pass there either is a known failure and does not block; one that passed there blocks as a new failure.",
        str,
        None,
        "PATH",
    ),
    _Option(
        "cekura_confirm",
        "Fire a case whose failure would block N more runs first: if one passes, the case is flaky and does not block (cekura.toml and the marker: confirm = N; 0: off).",
        _non_negative_int,
        None,
        "N",
    ),
    _Option(
        "cekura_history",
        "A history file (python -m pytest_cekura_pipecat.report history): list flaky cases with each one's pass rate and flips, and suggest a quarantine; no verdict changes.",
        str,
        None,
        "PATH",
    ),
    _Option(
        "cekura_history_window",
        "Sessions of each case the history's figures are over (default 20).",
        _positive_int,
        20,
        "N",
    ),
    _Option(
        "cekura_html",
        "Write one self-contained HTML page of the session's cases (with --cekura-history: a trend chart per case) to PATH.",
        str,
        None,
        "PATH",
    ),
    _Option(
        "cekura_artifacts",
        "For each run that did not pass, write its recording (at most 50 MB) and its transcript as JSON under DIR/<case>/, linked from JUnit and the JSON report.",
        str,
        None,
        "DIR",
    ),
    _Option(
        "cekura_record",
        "Keep every answer Cekura gives this session in DIR (one file per request, secrets masked), for --cekura-replay.",
        str,
        None,
        "DIR",
    ),
    _Option(
        "cekura_replay",
        "Run the suite against the answers recorded in DIR (--cekura-record), with no network: try thresholds, quarantine, baseline and hooks offline.",
        str,
        None,
        "DIR",
    ),
    _Option(
        "cekura_pr_comment",
        "Write a Markdown pull-request comment body (totals, failing cases) to PATH.",
        str,
        None,
        "PATH",
    ),
]
_BY_NAME = {option.name: option for option in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("cekura", "Cekura voice-agent evaluations (pytest-cekura-pipecat)")
    for option in OPTIONS:
        group.addoption(
            option.flag, dest=option.name, default=None, metavar=option.metavar, help=option.help
        )
        parser.addini(option.name, option.help, default=None)
    group.addoption(
        "--cekura-simulate",
        dest="cekura_simulate",
        nargs="?",
        const="",
        default=None,
        metavar="SCENARIOS_TOML",
        help="Run against the bundled local Cekura-compatible server (scripted outcomes from "
        "SCENARIOS_TOML, or every scenario passing). Never the real service.",
    )
    parser.addini(
        "cekura_simulate",
        "Scenarios file for --cekura-simulate; set to run simulated.",
        default=None,
    )
    group.addoption(
        "--cekura-dry-run",
        dest="cekura_dry_run",
        action="store_true",
        default=None,
        help="Validate and print the planned start requests (redacted) and the runs they would bill; fire nothing.",
    )
    parser.addini("cekura_dry_run", "Same as --cekura-dry-run.", type="bool", default=False)
    group.addoption(
        "--cekura-no-step-summary",
        dest="cekura_no_step_summary",
        action="store_true",
        default=None,
        help="Do not append a Markdown summary to $GITHUB_STEP_SUMMARY.",
    )
    parser.addini(
        "cekura_no_step_summary", "Same as --cekura-no-step-summary.", type="bool", default=False
    )
    group.addoption(
        "--cekura-no-annotations",
        dest="cekura_no_annotations",
        action="store_true",
        default=None,
        help="On GitHub Actions, do not print ::error annotations for failing cases.",
    )
    parser.addini(
        "cekura_no_annotations", "Same as --cekura-no-annotations.", type="bool", default=False
    )
    group.addoption(
        "--cekura-fresh",
        dest="cekura_fresh",
        action="store_true",
        default=None,
        help="Ignore the ledger of runs an earlier, killed session fired and never judged: "
        "end their calls and fire every case anew (default: re-attach to them).",
    )
    parser.addini("cekura_fresh", "Same as --cekura-fresh.", type="bool", default=False)
    group.addoption(
        "--cekura-baseline-strict",
        dest="cekura_baseline_strict",
        action="store_true",
        default=None,
        help="With --cekura-baseline: known failures block too (new / known / fixed are still reported).",
    )
    parser.addini(
        "cekura_baseline_strict", "Same as --cekura-baseline-strict.", type="bool", default=False
    )
    group.addoption(
        "--cekura-evaluator-changed-blocks",
        dest="cekura_evaluator_changed_blocks",
        action="store_true",
        default=None,
        help="With --cekura-baseline: a case that passed there and fails now under another "
        "scenario version or other metric definitions blocks too (default: reported as "
        "evaluator_changed, not blocking).",
    )
    parser.addini(
        "cekura_evaluator_changed_blocks",
        "Same as --cekura-evaluator-changed-blocks.",
        type="bool",
        default=False,
    )
    group.addoption(
        "--cekura-allow-low-credits",
        dest="cekura_allow_low_credits",
        action="store_true",
        default=None,
        help="Fire even when Cekura's credits left cannot cover the forecast's worst case "
        "(default: nothing is fired then).",
    )
    parser.addini(
        "cekura_allow_low_credits",
        "Same as --cekura-allow-low-credits.",
        type="bool",
        default=False,
    )


@dataclass(frozen=True)
class Spend:
    """The credit options: the cap (None: none), where it was set, the pricing the
    forecast uses, and whether too few credits left only warn."""

    max_credits: float | None = None
    max_credits_source: str = ""
    credits_per_minute: float = 5.0
    credits_per_metric: float = 0.2
    allow_low_credits: bool = False


@dataclass(frozen=True)
class Settings:
    api_url: str
    api_url_source: str
    dashboard_url: str
    batch_size: int
    poll_interval: float
    poll_max_interval: float
    http_timeout: float
    retry_window: float
    defaults: Defaults
    max_runs: int | None
    report: str | None
    progress_interval: float
    step_summary: bool
    breaker_after: int
    shard: tuple[int, int] | None
    pipecat_cloud_agent: str | None
    pipecat_cloud_url: str
    timeout_override: float | None  # --cekura-timeout on the command line beats every file
    simulate: str | None  # None: off; "": every scenario passes; else a scenarios file
    dry_run: bool
    annotations: bool = True  # GitHub ::error lines (only when GITHUB_ACTIONS=true)
    pr_comment: str | None = None
    fresh: bool = False  # ignore the ledger of an earlier session's unjudged runs
    bot: BotOptions | None = None
    baseline: str | None = None  # an absolute path
    baseline_strict: bool = False
    evaluator_changed_blocks: bool = False
    canary: tuple[str, ...] = ()  # --cekura-canary: case names
    max_reads_per_minute: int = 60
    spend: Spend = Spend()
    history: str | None = None  # an absolute path
    history_window: int = 20
    html: str | None = None
    artifacts: str | None = None  # an absolute path: where evidence of failing runs goes
    record: str | None = None  # a recording directory to write (absolute)
    replay: str | None = None  # a recording directory to answer from (absolute)


@dataclass(frozen=True)
class BotOptions:
    """The bot-under-test options as given on the command line (``cli``) and in the ini
    file (``ini``): a ``cekura.toml``'s top-level keys sit between the two."""

    cli: dict[str, Any]
    ini: dict[str, Any]
    cli_dir: str  # where pytest was invoked: a command from the command line runs there
    ini_dir: str  # the ini file's directory (or the rootdir)
    log: str  # absolute path of the bot's log file


class OptionError(ValueError):
    pass


# The options whose values take ``${VAR}``, expanded when firing like the same keys of
# cekura.toml; any other is used as written, so a template there is an error.
_TEMPLATED = frozenset(
    {
        "cekura_pipecat_room_url",
        "cekura_bot_start_url",
        "cekura_bot_command",
        "cekura_bot_ready_url",
    }
)


def _value(config: pytest.Config, name: str) -> Any:
    option = _BY_NAME[name]
    raw = config.getoption(name, None)
    where = option.flag
    if raw is None:
        raw = config.getini(name)
        where = f"ini key {name}"
    if raw in (None, ""):
        return option.default
    return _convert(option, raw, where)


def _convert(option: _Option, raw: Any, where: str) -> Any:
    """A set option's value, typed; an OptionError names where it was set."""
    if option.name not in _TEMPLATED and has_template(str(raw)):
        raise OptionError(
            f"{where}: ${{VAR}} is not expanded here (only in "
            f"{', '.join(sorted(_TEMPLATED))}): write the value itself"
        )
    try:
        return option.type(str(raw).strip())
    except ValueError:
        raise OptionError(f"{where}: {raw!r} is not valid ({option.help})") from None


# The defaults (Defaults) a case inherits from the ini file or the command line (the
# timeout on the command line is not one: it overrides every file).
_DEFAULT_KEYS = (
    "agent",
    "pipecat_room_url",
    "project",
    "mock_tool_names",
    "room_concurrency",
    "max_live_runs",
    "bot_start_url",
    "pipecat_cloud_agent",
    "confirm",
)
# They choose where a case's bot is: two of them in one layer contradict each other.
_BOT_CHOICE = ("pipecat_room_url", "bot_start_url", "pipecat_cloud_agent")


def _flag_keys(config: pytest.Config) -> frozenset[str]:
    """The defaults given on the command line (the others set come from the ini file); two
    that choose the bot in one of those layers are an OptionError."""
    flags = frozenset(
        key for key in _DEFAULT_KEYS if config.getoption(f"cekura_{key}", None) not in (None, "")
    )
    layers = (
        [_BY_NAME[f"cekura_{key}"].flag for key in _BOT_CHOICE if key in flags],
        [
            f"ini key cekura_{key}"
            for key in _BOT_CHOICE
            if config.getini(f"cekura_{key}") not in (None, "")
        ],
    )
    for given in layers:
        if len(given) > 1:
            raise OptionError(
                f"{given[0]} and {given[1]} are both set: each chooses where the bot is (a "
                "static room, or one bot session per run); keep one"
            )
    return flags


def resolve(config: pytest.Config) -> Settings:
    """All options, validated; raises OptionError with a one-line message."""
    api_url = _value(config, "cekura_api_url")
    source = (
        "--cekura-api-url" if config.getoption("cekura_api_url", None) else "ini key cekura_api_url"
    )
    if not api_url:
        api_url, source = (
            os.environ.get("CEKURA_API_URL") or DEFAULT_API_URL,
            "env CEKURA_API_URL" if os.environ.get("CEKURA_API_URL") else "default",
        )
    if not api_url.startswith(("https://", "http://")):
        raise OptionError(
            f"cekura API URL {api_url!r} must start with https:// (or http:// for a local server)"
        )
    simulate = config.getoption("cekura_simulate", None)
    if simulate is None:
        ini = config.getini("cekura_simulate")
        if ini:
            simulate = str(ini)
            if config.inipath is not None:
                simulate = str((config.inipath.parent / simulate).resolve())
    http_timeout = _value(config, "cekura_http_timeout")
    cli_timeout = config.getoption("cekura_timeout", None)
    timeout_override = _value(config, "cekura_timeout") if cli_timeout is not None else None
    ini_timeout = config.getini("cekura_timeout")
    try:
        timeout = _timeout(str(ini_timeout)) if ini_timeout else None
    except ValueError:
        raise OptionError(
            f"ini key cekura_timeout: {ini_timeout!r} is not a positive number of at most 86400"
        ) from None
    return Settings(
        api_url=api_url.rstrip("/"),
        api_url_source=source,
        dashboard_url=os.environ.get("CEKURA_DASHBOARD_URL") or DEFAULT_DASHBOARD_URL,
        batch_size=_value(config, "cekura_batch_size"),
        poll_interval=_value(config, "cekura_poll_interval"),
        poll_max_interval=max(
            _value(config, "cekura_poll_max_interval"), _value(config, "cekura_poll_interval")
        ),
        http_timeout=http_timeout,
        retry_window=_value(config, "cekura_retry_window"),
        max_reads_per_minute=_value(config, "cekura_max_reads_per_minute"),
        defaults=Defaults(
            agent=_value(config, "cekura_agent"),
            pipecat_room_url=_value(config, "cekura_pipecat_room_url"),
            project=_value(config, "cekura_project"),
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            mock_tool_names=_value(config, "cekura_mock_tool_names"),
            room_concurrency=_value(config, "cekura_room_concurrency"),
            max_live_runs=_value(config, "cekura_max_live_runs"),
            bot_start_url=_value(config, "cekura_bot_start_url"),
            pipecat_cloud_agent=_value(config, "cekura_pipecat_cloud_agent"),
            confirm=_value(config, "cekura_confirm"),
            flag_keys=_flag_keys(config),
        ),
        max_runs=_value(config, "cekura_max_runs") or None,
        spend=_spend(config),
        report=_value(config, "cekura_report"),
        progress_interval=_value(config, "cekura_progress_interval"),
        step_summary=not (
            config.getoption("cekura_no_step_summary", None)
            or config.getini("cekura_no_step_summary")
        ),
        breaker_after=_value(config, "cekura_breaker_after"),
        shard=_resolve_shard(_value(config, "cekura_shard")),
        pipecat_cloud_agent=_value(config, "cekura_pipecat_cloud_agent"),
        pipecat_cloud_url=_value(config, "cekura_pipecat_cloud_url"),
        timeout_override=timeout_override,
        simulate=simulate,
        dry_run=bool(config.getoption("cekura_dry_run", None) or config.getini("cekura_dry_run")),
        annotations=not (
            config.getoption("cekura_no_annotations", None)
            or config.getini("cekura_no_annotations")
        ),
        pr_comment=_value(config, "cekura_pr_comment"),
        fresh=bool(config.getoption("cekura_fresh", None) or config.getini("cekura_fresh")),
        bot=_bot_options(config),
        baseline=_input_path(config, "cekura_baseline"),
        history=_input_path(config, "cekura_history"),
        history_window=_value(config, "cekura_history_window"),
        html=_value(config, "cekura_html"),
        artifacts=_input_path(config, "cekura_artifacts"),
        record=_input_path(config, "cekura_record"),
        replay=_replay(config, simulate),
        canary=_value(config, "cekura_canary"),
        baseline_strict=bool(
            config.getoption("cekura_baseline_strict", None)
            or config.getini("cekura_baseline_strict")
        ),
        evaluator_changed_blocks=bool(
            config.getoption("cekura_evaluator_changed_blocks", None)
            or config.getini("cekura_evaluator_changed_blocks")
        ),
    )


def _spend(config: pytest.Config) -> Spend:
    cap = _value(config, "cekura_max_credits")
    flag = config.getoption("cekura_max_credits", None) is not None
    return Spend(
        max_credits=cap,
        max_credits_source="--cekura-max-credits" if flag else "ini key cekura_max_credits",
        credits_per_minute=_value(config, "cekura_credits_per_minute"),
        credits_per_metric=_value(config, "cekura_credits_per_metric"),
        allow_low_credits=bool(
            config.getoption("cekura_allow_low_credits", None)
            or config.getini("cekura_allow_low_credits")
        ),
    )


_BOT_KEYS = {
    "command": "cekura_bot_command",
    "ready_url": "cekura_bot_ready_url",
    "start_timeout": "cekura_bot_start_timeout",
}


def _bot_options(config: pytest.Config) -> BotOptions:
    cli: dict[str, Any] = {}
    ini: dict[str, Any] = {}
    for key, name in _BOT_KEYS.items():
        option = _BY_NAME[name]
        for layer, raw, where in (
            (cli, config.getoption(name, None), option.flag),
            (ini, config.getini(name), f"ini key {name}"),
        ):
            if raw not in (None, ""):
                layer[key] = _convert(option, raw, where)
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    log = _value(config, "cekura_bot_log") or "cekura-bot.log"
    return BotOptions(
        cli=cli,
        ini=ini,
        cli_dir=str(config.invocation_params.dir),
        ini_dir=str(ini_dir),
        log=os.path.join(str(config.rootpath), log),
    )


def _input_path(config: pytest.Config, name: str) -> str | None:
    """A path the session reads (the baseline report, the history) or writes into (the
    artifacts directory), absolute: relative to the invocation directory on the command
    line, to the ini file's directory in the ini file."""
    raw = config.getoption(name, None)
    base = config.invocation_params.dir
    if raw in (None, ""):
        raw = config.getini(name)
        if config.inipath is not None:
            base = config.inipath.parent
    if not raw:
        return None
    return os.path.join(base, str(raw).strip())


def _replay(config: pytest.Config, simulate: str | None) -> str | None:
    """The recording to replay (a directory), alone: not with a recording or a simulation."""
    replay = _input_path(config, "cekura_replay")
    if replay is None:
        return None
    if _input_path(config, "cekura_record") is not None:
        raise OptionError("--cekura-record and --cekura-replay are both set: keep one")
    if simulate is not None:
        raise OptionError("--cekura-simulate and --cekura-replay are both set: keep one")
    if not os.path.isdir(replay):
        raise OptionError(f"--cekura-replay: {replay} is not a directory (a --cekura-record DIR)")
    return replay


def simulated(settings: Settings, url: str) -> Settings:
    """Settings pointed at the local Cekura-compatible server (never the real service)."""
    return replace(settings, api_url=url, api_url_source="simulator")


def _resolve_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    if shard != SHARD_AUTO:
        return shard
    try:
        return resolve_shard(shard)
    except ShardEnvError as exc:
        raise OptionError(str(exc)) from None

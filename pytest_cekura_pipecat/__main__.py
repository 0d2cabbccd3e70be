"""Command-line tools for a ``cekura.toml``: ``python -m pytest_cekura_pipecat pull`` writes
Cekura's scenarios into it as ``[[case]]`` tables (so the list is kept under code review),
``python -m pytest_cekura_pipecat check`` compares it with Cekura.

Like the plugin, they read the key from ``CEKURA_API_KEY`` (never from the command line)
and the base URL from ``--api-url``, else ``CEKURA_API_URL``, else Cekura's own."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ._api.client import CekuraClient
from ._config.options import DEFAULT_API_URL
from ._config.pull import Pulled, differences, pull_into, scenarios_of
from ._config.schema import read_file
from ._config.select import Listed
from ._errors import CekuraError, ConfigError
from ._files import SharedDirError, write_atomic
from ._redact import Redactor

_T = TypeVar("_T")
EXIT_DIFFERENT = 1
EXIT_ERROR = 2


class _Stop(Exception):
    """One line for stderr, and the command ends with EXIT_ERROR."""


def _ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ids") from None
    if not ids or any(i < 1 for i in ids):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ids")
    return ids


def _tags(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_cekura_pipecat",
        description="Keep a cekura.toml's cases in step with Cekura's scenarios.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pull = commands.add_parser("pull", help="write or update [[case]] tables from Cekura")
    pull.add_argument("--agent", type=int, required=True, help="the agent's id")
    pull.add_argument("--folder", metavar="PATH", default="", help="a folder (and those under it)")
    pull.add_argument("--tags", type=_tags, default=[], help="comma-separated tags")
    pull.add_argument(
        "--tag-filter", choices=("any", "all"), default="", help="a scenario needs any/all tags"
    )
    pull.add_argument("--ids", type=_ids, default=[], help="comma-separated scenario ids")
    check = commands.add_parser("check", help="compare a cekura.toml's cases with Cekura")
    for command in (pull, check):
        command.add_argument("--toml", default="cekura.toml", help="the file (cekura.toml)")
        command.add_argument("--api-url", help="Cekura's base URL (env CEKURA_API_URL)")
    return parser


def _client(api_url: str | None) -> CekuraClient:
    key = os.environ.get("CEKURA_API_KEY") or ""
    if not key:
        raise _Stop("CEKURA_API_KEY is not set: export your Cekura API key")
    if key != key.strip():
        raise _Stop("CEKURA_API_KEY has leading or trailing whitespace: strip it")
    url = api_url or os.environ.get("CEKURA_API_URL") or DEFAULT_API_URL
    if not url.startswith(("https://", "http://")):
        raise _Stop(
            f"Cekura's URL {url!r} must start with https:// (or http:// for a local server)"
        )
    source = "--api-url" if api_url else "env CEKURA_API_URL" if url != DEFAULT_API_URL else ""
    return CekuraClient(url, key, Redactor(), url_source=source)


async def _chosen(client: CekuraClient, args: argparse.Namespace) -> list[Listed]:
    """The scenarios ``pull`` writes: the listed ones (unless only ids are given), and each
    id asked for, which must be the agent's."""
    found: dict[int, Listed] = {}
    if args.folder or args.tags or not args.ids:
        listed = await client.scenarios(
            agent_id=args.agent,
            folder_path=args.folder,
            tags=tuple(args.tags),
            tag_filter_type=args.tag_filter if args.tags else "",
        )
        found.update((s.id, Listed.of(s)) for s in listed)
    problems: list[str] = []
    for scenario_id, scenario in (await scenarios_of(client, args.ids, ())).items():
        if scenario is None:
            problems.append(f"scenario {scenario_id} does not exist on Cekura")
        elif scenario.agent is not None and scenario.agent != args.agent:
            problems.append(
                f"scenario {scenario_id} belongs to agent {scenario.agent}, not agent {args.agent}"
            )
        else:
            found[scenario_id] = scenario
    if problems:
        raise _Stop("; ".join(problems))
    return list(found.values())


def _pull(args: argparse.Namespace, path: Path) -> int:
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise _Stop(f"{path}: cannot read: {exc}") from None
    client = _client(args.api_url)
    try:
        chosen = asyncio.run(_with(client, _chosen(client, args)))
    except CekuraError as exc:
        raise _Stop(str(exc)) from None
    pulled: Pulled = pull_into(text, chosen, args.agent, str(path))
    if pulled.text != text:
        try:
            write_atomic(path, pulled.text.encode("utf-8"))
        except SharedDirError as exc:
            raise _Stop(str(exc)) from None
    for scenario_id, old, new in pulled.renamed:
        print(f"pull: {path}: case {old} renamed {new} (scenario {scenario_id})")
    print(
        f"pull: {path}: {len(chosen)} scenario(s): {len(pulled.added)} case(s) added, "
        f"{len(pulled.renamed)} renamed, {len(pulled.kept)} unchanged"
    )
    return 0


def _check(args: argparse.Namespace, path: Path) -> int:
    parsed = read_file(path, str(path))
    client = _client(args.api_url)
    ids = [case.scenario for case in parsed.case]
    agents = sorted({a for case in parsed.case if (a := case.agent or parsed.agent) is not None})
    try:
        found = asyncio.run(_with(client, scenarios_of(client, ids, agents)))
    except CekuraError as exc:
        raise _Stop(str(exc)) from None
    lines = differences(parsed, found, str(path))
    for line in lines:
        print(f"check: {line}")
    if lines:
        return EXIT_DIFFERENT
    print(f"check: {path}: {len(parsed.case)} case(s) match Cekura")
    return 0


async def _with(client: CekuraClient, work: Coroutine[Any, Any, _T]) -> _T:
    try:
        return await work
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "pull" and args.tag_filter and not args.tags:
        parser.error("--tag-filter applies only with --tags")
    path = Path(args.toml)
    try:
        return _pull(args, path) if args.command == "pull" else _check(args, path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"{args.command}: {line}", file=sys.stderr)
    except _Stop as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""Cases chosen on Cekura: a ``cekura.toml``'s ``[[select]]`` tables name an agent's
scenarios by folder and tags, the way Cekura's own CI integrations choose evaluators.

The list is read once per session, at collection (``_items.py``): under pytest-xdist the
first worker to need a query reads it under a lock in the controller's shared directory and
writes the answer there, and every other worker reads that answer, so all of them collect
the same items and Cekura sees one request. Everything else here is pure: queries from a
document, case entries from answers, names from scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._api.catalogue import Scenario
from .._api.client import CekuraClient
from .._errors import CekuraError, ConfigError
from .._files import SharedDirError, write_atomic
from .schema import TomlCase, TomlFile, TomlSelect, one_line

# The keys of a [[select]] table that choose scenarios; every other key is a case default.
SELECTION_KEYS = frozenset({"folder_path", "tags", "tag_filter_type"})
_NAME_LIMIT = 60  # characters of the scenario's name kept in a case name
_LOCK = "select.lock"

PULL_HINT = "or write the cases into the file: python -m pytest_cekura_pipecat pull"


@dataclass(frozen=True)
class Query:
    """One ``[[select]]`` table as a request: ``GET /test_framework/v1/scenarios/?...``."""

    agent: int
    folder_path: str = ""
    tags: tuple[str, ...] = ()
    tag_filter_type: str = ""

    def key(self) -> str:
        """A file name for this query's answer in the shared directory."""
        text = json.dumps([self.agent, self.folder_path, list(self.tags), self.tag_filter_type])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self) -> str:
        parts = [f"agent {self.agent}"]
        if self.folder_path:
            parts.append(f"folder {self.folder_path!r}")
        if self.tags:
            how = f" ({self.tag_filter_type})" if self.tag_filter_type else ""
            parts.append(f"tags {','.join(self.tags)}{how}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Listed:
    """A scenario as a selection needs it."""

    id: int
    name: str
    agent: int | None = None

    @classmethod
    def of(cls, scenario: Scenario) -> Listed:
        return cls(scenario.id, scenario.name, scenario.agent)


@dataclass(frozen=True)
class Answer:
    """What Cekura listed for one query, or why it could not (one line)."""

    scenarios: tuple[Listed, ...] = ()
    problem: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "problem": self.problem,
                "scenarios": [[s.id, s.name, s.agent] for s in self.scenarios],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Answer | None:
        """The answer a file holds; None when it cannot be read as one."""
        try:
            data = json.loads(text)
            problem = data["problem"]
            found = tuple(
                Listed(int(i), str(n), None if a is None else int(a))
                for i, n, a in data["scenarios"]
            )
        except (ValueError, TypeError, KeyError):
            return None
        return cls(found, problem if isinstance(problem, str) else None)


def case_name(name: str, scenario_id: int) -> str:
    """A case's name from its scenario's: lower-case words joined by '-', then the id, so
    two scenarios of one name get two names and a name stays put while others are added."""
    words = re.sub(r"[\W_]+", "-", name.casefold()).strip("-")
    words = words[:_NAME_LIMIT].rstrip("-")
    return f"{words}-{scenario_id}" if words else f"scenario-{scenario_id}"


def queries(parsed: TomlFile, display: str, default_agent: int | None) -> list[Query]:
    """Each ``[[select]]`` table's query; its agent is its own, the file's or the ini's."""
    found: list[Query] = []
    problems: list[str] = []
    for index, table in enumerate(parsed.select, 1):
        agent = table.agent or parsed.agent or default_agent
        if agent is None:
            problems.append(
                f"{display}: select #{index}: agent: required (set it in the table, at the "
                "top of the file, or with the cekura_agent ini key)"
            )
            continue
        found.append(
            Query(
                agent=agent,
                folder_path=table.folder_path or "",
                tags=tuple(table.tags or ()),
                tag_filter_type=table.tag_filter_type or "",
            )
        )
    if problems:
        raise ConfigError(problems)
    return found


def entries(
    parsed: TomlFile, chosen: Sequence[Query], answers: Mapping[Query, Answer], display: str
) -> list[TomlCase]:
    """The case entries the ``[[select]]`` tables choose, in table order, each table's
    scenarios by id. A scenario an explicit ``[[case]]`` names is left to it; one chosen by
    two tables is the first's. A query Cekura did not answer is a ConfigError."""
    explicit = {case.scenario for case in parsed.case}
    taken: set[int] = set()
    found: list[TomlCase] = []
    problems: list[str] = []
    for index, (table, query) in enumerate(zip(parsed.select, chosen, strict=True), 1):
        answer = answers[query]
        if answer.problem is not None:
            problems.append(one_line(f"{display}: select #{index}: {answer.problem}"))
            continue
        for scenario in sorted(answer.scenarios, key=lambda s: s.id):
            if scenario.id in explicit or scenario.id in taken:
                continue
            taken.add(scenario.id)
            found.append(_entry(table, query, scenario))
    if problems:
        raise ConfigError(problems)
    return found


def _entry(table: TomlSelect, query: Query, scenario: Listed) -> TomlCase:
    own = table.model_dump(exclude=set(SELECTION_KEYS), exclude_none=True)
    own.update(agent=query.agent, scenario=scenario.id, name=case_name(scenario.name, scenario.id))
    return TomlCase.model_validate(own)


# -- reading Cekura once ----------------------------------------------------------------


Fetch = Callable[[Sequence[Query]], dict[Query, Answer]]


def fetcher(client: CekuraClient) -> Fetch:
    """Reads each query's list through ``client`` (closed afterwards); a failure of one
    query is its answer's problem, in one line."""

    async def read(chosen: Sequence[Query]) -> dict[Query, Answer]:
        answers: dict[Query, Answer] = {}
        try:
            for query in chosen:
                try:
                    listed = await client.scenarios(
                        agent_id=query.agent,
                        folder_path=query.folder_path,
                        tags=query.tags,
                        tag_filter_type=query.tag_filter_type,
                    )
                except CekuraError as exc:
                    answers[query] = Answer(
                        problem=f"could not list scenarios ({query.describe()}): {exc}; "
                        f"Cekura is needed to collect a [[select]] table ({PULL_HINT})"
                    )
                    continue
                answers[query] = Answer(tuple(Listed.of(s) for s in listed))
        finally:
            await client.aclose()
        return answers

    return lambda chosen: asyncio.run(read(chosen))


class Selections:
    """A session's answers, by query: each read from Cekura once. ``shared`` is the
    directory the xdist controller shares with its workers (None in a single process)."""

    def __init__(self, shared: Path | None) -> None:
        self._shared = shared
        self._known: dict[Query, Answer] = {}

    def resolve(self, chosen: Sequence[Query], fetch: Callable[[], Fetch]) -> dict[Query, Answer]:
        """The answer to every query; ``fetch`` (made only when something is missing) reads
        those no process of the session has read yet."""
        missing = [q for q in dict.fromkeys(chosen) if q not in self._known]
        if missing:
            with self._locked():
                missing = [q for q in missing if not self._read(q)]
                if missing:
                    for query, answer in fetch()(missing).items():
                        self._known[query] = answer
                        self._write(query, answer)
        return {query: self._known[query] for query in chosen}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._shared is None:
            yield
            return
        try:
            import fcntl  # POSIX; a lock that dies with its holder

            lock = open(self._shared / _LOCK, "a")  # noqa: SIM115 - held across the yield
        except (ImportError, OSError):
            yield  # no lock: each worker reads for itself, as a single process does
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _path(self, query: Query) -> Path | None:
        return None if self._shared is None else self._shared / f"select-{query.key()}.json"

    def _read(self, query: Query) -> bool:
        path = self._path(query)
        if path is None:
            return False
        try:
            answer = Answer.from_json(path.read_text(encoding="utf-8"))
        except OSError:
            return False
        if answer is None:
            return False
        self._known[query] = answer
        return True

    def _write(self, query: Query, answer: Answer) -> None:
        path = self._path(query)
        if path is not None:
            with contextlib.suppress(SharedDirError):
                write_atomic(path, answer.to_json().encode())

"""The pytest side of a case: ``cekura.toml`` files, their items, and marked tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _pytest.mark.structures import Mark, MarkDecorator

from ._api.client import API_VERSION
from ._config.case import Case
from ._config.options import PLUGIN_KEY
from ._config.schema import (
    TomlCase,
    TomlFile,
    bot_keys,
    case_from_marker,
    case_line,
    case_lines,
    case_spots,
    file_cases,
    file_defaults,
    merge_markers,
    nearest_toml,
    read_file,
)
from ._config.select import PULL_HINT, Fetch, Selections, fetcher, queries
from ._config.select import entries as selected_entries
from ._errors import CekuraError, ConfigError, NotEvaluated
from ._judge.verdict import CaseVerdict
from ._report.ci import provenance as ci_provenance
from ._report.record import Provenance, junit_properties, run_records
from ._session import CekuraSession
from ._version import __version__

MARKER = "cekura"


def session_of(config: pytest.Config) -> CekuraSession:
    """The session of this config, through the hook object stashed on it (built on first
    use)."""
    session: CekuraSession = config.stash[PLUGIN_KEY].session()
    return session


def judge(session: CekuraSession, item: pytest.Item) -> CaseVerdict:
    """Wait for the item's verdict, record its properties; an errored case errors in setup.

    Under pytest-rerunfailures a rerun (``execution_count`` > 1) of a case whose evaluation
    did not pass fires a fresh run instead of reusing the old verdict."""
    invalid = session.state.invalid.get(item.nodeid)
    if invalid:
        raise NotEvaluated(invalid)
    attempts = session.state.attempts.get(item.nodeid, 0)
    if getattr(item, "execution_count", 1) > attempts + 1 and session.refire(item.nodeid):
        item.user_properties[:] = [
            p for p in item.user_properties if not p[0].startswith("cekura_")
        ]
    verdict = session.verdict(item.nodeid)
    if not any(name == "cekura_run_id" for name, _ in item.user_properties):
        case = session.state.cases[item.nodeid]
        several = case.repeat > 1 or len(verdict.runs) > 1
        item.user_properties.extend(
            junit_properties(
                run_records(verdict), indexed=several, provenance=_provenance(session, item.nodeid)
            )
        )
    if verdict.outcome == "error":
        session.fail(item.nodeid, verdict)
    return verdict


def _provenance(session: CekuraSession, nodeid: str) -> Provenance:
    """The case's provenance for JUnit: its evaluator, the versions, the commit and branch."""
    evaluator = session.evaluator(nodeid)
    where = ci_provenance()
    return Provenance(
        scenario_version=evaluator.scenario_version if evaluator else None,
        metrics_hash=evaluator.metrics_hash if evaluator else None,
        plugin_version=__version__,
        api_version=API_VERSION,
        commit=_str(where.get("commit")),
        branch=_str(where.get("branch")),
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class CekuraFile(pytest.File):
    """A ``cekura.toml``: one item per ``[[case]]``."""

    def collect(self) -> Iterator[CekuraItem]:
        session = session_of(self.config)
        try:
            parsed = read_file(self.path, self.nodeid)
            chosen = _selected(session, self.config, parsed, self.nodeid)
            cases = file_cases(
                parsed,
                self.nodeid,
                session.settings.defaults,
                session.has_room_provider(),
                chosen,
            )
            session.note_bot_keys(bot_keys(parsed, self.path, self.nodeid))
        except ConfigError as exc:
            session.file_broken(self.path)
            raise self.CollectError(str(exc)) from None
        self._check_marks(cases)
        lines = case_lines(self.path.read_text(encoding="utf-8"), len(parsed.case))
        lines += [None] * len(chosen)
        for case, line in zip(cases, lines, strict=True):
            item = CekuraItem.from_parent(self, name=case.name, case=case, line=line)
            for mark in case.marks:
                # Not through ``pytest.mark.<name>``: its unknown-mark warning would point
                # at this module, not at the user's file.
                item.add_marker(MarkDecorator(Mark(mark, (), {}, _ispytest=True), _ispytest=True))
            session.register(item.nodeid, case)
            yield item

    def _check_marks(self, cases: list[Case]) -> None:
        """Unregistered marks warn (or, under ``--strict-markers``, error) like marks on a
        test, at the case's line of this file."""
        known = {
            line.split(":", 1)[0].split("(", 1)[0].strip() for line in self.config.getini("markers")
        }
        strict = _strict_markers(self.config)
        spots: list[tuple[int, dict[str, int]]] | None = None
        problems: list[str] = []
        for index, case in enumerate(cases):
            for mark in case.marks:
                if mark in known:
                    continue
                if spots is None:
                    spots = case_spots(self.path.read_text(encoding="utf-8"))
                line = case_line(spots, index, key="marks")
                where = f"{self.nodeid}:{line}" if line else self.nodeid
                if strict:
                    problems.append(
                        f"{where}: case {case.name}: mark {mark!r} is not registered "
                        "(--strict-markers): add it to the markers ini key"
                    )
                    continue
                try:
                    warnings.warn_explicit(
                        pytest.PytestUnknownMarkWarning(
                            f"case {case.name}: unknown mark {mark!r} - is this a typo? "
                            "Register custom marks in the markers ini key"
                        ),
                        pytest.PytestUnknownMarkWarning,
                        str(self.path),
                        line or 0,
                    )
                except pytest.PytestUnknownMarkWarning as exc:  # filterwarnings = error
                    problems.append(f"{where}: {exc}")
        if problems:
            raise self.CollectError("\n".join(problems))


def _selected(
    session: CekuraSession, config: pytest.Config, parsed: TomlFile, display: str
) -> list[TomlCase]:
    """The entries a file's ``[[select]]`` tables choose, read from Cekura once per session
    (shared with the other xdist workers through the controller's directory)."""
    if not parsed.select:
        return []
    chosen = queries(parsed, display, session.settings.defaults.agent)
    runtime = session.runtime
    if runtime is None or not runtime.api_key:
        raise ConfigError(
            [
                f"{display}: [[select]] needs Cekura to list its scenarios and CEKURA_API_KEY "
                f"is not set: export it ({PULL_HINT})"
            ]
        )

    def fetch() -> Fetch:
        client = runtime.client()
        assert client is not None  # the key is set
        return fetcher(client)

    selections: Selections = config.stash[PLUGIN_KEY].selections()
    answers = selections.resolve(chosen, fetch)
    return selected_entries(parsed, chosen, answers, display)


class CekuraItem(pytest.Item):
    """One case of a ``cekura.toml``, backed by ``repeat`` runs. ``line`` (1-based) is its
    ``[[case]]`` line, None when the file spells cases another way."""

    def __init__(self, *, case: Case, line: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.line = line

    def setup(self) -> None:
        judge(session_of(self.config), self)

    def runtest(self) -> None:
        session = session_of(self.config)
        verdict = session.verdict(self.nodeid)
        if verdict.outcome == "failed":
            session.fail(self.nodeid, verdict)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, CekuraError):
            return excinfo.getrepr(style="value")
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int, str]:
        # 0-based, as pytest's own: junit_family=xunit1's line, annotations and editors
        # point at the case's [[case]] line.
        line = self.line - 1 if self.line else 0
        return self.path, line, f"cekura case {self.case.name} (scenario {self.case.scenario})"


@dataclass(frozen=True)
class _Inherited:
    """What a marked test in one directory inherits: the nearest ``cekura.toml``'s
    defaults, or why it cannot (the file is invalid), and the paths looked at."""

    defaults: Any = None
    broken: str | None = None
    looked_for: tuple[str, ...] = ()


def _inherited(
    session: CekuraSession, config: pytest.Config, directory: Path, terminal: bool
) -> _Inherited:
    toml, looked = nearest_toml(directory, config.rootpath)

    def shown(path: Path) -> str:
        inside = config.rootpath in path.parents
        return path.relative_to(config.rootpath).as_posix() if inside else str(path)

    if toml is None:
        return _Inherited(looked_for=tuple(shown(p) for p in looked))
    try:
        defaults = file_defaults(toml)
        session.note_bot_keys(bot_keys(defaults, toml, str(toml)))
        return _Inherited(defaults=defaults)
    except ConfigError as exc:
        where = str(toml)
        if toml in session.state.broken_files:
            return _Inherited(broken=f"cekura.toml at {where} is invalid (see above)")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if not terminal or reporter is None:  # nobody sees this process's terminal
            return _Inherited(
                broken=f"cekura.toml at {where} is invalid: " + "; ".join(exc.problems)
            )
        reporter.ensure_newline()
        for problem in exc.problems:
            reporter.write_line(f"cekura: {problem}", red=True)
        session.file_broken(toml)
        return _Inherited(broken=f"cekura.toml at {where} is invalid (see above)")


def marked_cases(
    session: CekuraSession, items: list[pytest.Item], config: pytest.Config, terminal: bool
) -> None:
    """Turn ``@pytest.mark.cekura`` tests into cases; every problem is one line.

    A problem of a marker is a usage error. A marked test whose ``cekura.toml`` is invalid
    errors on its own, saying so: the file's problems are shown once, not once per test.
    ``terminal``: this process's terminal is seen (not an xdist worker's)."""
    problems: list[str] = []
    defaults_by_dir: dict[Path, _Inherited] = {}
    for item in items:
        if isinstance(item, CekuraItem):
            continue
        markers = list(item.iter_markers(MARKER))
        if not markers:
            continue
        if any(marker.args for marker in markers):
            problems.append(f"{item.nodeid}: @pytest.mark.cekura takes keyword arguments only")
        kwargs = merge_markers([marker.kwargs for marker in reversed(markers)])  # closest last
        directory = item.path.parent
        if directory not in defaults_by_dir:
            defaults_by_dir[directory] = _inherited(session, config, directory, terminal)
        inherited = defaults_by_dir[directory]
        if inherited.broken is not None:
            session.refuse([item.nodeid], inherited.broken)
            continue
        try:
            case = case_from_marker(
                kwargs,
                name=item.name,
                source=item.nodeid,
                file_defaults=inherited.defaults,
                defaults=session.settings.defaults,
                have_room_provider=session.has_room_provider(),
                looked_for=inherited.looked_for,
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        session.register(item.nodeid, case)
    if problems:
        if terminal:
            raise pytest.UsageError("\n".join(problems))
        # A UsageError in an xdist worker crashes xdist: instead, fire nothing, and error
        # the items (every worker finds the same problems, so none of them fires).
        summary = "not fired: configuration errors: " + "; ".join(problems)
        session.refuse(None, summary)
        for item in items:
            if item.get_closest_marker(MARKER) and item.nodeid not in session.state.cases:
                own = [p for p in problems if p.startswith(item.nodeid)]
                session.refuse([item.nodeid], "; ".join(own) or summary)


def shard(
    session: CekuraSession, items: list[pytest.Item], index: int, total: int
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """Shard K of N: cases dealt by run count (largest first, ties by node id) to the
    lightest shard, so N jobs fire disjoint subsets that together are the whole selection.
    Tests that are not Cekura cases are left to every shard."""
    cases = session.state.cases
    ordered = sorted(
        (item for item in items if item.nodeid in cases),
        key=lambda item: (-cases[item.nodeid].repeat, item.nodeid),
    )
    load = [0] * total
    mine: set[str] = set()
    for item in ordered:
        target = min(range(total), key=lambda i: (load[i], i))
        load[target] += cases[item.nodeid].repeat
        if target == index - 1:
            mine.add(item.nodeid)
    keep = [i for i in items if i.nodeid in mine or i.nodeid not in cases]
    drop = [i for i in items if i.nodeid not in mine and i.nodeid in cases]
    return keep, drop


def _strict_markers(config: pytest.Config) -> bool:
    """``--strict-markers`` as pytest itself reads it: an ini key (with ``strict`` as its
    fallback) since pytest 9, options only before."""
    try:
        strict = config.getini("strict_markers")
        if strict is None:
            strict = config.getini("strict")
    except ValueError:  # pytest 8: no such ini keys
        return bool(config.option.strict_markers or config.option.strict)
    return bool(strict)

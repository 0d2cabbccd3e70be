"""The pytest side of a case: ``cekura.toml`` files, their items, and marked tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._case import Case
from ._config import case_from_marker, file_defaults, load_cases
from ._errors import CekuraError, ConfigError
from ._session import CekuraSession
from ._verdict import CaseVerdict

MARKER = "cekura"


def properties(verdict: CaseVerdict) -> list[tuple[str, object]]:
    """JUnit properties: one set per run, plain strings so they survive pytest-xdist."""
    props: list[tuple[str, object]] = []
    for run in verdict.runs:
        props.append(("cekura_scenario_id", str(run.scenario_id)))
        props.append(("cekura_result_id", "" if run.result_id is None else str(run.result_id)))
        props.append(("cekura_run_id", "" if run.run_id is None else str(run.run_id)))
        props.append(("cekura_status", run.status))
        props.append(("cekura_verdict", run.verdict))
        if run.dashboard_url:
            props.append(("cekura_dashboard_url", run.dashboard_url))
        recording = run.recording_url
        if recording:
            props.append(("cekura_recording_url", recording))
    return props


def judge(session: CekuraSession, item: pytest.Item) -> CaseVerdict:
    """Wait for the item's verdict, record its properties; an errored case errors in setup.

    Under pytest-rerunfailures a rerun (``execution_count`` > 1) of a case whose evaluation
    did not pass fires a fresh run instead of reusing the old verdict."""
    invalid = session.state.invalid.get(item.nodeid)
    if invalid:
        pytest.fail(invalid, pytrace=False)
    attempts = session.state.attempts.get(item.nodeid, 0)
    if getattr(item, "execution_count", 1) > attempts + 1 and session.refire(item.nodeid):
        item.user_properties[:] = [
            p for p in item.user_properties if not p[0].startswith("cekura_")
        ]
    verdict = session.verdict(item.nodeid)
    if not any(name == "cekura_run_id" for name, _ in item.user_properties):
        item.user_properties.extend(properties(verdict))
    if verdict.outcome == "error":
        session.fail(item.nodeid, verdict)
    return verdict


class CekuraFile(pytest.File):
    """A ``cekura.toml``: one item per ``[[case]]``."""

    def collect(self) -> Iterator[CekuraItem]:
        session = CekuraSession.of(self.config)
        try:
            cases = load_cases(
                self.path,
                self.nodeid,
                session.settings.defaults,
                session.has_room_provider(),
            )
        except ConfigError as exc:
            raise self.CollectError(str(exc)) from None
        for case in cases:
            item = CekuraItem.from_parent(self, name=case.name, case=case)
            for mark in case.marks:
                item.add_marker(mark)
            session.register(item.nodeid, case)
            yield item


class CekuraItem(pytest.Item):
    """One case of a ``cekura.toml``, backed by ``repeat`` runs."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def setup(self) -> None:
        judge(CekuraSession.of(self.config), self)

    def runtest(self) -> None:
        session = CekuraSession.of(self.config)
        verdict = session.verdict(self.nodeid)
        if verdict.outcome == "failed":
            session.fail(self.nodeid, verdict)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, CekuraError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"cekura case {self.case.name} (scenario {self.case.scenario})"


def marked_cases(session: CekuraSession, items: list[pytest.Item]) -> None:
    """Turn ``@pytest.mark.cekura`` tests into cases; every problem is one line."""
    problems: list[str] = []
    defaults_by_dir: dict[Any, Any] = {}
    for item in items:
        if isinstance(item, CekuraItem):
            continue
        markers = list(item.iter_markers(MARKER))
        if not markers:
            continue
        kwargs: dict[str, Any] = {}
        for marker in reversed(markers):  # closest last, so it wins
            if marker.args:
                problems.append(f"{item.nodeid}: @pytest.mark.cekura takes keyword arguments only")
            kwargs.update(marker.kwargs)
        directory = item.path.parent
        if directory not in defaults_by_dir:
            toml = directory / "cekura.toml"
            try:
                defaults_by_dir[directory] = file_defaults(toml) if toml.is_file() else None
            except ConfigError as exc:
                problems.extend(exc.problems)
                defaults_by_dir[directory] = None
        try:
            case = case_from_marker(
                kwargs,
                name=item.name,
                source=item.nodeid,
                file_defaults=defaults_by_dir[directory],
                defaults=session.settings.defaults,
                have_room_provider=session.has_room_provider(),
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        session.register(item.nodeid, case)
    if problems:
        if getattr(session.config, "workerinput", None) is None:
            raise pytest.UsageError("\n".join(problems))
        # A UsageError in an xdist worker crashes xdist: instead, fire nothing, and error
        # the items (every worker finds the same problems, so none of them fires).
        summary = "not fired: configuration errors: " + "; ".join(problems)
        session.state.problem = summary
        for item in items:
            if item.get_closest_marker(MARKER) and item.nodeid not in session.state.cases:
                own = [p for p in problems if p.startswith(item.nodeid)]
                session.state.invalid[item.nodeid] = "; ".join(own) or summary


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

"""Fixtures the plugin provides: ``cekura_run``, ``cekura_runs`` and ``cekura_simulator``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ._config.options import PLUGIN_KEY

if TYPE_CHECKING:
    from ._api.run import CekuraRun
    from .simulator import Simulator


@pytest.fixture
def cekura_runs(request: pytest.FixtureRequest) -> tuple[CekuraRun, ...]:
    """Every run of this test's ``@pytest.mark.cekura`` case, finished."""
    plugin = request.config.stash.get(PLUGIN_KEY, None)
    session = plugin.built() if plugin is not None else None
    nodeid = request.node.nodeid
    if session is None or nodeid not in session.state.cases:
        raise pytest.UsageError(
            f"{nodeid}: the cekura_run fixture needs @pytest.mark.cekura(scenario=...) on the test"
        )
    runs: tuple[CekuraRun, ...] = session.verdict(nodeid).runs
    return runs


@pytest.fixture
def cekura_run(cekura_runs: tuple[CekuraRun, ...]) -> CekuraRun:
    """The first (usually only) run of this test's ``@pytest.mark.cekura`` case."""
    return cekura_runs[0]


@pytest.fixture
def cekura_simulator() -> Iterator[Simulator]:
    """A local Cekura-compatible server on 127.0.0.1, every scenario passing in 0.2 s
    unless scripted. Point a suite at it with ``--cekura-api-url=<simulator.url>`` and
    ``CEKURA_API_KEY=<simulator.api_key>``; inspect ``simulator.requests`` afterwards."""
    from .simulator import ScenarioScript, Simulator  # only for suites that use it

    simulator = Simulator(default_outcome=ScenarioScript(id=0, seconds=0.2)).start()
    try:
        yield simulator
    finally:
        simulator.stop()

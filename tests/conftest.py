"""Shared fixtures: a scripted local Cekura server and a pytester suite pointed at it; the
project's default of two processes. Everything else the tests share is in ``helpers.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Imported here, before any pytester run: pytester restores sys.modules after each
# in-process run, and httpx caches httpcore's exception classes on first use. A first
# import inside a run would leave httpx mapping classes of a discarded httpcore module.
import httpcore  # noqa: F401
import pytest
from helpers import API_KEY, ROOM_TOKEN, SCRIPTS, Suite

from pytest_cekura_pipecat.simulator import Simulator

# What a CI runner sets that the plugin reads (its provider, links, step summary), and what
# makes pytest print differently (``CI``, ``BUILD_NUMBER``).
_RUNNER = ("GITHUB_", "GITLAB_", "CI_", "BUILDKITE", "CIRCLE", "BITBUCKET_", "JENKINS_")


@pytest.fixture(autouse=True)
def _not_on_a_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees the same machine, whichever CI runs the suite: a test that plays a
    CI sets its variables itself, and nothing reaches the runner's own step summary."""
    for name in list(os.environ):
        if name.startswith(_RUNNER) or name in ("CI", "BUILD_NUMBER"):
            monkeypatch.delenv(name)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SCRIPTS, api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def suite(pytester: pytest.Pytester, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Suite:
    monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
    monkeypatch.setenv("ROOM_TOKEN", ROOM_TOKEN)
    for name in ("CEKURA_API_URL", "CEKURA_DASHBOARD_URL", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(
        f"""
        [pytest]
        cekura_api_url = {sim.url}
        cekura_poll_interval = 0.1
        cekura_poll_max_interval = 0.3
        # The default budget (60 reads a minute) spaces reads 1 s apart: tests poll faster.
        cekura_max_reads_per_minute = 6000
        cekura_retry_window = 5
        # Most tests share one static room between cases; lanes (one run at a time per
        # room, the default) have their own tests in test_lanes.py.
        cekura_room_concurrency = 100
        markers =
            smoke: quick subset
        """
    )
    return Suite(pytester, sim)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The project's tests run on two processes unless ``-n`` says otherwise. Set here, not
    in pyproject's addopts, so that a user's ``pytest`` in the repository (in a virtualenv
    without the test extra, hence without xdist) is not given an option it does not know.
    Called before xdist's own hook (a conftest registers later), never in a worker."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return
    if config.option.numprocesses is None:
        config.option.numprocesses = 2
        if config.option.dist == "no":
            # A few tests take tens of seconds: an idle process takes queued tests from the
            # busy one, so that the run does not end on one process alone.
            config.option.dist = "worksteal"

"""The process's role is decided once, by the hook object registered in pytest_configure;
the session is built from values and holds no pytest.Config."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import Suite

import pytest_cekura_pipecat
from pytest_cekura_pipecat._config.case import Case, Defaults
from pytest_cekura_pipecat._config.options import Settings
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat._roles import build
from pytest_cekura_pipecat._session import Hooks, build_session

PACKAGE = Path(pytest_cekura_pipecat.__file__).parent

ONE_CASE = """
pipecat_room_url = "https://acme.daily.co/r"

[[case]]
name = "books-a-table"
scenario = 101

[[case]]
name = "opening-hours"
scenario = 104
"""

WRITE_ROLE = """
from pathlib import Path

from pytest_cekura_pipecat._config.options import PLUGIN_KEY


def pytest_sessionstart(session):
    config = session.config
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    kind = type(config.stash[PLUGIN_KEY]).__name__
    Path(config.rootpath, f"role-{worker}.txt").write_text(kind)
"""


def _roles(path: Path) -> dict[str, str]:
    return {p.stem.removeprefix("role-"): p.read_text() for p in path.glob("role-*.txt")}


def test_one_process_registers_the_single_process_hook_object(suite: Suite) -> None:
    suite.toml(ONE_CASE)
    suite.pytester.makeconftest(WRITE_ROLE)
    suite.run("-n", "0").assert_outcomes(passed=2)
    assert _roles(suite.pytester.path) == {"main": "SingleProcess"}


def test_xdist_registers_a_controller_and_a_worker_hook_object(suite: Suite) -> None:
    pytest.importorskip("xdist")
    suite.toml(ONE_CASE)
    suite.pytester.makeconftest(WRITE_ROLE)
    suite.run("-n", "2").assert_outcomes(passed=2)
    assert _roles(suite.pytester.path) == {
        "main": "XdistController",
        "gw0": "XdistWorker",
        "gw1": "XdistWorker",
    }


def test_no_code_asks_which_process_it_is() -> None:
    """Only plugin.py (its _hook_object, and the worker's hook object reading what it was
    started with) looks at the process; nothing branches on a role."""
    asks = re.compile(r"role ==|\.role\b")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if asks.search(line) or ("workerinput" in line and path.name != "plugin.py")
    ]
    assert not found, found


def test_the_builder_does_not_import_the_plugin() -> None:
    tree = ast.parse((PACKAGE / "_roles" / "build.py").read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name.split(".")[-1] == "plugin"], imported


def _settings() -> Settings:
    return Settings(
        api_url="http://127.0.0.1:9",
        api_url_source="test",
        dashboard_url="https://dashboard.example",
        batch_size=10,
        poll_interval=0.1,
        poll_max_interval=0.3,
        http_timeout=1.0,
        retry_window=1.0,
        defaults=Defaults(),
        max_runs=None,
        report=None,
        progress_interval=10.0,
        step_summary=False,
        breaker_after=5,
        shard=None,
        pipecat_cloud_agent=None,
        pipecat_cloud_url="https://pipecat.example",
        timeout_override=None,
        simulate=None,
        dry_run=False,
    )


class _NoHooks:
    """A hook relay with no implementation: every hook answers None."""

    def __getattr__(self, name: str) -> object:
        return lambda **kwargs: None


def test_a_session_that_cannot_fire_is_built_from_values_and_refuses_every_case() -> None:
    settings, redactor = _settings(), Redactor()
    runtime = build.runtime(settings, None, redactor, None)
    firing = build.controller(runtime, None, "cekura: the temporary directory is full")
    hooks = Hooks(_NoHooks(), lambda case: None)  # type: ignore[arg-type]
    session = build_session(
        settings, redactor, firing, hooks, ledger=None, baseline=None, agent_flag=False
    )
    try:
        assert not any(isinstance(value, pytest.Config) for value in vars(session).values())
        session.register("cekura.toml::a", Case(name="a", scenario=101, source="cekura.toml"))
        verdict = session.verdict("cekura.toml::a")
        assert verdict.outcome == "error"
        assert [run.error_message for run in verdict.runs] == [
            "not fired: the temporary directory is full"
        ]
        session.refuse(["t.py::b"], "cekura.toml at x is invalid")
        assert session.state.invalid == {"t.py::b": "cekura.toml at x is invalid"}
    finally:
        session.close()

"""pytest hook implementations: each a few lines that delegate. Entry point ``pytest11``."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from . import _ci, hooks, options
from ._comment import pr_comment
from .coordinator import Coordinator, LocalCoordinator, SharedDirCoordinator
from .items import CekuraFile, CekuraItem, judge, marked_cases
from .pipecat_cloud import PipecatCloudRooms
from .progress import Progress
from .redact import RecordFactory, Redactor
from .report import Summary, dumps, json_document, record, step_summary, write_atomic
from .session import SESSION_KEY, CekuraSession

pytest_plugins = ["pytest_cekura_pipecat.fixtures"]

_PLUGIN_NAME = "cekura-session"
MARKER_HELP = (
    "cekura(scenario, pipecat_room_url=None, pipecat_token=None, publish_data_message=None, "
    "agent=None, repeat=1, min_passes=None, timeout=None): run this test's Cekura evaluator "
    "scenario against a Pipecat bot; the run's verdict becomes the test's."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        settings = options.resolve(config)
    except options.OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    distributed = config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no"
    if settings.dry_run and distributed and getattr(config, "workerinput", None) is None:
        raise pytest.UsageError("--cekura-dry-run plans in one process: run it without -n")
    plugin = CekuraPlugin(config, settings)
    config.stash[SESSION_KEY] = plugin.session
    config.pluginmanager.register(plugin, _PLUGIN_NAME)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(plugin), "cekura-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if isinstance(plugin, CekuraPlugin):
        plugin.close()
        config.pluginmanager.unregister(plugin)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == "cekura.toml":
        return CekuraFile.from_parent(parent, path=file_path)
    return None


class CekuraPlugin:
    """Session-scoped hooks. Registered in ``pytest_configure``, found by name."""

    def __init__(self, config: pytest.Config, settings: options.Settings) -> None:
        self.config = config
        self.summary = Summary()
        self.simulator: Any = None
        self.shared_dir: Path | None = None
        self.progress: Progress | None = None
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        api_key = os.environ.get("CEKURA_API_KEY") or None
        simulated_url: str | None = None
        coordinator: Coordinator = LocalCoordinator()
        remote = False
        if workerinput is not None:
            if workerinput.get("cekura_shared_dir"):
                shared = Path(workerinput["cekura_shared_dir"])
                # A worker on another host (--tx ssh=/socket=) cannot see the controller's
                # directory; firing there would fire once per host.
                remote = not shared.is_dir()
                if not remote:
                    coordinator = SharedDirCoordinator(shared)
            if workerinput.get("cekura_sim_url"):
                simulated_url = str(workerinput["cekura_sim_url"])
                api_key = str(workerinput["cekura_sim_key"])
        elif settings.simulate is not None:
            self.simulator = _start_simulator(settings.simulate)
            simulated_url, api_key = self.simulator.url, self.simulator.api_key
        if simulated_url is not None:
            settings = replace(settings, api_url=simulated_url, api_url_source="simulator")
        self.session = CekuraSession(
            config, settings, coordinator, Redactor(), api_key=api_key, simulated_url=simulated_url
        )
        if remote:
            self.session.state.problem = (
                "not fired: pytest-cekura-pipecat needs xdist workers on the controller's "
                "machine (-n N), not remote ones (--tx ssh/socket)"
            )
            self.session.state.plan_missing = True

        self.rooms: PipecatCloudRooms | None = None
        if settings.pipecat_cloud_agent:
            key = os.environ.get("PIPECAT_CLOUD_API_KEY")
            if not key:
                raise pytest.UsageError(
                    "--cekura-pipecat-cloud-agent: PIPECAT_CLOUD_API_KEY is not set (export your Pipecat Cloud key)"
                )
            self.rooms = PipecatCloudRooms(
                settings.pipecat_cloud_agent, key, settings.pipecat_cloud_url, self.session.redactor
            )
            config.pluginmanager.register(self.rooms, "cekura-pipecat-cloud")
        self.log_records = RecordFactory(self.session.redactor)
        self.log_records.install()

    def close(self) -> None:
        self.log_records.uninstall()
        if self.rooms is not None:
            self.rooms.close()
            self.config.pluginmanager.unregister(self.rooms)
        self.session.close()
        if self.simulator is not None:
            self.simulator.stop()
        if self.shared_dir is not None:
            shutil.rmtree(self.shared_dir, ignore_errors=True)

    def shared(self) -> Path:
        """The directory the controller shares with its workers; from then on the controller
        reads the workers' plan and breaker from it (to end live calls, and for the summary)."""
        if self.shared_dir is None:
            self.shared_dir = Path(tempfile.mkdtemp(prefix="pytest-cekura-"))
            self.session.coordinator = SharedDirCoordinator(self.shared_dir)
        return self.shared_dir

    @pytest.hookimpl
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        settings = self.session.settings
        if self.session.simulated_url:
            return [
                f"cekura: SIMULATED: local Cekura-compatible server at {self.session.simulated_url}"
                " (no real calls, scripted verdicts)"
            ]
        return [
            f"cekura: api {settings.api_url} ({settings.api_url_source}), batch size "
            f"{settings.batch_size}, poll every {settings.poll_interval:g}s, key "
            f"{'set' if os.environ.get('CEKURA_API_KEY') else 'NOT SET (CEKURA_API_KEY)'}"
        ]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        marked_cases(self.session, items)
        if self.session.settings.shard is not None:
            keep, drop = shard(self.session, items, *self.session.settings.shard)
            if drop:
                config.hook.pytest_deselected(items=drop)
                items[:] = keep

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        option = session.config.option
        if (
            option.collectonly
            or getattr(option, "setupplan", False)
            or getattr(option, "setuponly", False)
        ):
            return None  # nothing will run: fire nothing
        if session.testsfailed and not option.continue_on_collection_errors:
            return None
        if self.session.settings.dry_run:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            for line in self.session.dry_run(session.items):
                if reporter is not None:
                    reporter.write_line(line)
            return True
        self.previous_sigterm = _sigterm_as_interrupt()
        self.session.start(session.items)
        self._start_progress(session.config)
        return None

    def _start_progress(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.get_verbosity() < 0 or getattr(config, "workerinput", None):
            return
        self.progress = Progress(self.session, reporter, self.session.settings.progress_interval)
        if self.shared_dir is not None:  # the xdist controller: the workers do the waiting
            self.progress.run_in_background(self.session.settings.progress_interval)
        else:
            self.session.on_tick = self.progress.tick

    def pytest_sessionfinish(self) -> None:
        _restore_sigterm(getattr(self, "previous_sigterm", None))
        if self.progress is not None:
            self.progress.stop()

    def pytest_keyboard_interrupt(self) -> None:
        # Calls left running cost money. Under xdist the controller does this, once.
        if getattr(self.config, "workerinput", None) is None:
            self.session.end_live_calls()

    @pytest.hookimpl  # after pytest's skipping (tryfirst): a skipped test never waits
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        state = self.session.state
        if not isinstance(item, CekuraItem) and (
            item.nodeid in state.cases or item.nodeid in state.invalid
        ):
            judge(self.session, item)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.progress is not None and report.when == "setup":
            self.progress.clear()
        self.summary.add(report)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield
        if not isinstance(item, CekuraItem) and item.nodeid in self.session.state.cases:
            verdict = self.session.verdict(item.nodeid)
            if verdict.outcome == "failed":
                pytest.fail(verdict.message, pytrace=False)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        verdict = self.session.state.verdicts.get(item.nodeid)
        if verdict is not None and call.when == "setup":
            case = self.session.state.cases[item.nodeid]
            data = record(case.name, item.nodeid, case.scenario, verdict)
            data["rerun"] = self.session.state.rerun_counts.get(item.nodeid, 0)
            data["notes"] = self.session.state.ended + self.session.state.notes
            report.cekura = data  # type: ignore[attr-defined]
        return report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        plan = self.session.coordinator.plan(0.0)
        tripped = self.session.coordinator.tripped()
        self.summary.note(
            *(plan.get("notes", []) if plan else []),
            *([tripped] if tripped else []),
            *self.session.state.ended,
            *self.session.state.notes,
        )
        notes = self.summary.notes
        if not self.summary.records and not notes and not self.session.simulated:
            return
        terminalreporter.write_sep("=", "cekura")
        # The table ends with the notes; with no case recorded, the notes stand alone.
        table = (
            self.summary.lines(terminalreporter._tw.fullwidth) if self.summary.records else notes
        )
        for line in table:
            terminalreporter.write_line(self.session.redactor(line))
        self._write_outputs(terminalreporter)
        if self.session.simulated:
            terminalreporter.write_line(
                "cekura: SIMULATED RUN: verdicts came from the local Cekura-compatible server, "
                "not from Cekura",
                yellow=True,
                bold=True,
            )

    def _write_outputs(self, terminalreporter: Any) -> None:
        """The controller's outputs, all from one document. A failed write is one line and a
        non-zero exit status; it skips none of the other outputs."""
        if getattr(self.config, "workerinput", None) is not None:
            return  # under xdist the controller has every case; workers have a part
        from . import __version__

        document = json_document(
            self.summary,
            plugin_version=__version__,
            api_url=self.session.settings.api_url,
            simulated=self.session.simulated,
            provenance=_ci.provenance(),
        )
        if not self._write_files(terminalreporter, document):
            session = getattr(terminalreporter, "_session", None)
            if session is not None and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.USAGE_ERROR
        if self.session.settings.annotations and _ci.in_github_actions():
            for line in _ci.github_annotations(document["cases"]):
                terminalreporter.write_line(self.session.redactor(line))

    def _write_files(self, terminalreporter: Any, document: dict[str, Any]) -> bool:
        settings, redact = self.session.settings, self.session.redactor
        ok = True
        writes: list[tuple[str, str | None, Any]] = [
            ("report", settings.report, lambda: dumps(document)),
            ("PR comment", settings.pr_comment, lambda: pr_comment(document)),
        ]
        for what, target, render in writes:
            if not target:
                continue
            try:
                path = write_atomic(target, redact(render()))
            except OSError as exc:
                terminalreporter.write_line(
                    f"cekura: could not write an output: the {what} {target}: {exc}", red=True
                )
                ok = False
            else:
                terminalreporter.write_line(f"cekura: {what} written to {path}")
        summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_path and settings.step_summary:
            try:
                with open(summary_path, "a", encoding="utf-8") as handle:
                    handle.write(redact(step_summary(document)))
            except OSError as exc:
                terminalreporter.write_line(
                    f"cekura: could not write an output: the step summary: {exc}", red=True
                )
                ok = False
        return ok


class XdistHooks:
    """Hooks that exist only when pytest-xdist is installed (the controller side)."""

    def __init__(self, plugin: CekuraPlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["cekura_shared_dir"] = str(self.plugin.shared())
        session = self.plugin.session
        if session.simulated_url and self.plugin.simulator is not None:
            node.workerinput["cekura_sim_url"] = session.simulated_url
            node.workerinput["cekura_sim_key"] = self.plugin.simulator.api_key


def shard(
    session: CekuraSession, items: list[pytest.Item], index: int, total: int
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """Shard K of N: cases dealt by run count (largest first, ties by node id) to the
    lightest shard, so N jobs fire disjoint subsets that together are the whole selection.
    Tests that are not Cekura cases are left to every shard."""
    cases = sorted(
        (item for item in items if item.nodeid in session.state.cases),
        key=lambda item: (-session.state.cases[item.nodeid].repeat, item.nodeid),
    )
    load = [0] * total
    mine: set[str] = set()
    for item in cases:
        target = min(range(total), key=lambda i: (load[i], i))
        load[target] += session.state.cases[item.nodeid].repeat
        if target == index - 1:
            mine.add(item.nodeid)
    keep = [i for i in items if i.nodeid in mine or i.nodeid not in session.state.cases]
    drop = [i for i in items if i.nodeid not in mine and i.nodeid in session.state.cases]
    return keep, drop


def _sigterm_as_interrupt() -> Any:
    """CI cancels a job with SIGTERM: treat it like Ctrl-C so live calls get ended."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _start_simulator(scenarios: str) -> Any:
    from .simulator import ScenarioScript, Simulator

    try:
        if scenarios:
            return Simulator(scenarios).start()
        return Simulator(default_outcome=ScenarioScript(id=0, seconds=1.0)).start()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--cekura-simulate: {exc}") from None

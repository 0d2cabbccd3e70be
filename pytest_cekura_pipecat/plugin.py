"""pytest hook implementations: each a few lines that delegate. Entry point ``pytest11``.

The process's role is decided once, in ``pytest_configure``, by registering one hook object,
as pytest-xdist registers ``DSession`` on its controller and ``WorkerInteractor`` on a
worker: ``SingleProcess`` (no xdist), ``XdistController`` or ``XdistWorker``. Their base,
``CekuraPlugin``, carries the hooks every process shares; each subclass overrides only what
its role does differently (the controller watches and never fires, a worker's terminal is
not seen). ``_hook_object`` is the one place that asks which process this is: after it no
code branches on the role, so a new role is a new subclass, not a new branch in every hook.

This module is imported by every pytest run with the plugin installed, so it imports
nothing heavy: httpx, pydantic, tenacity and the runtime load only when a session has a
Cekura case (a ``cekura.toml`` or a ``@pytest.mark.cekura`` test).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import hooks
from ._config import options as options
from ._errors import NotEvaluated
from ._interrupt import SigtermAsInterrupt
from ._notice import TerminalNotice
from ._owner import (
    Owner,
    cannot_write,
    ledger_directory,
    ledger_lost,
    make_shared_dir,
    remove_stale,
    shared_lost,
)
from ._redact import RecordFactory, Redactor, mask_debug_trace
from ._text import plain

if TYPE_CHECKING:
    from ._config.select import Selections
    from ._judge.gating import Baseline
    from ._judge.verdict import CaseVerdict
    from ._report.artifacts import Target
    from ._report.progress import Counts, Progress
    from ._report.record import CaseRecord
    from ._report.summary import Summary
    from ._roles import role
    from ._roles.build import Firing
    from ._session import CekuraSession

pytest_plugins = ["pytest_cekura_pipecat._fixtures"]

_PLUGIN_NAME = "cekura-session"
_ITEMS_NAME = "cekura-items"
_SECRETS = "secrets"  # in the shared directory: every process's secrets (see _redact.py)
REPLAY_KEY = "no-key-needed-to-replay"  # the client's key under --cekura-replay (never sent)
MARKER = "cekura"
MARKER_HELP = (
    "cekura(scenario, pipecat_room_url=None, pipecat_token=None, publish_data_message=None, "
    "agent=None, repeat=1, min_passes=None, timeout=None, project=None, mock_tool_names=None, "
    "bot_start_url=None, bot_start_headers=None, bot_start_body=None, room_concurrency=None, "
    "max_live_runs=None, thresholds=None, allow_unevaluated=None, min_samples=None, "
    "quarantine=None, canary=False, adaptive=None, confirm=None, priority=0): run this "
    "test's Cekura evaluator scenario against a Pipecat bot; the run's verdict becomes the test's."
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
    kind = _hook_object(config)
    if settings.dry_run and kind is XdistController:
        raise pytest.UsageError("--cekura-dry-run plans in one process: run it without -n")
    key = os.environ.get("CEKURA_API_KEY")
    if key and key != key.strip():
        raise pytest.UsageError(
            "CEKURA_API_KEY has leading or trailing whitespace (a newline from a file or a "
            "secret store?): strip it"
        )
    if settings.pipecat_cloud_agent and not os.environ.get("PIPECAT_CLOUD_API_KEY"):
        raise pytest.UsageError(
            "--cekura-pipecat-cloud-agent: PIPECAT_CLOUD_API_KEY is not set (export your "
            "Pipecat Cloud key)"
        )
    baseline = None
    if settings.baseline:
        from ._judge.gating import BaselineError, load_baseline

        try:
            baseline = load_baseline(
                settings.baseline, settings.baseline_strict, settings.evaluator_changed_blocks
            )
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
    plugin = kind(config, settings, baseline)
    config.stash[options.PLUGIN_KEY] = plugin
    config.pluginmanager.register(plugin, _PLUGIN_NAME)


def _hook_object(config: pytest.Config) -> type[CekuraPlugin]:
    """This process's role: the one place that asks (see the module docstring)."""
    if getattr(config, "workerinput", None) is not None:
        return XdistWorker
    if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no":
        return XdistController
    return SingleProcess


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if isinstance(plugin, CekuraPlugin):
        plugin.close()
        config.pluginmanager.unregister(plugin)
        items = config.pluginmanager.get_plugin(_ITEMS_NAME)
        if items is not None:
            config.pluginmanager.unregister(items)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == "cekura.toml":
        from ._items import CekuraFile

        return CekuraFile.from_parent(parent, path=file_path)
    return None


class CekuraPlugin:
    """The hooks every process shares. Registered once, in ``pytest_configure``, as the
    subclass of this process's role (``SingleProcess``, ``XdistController``,
    ``XdistWorker``); the session (and with it the runtime) is built on first need."""

    _terminal = True  # whether anyone sees this process's terminal (an xdist worker's: no)

    def __init__(
        self, config: pytest.Config, settings: options.Settings, baseline: Baseline | None
    ) -> None:
        self.config = config
        self.redactor = Redactor()
        self.simulator: Any = None
        self.baseline = baseline  # --cekura-baseline, read once
        self.progress: Progress | None = None
        self._session: CekuraSession | None = None
        self._selections: Selections | None = None
        self._building = threading.RLock()  # the controller may build it on another thread
        self._summary: Summary | None = None
        self._sent_notes: tuple[str, ...] = ()
        self.sigterm = SigtermAsInterrupt()
        # The session's identity (the ledger's owner): under xdist the controller's.
        self.owner, self.secrets_key = self._identity()
        self.settings, self.api_key = self._api(settings)
        self.redactor.add(self.api_key)
        self.redactor.add_url(self.settings.api_url)
        self.redactor.add(os.environ.get("PIPECAT_CLOUD_API_KEY"))
        self.log_records = RecordFactory(self.redactor)
        self.log_records.install()
        mask_debug_trace(self.redactor, config.trace)
        self.recording = self._open_recording()

    def _open_recording(self) -> Any:
        """This process's recorder (--cekura-record) or replay (--cekura-replay), or None;
        made here, so that a directory that cannot be used is a usage error."""
        settings = self.settings
        if not (settings.record or settings.replay):
            return None
        from ._api.recording import Recorder, RecordingError, Replay

        try:
            if settings.replay:
                return Replay.load(Path(settings.replay), self.redactor)
            assert settings.record is not None
            self._new_recording(Path(settings.record))
            return Recorder(Path(settings.record), self.redactor, self._process_name())
        except RecordingError as exc:
            raise pytest.UsageError(str(exc)) from None

    def _new_recording(self, directory: Path) -> None:
        """--cekura-record: an earlier recording in the directory is forgotten, before any
        process of this session records (an xdist worker leaves it to the controller)."""
        from ._api.recording import clear

        clear(directory)

    def _identity(self) -> tuple[Owner, bytes]:
        """The session's owner and its key for the shared secrets file: new here."""
        return Owner.here(), os.urandom(32)

    def _api(self, settings: options.Settings) -> tuple[options.Settings, str | None]:
        """The settings and API key this process talks to Cekura with: the local server's
        under --cekura-simulate (started here), else the environment's key."""
        if settings.replay:
            return settings, REPLAY_KEY  # nothing is sent: no key is needed, none is read
        if settings.simulate is None:
            return settings, os.environ.get("CEKURA_API_KEY") or None
        self.simulator = _start_simulator(settings.simulate)
        return options.simulated(settings, self.simulator.url), self.simulator.api_key

    def _firing(self, runtime: role.Runtime) -> Firing:
        """This process's firing role (``_roles/build.py``): each subclass builds its own."""
        raise NotImplementedError

    def _process_name(self) -> str:
        """This process in a recording's file names."""
        return "main"

    def _notice(self) -> Callable[[str], None] | None:
        """Where a line for the user's terminal goes, now (an unreachable API host)."""
        return TerminalNotice(self.config, self._erase_progress)

    def selections(self) -> Selections:
        """What the ``[[select]]`` tables chose, read from Cekura once per session (shared
        with the other xdist workers through the controller's directory)."""
        if self._selections is None:
            from ._config.select import Selections

            self._selections = Selections(self._selection_dir())
        return self._selections

    def _selection_dir(self) -> Path | None:
        """Where collecting processes share what Cekura listed (None: one process)."""
        return None

    def _erase_progress(self) -> None:
        if self.progress is not None:
            self.progress.clear()

    def session(self) -> CekuraSession:
        """The session's state, built on first use (a method, not a property: pytest 8.0
        reads every attribute of a registered plugin when it looks for fixtures)."""
        with self._building:
            if self._session is None:
                self._session = self._build()
            return self._session

    def built(self) -> CekuraSession | None:
        """The session if it was built (a session without Cekura cases never is)."""
        return self._session

    def summarising(self) -> bool:
        """Whether a case's record has come in (the summary tracks its later phases)."""
        return self._summary is not None

    def _build(self) -> CekuraSession:
        from ._fire.bot_rooms import PLUGIN_NAME
        from ._fire.ledger import Ledger
        from ._roles import build
        from ._session import Hooks, build_session

        config, settings = self.config, self.settings
        # A replay keeps no ledger: its results are recorded ones, never to be re-attached.
        ledger = None
        if not settings.replay:
            ledger = Ledger.for_config(config, self.owner, fresh=settings.fresh)
        runtime = build.runtime(
            settings, self.api_key, self.redactor, self._notice(), self.recording
        )
        hooks = Hooks(
            config.hook, lambda case: config.hook.pytest_cekura_room(case=case, config=config)
        )
        session = build_session(
            settings,
            self.redactor,
            self._firing(runtime),
            hooks,
            ledger=ledger,
            baseline=self.baseline,
            agent_flag=config.getoption("cekura_agent", None) is not None,
            runtime=runtime,
            announce=TerminalNotice(config),
        )
        if config.pluginmanager.get_plugin(PLUGIN_NAME) is None:
            cloud_key = os.environ.get("PIPECAT_CLOUD_API_KEY")
            rooms = build.room_provider(settings, self.redactor, cloud_key)
            config.pluginmanager.register(rooms, PLUGIN_NAME)
        return session

    def close(self) -> None:
        self.log_records.uninstall()
        if self._session is not None:
            self._session.close()
        if self.simulator is not None:
            self.simulator.stop()
        self.redactor.close()
        # The verdicts, runs and records are not needed any more: freeing them here
        # keeps them out of every garbage collection left (pytest's own at unconfigure,
        # the interpreter's at exit), a second at exit with 20,000 cases.
        self._session = self._summary = None

    def artifacts_target(self) -> Target | None:
        """Where --cekura-artifacts writes (None: off)."""
        if not self.settings.artifacts:
            return None
        from ._report.artifacts import Target

        where = self.config.invocation_params.dir
        return Target(Path(self.settings.artifacts), where, self.settings.http_timeout)

    def summary(self) -> Summary:
        if self._summary is None:
            from ._report.summary import Summary

            self._summary = Summary()
        return self._summary

    @pytest.hookimpl(wrapper=True)
    def pytest_cekura_room(self, case: Any, config: pytest.Config) -> Generator[None, Any, Any]:
        # Learn the room's secrets before anything prints them (--debug traces this call's
        # result as soon as it returns), and share them with the other processes.
        room = yield
        url, token = room if isinstance(room, tuple) and len(room) == 2 else (None, None)
        url, token = getattr(room, "url", url), getattr(room, "token", token)
        self.redactor.add(token if isinstance(token, str) else None)
        self.redactor.add_url(url if isinstance(url, str) else None)
        return room

    @pytest.hookimpl
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        settings = self.settings
        if settings.replay:
            return [f"cekura: REPLAY of {settings.replay}: recorded answers, no network"]
        if settings.api_url_source == "simulator":
            return [
                f"cekura: SIMULATED: local Cekura-compatible server at {settings.api_url}"
                " (no real calls, scripted verdicts)"
            ]
        return [
            self.redactor(
                f"cekura: api {settings.api_url} ({settings.api_url_source}), batch size "
                f"{settings.batch_size}, poll every {settings.poll_interval:g}s "
                f"({settings.max_reads_per_minute} reads/min at most), key "
                f"{'set' if self.api_key else 'NOT SET (CEKURA_API_KEY)'}"
            )
        ]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not any(item.get_closest_marker(MARKER) for item in items) and self._session is None:
            return  # no Cekura case: nothing to load, no per-test hook
        from ._items import marked_cases, shard

        marked_cases(self.session(), items, config, self._terminal)
        self._watch_items(config)
        if self.settings.shard is not None:
            keep, drop = shard(self.session(), items, *self.settings.shard)
            if drop:
                config.hook.pytest_deselected(items=drop)
                items[:] = keep

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if self._session is None or not self._session.state.cases:
            return None
        option = session.config.option
        if option.collectonly or getattr(option, "setupplan", False):
            return None  # nothing will run: fire nothing
        if getattr(option, "setuponly", False):
            return None
        if session.testsfailed and not option.continue_on_collection_errors:
            return None
        if self.settings.dry_run:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            for line in self.session().dry_run(session.items):
                if reporter is not None:
                    reporter.write_line(line)
            return True
        problem = self.session().recorded_suite(session.items)
        if problem:
            self._refuse(problem)
        self._arm_sigterm()
        self._announce_missing_key(session)
        ledger = self.session().ledger
        if ledger is not None and self.session().selected(session.items):
            self.announce_ledger_lost(ledger.directory)
        self.session().start(session.items)
        self._start_progress(session.config)
        return None

    def _refuse(self, problem: str) -> None:
        """A session that must not fire at all (a replay of another suite): one line."""
        raise pytest.UsageError(problem)

    def _arm_sigterm(self) -> None:
        """SIGTERM as an interrupt from here on. What the session imports later (progress
        line, records, outputs) is imported first: a signal may strike anywhere once the
        handler is in, and one that strikes inside an import can fail it in compile()
        (CPython raises SystemError: an internal error, not an interrupt)."""
        from ._report import ci, comment, outputs, progress, summary  # noqa: F401

        self.sigterm.install()

    def _announce_missing_key(self, session: pytest.Session) -> None:
        """No key: say so once, before any test runs, whatever the verbosity."""
        if self.api_key:
            return
        from ._session import NO_KEY_LINE

        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.session().selected(session.items):
            reporter.ensure_newline()
            reporter.write_line(NO_KEY_LINE, red=True, bold=True)

    def announce_ledger_lost(self, directory: Path | None) -> None:
        """A ledger that cannot be written: one line, before anything is fired (under xdist
        the controller says it, before its workers start)."""

        if directory is None:
            return  # the cache is off: said at the end (OFF_NOTE)
        reason = cannot_write(directory)
        if reason is not None:
            self.announce(ledger_lost(directory, reason))

    def announce(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True, bold=True)

    def _start_progress(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.get_verbosity() < 0:
            return
        from ._report.progress import Progress

        self.progress = Progress(self.counts, reporter, self.settings.progress_interval)
        self.progress.start()

    def counts(self) -> Counts | None:
        """The watcher's counts for the progress line (None until something was fired)."""
        return self._session.progress() if self._session is not None else None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, object, object]:
        # First of all (xdist's own tear-down of its workers can take long): no interrupt
        # is raised from here on.
        self.sigterm.finishing()
        if self.sigterm.unseen():
            # A SIGTERM whose interrupt pytest never saw (it surfaced as another error): the
            # calls it meant to end are ended now.
            self.pytest_keyboard_interrupt()
        if self.progress is not None:
            self.progress.stop()
        try:
            return (yield)
        finally:
            self.sigterm.uninstall()

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self) -> None:
        self.sigterm.seen()
        # Calls left running cost money. Under xdist the controller does this, once.
        # A worker only stops firing (it ends no call); every role stops its bot at once.
        self._before_interrupt()
        if self._session is not None:
            self._session.interrupt()

    def _before_interrupt(self) -> None:
        """What a role does on an interrupt before its session is interrupted."""

    def _watch_items(self, config: pytest.Config) -> None:
        if not config.pluginmanager.has_plugin(_ITEMS_NAME):
            config.pluginmanager.register(ItemHooks(self), _ITEMS_NAME)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        simulated = self.settings.api_url_source == "simulator"
        if self._summary is None and self._session is None and not simulated:
            return
        summary = self.summary()
        if self._session is not None:
            summary.note(*self._session.notes())
            summary.forecast = summary.forecast or self._session.forecast()
        elif (plan := self._unwatched_plan()) is not None:
            summary.note(*plan.notes)  # the firing worker's pre-flight stopped everything
            summary.forecast = summary.forecast or plan.forecast
        if not summary.records and not summary.notes and not simulated:
            return
        terminalreporter.write_sep("=", "cekura")
        # The table ends with the notes; with no case recorded, the notes stand alone.
        every = terminalreporter.config.get_verbosity() > 0  # -v: a row for every case
        width = terminalreporter._tw.fullwidth
        table = summary.lines(width, every) if summary.records else summary.notes
        for line in table:  # masked, then inert: outside text (reasons, names, notes)
            terminalreporter.write_line(plain(self.redactor(line)))
        for line in self._recording_lines(summary):
            terminalreporter.write_line(plain(self.redactor(line)))
        self._write_outputs(terminalreporter, simulated)
        if simulated:
            terminalreporter.write_line(
                "cekura: SIMULATED RUN: verdicts came from the local Cekura-compatible server, "
                "not from Cekura",
                yellow=True,
                bold=True,
            )

    def _unwatched_plan(self) -> Any:
        """The plan of a firing this process did not watch (an xdist controller's)."""
        return None

    def _recording_lines(self, summary: Summary) -> list[str]:
        """Under --cekura-record, keep each case's outcome; under --cekura-replay, say
        which cases flipped against the recorded session (the process with every case)."""
        if not (self.settings.record or self.settings.replay):
            return []
        from ._api.recording import RecordingError, flips, read_session, record_outcomes

        outcomes = {r.nodeid: r.outcome for r in summary.cases() if r.outcome is not None}
        try:
            if self.settings.replay:
                return flips(read_session(Path(self.settings.replay)), outcomes)
            assert self.settings.record is not None
            record_outcomes(Path(self.settings.record), outcomes)
        except RecordingError as exc:
            return [f"cekura: {exc}"]
        return [f"cekura: recorded this session's answers in {self.settings.record}"]

    def _write_outputs(self, terminalreporter: Any, simulated: bool) -> None:
        from ._report.ci import annotated_elsewhere
        from ._report.outputs import write_outputs

        elsewhere = annotated_elsewhere(self.config.pluginmanager)
        if not write_outputs(
            self.summary(), self.settings, self.redactor, simulated, terminalreporter, elsewhere
        ):
            session = getattr(terminalreporter, "_session", None)
            if session is not None and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.USAGE_ERROR


class SingleProcess(CekuraPlugin):
    """No xdist: this process fires, watches and waits."""

    def _firing(self, runtime: role.Runtime) -> Firing:
        from ._roles.build import single

        return single(runtime, self.owner)


class XdistController(CekuraPlugin):
    """The xdist controller: it collects and fires nothing; it shares a directory with its
    workers, runs the session's one watcher once a worker fires, ends live calls on an
    interrupt, and reports every case (the workers' records reach it on their reports)."""

    def __init__(
        self, config: pytest.Config, settings: options.Settings, baseline: Baseline | None
    ) -> None:
        self.shared_dir: Path | None = None
        self.shared_problem: str | None = None  # why there is no shared directory
        self._wake: threading.Thread | None = None
        self._stop = threading.Event()
        super().__init__(config, settings, baseline)

    def _firing(self, runtime: role.Runtime) -> Firing:
        from ._roles.build import controller

        return controller(runtime, self.shared(), self.shared_problem)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput.update(self.worker_input())

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        self._watch_items(session.config)
        self._arm_sigterm()
        self._start_progress(session.config)
        return None

    def _before_interrupt(self) -> None:
        if self._session is None and self._firing_started():
            self.session()  # a worker fired while the watcher was being built: end its calls

    def close(self) -> None:
        self._stop.set()
        super().close()
        if self.shared_dir is not None:
            shutil.rmtree(self.shared_dir, ignore_errors=True)

    def shared(self) -> Path | None:
        """The directory the controller shares with its workers (see ``_shared.py``); None
        when it cannot be made (``shared_problem`` says why)."""
        if self.shared_dir is None and self.shared_problem is None:
            remove_stale(self.owner)
            try:
                self.shared_dir = make_shared_dir(self.owner)
            except OSError as exc:
                self.shared_problem = shared_lost(exc)
                return None
            self.redactor.share(self.shared_dir / _SECRETS, self.secrets_key)
            self._wake = threading.Thread(target=self._wake_on_firing, daemon=True)
            self._wake.start()
        return self.shared_dir

    def worker_input(self) -> dict[str, str]:
        """What an xdist worker is started with (plain strings; sent over xdist's pipe,
        never written to disk): the shared directory, the session's identity and its key
        for the shared secrets file. Before the first worker, a cache or a temporary
        directory that cannot be written is said: none runs yet, let alone fires."""
        if self.shared_dir is None and self.shared_problem is None:
            self.announce_ledger_lost(ledger_directory(self.config))
            if self.shared() is None and self.shared_problem is not None:
                self.announce(self.shared_problem)
        shared = self.shared()
        found = {"cekura_shared_dir": str(shared)} if shared is not None else {}
        problem = {"cekura_shared_problem": self.shared_problem} if self.shared_problem else {}
        given = {
            **found,
            **problem,
            "cekura_owner": self.owner.to_text(),
            "cekura_secrets_key": self.secrets_key.hex(),
        }
        if self.simulator is not None:
            given["cekura_sim_url"] = self.simulator.url
            given["cekura_sim_key"] = self.simulator.api_key
        return given

    def _firing_started(self) -> bool:
        shared = self.shared_dir
        return shared is not None and (
            any(shared.glob("sending-*"))
            or any(shared.glob("batch-*"))
            or (shared / "notice.txt").exists()  # a line for the terminal (see SharedDir.say)
        )

    def _unwatched_plan(self) -> Any:
        """The firing worker's plan, read by a controller that built no session (nothing
        was fired): its notes and spend forecast."""
        if self.shared_dir is None:
            return None
        from ._roles.shared import SharedDir

        return SharedDir(self.shared_dir).read_plan()

    def _wake_on_firing(self) -> None:
        """The controller builds its runtime (the watcher) only once a worker fires."""
        while not self._stop.wait(0.05):
            if self._firing_started():
                self.session()
                return


class XdistWorker(CekuraPlugin):
    """An xdist worker: it fires if it wins the fire lock, and waits for its items' runs in
    the directory the controller shares. Nobody sees its terminal: what it has to say goes
    to the controller, which reports every case."""

    _terminal = False

    def __init__(
        self, config: pytest.Config, settings: options.Settings, baseline: Baseline | None
    ) -> None:
        # What the controller started this worker with (plain strings; see worker_input).
        given: dict[str, Any] = getattr(config, "workerinput", None) or {}
        self._given = given
        super().__init__(config, settings, baseline)

    def _given_text(self, key: str) -> str | None:
        value = self._given.get(key)
        return str(value) if value else None

    def _identity(self) -> tuple[Owner, bytes]:
        owner = _owner(self._given.get("cekura_owner"))
        key = _secrets_key(self._given.get("cekura_secrets_key"))
        shared = self._given_text("cekura_shared_dir")
        if shared is not None:
            self.redactor.share(Path(shared) / _SECRETS, key)
        return owner, key

    def _api(self, settings: options.Settings) -> tuple[options.Settings, str | None]:
        if settings.replay:
            return settings, REPLAY_KEY
        url = self._given_text("cekura_sim_url")
        if url is not None:  # the controller's local server (a worker starts none)
            return options.simulated(settings, url), str(self._given["cekura_sim_key"])
        return settings, os.environ.get("CEKURA_API_KEY") or None

    def _firing(self, runtime: role.Runtime) -> Firing:
        from ._roles.build import worker

        shared = self._given_text("cekura_shared_dir")
        return worker(runtime, shared, self._given_text("cekura_shared_problem"))

    def _notice(self) -> Callable[[str], None] | None:
        from ._roles.build import worker_notice

        return worker_notice(self._given_text("cekura_shared_dir"))

    def _announce_missing_key(self, session: pytest.Session) -> None:
        pass  # the controller says it

    def _selection_dir(self) -> Path | None:
        shared = self._given_text("cekura_shared_dir")
        return Path(shared) if shared else None

    def _start_progress(self, config: pytest.Config) -> None:
        pass  # the controller shows the progress line

    def _refuse(self, problem: str) -> None:
        self.session().refuse(None, problem)  # no exit in a worker: every case errors with it

    def _new_recording(self, directory: Path) -> None:
        pass  # the controller cleared it before starting this worker

    def _process_name(self) -> str:
        return self._given_text("workerid") or "worker"

    def _recording_lines(self, summary: Summary) -> list[str]:
        return []  # the controller has every case

    def _write_outputs(self, terminalreporter: Any, simulated: bool) -> None:
        pass  # under xdist the controller has every case; workers have a part


class ItemHooks:
    """The per-test hooks, registered only for a session with Cekura cases (or the xdist
    controller, which receives them): a project with the plugin installed and no case pays
    no per-test call."""

    def __init__(self, plugin: CekuraPlugin) -> None:
        self.plugin = plugin
        # A failed attempt's record, kept for the next attempt (pytest-rerunfailures) in
        # case that one fires nothing again: its verdict is released by then, without the
        # scores and metrics the record shows. (attempts fired, record, notes its
        # artifacts left) by node id.
        self._for_rerun: dict[str, tuple[int, CaseRecord, tuple[str, ...]]] = {}
        self._rerunning: set[str] = set()
        self._attachments: dict[str, list[str]] = {}  # JUnit attachment lines, setup to teardown

    @pytest.hookimpl(tryfirst=True, wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        # Wait for the case's verdict before pytest-timeout (an inner wrapper) starts its
        # timer: waiting for Cekura is governed by the case's own timeout, not --timeout.
        session = self.plugin.built()
        if session is not None and item.nodeid in session.state.cases and not _will_skip(item):
            session.verdict(item.nodeid)
        return (yield)

    @pytest.hookimpl  # after pytest's skipping (tryfirst): a skipped test never waits
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        session = self.plugin.built()
        if session is None:
            return
        from ._items import CekuraItem, judge

        state = session.state
        if not isinstance(item, CekuraItem) and (
            item.nodeid in state.cases or item.nodeid in state.invalid
        ):
            judge(session, item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        # Before pytest writes the item's location or its first character.
        if self.plugin.progress is not None:
            self.plugin.progress.clear()

    @pytest.hookimpl(tryfirst=True)  # before junitxml closes the testcase at teardown
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.plugin.progress is not None:
            self.plugin.progress.clear()
        if report.outcome == "rerun":  # type: ignore[comparison-overlap]  # pytest-rerunfailures
            self._rerunning.add(report.nodeid)
        data = getattr(report, "cekura", None)
        if data is not None:  # from a worker: masked here too, with every process's secrets
            report.cekura = self.plugin.redactor.tree(data)  # type: ignore[attr-defined]
        if data is not None or self.plugin.summarising():
            self.plugin.summary().add(report)  # a record, or a later phase of a case with one
        if self.plugin.settings.artifacts:
            self._attach_evidence(report)

    def _attach_evidence(self, report: pytest.TestReport) -> None:
        """--cekura-artifacts: the attachment lines of the case's record (on its setup
        report) go into its JUnit testcase at teardown, after its failure."""
        from ._report.artifacts import attach_to_junit, junit_lines

        if report.when == "setup":
            lines = junit_lines(getattr(report, "cekura", None))
            if lines:
                self._attachments[report.nodeid] = lines
        elif report.when == "teardown" and report.nodeid in self._attachments:
            attach_to_junit(self.plugin.config, report, self._attachments.pop(report.nodeid))

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if nodeid in self._rerunning:
            self._rerunning.discard(nodeid)
        else:
            self._for_rerun.pop(nodeid, None)
        session = self.plugin.built()
        if session is not None:
            session.release(nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield
        session = self.plugin.built()
        if session is not None and item.nodeid in session.state.cases:
            from ._items import CekuraItem

            if not isinstance(item, CekuraItem):
                verdict = session.verdict(item.nodeid)
                if verdict.outcome == "failed":
                    session.fail(item.nodeid, verdict)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if (
            call.excinfo is not None
            and report.failed
            and isinstance(call.excinfo.value, NotEvaluated)
        ):
            # One line (no traceback into the plugin), for every kind of item.
            report.longrepr = call.excinfo.getrepr(style="value")
        session = self.plugin._session
        verdict = session.state.verdicts.get(item.nodeid) if session is not None else None
        ends = call.when == "call" or (call.when == "setup" and not report.passed)
        if verdict is not None and verdict.duration and ends:
            # The phase that carries the verdict takes the evaluation's time (JUnit's time,
            # --durations); the wait for it happened before the protocol, in no phase.
            report.duration += verdict.duration
        if session is not None and verdict is not None and call.when == "setup":
            # Plain builtins on the report: the record survives -n to the controller.
            record = self._record(session, item.nodeid, verdict, report)
            report.cekura = record.to_json()  # type: ignore[attr-defined]
        return report

    def _record(
        self, session: CekuraSession, nodeid: str, verdict: CaseVerdict, report: pytest.TestReport
    ) -> CaseRecord:
        """The case's record for this attempt, with the session's notes when they changed."""
        from ._report.record import case_record

        attempt = session.state.attempts.get(nodeid, 0)
        kept = self._for_rerun.get(nodeid)
        if kept is None or kept[0] != attempt:  # else nothing fired again: the same runs
            case = session.state.cases[nodeid]
            record = case_record(
                case,
                nodeid,
                verdict,
                report,
                attempt=attempt,
                gating=session.gating(nodeid),
                credits=session.credits(nodeid),
            )
            kept = self._for_rerun[nodeid] = (attempt, *self._evidence(record, verdict))
        notes = tuple(session.notes())
        if notes == self.plugin._sent_notes and not kept[2]:
            return kept[1]  # notes ride on a record only when they change
        self.plugin._sent_notes = notes
        return kept[1].with_notes(notes + kept[2])

    def _evidence(
        self, record: CaseRecord, verdict: CaseVerdict
    ) -> tuple[CaseRecord, tuple[str, ...]]:
        """With --cekura-artifacts, the evidence of the runs that did not pass, written
        here, once the verdict is taken (``_report/artifacts.py``)."""
        target = self.plugin.artifacts_target()
        if target is None:
            return record, ()
        from ._report.artifacts import gather

        evidence = gather(target, record, verdict.runs, self.plugin.redactor)
        return evidence.record, evidence.notes


def _secrets_key(text: object) -> bytes:
    """The session's key for its shared secrets file: the controller's, or a new one."""
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text)
    return os.urandom(32)


def _owner(text: object) -> Owner:
    if isinstance(text, str):
        with contextlib.suppress(ValueError, TypeError):
            return Owner.from_text(text)
    return Owner.here()


def _will_skip(item: pytest.Item) -> bool:
    from ._session import will_not_run

    return will_not_run(item)


def _start_simulator(scenarios: str) -> Any:
    from .simulator import ScenarioScript, Simulator

    try:
        if scenarios:
            return Simulator(scenarios).start()
        return Simulator(default_outcome=ScenarioScript(id=0, seconds=1.0)).start()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--cekura-simulate: {exc}") from None

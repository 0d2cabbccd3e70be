"""The session object: the cases, the process's firing role, and the judge stage.

Built once, from values (``_roles/build.py``): the settings, the redactor, the role object
that fires and waits in this process, the ledger, the baseline and the public hooks. It holds
no ``pytest.Config`` and nothing assigns its attributes after construction; its state changes
only through its own methods (``register``, ``refuse``, ``file_broken``...). The hook object
of ``plugin.py`` finds it through ``config.stash``; pytest hooks only delegate here. Firing
and watching belong to the role (``_roles/role.py``); this object turns a case's final runs
into its verdict (calling the public ``pytest_cekura_*`` hooks) and caches it for the item's
phases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ._api.catalogue import Evaluator
from ._api.client import CekuraClient
from ._api.recording import (
    RecordedCase,
    RecordingError,
    read_session,
    record_suite,
    suite_problem,
)
from ._api.run import CekuraRun
from ._config.case import BotKeys, Case, Room, environ, expand
from ._config.options import DEFAULT_MAX_RUNS, Settings
from ._errors import CekuraError, ConfigError, NotEvaluated
from ._fire.bot import SessionBot, bot_config, log_tail, ready_url_for
from ._fire.bot_rooms import BotStartRooms
from ._fire.credits import ActualCredits, Forecast, actual
from ._fire.firing import FireContext, FireHooks, FirePolicy, Wiring, dry_run
from ._fire.ledger import OFF_NOTE, Ledger, fingerprint
from ._fire.plan import Slot
from ._fire.recover import Sent
from ._fire.spend import SessionSpend, SpendLine, policy_of, spend_lines
from ._judge import gating as _gating
from ._judge.confirm import Compared, Confirmation, compare_with, confirmation
from ._judge.gating import Gating
from ._judge.pooled import apply_pooled
from ._judge.verdict import CaseVerdict, adaptive_need, decide
from ._redact import Redactor
from ._roles import role
from ._text import plain

if TYPE_CHECKING:
    from pluggy import HookRelay

    from ._report.progress import Counts

NO_KEY = "not fired: CEKURA_API_KEY is not set"
# The room of every run of a replay: no bot is started, no room asked for; never sent.
REPLAY_ROOM = Room("https://replay.invalid/room", None)


def bot_from(case: Case, hooked: bool, cloud: str | None) -> str:
    """Where a case's bot comes from, as the dry run says it: ``hooked`` when a
    ``pytest_cekura_room`` hook of the user's is asked first for a case without a room."""
    source = case.bot_source
    if source is None:
        return "bot: the pytest_cekura_room hook's room (no layer sets a room or a start URL)"
    chosen = f"(chosen by {source.layer}: {source.key})"
    if source.kind == "room":
        return f"bot: static room {case.pipecat_room_url} {chosen}"
    if source.kind == "start_url":
        what = f"one bot session per run from start URL {case.bot_start_url}"
    else:
        what = f"one Pipecat Cloud session per run of agent {cloud}"
    hook = "the pytest_cekura_room hook's room, else " if hooked else ""
    return f"bot: {hook}{what} {chosen}"


NO_KEY_LINE = (
    "cekura: CEKURA_API_KEY is not set: no case will be fired, each one errors (export your "
    "Cekura API key, or run with --cekura-simulate)"
)


_WILL_NOT_RUN = pytest.StashKey[bool]()


def will_not_run(item: pytest.Item) -> bool:
    """Whether pytest's skipping plugin will skip the item before it runs. Decided once
    per item, so firing it and waiting for it agree (and its marks are walked once)."""
    known = item.stash.get(_WILL_NOT_RUN, None)
    if known is None:
        known = item.stash[_WILL_NOT_RUN] = _skipped_by_mark(item)
    return known


def _skipped_by_mark(item: pytest.Item) -> bool:
    from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

    try:
        if evaluate_skip_marks(item) is not None:
            return True
        xfail = evaluate_xfail_marks(item)
    except BaseException:  # a broken condition: pytest reports it; do not fire for it
        return True
    return xfail is not None and not xfail.run


@dataclass
class SessionState:
    cases: dict[str, Case] = field(default_factory=dict)
    verdicts: dict[str, CaseVerdict] = field(default_factory=dict)
    problem: str | None = None  # a configuration problem that stopped all firing
    invalid: dict[str, str] = field(default_factory=dict)  # marked tests with bad markers
    broken_files: set[Path] = field(default_factory=set)  # cekura.toml files that errored
    attempts: dict[str, int] = field(default_factory=dict)  # reruns fired per case
    notes: list[str] = field(default_factory=list)
    spent: int = 0  # runs fired by this process (for the rerun budget)
    bot_keys: list[BotKeys] = field(default_factory=list)  # top-level keys of cekura.toml files
    selected: list[tuple[str, Case]] = field(default_factory=list)
    interrupted: bool = False
    known_results: set[int] = field(default_factory=set)  # results fired or adopted here
    bot: SessionBot | None = None  # the bot under test, in the process that fires
    masked_notes: tuple[list[str], list[str]] = ([], [])  # (notes as known, masked)
    # What each judged case's runs cost, estimated (issue 31's post-run figure).
    actual: dict[str, ActualCredits] = field(default_factory=dict)
    # A failing case's confirmation runs (confirm = N), and its pass rate against the
    # baseline's (a case of several runs).
    confirmations: dict[str, Confirmation] = field(default_factory=dict)
    compared: dict[str, Compared] = field(default_factory=dict)


@dataclass(frozen=True)
class Hooks:
    """The public ``pytest_cekura_*`` hooks as the session calls them: pytest's hook relay,
    and the room hook with its ``config`` argument already bound (so the session needs no
    config of its own)."""

    relay: HookRelay
    room: Callable[[Case], Room | tuple[str, str | None] | None]


class CekuraSession:
    """Per-pytest-session state; one instance, built once from values."""

    def __init__(
        self,
        settings: Settings,
        redactor: Redactor,
        firing: role.Role,
        hooks: Hooks,
        *,
        problem: str | None = None,
        ledger: Ledger | None = None,
        baseline: _gating.Baseline | None = None,
        default_agent: tuple[int, str] | None = None,
        runtime: role.Runtime | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        """``firing``: this process's role object (it fires, waits, watches); ``problem``:
        why this session fires nothing (every case errors with it), known when it is built;
        ``default_agent``: the agent id every case without one uses, and the option that
        set it; ``runtime``: how to reach Cekura (the spend pre-flight's reads); ``announce``:
        where the spend forecast line goes, now."""
        self.settings = settings
        self.redactor = redactor
        self.hooks = hooks
        self.ledger = ledger
        self.baseline = baseline
        self.default_agent = default_agent
        self.state = SessionState(problem=problem)
        self._role = firing
        self._runtime = runtime
        self.spend = SessionSpend(
            policy_of(settings.spend),
            self.state.cases,
            announce=announce,
            problem=runtime.notice if runtime is not None else None,
        )

    @property
    def runtime(self) -> role.Runtime | None:
        """How this session reaches Cekura (None: a session built without one)."""
        return self._runtime

    # -- refusals, from the collection -----------------------------------------------------

    def refuse(self, nodeids: Iterable[str] | None, reason: str) -> None:
        """These cases will not run, for this reason: each errors with it, unfired. None
        means the whole session: nothing is fired, and every case errors with the reason."""
        if nodeids is None:
            self.state.problem = reason
            return
        for nodeid in nodeids:
            self.state.invalid[nodeid] = reason

    def file_broken(self, path: Path) -> None:
        """A ``cekura.toml`` that errored (its problems were shown once)."""
        self.state.broken_files.add(path)

    # -- cases -----------------------------------------------------------------------------

    def register(self, nodeid: str, case: Case) -> None:
        if self.settings.timeout_override is not None:
            case = replace(case, timeout=self.settings.timeout_override)
        self.state.cases[nodeid] = case
        # Every process learns the tokens it may have to mask, not only the one that fires
        # (Cekura may echo a token back in an error message that any worker prints).
        # A missing variable is reported at firing.
        if case.pipecat_token:
            with contextlib.suppress(CekuraError):
                self.redactor.add(expand(case.pipecat_token, environ(), case.name))
        if case.pipecat_room_url:
            with contextlib.suppress(CekuraError):
                self.redactor.add_url(expand(case.pipecat_room_url, environ(), case.name))

    def note_bot_keys(self, keys: BotKeys | None) -> None:
        """A ``cekura.toml``'s top-level bot keys; a ConfigError if they contradict another's."""
        if keys is None or keys in self.state.bot_keys:
            return
        bot_config(self.settings.bot, [*self.state.bot_keys, keys])
        self.state.bot_keys.append(keys)

    def has_room_provider(self) -> bool:
        """A ``pytest_cekura_room`` hook that may give a room to any case (the bot start URL
        provider only does for cases with a start URL, unless it has a preset; a wrapper
        gives none of its own)."""
        return any(
            not (impl.wrapper or impl.hookwrapper)
            and (not isinstance(impl.plugin, BotStartRooms) or impl.plugin.serves_every_case)
            for impl in self.hooks.relay.pytest_cekura_room.get_hookimpls()
        )

    def selected(self, items: Sequence[pytest.Item]) -> list[tuple[str, Case]]:
        """The cases of the selected items that will run: a test skipped by a mark (skip,
        a true skipif, xfail(run=False)) is never fired, never billed."""
        return [
            (item.nodeid, self.state.cases[item.nodeid])
            for item in items
            if item.nodeid in self.state.cases and not will_not_run(item)
        ]

    def budget_problem(self, selected: Sequence[tuple[str, Case]]) -> str | None:
        total = sum(case.repeat for _, case in selected)
        ceiling = self.settings.max_runs
        if ceiling is not None and total > ceiling:
            default = f"the default ceiling is {ceiling}: " if ceiling == DEFAULT_MAX_RUNS else ""
            return (
                f"not fired: this session would start {total} runs, more than "
                f"cekura_max_runs={ceiling} ({default}raise it with --cekura-max-runs=N or "
                "the ini key cekura_max_runs, 0 for none)"
            )
        return None

    # -- record and replay -----------------------------------------------------------------

    def recorded_suite(self, items: Sequence[pytest.Item]) -> str | None:
        """Under --cekura-record, keep the suite about to be fired; under --cekura-replay,
        why this suite is not the recorded one (one line), or None."""
        if not (self.settings.record or self.settings.replay):
            return None
        agent = self.default_agent[0] if self.default_agent else None
        cases = [
            RecordedCase(
                nodeid=nodeid,
                scenario=case.scenario,
                agent=case.agent if case.agent is not None else agent,
                repeat=case.repeat,
            )
            for nodeid, case in self.selected(items)
        ]
        try:
            if self.settings.replay:
                return suite_problem(read_session(Path(self.settings.replay)), cases)
            assert self.settings.record is not None
            record_suite(Path(self.settings.record), cases)
        except RecordingError as exc:
            return str(exc)
        return None

    # -- fire ------------------------------------------------------------------------------

    def start(self, items: Sequence[pytest.Item]) -> None:
        selected = self.selected(items)
        if not selected or self.state.problem:
            return
        problem = self.budget_problem(selected)
        notice = self._runtime.notice if self._runtime is not None else None
        if problem and notice is not None:
            notice(f"cekura: {problem}")
        self.state.spent = 0 if problem else sum(case.repeat for _, case in selected)
        self.state.selected = list(selected)
        first = [(nodeid, case.first_firing()) for nodeid, case in selected]
        canaries = self.canaries(selected)
        self._role.start(
            first, lambda client, wiring: self._context(client, wiring, problem, canaries)
        )

    def canaries(self, selected: Sequence[tuple[str, Case]]) -> frozenset[str]:
        """The selected cases fired first and alone: ``canary = true`` or --cekura-canary."""
        named = set(self.settings.canary)
        found = {case.name for _, case in selected if case.name in named}
        for name in sorted(named - found):
            note = f"cekura: --cekura-canary: no selected case is named {name!r}"
            if note not in self.state.notes:
                self.state.notes.append(note)
        return frozenset(nodeid for nodeid, case in selected if case.canary or case.name in named)

    def _context(
        self,
        client: CekuraClient | None,
        wiring: Wiring,
        problem: str | None = None,
        canaries: frozenset[str] = frozenset(),
    ) -> FireContext:
        """One firing's context: this session's policy and hooks, and the role's part."""
        hook = self.hooks.relay
        ask = self.hooks.room

        def room(case: Case) -> Room | None:
            got = ask(case)
            if got is None or isinstance(got, Room):
                return got
            url, token = got
            return Room(url, token)

        env = environ()
        policy = FirePolicy(
            batch_size=self.settings.batch_size,
            no_client_reason=problem or NO_KEY,
            dashboard=self.settings.dashboard_url,
            attempt=wiring.attempt,
            canaries=canaries,
            default_agent=self.default_agent,
            recover_poll=self.settings.poll_interval,
        )
        hooks = replace(
            wiring.hooks,
            room=room if hook.pytest_cekura_room.get_hookimpls() else None,
            entry=lambda case, entry: hook.pytest_cekura_entry(case=case, entry=entry),
            before_firing=self._start_bot,
        )
        if self.settings.replay:  # no bot, no room: nothing but the recording answers
            hooks = replace(hooks, room=lambda case: REPLAY_ROOM, before_firing=None)
        if client is not None and not problem:
            hooks = replace(hooks, spend=self.spend.hook(client, wiring.control))
        if self.ledger is not None:
            hooks = self._ledger_hooks(self.ledger, hooks, env)
        elif not self.settings.replay:  # a replay keeps none on purpose
            wiring.control.note(OFF_NOTE)
        return FireContext(
            client=None if problem else client,
            redactor=self.redactor,
            env=env,
            policy=policy,
            hooks=hooks,
            control=wiring.control,
            lanes=wiring.lanes,
            known_results=self.state.known_results,
        )

    @staticmethod
    def _ledger_hooks(ledger: Ledger, hooks: FireHooks, env: Mapping[str, str]) -> FireHooks:
        """``hooks`` with the ledger's: each request recorded before it leaves and once
        answered, and what a killed session left resumed."""
        marks: dict[str, str | None] = {}

        def marked(batch: list[tuple[Case, Slot]]) -> list[tuple[Case, str | None, Slot]]:
            for case, slot in batch:
                if slot.nodeid not in marks:
                    marks[slot.nodeid] = fingerprint(slot.nodeid, case, env)
            return [(case, marks[slot.nodeid], slot) for case, slot in batch]

        def on_fired(fired: list[tuple[Case, Slot]]) -> None:
            ledger.record(marked(fired))

        def on_request(batch: list[tuple[Case, Slot]], sent: Sent) -> None:
            ledger.record_sending(marked(batch), sent)

        return replace(
            hooks,
            on_fired=on_fired,
            on_request=on_request,
            resume=lambda cases, found: ledger.resume(cases, env, found=found),
            unanswered=ledger.unanswered,
        )

    # -- the bot under test ----------------------------------------------------------------

    def _start_bot(self) -> str | None:
        """Start the configured bot (once; in the process that fires): why nothing may be
        fired, or None (also when no bot command is configured)."""
        bot = self.state.bot
        if bot is None:
            try:
                config = bot_config(self.settings.bot, self.state.bot_keys)
            except ConfigError as exc:
                return str(exc)
            if config is None:
                return None
            bot = self.state.bot = SessionBot(
                config, self.redactor, on_spawn=self._role.bot_spawned
            )
        ready = None
        if bot.config.ready_url is None:
            try:
                ready, problem = self._ready_url()
            except CekuraError as exc:
                return str(exc)
            if problem:
                return problem
        elif bot.config.ready_url:
            try:
                ready = expand(bot.config.ready_url, environ(), "bot_ready_url")
            except CekuraError as exc:
                return str(exc)
        return bot.ensure(ready)

    def _ready_url(self) -> tuple[str | None, str | None]:
        """``{origin}/status`` of the start URL the selected cases use, if there is one."""
        urls = {
            expand(case.bot_start_url, environ(), f"case {case.name}")
            for _, case in self.state.selected
            if case.bot_start_url and not case.pipecat_room_url
        }
        if not urls and self.settings.defaults.bot_start_url:
            urls.add(expand(self.settings.defaults.bot_start_url, environ(), "bot_start_url"))
        origins = sorted({ready_url_for(url) for url in urls})
        if len(origins) > 1:
            return None, (
                f"bot_command: the cases use start URLs on {len(origins)} servers; set "
                "bot_ready_url to say which one is the bot's"
            )
        return (origins[0] if origins else None), None

    def bot_log_tail(self, lines: int = 20) -> str:
        """The last lines of the started bot's log, redacted ("" without a bot command)."""
        try:
            config = bot_config(self.settings.bot, self.state.bot_keys)
        except ConfigError:
            return ""
        if config is None:
            return ""
        return self.redactor(log_tail(config.log_path, lines))

    def dry_run(self, items: Sequence[pytest.Item]) -> list[str]:
        selected = self.selected(items)
        ctx = self._context(None, Wiring())
        problem = self.budget_problem(selected)
        spend = self._dry_spend(selected) if selected and not problem else []
        left_out = {line.nodeid for line in spend if line.nodeid}
        first = [(n, case.first_firing()) for n, case in selected if n not in left_out]
        lines = [self.redactor(line) for line in self.bot_lines(selected)]
        lines += dry_run(first, ctx) if selected else ["cekura dry run: no Cekura case selected"]
        lines += [
            f"adaptive case {case.name}: up to {case.repeat - case.first_runs} more run(s) if "
            "runs do not pass"
            for _, case in selected
            if case.adaptive and case.repeat > case.first_runs
        ]
        lines += [
            f"case {case.name}: up to {case.confirm} more run(s) if its failure would block "
            "(confirm)"
            for _, case in selected
            if case.confirm
        ]
        lines += [
            f"canary {self.state.cases[nodeid].name}: fired first and alone"
            for nodeid in sorted(self.canaries(selected))
        ]
        lines += [self.redactor(line.text) for line in spend]
        return lines + ([problem] if problem else [])

    def _dry_spend(self, selected: Sequence[tuple[str, Case]]) -> list[SpendLine]:
        """The spend pre-flight's lines (GETs only); without a key, why there is none."""
        client = self._runtime.client() if self._runtime is not None else None
        if client is None:
            return [SpendLine("cekura dry run: no spend forecast: CEKURA_API_KEY is not set")]
        return spend_lines(self.spend.dry_run(client, selected))

    def bot_lines(self, selected: Sequence[tuple[str, Case]]) -> list[str]:
        """Where each case's bot comes from and which layer chose it (as written: no
        variable is expanded), and the bot the session starts."""
        hooked = any(
            not (impl.wrapper or impl.hookwrapper or isinstance(impl.plugin, BotStartRooms))
            for impl in self.hooks.relay.pytest_cekura_room.get_hookimpls()
        )
        cloud = self.settings.defaults.pipecat_cloud_agent
        lines = [f"case {case.name}: {bot_from(case, hooked, cloud)}" for _, case in selected]
        try:
            bot = bot_config(self.settings.bot, self.state.bot_keys)
        except ConfigError as exc:
            return [*lines, str(exc)]
        if bot is not None and selected:
            lines.append(
                f"bot_command `{bot.command}` (chosen by {bot.layer}): started once before "
                f"firing, in {bot.cwd}"
            )
        return lines

    def rerun_problem(self, nodeid: str) -> str | None:
        """Why a rerun must not fire again, or None. Only a case whose runs all reached
        Cekura may be fired again: after a start request of unknown fate, a rejected key or
        credit, a tripped breaker or the run budget, a second POST could bill twice."""
        previous = self.state.verdicts.get(nodeid)
        case = self.state.cases[nodeid]
        if previous is None or previous.outcome == "passed":
            return "nothing to rerun"
        return self._again_problem(nodeid, previous.runs, case.repeat, "a rerun")

    def _again_problem(
        self, nodeid: str, runs: Sequence[CekuraRun], count: int, what: str
    ) -> str | None:
        """Why ``count`` more runs of a case whose runs were ``runs`` must not be fired (a
        rerun, confirmation runs), or None; the runs are reserved under every cap when not."""
        if any(run.run_id is None for run in runs):
            return "a run of the first attempt never started or its fate is unknown"
        if any(run.error_message.startswith("circuit breaker") for run in runs):
            return "the circuit breaker tripped"
        budget = self.settings.max_runs
        if budget is not None and not self._role.reserve(count, budget, self.state.spent):
            return f"{what} would start more than cekura_max_runs={budget} runs"
        firing = self._role
        return self.spend.rerun_problem(nodeid, count, firing.forecast(), firing.reserve)

    def refire(self, nodeid: str) -> bool:
        """A rerun (pytest-rerunfailures) of a case that did not pass: fire a fresh run of
        it, in this process, and judge the case again from that run alone. False (and the
        old verdict stands) when ``rerun_problem`` says no."""
        problem = self.rerun_problem(nodeid)
        if problem is not None:
            note = f"cekura: {nodeid} was not fired again on rerun: {problem}"
            if note not in self.state.notes:
                self.state.notes.append(note)
            return False
        case = self.state.cases[nodeid]
        attempt = self.state.attempts.get(nodeid, 0) + 1
        self.state.attempts[nodeid] = attempt
        self.state.verdicts.pop(nodeid, None)
        self.state.confirmations.pop(nodeid, None)
        self.state.compared.pop(nodeid, None)
        self._role.refire(nodeid, case.first_firing(), attempt, self._context)
        return True

    # -- judge -----------------------------------------------------------------------------

    def verdict(self, nodeid: str) -> CaseVerdict:
        """Wait for the case's runs, then decide; cached, so every phase shares it."""
        known = self.state.verdicts.get(nodeid)
        if known is not None:
            return known
        case = self.state.cases[nodeid]
        if self.state.problem:
            reason = self.state.problem
            runs = [
                CekuraRun(scenario_id=case.scenario, status="not_started", error_message=reason)
            ]
        else:
            attempt = self.state.attempts.get(nodeid, 0)
            runs = self._top_up(nodeid, case, self._role.runs(nodeid, attempt), attempt)
        forget = self.ledger is not None and not self.state.attempts.get(nodeid, 0)
        forget = forget and role.judged(runs)  # a wait that gave up leaves the runs to resume
        runs = [self._masked(run, case.scenario) for run in runs]
        verdict = self._decide(case, runs)
        if not self.state.problem and verdict.outcome != "passed":
            verdict = self._second_look(nodeid, case, verdict)
        self.state.verdicts[nodeid] = verdict
        self.state.actual[nodeid] = actual(list(verdict.runs), self.spend.policy.pricing)
        if forget and self.ledger is not None:
            self.ledger.forget(nodeid)  # judged: nothing of it is left to resume
        return verdict

    def credits(self, nodeid: str) -> float | None:
        """What the case's last judged runs cost, estimated (None: none started, or none
        said how long it lasted)."""
        spent = self.state.actual.get(nodeid)
        if spent is None or spent.runs == spent.unknown:
            return None
        return spent.credits

    def forecast(self) -> Forecast | None:
        """The spend forecast of the session's first firing, from whichever process fired."""
        return self._role.forecast()

    def release(self, nodeid: str) -> None:
        """The case's test is over (every phase reported, reruns included): keep of its
        verdict what a rerun decision reads, not the runs' snapshots and transcripts."""
        verdict = self.state.verdicts.get(nodeid)
        if verdict is not None:
            self.state.verdicts[nodeid] = verdict.released()

    def _masked(self, run: CekuraRun, scenario: int) -> CekuraRun:
        """The run as a test may read it: secrets masked, its scenario known (a copy only
        when that changes something)."""
        error_message = self.redactor(run.error_message)
        transcript = self.redactor(run.transcript) if run.transcript else run.transcript
        if run.scenario_id and error_message == run.error_message and transcript == run.transcript:
            return run
        return replace(
            run,
            scenario_id=run.scenario_id or scenario,
            error_message=error_message,
            transcript=transcript,
        )

    def _top_up(
        self, nodeid: str, case: Case, runs: list[CekuraRun], attempt: int
    ) -> list[CekuraRun]:
        """An adaptive case: fire one more run per run that did not pass, round after
        round, while ``min_passes`` can still be reached (``adaptive_need``). Each round is
        fired by this process as an attempt of its own (negative: never a rerun's number)."""
        rounds = 0
        while need := adaptive_need(case, runs):
            rounds += 1
            key = -(attempt * 1000 + rounds)
            self._role.refire(nodeid, replace(case, repeat=need), key, self._context)
            runs = runs + self._role.runs(nodeid, key)
        return runs

    def _second_look(self, nodeid: str, case: Case, verdict: CaseVerdict) -> CaseVerdict:
        """A case that did not pass: its pass rate compared with the baseline's, then, if
        it still blocks, its confirmation runs (``confirm = N``), fired like an adaptive
        top-up, under every cap; the verdict with them and what they said."""
        before = self.baseline.runs.get(nodeid) if self.baseline is not None else None
        compared = compare_with(
            case, verdict.runs, verdict.judged, *(before if before else (None, 0))
        )
        if compared is not None:
            self.state.compared[nodeid] = compared
        if case.confirm <= 0 or verdict.outcome != "failed" or self.state.interrupted:
            return verdict
        if self.gating(nodeid, verdict).excuse is not None:
            return verdict  # it would not block: nothing to confirm
        problem = self._again_problem(nodeid, verdict.runs, case.confirm, "confirmation runs")
        if problem is not None:
            line = f"  not confirmed: {case.confirm} confirmation run(s) not fired: {problem}"
            return replace(verdict, message=f"{verdict.message}\n{line}")
        key = -(self.state.attempts.get(nodeid, 0) * 1000 + 999)
        self._role.refire(nodeid, replace(case, repeat=case.confirm), key, self._context)
        runs = [self._masked(run, case.scenario) for run in self._role.runs(nodeid, key)]
        confirmed = self.state.confirmations[nodeid] = confirmation(case, runs)
        lines = ["  confirmation runs:"] + [
            f"    run {run.run_id}: {judgement.outcome}"
            for run, judgement in zip(confirmed.runs, confirmed.judged, strict=True)
        ]
        return replace(
            verdict,
            message="\n".join([verdict.message, *lines]),
            runs=verdict.runs + confirmed.runs,
            judged=verdict.judged + confirmed.judged if verdict.judged else (),
        )

    def _decide(self, case: Case, runs: list[CekuraRun]) -> CaseVerdict:
        hook = self.hooks.relay
        override = None
        try:
            for run in runs:
                hook.pytest_cekura_run_finished(case=case, run=run)
            if all(run.verdict != "error" for run in runs):
                override = hook.pytest_cekura_verdict(case=case, runs=tuple(runs))
        except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
            broken = f"a pytest_cekura_* hook raised {type(exc).__name__}: {exc}"
            return CaseVerdict("error", self.redactor(broken), self.redactor(broken), tuple(runs))
        verdict = decide(case, runs, override)
        if override is None:
            verdict = apply_pooled(case, runs, verdict)
        message = verdict.message
        if verdict.outcome != "passed":
            message += _transcript_tail(runs)
            tail = self.bot_log_tail()
            if tail and "--- last lines of" not in message:
                indented = "".join(f"\n    {line}" for line in tail.splitlines())
                message += f"\n  last lines of the bot's log:{indented}"
        return replace(
            verdict,
            message=self.redactor(message),
            first_reason=self.redactor(verdict.first_reason),
        )

    def gating(self, nodeid: str, verdict: CaseVerdict | None = None) -> Gating:
        """Whether the case's verdict blocks: quarantine, baseline, confirmation runs
        (``_gating``)."""
        verdict = verdict or self.verdict(nodeid)
        return _gating.gate(
            self.state.cases[nodeid],
            nodeid,
            verdict.outcome == "passed",
            self.baseline,
            _gating.today(),
            self.evaluator(nodeid),
            confirmation=self.state.confirmations.get(nodeid),
            compared=self.state.compared.get(nodeid),
        )

    def evaluator(self, nodeid: str) -> Evaluator | None:
        """The case's scenario version and metric hash, from the session's one scenario
        read (whichever process made it); None when its scenario was not read."""
        return self._role.evaluators().get(self.state.cases[nodeid].scenario)

    def fail(self, nodeid: str, verdict: CaseVerdict) -> None:
        """End the test for a verdict that did not pass: pytest's fail (``NotEvaluated`` for
        an error), or xfail when a quarantine or the baseline excuses it (never strict: a
        pass is just a pass)."""
        gating = self.gating(nodeid)
        # Masked first (a secret is still whole), then made inert for stdout and JUnit.
        if gating.excuse is not None:
            reason = self.redactor(f"{gating.excuse}: {verdict.first_reason}")
            pytest.xfail(plain(reason, one_line=True))
        message = plain(
            self.redactor(verdict.message + (f"\n  {gating.note}" if gating.note else ""))
        )
        if verdict.outcome == "error":
            raise NotEvaluated(message)  # errors, and reporters such as Allure say "broken"
        pytest.fail(message, pytrace=False)

    # -- the end ---------------------------------------------------------------------------

    def notes(self) -> list[str]:
        """The session's notes, masked; read for every test's report, so masked again only
        when one was added."""
        recording = self._runtime.notes() if self._runtime is not None else []
        known = [*self._role.notes(), *self.state.notes, *recording]
        if known != self.state.masked_notes[0]:
            self.state.masked_notes = (known, [self.redactor(n) for n in dict.fromkeys(known)])
        return list(self.state.masked_notes[1])

    def progress(self) -> Counts | None:
        """The counts for the progress line (None until something was fired)."""
        return self._role.progress()

    def interrupt(self) -> None:
        self.state.interrupted = True
        self._role.interrupt()
        if self.ledger is not None and self._role.ends_calls:
            # The live calls were ended: a later session must not re-attach to them.
            self.ledger.forget_session()

    def close(self) -> None:
        bot = self.state.bot
        if bot is not None:
            if bot.running and not self.state.interrupted:
                # Under xdist other workers' runs may still be live in the bot's rooms.
                with contextlib.suppress(Exception):
                    for nodeid, _ in self.state.selected:
                        self._role.runs(nodeid, 0)
            bot.stop()
        self._role.close()
        # Nothing reads them after this: freed now by reference counting, not traced by
        # the garbage collections left (pytest's at unconfigure, the interpreter's at exit).
        self.state.verdicts.clear()
        self.state.actual.clear()
        self.state.confirmations.clear()
        self.state.compared.clear()
        self.state.cases.clear()
        self.state.selected.clear()


def _transcript_tail(runs: Sequence[CekuraRun], turns: int = 8) -> str:
    """The last turns of each failing run's transcript, bounded, for the failure text."""
    parts: list[str] = []
    for run in runs:
        if run.passed or run.run_id is None or not run.transcript:
            continue
        lines = [line.strip() for line in run.transcript.splitlines() if line.strip()]
        tail = [line if len(line) <= 200 else line[:199] + "…" for line in lines[-turns:]]
        parts.append(f"\n  transcript of run {run.run_id}, last {len(tail)} turn(s):")
        parts.extend(f"\n    {line}" for line in tail)
    return "".join(parts)


def build_session(
    settings: Settings,
    redactor: Redactor,
    firing: tuple[role.Role, str | None],
    hooks: Hooks,
    *,
    ledger: Ledger | None,
    baseline: _gating.Baseline | None,
    agent_flag: bool,
    runtime: role.Runtime | None = None,
    announce: Callable[[str], None] | None = None,
) -> CekuraSession:
    """The session, from values. ``agent_flag``: --cekura-agent was given (the default
    agent's messages name the option that set it); ``runtime``: how the session reads
    Cekura before firing (the spend pre-flight); ``announce``: where its forecast goes."""
    process, problem = firing
    agent = settings.defaults.agent
    default_agent = None
    if agent is not None:
        default_agent = agent, "--cekura-agent" if agent_flag else "ini key cekura_agent"
    return CekuraSession(
        settings,
        redactor,
        process,
        hooks,
        problem=problem,
        ledger=ledger,
        baseline=baseline,
        default_agent=default_agent,
        runtime=runtime,
        announce=announce,
    )

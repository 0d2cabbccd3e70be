"""The ledger of fired runs: resume a killed session instead of firing (and billing) again.

Every start request is written down before it leaves, and again once Cekura answers it, per
session and case, in
pytest's cache (``.pytest_cache/d/cekura/ledger-<case>-<session>.json``: processes never write
the same file, and two sessions in one directory, two CI jobs on one runner, never touch each
other's entries): a fingerprint of what was sent, the result and run ids, when, and the
session that fired them (``_owner.py``: host, pid and the pid's start time, so that a reused
pid is never taken for a live session). A session removes a case's entry when it has judged
the case, and its own entries when it ended their calls (an interrupt); nothing else. Under
pytest-xdist the session is the controller's: an orphaned worker (its controller killed)
judges nothing and removes nothing. What a session finds that was fired by a session that
no longer runs (SIGKILL, OOM, a cancelled CI job) is left to resume:

- the same case with the same fingerprint, still within its timeout, is **re-attached**: no
  start request, its runs are watched and judged as if this session had fired them (the
  entry becomes this session's: should it be killed too, the next one re-attaches again);
- a changed case, runs past their timeout, or a second session's runs for a case already
  re-attached cannot be: their calls are ended (they may still be billing) and the case is
  fired afresh;
- entries of a live session are left alone.

A run whose start request never got its answer (the session was killed while it was on the
wire, or it was lost and not found) is looked for in Cekura's results list first
(``_recover.py``): found, it is treated as any answered run; not found, there is nothing to
re-attach or end, and its case is fired afresh.

The fingerprint is a hash (node id, scenario, agent, room URL, a hash of the token,
``publish_data_message``, ``mock_tool_names``, repeat, after ``${VAR}`` expansion): no
secret is written to the cache, which CI may upload. A room from a ``pytest_cekura_room``
hook is not part of it (asking the hook again would create a room).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._config.case import Case, expand, expand_json
from .._errors import CekuraError
from .._files import SharedDirError, write_atomic
from .._owner import Owner, ledger_directory
from .plan import Slot
from .recover import Sent

_PREFIX = "ledger-"
_VERSION = 3  # 1: keyed by case only, owned by a pid; 2: answered runs only
OFF_NOTE = (
    "cekura: no ledger of fired runs (-p no:cacheprovider): if this session is killed, its "
    "runs cannot be re-attached by the next one"
)


def fingerprint(nodeid: str, case: Case, env: Mapping[str, str]) -> str | None:
    """What a case sends, hashed; None when it cannot be known (a missing variable)."""
    try:
        url = expand(case.pipecat_room_url, env, case.name) if case.pipecat_room_url else None
        token = expand(case.pipecat_token, env, case.name) if case.pipecat_token else None
        message = expand_json(case.publish_data_message, env, case.name)
    except CekuraError:
        return None
    token_hash = hashlib.sha256(token.encode()).hexdigest() if token else None
    mock = list(case.mock_tool_names) if case.mock_tool_names is not None else None
    sent = [nodeid, case.scenario, case.agent, url, token_hash, message, mock, case.repeat]
    text = json.dumps(sent, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Entry:
    """One case's fired runs, as written by the session that fired them."""

    nodeid: str
    fingerprint: str
    timeout: float
    owner: Owner
    slots: list[Slot] = field(default_factory=list)
    # Slots whose start request left without an answer yet, by slot index: the request
    # and the slot's entry in it. Their ``fired_at`` is when the request left.
    sent: dict[int, tuple[Sent, int]] = field(default_factory=dict)

    @property
    def fired_at(self) -> float:
        return min((s.fired_at or 0.0 for s in self.slots), default=0.0)

    def _sent_json(self, index: int) -> dict[str, Any] | None:
        if index not in self.sent:
            return None
        sent, position = self.sent[index]
        scenarios = list(sent.scenarios)
        return {
            "at": sent.sent_at,
            "agent": sent.agent,
            "scenarios": scenarios,
            "position": position,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "nodeid": self.nodeid,
            "fingerprint": self.fingerprint,
            "timeout": self.timeout,
            "owner": {
                "session": self.owner.session,
                "host": self.owner.host,
                "pid": self.owner.pid,
                "started": self.owner.started,
            },
            "slots": [
                {
                    "index": s.index,
                    "scenario": s.scenario,
                    "fired_at": s.fired_at,
                    "result_id": s.result_id,
                    "run_id": s.run_id,
                    "dashboard_url": s.dashboard_url,
                    "sent": self._sent_json(s.index),
                }
                for s in self.slots
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        """Raises ValueError (or KeyError, TypeError) for anything but an entry (of this
        version, or of the first: an upgrade loses no billed run)."""
        if not isinstance(data, dict) or data.get("version") not in (1, 2, _VERSION):
            raise ValueError("not a ledger entry")
        nodeid = str(data["nodeid"])
        timeout = float(data["timeout"])
        slots: list[Slot] = []
        sent: dict[int, tuple[Sent, int]] = {}
        for s in data["slots"]:
            pending = s.get("sent")
            slots.append(
                Slot(
                    nodeid,
                    int(s["index"]),
                    int(s["scenario"]),
                    timeout,
                    fired_at=float(s["fired_at"]),
                    result_id=None if pending else int(s["result_id"]),
                    run_id=int(s["run_id"]) if s.get("run_id") is not None else None,
                    dashboard_url=str(s["dashboard_url"]) if s.get("dashboard_url") else None,
                )
            )
            if pending:
                agent = pending.get("agent")
                request = Sent(
                    None if agent is None else int(agent),
                    tuple(int(i) for i in pending["scenarios"]),
                    float(pending["at"]),
                )
                sent[slots[-1].index] = (request, int(pending["position"]))
        mine = data.get("owner") or {"host": data["host"], "pid": data["pid"]}
        owner = Owner(
            str(mine.get("session", "")),
            str(mine["host"]),
            int(mine["pid"]),
            str(mine.get("started", "")),
        )
        return cls(nodeid, str(data["fingerprint"]), timeout, owner, slots, sent)


@dataclass
class Resumption:
    """What a new session does with the ledger before it fires."""

    attached: dict[str, Slot] = field(default_factory=dict)  # by slot key
    end_runs: list[int] = field(default_factory=list)  # calls to end, by run id
    end_results: list[int] = field(default_factory=list)  # ...by result (no run id known)
    notes: list[str] = field(default_factory=list)

    @property
    def attached_cases(self) -> int:
        return len({slot.nodeid for slot in self.attached.values()})


@dataclass(frozen=True)
class Unanswered:
    """A start request a dead session sent without getting its answer: the request, and its
    slots as (node id, slot index, entry position in the request)."""

    sent: Sent
    slots: list[tuple[str, int, int]]


def _fill(entry: Entry, found: Mapping[tuple[str, int], tuple[int, int | None]]) -> bool:
    """Give the entry's unanswered slots the result and run found for them, drop the others;
    whether any slot is left."""
    kept: list[Slot] = []
    for slot in entry.slots:
        if slot.index in entry.sent:
            where = found.get((entry.nodeid, slot.index))
            if where is None:
                continue
            slot.result_id, slot.run_id = where
        kept.append(slot)
    entry.slots, entry.sent = kept, {}
    return bool(kept)


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Ledger:
    """The ledger in one directory of pytest's cache, for one session; safe to use from
    several processes (each case of each session has its own file, written atomically)."""

    def __init__(self, directory: Path, owner: Owner | None = None, *, fresh: bool = False) -> None:
        self.directory = directory
        self.owner = owner if owner is not None else Owner.here()
        self.fresh = fresh  # --cekura-fresh: re-attach nothing, end what was left running

    @classmethod
    def for_config(
        cls, config: Any, owner: Owner | None = None, *, fresh: bool = False
    ) -> Ledger | None:
        """The ledger in ``config.cache``; None when pytest's cache is off. A cache that
        cannot be written still gives one (see :meth:`problem`): what it holds can be read."""
        directory = ledger_directory(config)
        return None if directory is None else cls(directory, owner, fresh=fresh)

    def _path(self, nodeid: str) -> Path:
        digest = hashlib.sha256(nodeid.encode()).hexdigest()[:24]
        return self.directory / f"{_PREFIX}{digest}-{self.owner.session}.json"

    # -- writing -----------------------------------------------------------------------------

    def record(self, fired: Sequence[tuple[Case, str | None, Slot]]) -> str | None:
        """Write down an answered start request's slots (case, fingerprint, slot), at once.
        A slot joins its case's entry of this session. Best effort (a full disk must not
        stop the session; a cache that cannot be written was said before firing): why a
        write failed, or None."""
        by_case: dict[str, list[tuple[Case, str, Slot]]] = {}
        for case, mark, slot in fired:
            if mark is not None and slot.result_id is not None and slot.attempt == 0:
                by_case.setdefault(slot.nodeid, []).append((case, mark, slot))
        failed: str | None = None
        for nodeid, items in by_case.items():
            entry = self._own(nodeid, items[0][0], items[0][1])
            for _, _, slot in items:
                if slot.index in entry.sent or all(s.index != slot.index for s in entry.slots):
                    entry.sent.pop(slot.index, None)
                    entry.slots = [s for s in entry.slots if s.index != slot.index] + [slot]
            failed = self._write(entry) or failed
        return failed

    def record_sending(
        self, fired: Sequence[tuple[Case, str | None, Slot]], sent: Sent
    ) -> str | None:
        """Write down a start request's slots (in the order of its entries) before it
        leaves: should this session be killed before its answer, the next one looks for
        the result it may have created. Best effort, as :meth:`record`."""
        by_case: dict[str, list[tuple[Case, str, Slot, int]]] = {}
        for position, (case, mark, slot) in enumerate(fired):
            if mark is not None and slot.attempt == 0:
                by_case.setdefault(slot.nodeid, []).append((case, mark, slot, position))
        failed: str | None = None
        for nodeid, items in by_case.items():
            entry = self._own(nodeid, items[0][0], items[0][1])
            for _, _, slot, position in items:
                pending = replace(slot, fired_at=sent.sent_at, result_id=None, run_id=None)
                entry.slots = [s for s in entry.slots if s.index != slot.index] + [pending]
                entry.sent[slot.index] = (sent, position)
            failed = self._write(entry) or failed
        return failed

    def _own(self, nodeid: str, case: Case, mark: str) -> Entry:
        """This session's entry of the case (a new one if it has none yet)."""
        entry = self._read(self._path(nodeid))
        if entry is None or entry.owner != self.owner or entry.fingerprint != mark:
            entry = Entry(nodeid, mark, case.timeout, self.owner)
        return entry

    def _write(self, entry: Entry) -> str | None:
        try:
            write_atomic(self._path(entry.nodeid), json.dumps(entry.to_json()).encode())
        except SharedDirError as exc:
            return str(exc)
        return None

    def forget(self, nodeid: str) -> None:
        """This session judged the case: nothing of it is left to resume."""
        with contextlib.suppress(OSError):
            self._path(nodeid).unlink(missing_ok=True)

    def forget_session(self) -> None:
        """Forget what this session fired and re-attached (it ended their calls on an
        interrupt: re-attaching them would judge ended calls); other sessions' entries stay."""
        try:
            paths = list(self.directory.glob(f"{_PREFIX}*-{self.owner.session}.json"))
        except OSError:
            return
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------------------

    def _read(self, path: Path) -> Entry | None:
        try:
            return Entry.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _entries(self) -> list[tuple[Path, Entry | None]]:
        try:
            paths = sorted(self.directory.glob(f"{_PREFIX}*.json"))
        except OSError:
            return []
        return [(path, self._read(path)) for path in paths]

    def _left(self) -> list[tuple[Path, Entry]]:
        """The entries of sessions that no longer run (unreadable ones are removed)."""
        left: list[tuple[Path, Entry]] = []
        for path, entry in self._entries():
            if entry is None:  # unreadable: a torn copy, an unknown version
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            elif entry.owner.session != self.owner.session and not entry.owner.alive():
                left.append((path, entry))
        return left

    def _claim(self, path: Path, entry: Entry) -> bool:
        """Make a dead session's entry this one's; False when another session took it
        first (two sessions starting at once re-attach each run once). The rename is the
        claim; the entry is then written with its new owner (killed in between, it still
        names a dead one: the next session re-attaches it)."""
        mine = self._path(entry.nodeid)
        try:
            os.rename(path, mine)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # a read-only ledger: nobody can take it, re-attach it all the same
        self._write(Entry(entry.nodeid, entry.fingerprint, entry.timeout, self.owner, entry.slots))
        return True

    def unanswered(self) -> tuple[list[Unanswered], set[int]]:
        """The start requests that dead sessions sent without getting their answer, and
        every result id the ledger names (none of them is such a request's result)."""
        requests: dict[Sent, list[tuple[str, int, int]]] = {}
        known: set[int] = set()
        for _, entry in self._entries():
            if entry is None:
                continue
            known.update(s.result_id for s in entry.slots if s.result_id is not None)
            if entry.owner.session == self.owner.session or entry.owner.alive():
                continue
            for index, (sent, position) in entry.sent.items():
                requests.setdefault(sent, []).append((entry.nodeid, index, position))
        return [Unanswered(sent, slots) for sent, slots in requests.items()], known

    def resume(
        self,
        cases: Sequence[tuple[str, Case]],
        env: Mapping[str, str],
        now: float | None = None,
        found: Mapping[tuple[str, int], tuple[int, int | None]] | None = None,
    ) -> Resumption:
        """Split what dead sessions left into runs to re-attach and calls to end. The
        entries of calls to end leave the ledger now; a re-attached case's entry becomes
        this session's and stays until its verdict is known (this session may be killed
        too). A live session's entries are not touched. ``found``: the result and run of
        slots whose start request was never answered, by (node id, slot index), as the
        results list said (:meth:`unanswered`); the others are dropped."""
        now = time.time() if now is None else now
        selected = dict(cases)
        out = Resumption()
        ended: list[tuple[Path, Entry]] = []
        for path, entry in self._left():
            if entry.sent and not _fill(entry, found or {}):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)  # only unanswered runs, none found
                continue
            case = selected.get(entry.nodeid)
            timeout = case.timeout if case is not None else entry.timeout
            too_old = now >= entry.fired_at + timeout
            if case is None and not too_old:
                continue  # not selected this time: it may be resumed by a later session
            same = case is not None and entry.fingerprint == fingerprint(entry.nodeid, case, env)
            whole = case is not None and len(entry.slots) == case.repeat
            taken = any(slot.key in out.attached for slot in entry.slots)
            if same and whole and not too_old and not self.fresh and not taken:
                if self._claim(path, entry):
                    for slot in entry.slots:
                        slot.timeout = timeout
                        out.attached[slot.key] = slot
                continue
            ended.append((path, entry))
        self._end(ended, out)
        self._say(out, ended, now)
        return out

    def _end(self, ended: Sequence[tuple[Path, Entry]], out: Resumption) -> None:
        """The calls of ``ended`` entries to end: not those of re-attached runs."""
        attached_runs = {s.run_id for s in out.attached.values()}
        attached_results = {s.result_id for s in out.attached.values()}
        for path, entry in ended:
            for slot in entry.slots:
                if slot.run_id is not None:
                    if slot.run_id not in attached_runs:
                        out.end_runs.append(slot.run_id)
                elif slot.result_id is not None:
                    out.end_results.append(slot.result_id)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        # Ending a whole result would end re-attached runs that share it.
        out.end_runs = sorted(set(out.end_runs))
        out.end_results = sorted(set(out.end_results) - attached_results)

    def _say(self, out: Resumption, ended: Sequence[tuple[Path, Entry]], now: float) -> None:
        if out.attached:
            first = min(s.fired_at or now for s in out.attached.values())
            out.notes.append(
                f"cekura: re-attached to runs started at {_stamp(first)} by a session that "
                f"ended before judging them ({out.attached_cases} case(s), nothing fired "
                "again for them; --cekura-fresh fires anew)"
            )
        cases = {entry.nodeid for _, entry in ended}
        if cases:
            why = "--cekura-fresh" if self.fresh else "the case changed or its runs are too old"
            out.notes.append(
                f"cekura: {len(cases)} case(s) fired by an earlier session were never "
                f"judged and cannot be re-attached ({why}): their calls are ended"
            )

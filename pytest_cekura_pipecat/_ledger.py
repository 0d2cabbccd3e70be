"""The ledger of fired runs: resume a killed session instead of firing (and billing) again.

Every start request that Cekura answers is written down at once, per case, in pytest's cache
(``.pytest_cache/d/cekura/ledger-*.json``, one file per case so that processes never write
the same file): a fingerprint of what was sent, the result and run ids and when. A case's
file is removed as soon as its verdict is known. What is left when a session begins was
fired by a session that died before judging it (SIGKILL, OOM, a cancelled CI job):

- the same case with the same fingerprint, still within its timeout, is **re-attached**: no
  start request, its runs are watched and judged as if this session had fired them;
- a changed case, or runs past their timeout, cannot be: their calls are ended (they may
  still be billing) and the case is fired afresh.

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
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._case import Case, expand, expand_json
from ._errors import CekuraError
from ._plan import Slot
from ._shared import SharedDirError, pid_alive, write_atomic

CACHE_DIR = "cekura"  # config.cache.mkdir(CACHE_DIR)
_PREFIX = "ledger-"
_VERSION = 1
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
    """One case's fired runs, as written by the process that fired them."""

    nodeid: str
    fingerprint: str
    timeout: float
    host: str
    pid: int
    slots: list[Slot] = field(default_factory=list)

    @property
    def fired_at(self) -> float:
        return min((s.fired_at or 0.0 for s in self.slots), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "nodeid": self.nodeid,
            "fingerprint": self.fingerprint,
            "timeout": self.timeout,
            "host": self.host,
            "pid": self.pid,
            "slots": [
                {
                    "index": s.index,
                    "scenario": s.scenario,
                    "fired_at": s.fired_at,
                    "result_id": s.result_id,
                    "run_id": s.run_id,
                    "dashboard_url": s.dashboard_url,
                }
                for s in self.slots
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        """Raises ValueError (or KeyError, TypeError) for anything but an entry."""
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValueError("not a ledger entry")
        nodeid = str(data["nodeid"])
        timeout = float(data["timeout"])
        slots = [
            Slot(
                nodeid,
                int(s["index"]),
                int(s["scenario"]),
                timeout,
                fired_at=float(s["fired_at"]),
                result_id=int(s["result_id"]),
                run_id=int(s["run_id"]) if s.get("run_id") is not None else None,
                dashboard_url=str(s["dashboard_url"]) if s.get("dashboard_url") else None,
            )
            for s in data["slots"]
        ]
        return cls(
            nodeid, str(data["fingerprint"]), timeout, str(data["host"]), int(data["pid"]), slots
        )


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


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Ledger:
    """The ledger in one directory of pytest's cache; safe to use from several processes
    (each case has its own file, written atomically)."""

    def __init__(self, directory: Path, *, fresh: bool = False) -> None:
        self.directory = directory
        self.fresh = fresh  # --cekura-fresh: re-attach nothing, end what was left running
        self._host = socket.gethostname()

    @classmethod
    def for_config(cls, config: Any, *, fresh: bool = False) -> Ledger | None:
        """The ledger in ``config.cache``; None when pytest's cache is off."""
        cache = getattr(config, "cache", None)
        if cache is None:
            return None
        try:
            return cls(Path(cache.mkdir(CACHE_DIR)), fresh=fresh)
        except OSError:
            return None

    def _path(self, nodeid: str) -> Path:
        digest = hashlib.sha256(nodeid.encode()).hexdigest()[:24]
        return self.directory / f"{_PREFIX}{digest}.json"

    # -- writing -----------------------------------------------------------------------------

    def record(self, fired: Sequence[tuple[Case, str | None, Slot]]) -> None:
        """Write down an answered start request's slots (case, fingerprint, slot), at once.
        A slot joins its case's entry of this process; best effort (a full disk must not
        stop the session)."""
        by_case: dict[str, list[tuple[Case, str, Slot]]] = {}
        for case, mark, slot in fired:
            if mark is not None and slot.result_id is not None and slot.attempt == 0:
                by_case.setdefault(slot.nodeid, []).append((case, mark, slot))
        for nodeid, items in by_case.items():
            case, mark, _ = items[0]
            entry = self._read(self._path(nodeid))
            if entry is None or entry.pid != os.getpid() or entry.fingerprint != mark:
                entry = Entry(nodeid, mark, case.timeout, self._host, os.getpid())
            known = {s.index for s in entry.slots}
            entry.slots.extend(slot for _, _, slot in items if slot.index not in known)
            with contextlib.suppress(SharedDirError):
                write_atomic(self._path(nodeid), json.dumps(entry.to_json()).encode())

    def forget(self, nodeid: str) -> None:
        """The case's verdict is known: nothing of it is left to resume."""
        with contextlib.suppress(OSError):
            self._path(nodeid).unlink(missing_ok=True)

    def forget_since(self, since: float) -> None:
        """Forget what was fired since ``since`` (an interrupted session ended its calls:
        re-attaching them would judge ended calls)."""
        for path, entry in self._entries():
            if entry is not None and (entry.pid == os.getpid() or entry.fired_at >= since):
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

    def _live_elsewhere(self, entry: Entry) -> bool:
        """Fired by a session that still runs on this machine (not a dead one's)."""
        return entry.host == self._host and entry.pid != os.getpid() and pid_alive(entry.pid)

    def resume(
        self,
        cases: Sequence[tuple[str, Case]],
        env: Mapping[str, str],
        now: float | None = None,
    ) -> Resumption:
        """Split what the ledger holds into runs to re-attach and calls to end. The entries
        of calls to end leave the ledger now; a re-attached case's entry stays until its
        verdict is known (this session may be killed too)."""
        now = time.time() if now is None else now
        selected = dict(cases)
        out = Resumption()
        ended_cases: list[str] = []
        for path, entry in self._entries():
            if entry is None:  # unreadable: an old version, a torn copy
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
                continue
            if self._live_elsewhere(entry):
                continue
            case = selected.get(entry.nodeid)
            timeout = case.timeout if case is not None else entry.timeout
            too_old = now >= entry.fired_at + timeout
            if case is None and not too_old:
                continue  # not selected this time: it may be resumed by a later session
            same = case is not None and entry.fingerprint == fingerprint(entry.nodeid, case, env)
            whole = case is not None and len(entry.slots) == case.repeat
            if same and whole and not too_old and not self.fresh:
                for slot in entry.slots:
                    slot.timeout = timeout
                    out.attached[slot.key] = slot
                continue  # the entry stays until the case's verdict is known
            ended_cases.append(entry.nodeid)
            for slot in entry.slots:
                if slot.run_id is not None:
                    out.end_runs.append(slot.run_id)
                elif slot.result_id is not None:
                    out.end_results.append(slot.result_id)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        attached_results = {s.result_id for s in out.attached.values()}
        # Ending a whole result would end re-attached runs that share it.
        out.end_results = sorted(set(out.end_results) - attached_results)
        if out.attached:
            first = min(s.fired_at or now for s in out.attached.values())
            out.notes.append(
                f"cekura: re-attached to runs started at {_stamp(first)} by a session that "
                f"ended before judging them ({out.attached_cases} case(s), nothing fired "
                "again for them; --cekura-fresh fires anew)"
            )
        if ended_cases:
            why = "--cekura-fresh" if self.fresh else "the case changed or its runs are too old"
            out.notes.append(
                f"cekura: {len(ended_cases)} case(s) fired by an earlier session were never "
                f"judged and cannot be re-attached ({why}): their calls are ended"
            )
        return out

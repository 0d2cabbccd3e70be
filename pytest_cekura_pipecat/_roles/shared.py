"""The directory the pytest-xdist controller shares with its workers.

Every worker collects and selects the same items, so exactly one must fire: the first to
create ``fire.lock`` (``O_CREAT | O_EXCL``, atomic on local filesystems; it holds the
worker's pid). The firing worker records each start request before it leaves
(``sending-<tag>.json``) and once answered (``batch-<tag>.json``), then the whole plan
(``plan.json``). Files are written to a temporary name and renamed, so no reader sees half a
file. The controller's watcher picks up each answered batch as it appears and appends every
final run to ``runs.jsonl`` (one line each, written with a single ``O_APPEND`` write);
workers read that log from where they left off and index it once.

The fire lock is never taken over: a second firing could bill every run twice. When its
holder is dead (``os.kill(pid, 0)``), the others rebuild the plan from the batch files and
say what happened to the cases it never answered for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from .._api.models import Snapshot
from .._api.run import CekuraRun
from .._files import SharedDirError, write_atomic
from .._files import append as _append
from .._fire.plan import Plan, Slot, plan_from_json, plan_to_json, slots_from_json, slots_to_json
from .._owner import pid_alive
from .._owner import started as _started
from .._text import clean

PLAN = "plan.json"
FIRE_LOCK = "fire.lock"
RUNS_LOG = "runs.jsonl"
NOTICE = "notice.txt"
BOT = "bot.pid"


@dataclass(frozen=True)
class _Line:
    """A line of the run log: the run without its snapshot, and the snapshot as text (a
    JSON string), so that neither end decodes what nobody may read."""

    key: str
    run: CekuraRun
    raw: str = "{}"
    size: int = 0


@cache
def _line_adapter() -> TypeAdapter[_Line]:
    return TypeAdapter(_Line)


def _plain(value: object) -> object:
    """Read-only mappings (a metric's ``extra``) travel as plain objects."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} cannot be shared")


def run_line(key: str, run: CekuraRun) -> bytes:
    """The run log's line for one final run (see :class:`Runs`)."""
    data = _line_adapter().dump_json(
        _Line(key, run, Snapshot.text(run.raw), len(run.raw)),
        exclude={"run": {"raw"}},
        fallback=_plain,
        warnings=False,
    )
    return data + b"\n"


def unshared(run: CekuraRun, problem: str) -> CekuraRun:
    """What crosses the run log in place of a run that cannot (its line could not be
    written or read back): its ids and an error saying why, so that its case errors at
    once with the reason instead of waiting for its timeout."""
    reason = f"the run's result could not be passed between pytest-xdist processes: {problem}"
    if run.error_message:
        reason = f"{clean(run.error_message)} ({reason})"
    return CekuraRun(
        scenario_id=run.scenario_id,
        status="failed",  # terminal, and an error whatever the run's own verdict was
        run_id=run.run_id,
        result_id=run.result_id,
        scenario_name=clean(run.scenario_name),
        error_message=reason,
        duration=run.duration,
        dashboard_url=None if run.dashboard_url is None else clean(run.dashboard_url),
    )


_KEY = re.compile(r'\{"key":\s*')  # how a line of the run log starts
_DECODER = json.JSONDecoder()


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'line'}: {first['msg']}"
    return str(exc)


class Runs(Mapping[str, CekuraRun]):
    """The run log's lines by slot key, as text; a run is parsed when it is read (once:
    its case's verdict keeps it), so a worker holds nothing the garbage collector walks
    for the runs of other workers' items."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def add(self, line: bytes) -> None:
        """One line as :meth:`SharedDir.append_run` writes it (``run_line``): its key is
        read now, the rest when the run is asked for."""
        text = line.decode("utf-8", "replace")
        start = _KEY.match(text)
        if start is None:
            return  # not a line this module wrote
        try:
            key, _ = _DECODER.raw_decode(text, start.end())
        except ValueError:
            return  # not a line this module wrote
        if isinstance(key, str):
            self._lines[key] = text

    def __getitem__(self, key: str) -> CekuraRun:
        text = self._lines[key]
        try:
            line = _line_adapter().validate_json(text)
        except ValueError as exc:  # ValidationError too: the case errors now, saying why
            problem = f"its line in {RUNS_LOG} cannot be read back ({_first_error(exc)})"
            return unshared(CekuraRun(scenario_id=0, status="failed"), problem)
        return replace(line.run, raw=Snapshot.of_text(line.raw, line.size))

    def __contains__(self, key: object) -> bool:
        return key in self._lines

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)


class SharedDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._tag = 0
        self._seen: set[str] = set()
        self._listed: tuple[int, float] | None = None  # (directory mtime, when) of the last look
        self._plan: tuple[tuple[int, int, int], Plan] | None = None  # (file stamp, plan)
        self._runs_offset = 0
        self._runs = Runs()
        self._partial = b""

    # -- firing (one worker) ---------------------------------------------------------------

    def claim_firing(self) -> bool:
        """True for the one process that fires; the lock holds its pid."""
        try:
            fd = os.open(self.path / FIRE_LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True

    def firer(self) -> int | None:
        try:
            return int((self.path / FIRE_LOCK).read_text().strip())
        except (OSError, ValueError):
            return None

    def _next_tag(self, kind: str) -> Path:
        self._tag += 1
        return self.path / f"{kind}-{os.getpid()}-{self._tag:05d}.json"

    def record_sending(self, slots: list[Slot]) -> Path:
        path = self._next_tag("sending")
        write_atomic(path, slots_to_json(slots))
        return path

    def record_batch(self, sending: Path | None, slots: list[Slot]) -> None:
        name = sending.name.replace("sending-", "batch-") if sending else None
        path = self.path / name if name else self._next_tag("batch")
        write_atomic(path, slots_to_json(slots))

    def write_plan(self, plan: Plan) -> None:
        write_atomic(self.path / PLAN, plan_to_json(plan))

    def read_plan(self) -> Plan | None:
        """The firing worker's plan; parsed again only when the file changed (it is
        replaced by rename), since the controller's progress line reads it every tick (72 ms
        a parse at 10,000 cases). Until then every call returns the same ``Plan``."""
        path = self.path / PLAN
        try:
            stat = path.stat()
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if self._plan is not None and self._plan[0] == stamp:
                return self._plan[1]
            plan = plan_from_json(path.read_bytes())
        except (OSError, ValueError, ValidationError):
            return None
        self._plan = (stamp, plan)
        return plan

    def plan_from_pieces(self, pid: int | None) -> Plan:
        """The plan of a firing worker that died: what its answered batches say."""
        slots: dict[str, list[Slot]] = {}
        for path in sorted(self.path.glob("sending-*.json")):
            batch = self.path / path.name.replace("sending-", "batch-")
            source = batch if batch.exists() else path
            try:
                pieces = slots_from_json(source.read_bytes())
            except (OSError, ValueError, ValidationError):
                continue
            for slot in pieces:
                if source is path:
                    slot.error = (
                        f"the worker firing this case (pid {pid}) died while its start request "
                        "was in flight: runs may exist; check the agent's results on the "
                        "Cekura dashboard"
                    )
                slots.setdefault(slot.nodeid, []).append(slot)
        note = f"cekura: the worker firing the session (pid {pid}) died before it finished"
        return Plan(time.time(), slots, [note])

    def record_bot(self, pid: int) -> None:
        """The firing worker's bot (its pid leads its process group), for the controller to
        stop should that worker die (see ``orphaned_bot``)."""
        write_atomic(self.path / BOT, f"{pid} {_started(pid)}".encode())

    def orphaned_bot(self) -> int | None:
        """The pid of the bot a dead firing worker left running, if it is still that
        process (its start time, where /proc tells it, rules out a reused pid)."""
        try:
            pid_text, _, started = (self.path / BOT).read_text().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        firer = self.firer()
        if firer is None or pid_alive(firer) or not pid_alive(pid):
            return None
        return pid if started == _started(pid) else None

    def say(self, line: str) -> None:
        """A line for the user's terminal, now (a worker's output is not shown): the
        controller prints it (see ``said``). The first one stays."""
        path = self.path / NOTICE
        if not path.exists():
            with contextlib.suppress(OSError):
                write_atomic(path, line.encode())

    # -- watching (the controller) ---------------------------------------------------------

    def said(self) -> str | None:
        try:
            return (self.path / NOTICE).read_text(errors="replace") or None
        except OSError:
            return None

    def new_batches(self) -> Iterator[list[Slot]]:
        """The batches answered since the last look. The directory is listed only when an
        entry was added, renamed or removed since (its mtime moved), or when it moved less
        than 3 s before that look (two changes in one tick of the file system's clock share
        an mtime; some file systems tick every 2 s): a look costs one stat while nothing is
        fired, however many batches a long session has fired."""
        try:
            changed = os.stat(self.path).st_mtime_ns
        except OSError:
            return
        if (
            self._listed is not None
            and self._listed[0] == changed
            and self._listed[1] - changed / 1e9 > 3.0
        ):
            return
        self._listed = (changed, time.time())
        try:
            with os.scandir(self.path) as entries:
                names = sorted(
                    entry.name
                    for entry in entries
                    if entry.name.startswith("batch-")
                    and entry.name.endswith(".json")
                    and entry.name not in self._seen
                )
        except OSError:
            self._listed = None
            return
        for name in names:
            path = self.path / name
            try:
                slots = slots_from_json(path.read_bytes())
            except (OSError, ValueError, ValidationError):
                continue  # not complete yet (rename is atomic: only a broken file lands here)
            self._seen.add(path.name)
            yield slots

    def append_run(self, key: str, run: CekuraRun) -> None:
        """Publish a final run. A run that cannot be written as a line (or whose line
        cannot be written) is published as ``unshared``: its case errors now, saying why.
        Raises SharedDirError when not even that can be written."""
        path = self.path / RUNS_LOG
        try:
            line = run_line(key, run)
        except (ValueError, TypeError) as exc:  # pydantic's serialization error included
            _append(path, run_line(key, unshared(run, f"it cannot be written ({exc})")))
            return
        try:
            _append(path, line)
        except SharedDirError as exc:
            _append(path, run_line(key, unshared(run, str(exc))))

    # -- waiting (workers) -----------------------------------------------------------------

    def read_runs(self) -> Runs:
        """Every final run published so far, by slot key (reads only what is new; a run is
        parsed only when asked for: a worker needs its own items' runs, not all of them)."""
        try:
            with open(self.path / RUNS_LOG, "rb") as handle:
                handle.seek(self._runs_offset)
                data = handle.read()
        except FileNotFoundError:
            return self._runs
        self._runs_offset += len(data)
        data, self._partial = self._partial + data, b""
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        for line in lines:
            if line:
                self._runs.add(line)
        return self._runs

    # -- the run budget across processes ----------------------------------------------------

    def reserve(self, runs: int, budget: int, base: int, counter: str = "reruns") -> bool:
        """Reserve ``runs`` rerun runs if the session's total (``base`` first-attempt runs
        plus every reservation so far, by any worker) stays within ``budget``. Another
        ``counter`` ("credits": hundredths of a credit) is kept the same way, apart."""
        import fcntl  # POSIX; a lock that dies with its holder

        with open(self.path / "spent.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.path / f"{counter}.json"
            try:
                spent = int(path.read_text() or 0)
            except (OSError, ValueError):
                spent = 0
            if base + spent + runs > budget:
                return False
            write_atomic(path, str(spent + runs).encode())
            return True

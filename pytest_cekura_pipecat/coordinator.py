"""Who fires, and who polls, when several processes run one session.

Without pytest-xdist there is one process and ``LocalCoordinator`` keeps everything in memory.

Under pytest-xdist every worker collects and selects the same items, so every worker could
compute the same firing plan. ``SharedDirCoordinator`` makes sure exactly one of them fires:
the controller hands each worker one shared directory (``workerinput``); the first worker to
create ``fire.lock`` there (``O_CREAT | O_EXCL``, atomic on every local filesystem) fires the
whole selection and publishes the plan as ``plan.json`` (written to a temporary name, then
renamed, so readers never see half a file). Others read the plan when an item first needs it.
Result snapshots are shared the same way: ``result-<id>.json`` holds the last GET and when it
was made; a worker that finds it older than the poll interval takes ``result-<id>.lock`` and
refreshes it, the others read what it wrote. So the session makes one GET per result per
interval, however many workers wait on that result. The controller reads ``plan.json`` to end
live calls on an interrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

Plan = dict[str, Any]
"""``{"fired_at": wall seconds, "slots": {nodeid: [slot dict, ...]}, "notes": [str]}``."""

PLAN_FILE = "plan.json"


class Coordinator(Protocol):
    def start(self, fire: Callable[[], Plan]) -> None:
        """Fire unless another process of the session does; never fires twice."""

    def plan(self, timeout: float) -> Plan | None:
        """The session's plan, waiting up to ``timeout`` s for the firing process."""

    def snapshot(self, result_id: int) -> tuple[Any, float] | None:
        """The last known JSON of a result and when (wall time) it was fetched."""

    def refresh(self, result_id: int, max_age: float, fetch: Callable[[], Any]) -> Any:
        """The result's JSON, fetched unless a snapshot younger than ``max_age`` exists."""

    def trip(self, reason: str) -> bool:
        """Trip the session's circuit breaker; True for the caller that tripped it first."""

    def reserve(self, runs: int, budget: int) -> bool:
        """Reserve ``runs`` more runs (reruns) for the whole session if the session's total
        stays within ``budget``; the first-attempt runs count from ``set_spent``."""

    def set_spent(self, runs: int) -> None:
        """The runs the first attempt fired (set once, by the firing process)."""

    def note_started(self, result_id: int) -> None:
        """A start request created this result (published before the plan is complete, so
        an interrupt during firing can still end its calls)."""

    def started(self) -> set[int]:
        """Every result noted so far."""

    def tripped(self) -> str | None:
        """Why the breaker tripped, or None."""


class LocalCoordinator:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._plan: Plan | None = None
        self._snapshots: dict[int, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._tripped: str | None = None
        self._started: set[int] = set()
        self._spent = 0

    def set_spent(self, runs: int) -> None:
        self._spent = runs

    def reserve(self, runs: int, budget: int) -> bool:
        with self._lock:
            if self._spent + runs > budget:
                return False
            self._spent += runs
            return True

    def note_started(self, result_id: int) -> None:
        self._started.add(result_id)

    def started(self) -> set[int]:
        return set(self._started)

    def trip(self, reason: str) -> bool:
        first = self._tripped is None
        self._tripped = self._tripped or reason
        return first

    def tripped(self) -> str | None:
        return self._tripped

    def start(self, fire: Callable[[], Plan]) -> None:
        if self._plan is None:
            self._plan = fire()

    def plan(self, timeout: float) -> Plan | None:
        return self._plan

    def snapshot(self, result_id: int) -> tuple[Any, float] | None:
        return self._snapshots.get(result_id)

    def refresh(self, result_id: int, max_age: float, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            known = self._snapshots.get(result_id)
            if known is not None and self._clock() - known[1] < max_age:
                return known[0]
        data = fetch()
        with self._lock:
            self._snapshots[result_id] = (data, self._clock())
        return data


def _write_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _try_lock(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@contextlib.contextmanager
def _held(lock: Path, timeout: float = 10.0) -> Iterator[None]:
    """A short critical section across processes (a lock file; stale after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not _try_lock(lock):
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                lock.unlink()  # its holder died
        time.sleep(0.01)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


class SharedDirCoordinator:
    """See the module docstring. ``stale_after`` bounds how long a dead poller's lock blocks."""

    def __init__(self, directory: Path, stale_after: float = 300.0) -> None:
        self.directory = directory
        self.stale_after = stale_after
        directory.mkdir(parents=True, exist_ok=True)

    def set_spent(self, runs: int) -> None:
        _write_atomic(self.directory / "spent.json", runs)

    def reserve(self, runs: int, budget: int) -> bool:
        with _held(self.directory / "spent.lock"):
            spent = _read(self.directory / "spent.json")
            spent = spent if isinstance(spent, int) else 0
            if spent + runs > budget:
                return False
            _write_atomic(self.directory / "spent.json", spent + runs)
            return True

    def note_started(self, result_id: int) -> None:
        (self.directory / f"started-{int(result_id)}").touch()

    def started(self) -> set[int]:
        return {int(p.name.split("-", 1)[1]) for p in self.directory.glob("started-*")}

    def trip(self, reason: str) -> bool:
        if not _try_lock(self.directory / "breaker.lock"):
            return False
        _write_atomic(self.directory / "breaker.json", reason)
        return True

    def tripped(self) -> str | None:
        reason = _read(self.directory / "breaker.json")
        return reason if isinstance(reason, str) else None

    def start(self, fire: Callable[[], Plan]) -> None:
        if not _try_lock(self.directory / "fire.lock"):
            return
        plan: Plan = {"fired_at": time.time(), "slots": {}, "notes": ["firing failed"]}
        try:
            plan = fire()
        finally:
            _write_atomic(self.directory / PLAN_FILE, plan)

    def plan(self, timeout: float) -> Plan | None:
        deadline = time.monotonic() + timeout
        path = self.directory / PLAN_FILE
        while True:
            plan = _read(path)
            if plan is not None or time.monotonic() >= deadline:
                return plan if isinstance(plan, dict) else None
            time.sleep(0.05)

    def snapshot(self, result_id: int) -> tuple[Any, float] | None:
        stored = _read(self.directory / f"result-{result_id}.json")
        if isinstance(stored, dict):
            return stored.get("data"), float(stored.get("fetched_at", 0.0))
        return None

    def refresh(self, result_id: int, max_age: float, fetch: Callable[[], Any]) -> Any:
        path = self.directory / f"result-{result_id}.json"
        lock = self.directory / f"result-{result_id}.lock"
        while True:
            known = self.snapshot(result_id)
            if known is not None and time.time() - known[1] < max_age:
                return known[0]
            if _try_lock(lock):
                try:
                    data = fetch()
                    _write_atomic(path, {"data": data, "fetched_at": time.time()})
                    return data
                finally:
                    with contextlib.suppress(OSError):
                        lock.unlink()
            # Another worker is fetching: wait for its answer (or for its lock to go stale).
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > self.stale_after:
                    lock.unlink()
            time.sleep(0.05)

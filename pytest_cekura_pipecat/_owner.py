"""Who a session is, so that what it leaves on disk can be told from a live session's,
and whether it can leave anything there.

A pid alone does not say it: pids are reused (a CI runner starts thousands of processes a
day), so a session is its host, its pid and the time that process started (from
``/proc/PID/stat``: a reused pid starts later), plus a random name for its files. Under
pytest-xdist the controller's identity is the session's: its workers inherit it (they may
outlive it, orphaned, but the session died with it). Imported by ``plugin.py``: standard
library only.

The ledger (``_ledger.py``) is what lets the next session re-attach a killed one's runs; a
cache directory that cannot be written loses it, which must be said before anything is
fired (a killed session never reaches its summary).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARED_PREFIX = "pytest-cekura-"  # the xdist shared directories, in the temporary directory
_OWNER_FILE = "owner"
LEDGER_DIR = "cekura"  # in pytest's cache: config.cache.mkdir(LEDGER_DIR)
_PROBE = b"x" * 4096  # about a ledger entry's size: a full disk refuses it


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None
    without /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def started(pid: int) -> str:
    """When ``pid`` started, in clock ticks since boot ("" without /proc)."""
    fields = _stat(pid) or []
    return fields[19] if len(fields) > 19 else ""


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A killed xdist worker stays a zombie until execnet reaps it
    (it may never): signal 0 still reaches a zombie, so /proc is asked where there is one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False  # not a pid at all (a damaged file)
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc (macOS): signal 0 is all there is
    return fields[:1] != ["Z"]


@dataclass(frozen=True)
class Owner:
    """A session: a random name for its files, and the process that leads it."""

    session: str
    host: str
    pid: int
    started: str  # clock ticks since boot; "" when unknown (no /proc, an old ledger entry)

    @classmethod
    def here(cls) -> Owner:
        """This process, leading a new session."""
        pid = os.getpid()
        return cls(secrets.token_hex(8), socket.gethostname(), pid, started(pid))

    def to_text(self) -> str:
        return json.dumps([self.session, self.host, self.pid, self.started])

    @classmethod
    def from_text(cls, text: str) -> Owner:
        """Raises ValueError (or TypeError) for anything ``to_text`` did not write."""
        session, host, pid, when = json.loads(text)
        if not isinstance(session, str) or not session.isalnum():
            raise ValueError("not a session name")
        return cls(session, str(host), int(pid), str(when))

    def alive(self) -> bool:
        """Whether the session still runs: its process is this host's, runs, and is the
        one that started it (a reused pid started later). On another host nobody can
        tell: taken for dead, as the host that shares this directory has gone away."""
        if self.host != socket.gethostname() or not pid_alive(self.pid):
            return False
        now = started(self.pid)
        return not (self.started and now and now != self.started)


def ledger_directory(config: Any) -> Path | None:
    """Where the ledger lives: pytest's cache (``.pytest_cache/d/cekura``); None when the
    cache is off (``-p no:cacheprovider``). Created when it can be."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    try:
        return Path(cache.mkdir(LEDGER_DIR))
    except OSError:
        root = getattr(cache, "_cachedir", None) or Path(config.rootpath, ".pytest_cache")
        return Path(root, "d", LEDGER_DIR)


def cannot_write(directory: Path) -> str | None:
    """Why a file cannot be written in ``directory`` (read-only, full, missing); None
    when it can."""
    probe = directory / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(_PROBE)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return None


def ledger_lost(directory: Path, reason: str) -> str:
    """The one line that says the ledger is lost (printed before anything is fired)."""
    return (
        f"cekura: cannot write the ledger of fired runs in {directory} ({reason}): if this "
        "session is killed, the next one cannot re-attach its runs (they would be fired and "
        "billed again)"
    )


def make_shared_dir(owner: Owner) -> Path:
    """A new directory for the session's processes to share (mode 0700), marked with its
    owner so that a later session can tell it was left by a dead one. Raises OSError."""
    path = Path(tempfile.mkdtemp(prefix=SHARED_PREFIX))
    (path / _OWNER_FILE).write_text(owner.to_text())
    return path


def shared_lost(exc: OSError) -> str:
    """The one line that says the xdist workers cannot share a directory."""
    return (
        f"cekura: cannot create the directory the xdist workers share in "
        f"{tempfile.gettempdir()} ({exc.strerror or exc}): no case can be fired under -n "
        "(free space there, set TMPDIR to a writable directory, or run without -n)"
    )


def remove_stale(owner: Owner) -> None:
    """Remove the shared directories that sessions killed before their end left (their
    run log, notes and sealed secrets): those of this user whose owner no longer runs."""
    try:
        with os.scandir(tempfile.gettempdir()) as entries:
            found = [
                Path(entry.path)
                for entry in entries
                if entry.name.startswith(SHARED_PREFIX)
                and entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_uid == os.getuid()
            ]
    except OSError:
        return
    for path in found:
        try:
            left = Owner.from_text((path / _OWNER_FILE).read_text())
        except (OSError, ValueError, TypeError):
            continue  # being made right now, or not a session's
        here = left.host == socket.gethostname()  # another host's may be live: not ours to judge
        if here and left.session != owner.session and not left.alive():
            shutil.rmtree(path, ignore_errors=True)

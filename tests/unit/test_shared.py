"""The shared directory through which xdist processes coordinate (``_shared.py``), driven by
real processes: racing claims and reservations, dead holders, torn files."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_cekura_pipecat._api.client import HttpPolicy
from pytest_cekura_pipecat._api.models import Run, Snapshot
from pytest_cekura_pipecat._api.run import CekuraRun
from pytest_cekura_pipecat._fire.plan import Plan, Slot, plan_from_json, slots_to_json
from pytest_cekura_pipecat._owner import pid_alive
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat._roles.role import Controller, Runtime
from pytest_cekura_pipecat._roles.shared import RUNS_LOG, SharedDir, run_line
from pytest_cekura_pipecat._watch.watcher import WatchSettings

_SPAWN = multiprocessing.get_context("spawn")  # as xdist's workers: fresh interpreters


def _slot(nodeid: str, result_id: int | None = 5001) -> Slot:
    return Slot(nodeid=nodeid, index=0, scenario=101, timeout=60.0, result_id=result_id)


def _claim(path: str, start: float, won: multiprocessing.Queue[int]) -> None:
    while time.time() < start:
        time.sleep(0.001)
    if SharedDir(Path(path)).claim_firing():
        won.put(os.getpid())


def _reserve(path: str, start: float, granted: multiprocessing.Queue[int]) -> None:
    shared = SharedDir(Path(path))
    while time.time() < start:
        time.sleep(0.001)
    granted.put(sum(shared.reserve(1, budget=10, base=4) for _ in range(5)))


def test_processes_racing_for_the_firing_lock_leave_exactly_one_firer(tmp_path: Path) -> None:
    won: multiprocessing.Queue[int] = _SPAWN.Queue()
    start = time.time() + 1.0
    procs = [_SPAWN.Process(target=_claim, args=(str(tmp_path), start, won)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    winners = [won.get(timeout=5)]
    assert won.empty()
    assert SharedDir(tmp_path).firer() == winners[0]


def test_racing_reservations_never_exceed_the_budget(tmp_path: Path) -> None:
    granted: multiprocessing.Queue[int] = _SPAWN.Queue()
    start = time.time() + 1.0
    procs = [
        _SPAWN.Process(target=_reserve, args=(str(tmp_path), start, granted)) for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    # 20 asked for, 6 fit (4 first-attempt runs, budget 10)
    assert sum(granted.get(timeout=5) for _ in procs) == 6
    assert (tmp_path / "reruns.json").read_text() == "6"


def test_a_reservation_lock_dies_with_its_holder(tmp_path: Path) -> None:
    """flock: a worker killed while holding the lock does not stall the others."""
    holder = _SPAWN.Process(target=_hold_lock_forever, args=(str(tmp_path),))
    holder.start()
    deadline = time.time() + 30
    while not (tmp_path / "holding").exists() and time.time() < deadline:
        time.sleep(0.01)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    started = time.monotonic()
    assert SharedDir(tmp_path).reserve(1, budget=10, base=0)
    assert time.monotonic() - started < 30  # a lock that outlived its holder: forever


def _hold_lock_forever(path: str) -> None:
    import fcntl

    lock = open(Path(path) / "spent.lock", "a")  # noqa: SIM115 - held until killed
    fcntl.flock(lock, fcntl.LOCK_EX)
    (Path(path) / "holding").write_text("1")
    time.sleep(600)


def test_a_dead_firer_is_seen_and_its_plan_rebuilt_from_what_it_recorded(tmp_path: Path) -> None:
    won: multiprocessing.Queue[int] = _SPAWN.Queue()
    proc = _SPAWN.Process(target=_claim, args=(str(tmp_path), 0.0, won))
    proc.start()
    proc.join(30)
    assert won.get(timeout=5) == proc.pid
    shared = SharedDir(tmp_path)
    pid = shared.firer()
    assert pid == proc.pid and not pid_alive(pid)
    # It had recorded two requests: the first answered, the second still in flight.
    answered = [_slot("a.toml::a")]
    answered[0].fired_at = time.time()
    answered[0].run_id = 90001
    shared.record_batch(shared.record_sending([_slot("a.toml::a", None)]), answered)
    shared.record_sending([_slot("a.toml::b", None)])
    plan = shared.plan_from_pieces(pid)
    assert plan.slots["a.toml::a"][0].run_id == 90001
    assert plan.slots["a.toml::a"][0].error is None
    error = plan.slots["a.toml::b"][0].error
    assert error is not None and f"(pid {pid}) died while its start request was in flight" in error
    assert "died before it finished" in plan.notes[0]


def test_pid_alive_for_this_process_and_a_reaped_child() -> None:
    assert pid_alive(os.getpid())
    proc = _SPAWN.Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join(30)
    assert proc.pid is not None and not pid_alive(proc.pid)


def test_a_torn_run_log_line_waits_for_its_end(tmp_path: Path) -> None:
    run = CekuraRun(scenario_id=101, status="completed", success=True, run_id=7)
    line = run_line("k1", run)
    reader = SharedDir(tmp_path)
    with open(tmp_path / RUNS_LOG, "ab") as log:
        log.write(line[:20])
        log.flush()
        assert reader.read_runs() == {}
        log.write(line[20:])
        log.flush()
    assert reader.read_runs()["k1"].run_id == 7


def test_a_run_crosses_the_run_log_with_its_snapshot_as_text(tmp_path: Path) -> None:
    """The controller writes a run's snapshot without decoding it, and a worker reads it
    back as a snapshot still undecoded: equal to what Cekura sent, a lone surrogate too."""
    metric = {"name": "Latency", "type": "numeric", "score": 2100, "extra": {"p": 95}}
    raw = {
        "id": 7,
        "status": "completed",
        "success": True,
        "evaluation": {"metrics": [metric]},
        "note": "half a pair \ud800",
    }
    run = CekuraRun.from_api(Run.model_validate(raw), 70, raw, None, scenario_id=101)
    assert isinstance(run.raw, Snapshot) and run.metrics[0].extra == {"p": 95}
    writer, reader = SharedDir(tmp_path), SharedDir(tmp_path)
    writer.append_run("k1", run)
    writer.append_run("k2", CekuraRun(scenario_id=102, status="failed", raw={"id": 8}))
    writer.append_run("k3", run.released())
    got = reader.read_runs()
    assert got["k1"].run_id == 7 and isinstance(got["k1"].raw, Snapshot)
    assert len(got["k1"].raw) == len(raw)
    held = [o for o in gc.get_referents(got["k1"].raw) if not isinstance(o, type)]
    assert held and not [o for o in held if gc.is_tracked(o)]  # text, nothing decoded
    assert dict(got["k1"].raw) == raw and got["k1"] == run
    assert dict(got["k2"].raw) == {"id": 8} and got["k2"].status == "failed"
    assert not got["k3"].raw and got["k3"] == run.released()


def test_a_broken_batch_file_is_skipped_and_the_others_are_read(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    (tmp_path / "batch-1-00001.json").write_bytes(b'[{"nodeid": "a", "ind')  # torn
    (tmp_path / "batch-1-00002.json").write_bytes(slots_to_json([_slot("x.toml::b")]))
    assert [[s.nodeid for s in slots] for slots in shared.new_batches()] == [["x.toml::b"]]
    assert list(shared.new_batches()) == []  # each batch once


def test_the_first_notice_stays(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    assert shared.said() is None
    shared.say("Cekura at http://x has not answered")
    shared.say("a second line")
    assert shared.said() == "Cekura at http://x has not answered"


def test_the_controllers_feeder_survives_a_failed_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One exception while reading the directory must not stop the thread that hands every
    later batch to the watcher (or its notice to the terminal)."""
    said: list[str] = []
    failures = iter([OSError("EIO")])

    def flaky_said(self: SharedDir) -> str | None:
        for exc in failures:
            raise exc
        return (tmp_path / "notice.txt").read_text() if (tmp_path / "notice.txt").exists() else None

    monkeypatch.setattr(SharedDir, "said", flaky_said)
    runtime = Runtime(
        api_url="http://127.0.0.1:9",
        api_key=None,
        policy=HttpPolicy(),
        watch=WatchSettings(),
        redactor=Redactor(),
        notice=said.append,
    )
    controller = Controller(runtime, tmp_path)
    try:
        time.sleep(0.3)  # the failed look happens
        SharedDir(tmp_path).say("Cekura at http://x has not answered")
        deadline = time.time() + 5
        while not said and time.time() < deadline:
            time.sleep(0.05)
        assert said == ["Cekura at http://x has not answered"]
        assert any("EIO" in note for note in controller.notes())
        assert any(t.name == "cekura-feed" for t in threading.enumerate())
    finally:
        controller.close()


def test_a_bot_is_orphaned_only_while_its_firer_is_dead_and_its_pid_is_still_it(
    tmp_path: Path,
) -> None:
    shared = SharedDir(tmp_path)
    bot = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "fire.lock").write_text(str(os.getpid()))  # the firer lives
        shared.record_bot(bot.pid)
        assert shared.orphaned_bot() is None
        won: multiprocessing.Queue[int] = _SPAWN.Queue()
        firer = _SPAWN.Process(target=_claim, args=(str(tmp_path / "dead"), 0.0, won))
        (tmp_path / "dead").mkdir()
        firer.start()
        firer.join(30)
        (tmp_path / "fire.lock").write_text(str(firer.pid))  # the firer died
        assert shared.orphaned_bot() == bot.pid
        (tmp_path / "bot.pid").write_text(f"{bot.pid} 1")  # another start time: a reused pid
        assert shared.orphaned_bot() is None
    finally:
        bot.kill()
        bot.wait()
    shared.record_bot(bot.pid)
    assert shared.orphaned_bot() is None  # the bot itself is gone


def test_runs_are_parsed_only_when_read(tmp_path: Path) -> None:
    """A worker reads the whole run log but parses only the runs of its own items."""
    shared = SharedDir(tmp_path)
    shared.append_run("0:0:a", CekuraRun(scenario_id=101, status="completed", run_id=1))
    with open(tmp_path / RUNS_LOG, "ab") as log:
        log.write(b'{"key": "0:0:b", "run": {"status": 7}}\n')  # not a run: never needed here
    runs = SharedDir(tmp_path).read_runs()
    assert set(runs) == {"0:0:a", "0:0:b"}
    assert runs["0:0:a"].run_id == 1
    # A line that cannot be read back errors its case at once, saying why (no wait).
    broken = runs["0:0:b"]
    assert broken.verdict == "error"
    assert f"its line in {RUNS_LOG} cannot be read back (run." in broken.error_message


def test_a_look_at_an_unchanged_directory_lists_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller looks for new batches every 0.1 s: once a long session has fired
    thousands, a look at a directory nothing was added to is one stat, not a listing. A
    batch renamed in within the file system's clock tick of the last change is still seen."""
    shared = SharedDir(tmp_path)
    for i in range(200):
        shared.record_batch(None, [_slot(f"t.py::c{i}")])
    listings = 0
    real_scandir = os.scandir

    def counted(path: Path) -> object:
        nonlocal listings
        listings += 1
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counted)
    long_ago = time.time_ns() - 10_000_000_000
    os.utime(tmp_path, ns=(long_ago, long_ago))
    assert len(list(shared.new_batches())) == 200
    for _ in range(50):
        assert list(shared.new_batches()) == []
    assert listings == 1
    # A change, then one more whose mtime equals it (one clock tick): both are seen.
    shared.record_batch(None, [_slot("t.py::late")])
    changed = os.stat(tmp_path).st_mtime_ns
    assert [s.nodeid for (s,) in shared.new_batches()] == ["t.py::late"]
    shared.record_batch(None, [_slot("t.py::later")])
    os.utime(tmp_path, ns=(changed, changed))
    assert [s.nodeid for (s,) in shared.new_batches()] == ["t.py::later"]


def test_the_plan_is_parsed_again_only_when_its_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller's progress line reads the plan every tick; it is parsed once per
    version of plan.json, not once per read."""
    from pytest_cekura_pipecat._roles import shared as _shared

    shared = SharedDir(tmp_path)
    shared.write_plan(Plan(time.time(), {"t::a": [Slot("t::a", 0, 101, 600.0)]}, ["first"]))
    parses: list[int] = []

    def counted(data: bytes) -> Plan:
        parses.append(1)
        return plan_from_json(data)

    monkeypatch.setattr(_shared, "plan_from_json", counted)
    reader = SharedDir(tmp_path)
    plans = [reader.read_plan() for _ in range(20)]
    assert plans[0] is not None and plans[0].notes == ["first"] and len(parses) == 1
    time.sleep(0.01)  # a later mtime even where the clock is coarse
    shared.write_plan(Plan(time.time(), {}, ["second"]))
    again = reader.read_plan()
    assert again is not None and again.notes == ["second"] and len(parses) == 2

"""Benchmark pytest-cekura-pipecat against the local simulator, printed as one table.

Starts the bundled Cekura-compatible simulator in this process on 127.0.0.1 (every scenario
passes S seconds after it is fired) and runs N cases these ways, each in a subprocess:

- ``plugin``: ``python -m pytest -p no:cacheprovider -q --cekura-api-url=<sim>`` on a
  generated ``cekura.toml`` of N cases (the plugin's defaults otherwise);
- ``plugin -n 4``: the same under pytest-xdist;
- ``pytest alone`` (and ``-n 4``): pytest on N empty test functions, without the plugin;
- ``official SDK``: ``cekura`` 1.6 (``Cekura(...).scenarios.run_pipecat(scenarios=[N entries])``,
  one POST, then ``results.wait(id, poll_interval=1)``), reading each run's verdict from the
  final result.

Each subprocess is reaped with ``os.wait4``: its rusage gives the peak RSS of the largest
single process of its tree. Requests are counted by the simulator, reset between rows. The
exit lag is the time from the end of the last run (its start request's arrival + S) to the
subprocess's exit. Nothing leaves 127.0.0.1.

    python benchmarks/bench.py                        # N = 2000, S = 3
    python benchmarks/bench.py --cases 500 --seconds 3
    python benchmarks/bench.py --cases 5000 --rounds 3   # medians of 3 alternating rounds
    python benchmarks/bench.py --cases 20000 --only plugin,plain   # CPU per case at scale
    python benchmarks/bench.py --cases 50 --seconds 60 --only plugin,xdist,sdk  # exit lag
    python benchmarks/bench.py --idle                 # 2,000 plain tests: plugin vs -p no:cekura (wall, CPU)
    python benchmarks/bench.py --cases 20000 --gc     # full garbage collections: plugin vs pytest alone
    python benchmarks/bench.py --reads --cases 1000 --seconds 60   # result reads a minute, exit lag

``--reads`` runs the plugin (single process and ``-n 4``) and, when it is installed, the
official SDK (at its default poll interval, 5 s), and prints how many result reads (a
result's GET or a results-list page) each made: in all, in its busiest minute and its busiest
second (sliding windows), with the exit lag.

``--gc`` loads a probe into the measured pytest that counts, after each full garbage
collection, the objects left for the next one to walk: their sum is the work the collector
did, a figure that does not drift with the machine's speed as CPU time does.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_cekura_pipecat.simulator import RecordedRequest, ScenarioScript, Simulator

API_KEY = "bench-key"
FIRST_SCENARIO = 1000
ROOM = "https://bench.daily.co/r"
XDIST_WORKERS = 4
SUBPROCESS_TIMEOUT = 600.0
SDK_POLL_INTERVAL = 1
SDK_DEFAULT_POLL_INTERVAL = 5  # cekura 1.6's results.wait default
IDLE_TESTS = 2000
IDLE_ROUNDS = 7


@dataclass(frozen=True)
class Usage:
    """One subprocess, measured."""

    started: float  # time.monotonic() at launch
    ended: float  # time.monotonic() once reaped
    peak_rss_mib: float
    cpu: float  # user + system seconds of the process and the children it reaped
    exit_code: int
    output: str

    @property
    def wall(self) -> float:
        return self.ended - self.started

    def last_line(self) -> str:
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "(no output)"


@dataclass(frozen=True)
class Row:
    contender: str
    usage: Usage
    posts: int
    gets: int
    fired: int
    exit_lag: float | None
    outcome: str
    read_times: tuple[float, ...] = ()  # when each result read (a result or the list) arrived


def is_result_read(request: RecordedRequest) -> bool:
    """A GET of a result or of the results list (v1 or v2), not of runs or agents."""
    return (
        request.method == "GET" and re.search(r"/v[12]/results(/\d+)?/?$", request.path) is not None
    )


def busiest(times: Sequence[float], window: float) -> int:
    """The most of ``times`` in any ``window`` seconds."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_measured(cmd: Sequence[str], env: dict[str, str], cwd: Path) -> Usage:
    """Run ``cmd`` to completion (killed after SUBPROCESS_TIMEOUT) and measure it."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        killer = threading.Timer(SUBPROCESS_TIMEOUT, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        ended = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        output = out.read().decode("utf-8", errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Usage(started, ended, usage.ru_maxrss / 1024, cpu, proc.returncode, output)


def bench_env(**extra: str) -> dict[str, str]:
    """This environment minus anything that could point a contender elsewhere or change it."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CEKURA_", "PYTEST_", "PIPECAT_")) and name != "PYTHONPATH"
    }
    env["CEKURA_API_KEY"] = API_KEY
    env.update(extra)
    return env


def scripts(n: int, seconds: float) -> list[ScenarioScript]:
    """The suite's scenarios, scripted so that Cekura's scenario list shows them (the
    plugin's pre-flight reads them through it, a page of 100 at a time)."""
    return [ScenarioScript(id=FIRST_SCENARIO + i, seconds=seconds) for i in range(n)]


def write_suite(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cekura.toml").write_text(
        "\n".join(
            f'[[case]]\nname = "c{i}"\nscenario = {FIRST_SCENARIO + i}\n'
            f'pipecat_room_url = "{ROOM}{i}"\n'
            for i in range(n)
        ),
        encoding="utf-8",
    )
    return directory


def write_plain(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (directory / "test_plain.py").write_text(
        f"import pytest\n\n\n@pytest.mark.parametrize('i', range({n}))\ndef test_x(i):\n    pass\n",
        encoding="utf-8",
    )
    return directory


def pytest_outcome(usage: Usage, n: int) -> str:
    match = re.search(r"(\d+) passed", usage.last_line())
    passed = int(match.group(1)) if match else 0
    if usage.exit_code == 0 and passed == n:
        return f"{passed}/{n} passed"
    return f"exit {usage.exit_code}: {usage.last_line()[:80]}"


class Bench:
    def __init__(
        self,
        sim: Simulator,
        seconds: float,
        scratch: Path,
        sdk_poll: float = SDK_POLL_INTERVAL,
        against: Path | None = None,
        code: Path | None = None,
    ) -> None:
        self.sim = sim
        self.seconds = seconds
        self.scratch = scratch
        self.sdk_poll = sdk_poll
        self.against = against  # a source checkout of the plugin: the "before" rows run it
        self.code = code  # a source checkout the other plugin rows run (None: the installed)

    def _row(
        self,
        contender: str,
        cmd: Sequence[str],
        cwd: Path,
        n: int,
        sdk: bool,
        env: dict[str, str] | None = None,
    ) -> Row:
        self.sim.reset()
        print(f"  {contender:<14} N={n} ...", end="", file=sys.stderr, flush=True)
        usage = run_measured(cmd, env or bench_env(), cwd)
        requests = self.sim.requests
        starts = [r for r in requests if r.method == "POST" and "run_scenarios" in r.path]
        lag = (
            usage.ended - (max(r.at for r in starts) + self.seconds)
            if starts and usage.exit_code == 0
            else None
        )
        if sdk:
            outcome = usage.last_line() if usage.exit_code == 0 else f"exit {usage.exit_code}"
        else:
            outcome = pytest_outcome(usage, n)
        row = Row(
            contender,
            usage,
            posts=sum(r.method == "POST" for r in requests),
            gets=sum(r.method == "GET" for r in requests),
            fired=self.sim.entries_fired(),
            exit_lag=lag,
            outcome=outcome,
            read_times=tuple(r.at for r in requests if is_result_read(r)),
        )
        print(f" {usage.wall:6.1f} s", file=sys.stderr, flush=True)
        return row

    def plugin(self, n: int, workers: int = 0, before: bool = False) -> Row:
        """The plugin on N cases; ``before``: the plugin of the ``--against`` checkout (its
        directory first on PYTHONPATH), on the same suite and the same server."""
        suite = write_suite(self.scratch / f"suite-{n}", n)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        cmd += [f"--cekura-api-url={self.sim.url}", f"--cekura-max-runs={n}"]  # past the default
        if workers:
            cmd += ["-n", str(workers)]
        name = f"plugin -n {workers}" if workers else "plugin"
        env = bench_env(PYTHONPATH=str(self.code)) if self.code is not None else None
        if before and self.against is not None:
            name, env = f"{name} (before)", bench_env(PYTHONPATH=str(self.against))
        return self._row(name, cmd, suite, n, sdk=False, env=env)

    def plain(self, n: int, workers: int = 0) -> Row:
        """pytest itself on N trivial tests: the part of the wall no plugin can remove."""
        suite = write_plain(self.scratch / f"plain-{n}", n)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:cekura"]
        if workers:
            cmd += ["-n", str(workers)]
        name = f"pytest alone -n {workers}" if workers else "pytest alone"
        return self._row(name, cmd, suite, n, sdk=False)

    def sdk(self, n: int) -> Row:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--sdk-client", self.sim.url]
        cmd += ["--cases", str(n), "--sdk-poll", f"{self.sdk_poll:g}"]
        return self._row("official SDK", cmd, self.scratch, n, sdk=True)


def sdk_client(url: str, n: int, poll: float = SDK_POLL_INTERVAL) -> int:
    """The official SDK: one POST of every entry, then wait for the result; count passes."""
    from cekura import Cekura

    client = Cekura(api_key=os.environ["CEKURA_API_KEY"], base_url=url)
    entries = [{"scenario": FIRST_SCENARIO + i, "pipecat_room_url": f"{ROOM}{i}"} for i in range(n)]
    started = client.scenarios.run_pipecat(scenarios=entries)
    final = client.results.wait(started["id"], poll_interval=poll, timeout=600)
    runs = final.get("runs") or {}
    listed = list(runs.values()) if isinstance(runs, dict) else list(runs)
    passed = sum(r.get("status") == "completed" and r.get("success") is True for r in listed)
    print(f"{passed}/{n} passed ({len(listed)} runs listed, result {final.get('status')})")
    return 0 if passed == n else 1


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


CONTENDERS = ("plugin", "xdist", "plain", "sdk")


def _round(bench: Bench, n: int, contender: str) -> list[Row]:
    """One round of one row (``plain`` is two rows; with ``--against``, the plugin's rows
    are followed by the same rows of the other checkout)."""
    if contender == "plain":
        return [bench.plain(n), bench.plain(n, XDIST_WORKERS)]
    if contender == "sdk":
        return [bench.sdk(n)]
    workers = XDIST_WORKERS if contender == "xdist" else 0
    rows = [bench.plugin(n, workers)]
    if bench.against is not None:
        rows.append(bench.plugin(n, workers, before=True))
    return rows


def _ratios(measured: Mapping[str, list[Row]]) -> None:
    """Each plugin row against the same row of the --against checkout: now ÷ before."""

    def med(rows: list[Row], value: Callable[[Row], float | None]) -> float | None:
        known = [v for v in map(value, rows) if v is not None]
        return statistics.median(known) if known else None

    pairs = [(name, name + " (before)") for name in measured if name + " (before)" in measured]
    if not pairs:
        return
    print()
    print("| row | wall now ÷ before | CPU now ÷ before | peak RSS now ÷ before |")
    print("|---|---|---|---|")
    for now, before in pairs:
        if any(r.usage.exit_code != 0 for r in [*measured[now], *measured[before]]):
            print(f"| {now} | - | - | - |  (a run did not pass: no ratio)")
            continue
        cells = []
        for value in (
            lambda r: r.usage.wall,
            lambda r: r.usage.cpu,
            lambda r: r.usage.peak_rss_mib,
        ):
            a, b = med(measured[now], value), med(measured[before], value)
            cells.append(f"{a / b:.2f}" if a is not None and b else "-")
        print(f"| {now} | {' | '.join(cells)} |")


def compare(
    n: int,
    seconds: float,
    contenders: Sequence[str] = CONTENDERS,
    rounds: int = 1,
    against: Path | None = None,
    code: Path | None = None,
) -> int:
    script = ScenarioScript(id=0, seconds=seconds)
    with (
        Simulator(scripts(n, seconds), api_key=API_KEY, default_outcome=script) as sim,
        tempfile.TemporaryDirectory(prefix="cekura-bench-") as scratch,
    ):
        bench = Bench(sim, seconds, Path(scratch), against=against, code=code)
        measured: dict[str, list[Row]] = {}
        for _ in range(rounds):  # rows alternate, so drift of the machine affects all alike
            for contender in contenders:
                for row in _round(bench, n, contender):
                    measured.setdefault(row.contender, []).append(row)
    rounds_text = f" · median of {rounds} rounds" if rounds > 1 else ""
    print(
        f"N = {n:,} cases · S = {seconds:g} s (floor) · simulator on 127.0.0.1 · "
        f"Python {platform.python_version()} · {os.cpu_count()} CPUs{rounds_text}"
    )
    print()
    print(
        "| contender | N | floor (s) | wall (s) | exit lag (s) | CPU (s) | plugin CPU/case (ms) "
        "| POSTs | GETs | runs fired | peak RSS (MiB) | outcome |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def median(runs: list[Row], value: Callable[[Row], float | None]) -> float | None:
        known = [v for v in map(value, runs) if v is not None]
        return statistics.median(known) if known else None

    cpu = {name: median(runs, lambda r: r.usage.cpu) or 0.0 for name, runs in measured.items()}
    for name, runs in measured.items():
        wall = median(runs, lambda r: r.usage.wall)
        lag = median(runs, lambda r: r.exit_lag)
        rss = median(runs, lambda r: r.usage.peak_rss_mib)
        base = (
            cpu.get(name.replace("plugin", "pytest alone")) if name.startswith("plugin") else None
        )
        per_case = f"{1000 * (cpu[name] - base) / n:.2f}" if base is not None else "-"
        floor = f"{seconds:g}" if "alone" not in name else "0"
        first = runs[0]
        outcomes = sorted({r.outcome for r in runs})
        outcome = outcomes[0] if len(outcomes) == 1 else " / ".join(outcomes)
        print(
            f"| {name} | {n:,} | {floor} | {wall:.1f} | "
            f"{'-' if lag is None else f'{lag:.1f}'} | {cpu[name]:.1f} | {per_case} "
            f"| {first.posts} | {first.gets} | {first.fired} | {rss:.0f} | {outcome} |"
        )
        if rounds > 1:
            walls = ", ".join(f"{r.usage.wall:.1f}" for r in runs)
            print(f"|  (rounds: wall {walls}) | | | | | | | | | | | |")
    print()
    print(
        "floor: every run passes S s after its start request, so no client can finish sooner; "
        "pytest alone: pytest (and xdist) on N empty tests, without the plugin: what pytest itself "
        "costs; plugin CPU/case: (CPU of the plugin row - CPU of pytest alone) / N, every process "
        "of the pytest run counted (not the simulator: it runs in the benchmark's own process); "
        "wall includes interpreter and pytest start-up and collection. exit lag: from the end "
        "of the last run (its start request's arrival + S) to the process's exit. "
        "POSTs/GETs/runs fired: counted by the simulator (first round). peak RSS: the largest "
        "single process (pytest, or one xdist worker/controller). plugin: default settings "
        f"(batch size 50, poll every 3 s); -n {XDIST_WORKERS}: pytest-xdist "
        f"{_version('pytest-xdist')}. official SDK: cekura {_version('cekura')}, "
        f"results.wait(poll_interval={SDK_POLL_INTERVAL}), which returns when the result's "
        "status is terminal."
    )
    _ratios(measured)
    ok = all(r.usage.exit_code == 0 for runs in measured.values() for r in runs)
    return 0 if ok else 1


def reads(n: int, seconds: float) -> int:
    """Result reads a minute and exit lag of the plugin (and of the official SDK, when it is
    installed) at default settings: the figures of the README's polling section."""
    script = ScenarioScript(id=0, seconds=seconds)
    with (
        Simulator(scripts(n, seconds), api_key=API_KEY, default_outcome=script) as sim,
        tempfile.TemporaryDirectory(prefix="cekura-bench-") as scratch,
    ):
        bench = Bench(sim, seconds, Path(scratch), sdk_poll=SDK_DEFAULT_POLL_INTERVAL)
        rows = [bench.plugin(n), bench.plugin(n, XDIST_WORKERS)]
        if _version("cekura") != "(not installed)":
            rows.append(bench.sdk(n))
    print(
        f"N = {n:,} cases of S = {seconds:g} s · simulator on 127.0.0.1 · "
        f"Python {platform.python_version()} · {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| contender | N | S (s) | result reads | busiest minute | busiest second "
        "| exit lag (s) | outcome |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        lag = "-" if row.exit_lag is None else f"{row.exit_lag:.1f}"
        print(
            f"| {row.contender} | {n:,} | {seconds:g} | {len(row.read_times)} "
            f"| {busiest(row.read_times, 60.0)} | {busiest(row.read_times, 1.0)} | {lag} "
            f"| {row.outcome} |"
        )
    print()
    print(
        "result reads: GETs of a result or of the results list, counted by the simulator; "
        "busiest minute/second: the most in any 60 s / 1 s; exit lag: from the end of the "
        "last run (its start request's arrival + S) to the process's exit. plugin: default "
        "settings (batch size 50, poll every 3 s, at most 60 reads a minute). official SDK: "
        f"cekura {_version('cekura')}, results.wait(poll_interval={SDK_DEFAULT_POLL_INTERVAL})"
        + ("" if len(rows) > 2 else " (not installed: no row)")
        + "."
    )
    return 0 if all(r.usage.exit_code == 0 for r in rows) else 1


def idle(n: int, rounds: int) -> int:
    """pytest on N plain tests with the plugin loaded (no cekura.toml, no marker) and with
    ``-p no:cekura``: the plugin's cost to a project that does not use it."""
    with tempfile.TemporaryDirectory(prefix="cekura-idle-") as scratch:
        root = Path(scratch)
        (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        (root / "test_plain.py").write_text(
            f"import pytest\n\n\n@pytest.mark.parametrize('i', range({n}))\n"
            "def test_x(i):\n    pass\n",
            encoding="utf-8",
        )
        base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        measured: dict[str, list[Usage]] = {"with plugin": [], "-p no:cekura": []}
        for r in range(rounds):
            print(f"  idle round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
            measured["with plugin"].append(run_measured(base, bench_env(), root))
            measured["-p no:cekura"].append(
                run_measured([*base, "-p", "no:cekura"], bench_env(), root)
            )
    print(
        f"idle: {n:,} plain tests, no cekura.toml, no marker · median of {rounds} · "
        f"Python {platform.python_version()} · {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| pytest | wall (s), median | CPU (s), median | CPU of each run (s) | peak RSS (MiB) "
        "| outcome |"
    )
    print("|---|---|---|---|---|---|")
    wall, cpu = {}, {}
    for name, runs in measured.items():
        wall[name] = statistics.median(u.wall for u in runs)
        cpu[name] = statistics.median(u.cpu for u in runs)
        rss = statistics.median(u.peak_rss_mib for u in runs)
        print(
            f"| {name} | {wall[name]:.2f} | {cpu[name]:.3f} "
            f"| {', '.join(f'{u.cpu:.2f}' for u in runs)} | {rss:.0f} "
            f"| {pytest_outcome(runs[-1], n)} |"
        )
    print()
    for what, medians in (("wall", wall), ("CPU", cpu)):
        delta = medians["with plugin"] - medians["-p no:cekura"]
        print(f"plugin cost ({what}): {1000 * delta:+.0f} ms ({1000 * delta / n:+.3f} ms per test)")
    print("(runs alternate, so drift of the machine affects both sides alike)")
    ok = all(u.exit_code == 0 for runs in measured.values() for u in runs)
    return 0 if ok else 1


GC_PROBE = '''"""bench.py --gc: after each full garbage collection, the objects still tracked."""
import atexit, gc, os, time

_seen = [0, 0, 0.0]  # collections, objects, seconds
_started = [0.0]


def _count(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    _seen[2] += time.perf_counter() - _started[0]
    _seen[0] += 1
    _seen[1] += len(gc.get_objects())


gc.callbacks.append(_count)


@atexit.register
def _write():
    with open(os.environ["BENCH_GC_OUT"], "w", encoding="utf-8") as out:
        out.write(" ".join(map(str, _seen)))
'''


def gc_work(n: int, seconds: float) -> int:
    """Full garbage collections of the plugin on N cases and of pytest alone on N tests."""
    script = ScenarioScript(id=0, seconds=seconds)
    with (
        Simulator(scripts(n, seconds), api_key=API_KEY, default_outcome=script) as sim,
        tempfile.TemporaryDirectory(prefix="cekura-bench-gc-") as scratch,
    ):
        root = Path(scratch)
        (root / "cekura_bench_gc.py").write_text(GC_PROBE, encoding="utf-8")
        out = root / "gc.txt"
        env = bench_env(PYTHONPATH=str(root), BENCH_GC_OUT=str(out))
        base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        base += ["-p", "cekura_bench_gc"]
        rows = {
            "plugin": (
                [*base, f"--cekura-api-url={sim.url}", "--cekura-max-runs=0"],
                write_suite(root / "suite", n),
            ),
            "pytest alone": ([*base, "-p", "no:cekura"], write_plain(root / "plain", n)),
        }
        print(f"N = {n:,} · Python {platform.python_version()}")
        print()
        print("| contender | full collections | objects walked (M) | their time (s) | outcome |")
        print("|---|---|---|---|---|")
        ok = True
        for name, (cmd, cwd) in rows.items():
            sim.reset()
            usage = run_measured(cmd, env, cwd)
            count, walked, spent = out.read_text(encoding="utf-8").split()
            ok = ok and usage.exit_code == 0
            print(
                f"| {name} | {count} | {int(walked) / 1e6:.2f} | {float(spent):.2f} "
                f"| {pytest_outcome(usage, n)} |"
            )
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark pytest-cekura-pipecat against the local simulator (127.0.0.1).",
    )
    parser.add_argument("--cases", type=int, default=2000, help="N cases (default 2000)")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="S, how long every run takes (default 3)"
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help=f"time pytest on {IDLE_TESTS:,} plain tests with the plugin vs -p no:cekura "
        f"(median of {IDLE_ROUNDS})",
    )
    parser.add_argument(
        "--only",
        default=",".join(CONTENDERS),
        help=f"comma-separated rows to run, of {','.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every row this many times, alternating, and print medians (default 1)",
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="count the full garbage collections of the plugin and of pytest alone on N",
    )
    parser.add_argument(
        "--reads",
        action="store_true",
        help="result reads a minute and exit lag of the plugin (and the official SDK) on N",
    )
    parser.add_argument(
        "--against",
        metavar="DIR",
        type=Path,
        help="also run the plugin rows with the plugin of another source checkout (DIR first "
        "on PYTHONPATH), alternating, and print now ÷ before for each",
    )
    parser.add_argument(
        "--code",
        metavar="DIR",
        type=Path,
        help="run the plugin rows with the plugin of this source checkout instead of the "
        "installed one (with --against: compare two revisions)",
    )
    parser.add_argument("--sdk-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--sdk-poll", type=float, default=SDK_POLL_INTERVAL, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cases < 1 or args.seconds < 0 or args.rounds < 1:
        _parser().error("--cases and --rounds must be >= 1 and --seconds >= 0")
    if args.sdk_client:
        return sdk_client(args.sdk_client, args.cases, args.sdk_poll)
    if args.reads:
        return reads(args.cases, args.seconds)
    if args.idle:
        return idle(IDLE_TESTS, IDLE_ROUNDS)
    if args.gc:
        return gc_work(args.cases, args.seconds)
    contenders = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        _parser().error(f"--only: unknown row(s) {', '.join(unknown)}")
    checkouts = []
    for flag, given in (("--against", args.against), ("--code", args.code)):
        path = given.resolve() if given else None
        if path is not None and not (path / "pytest_cekura_pipecat" / "plugin.py").is_file():
            _parser().error(f"{flag} {given}: not a checkout of pytest-cekura-pipecat")
        checkouts.append(path)
    return compare(args.cases, args.seconds, contenders, args.rounds, *checkouts)


if __name__ == "__main__":
    sys.exit(main())

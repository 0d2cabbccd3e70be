"""Benchmark pytest-cekura-pipecat against the local simulator, in one run, in one table.

Starts the bundled Cekura-compatible simulator in this process on 127.0.0.1 (every scenario
passes after S seconds) and measures, for each N, four ways of running N cases:

- ``plugin``: ``python -m pytest <suite> -p no:cacheprovider -q --cekura-api-url=<sim>
  --cekura-poll-interval=1`` on a generated ``cekura.toml`` of N cases;
- ``plugin -n 4``: the same under pytest-xdist;
- ``naive``: one POST of one entry per case, then a GET every second until the run ends,
  one case after the other (httpx) -- only where N x S fits ``--naive-budget``;
- ``cekura CLI``: the official CLI (``pip install 'cekura[cli]'``, 1.6.x),
  ``cekura run start --mode pipecat --agent-id 1 --scenario-ids ... --wait``.

Every contender runs in a subprocess, reaped with ``os.wait4``, whose rusage gives its CPU
time (user + sys, its waited-for children included: xdist workers, for ``-n 4``) and its peak
RSS (the largest single process). ``getrusage(RUSAGE_CHILDREN)`` gives the same CPU sums,
but its ``ru_maxrss`` is a high-water mark over every child so far, useless per run.

Requests are counted at the simulator, which is reset between contenders (result and run ids
keep counting across resets, so no id is reused). Nothing leaves 127.0.0.1.

    python benchmarks/bench.py                  # N = 10, 100, 1000; S = 3 (a few minutes)
    python benchmarks/bench.py --quick          # N = 10, 100; S = 1 (about a minute)
    python benchmarks/bench.py --check-300      # the done-when of issue 5: PASS/FAIL lines
    python benchmarks/bench.py --overhead       # issue 5's per-case CPU and memory claim
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import importlib.util
import math
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

API_KEY = "bench-key"
FIRST_SCENARIO = 1000
ROOM = "https://bench.daily.co/r"
START_PATH = "/test_framework/v1/scenarios/run_scenarios_pipecat/"
RESULT_PATH = "/test_framework/v1/results/{}/"
TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled", "canceled"})
POLL_INTERVAL = 1.0  # seconds, for the plugin (--cekura-poll-interval) and the naive client
CLI_POLL_INTERVAL = 5  # cekura.resources.results.POLL_INTERVAL; `run start --wait` has no flag
XDIST_WORKERS = 4
SUBPROCESS_TIMEOUT = 900.0
BATCH_SIZE = 50  # the plugin's default --cekura-batch-size
CHECK_CASES = 300
CHECK_SECONDS = 3.0
CHECK_MAX_GETS = 160
CHECK_SLACK = 25.0
OVERHEAD_CASES = 5000
OVERHEAD_POLL_INTERVAL = 0.05
OVERHEAD_MAX_CPU_MS = 2.0  # plugin CPU per case
OVERHEAD_MAX_RSS_MB = 200.0  # peak RSS, MB = 10**6 bytes
PLUGIN_PACKAGE = "pytest_cekura_pipecat"


@dataclass(frozen=True)
class Usage:
    """One subprocess, measured: wall time, CPU (user + sys) and peak RSS, and its output."""

    wall: float
    cpu: float
    peak_rss_mib: float
    exit_code: int
    output: str

    def last_line(self) -> str:
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "(no output)"


@dataclass(frozen=True)
class Row:
    """One cell of the comparison: a contender at one N, measured or not (``skipped``)."""

    contender: str
    n: int
    usage: Usage | None = None
    posts: int = 0
    gets: int = 0
    fired: int = 0
    verdict: str = ""
    skipped: str = ""


# -- measuring -----------------------------------------------------------------------------


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
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        output = out.read().decode("utf-8", errors="replace")
    return Usage(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        exit_code=proc.returncode,
        output=output,
    )


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


def write_suite(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cases = (
        f'[[case]]\nname = "c{i}"\nscenario = {FIRST_SCENARIO + i}\npipecat_room_url = "{ROOM}"\n'
        for i in range(n)
    )
    (directory / "cekura.toml").write_text("\n".join(cases), encoding="utf-8")
    return directory


def plugin_command(suite: Path, url: str, workers: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "-q"]
    cmd += [f"--cekura-api-url={url}", f"--cekura-poll-interval={POLL_INTERVAL:g}"]
    return [*cmd, "-n", str(workers)] if workers else cmd


def pytest_verdict(usage: Usage, n: int) -> str:
    match = re.search(r"(\d+) passed", usage.last_line())
    passed = int(match.group(1)) if match else 0
    if usage.exit_code == 0 and passed == n:
        return f"{passed}/{n} passed"
    return f"exit {usage.exit_code}: {usage.last_line()}"


def cli_missing() -> str | None:
    """Why the official CLI cannot run here, or None."""
    for module in ("cekura", "typer", "rich"):
        if importlib.util.find_spec(module) is None:
            return f"module {module!r} not installed (pip install 'cekura[cli]>=1.6,<1.7')"
    return None


# -- the official CLI's paths have no trailing slash -----------------------------------------


class _AppendSlash(BaseHTTPRequestHandler):
    """Answer every request with a 307 to the simulator, path + "/" (Django's APPEND_SLASH).

    The CLI polls ``/test_framework/v1/results/{id}`` without the slash, which the simulator
    answers 404 on purpose (clients of this API must send it). 307 keeps method and body.
    """

    protocol_version = "HTTP/1.1"
    target = ""

    def _redirect(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path, _, query = self.path.partition("?")
        location = self.target + (path if path.endswith("/") else path + "/")
        self.send_response(307)
        self.send_header("Location", f"{location}?{query}" if query else location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the simulator records the requests that count."""

    do_GET = do_POST = _redirect


@contextlib.contextmanager
def append_slash_front(target: str) -> Iterator[str]:
    """A loopback redirector in front of ``target``; yields its base URL."""
    handler = type("Handler", (_AppendSlash,), {"target": target})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- the contenders ------------------------------------------------------------------------


class Bench:
    """The simulator, a scratch directory, and one method per contender."""

    def __init__(self, sim: Simulator, seconds: float, scratch: Path) -> None:
        self.sim = sim
        self.seconds = seconds
        self.scratch = scratch

    def _counted(self, contender: str, n: int, run: Callable[[], Usage], verdict: str) -> Row:
        self.sim.reset()
        print(f"  {contender:<14} N={n:<5} ...", end="", file=sys.stderr, flush=True)
        usage = run()
        posts = sum(1 for r in self.sim.requests if r.method == "POST")
        gets = sum(1 for r in self.sim.requests if r.method == "GET")
        fired = self.sim.entries_fired()
        row = Row(contender, n, usage, posts, gets, fired, verdict)
        print(f" {usage.wall:6.1f} s", file=sys.stderr, flush=True)
        return row

    def startup(self) -> Usage:
        """pytest with the plugin on an empty directory: the fixed cost in every plugin row."""
        empty = self.scratch / "empty"
        empty.mkdir(exist_ok=True)
        return run_measured(plugin_command(empty, self.sim.url), bench_env(), empty)

    def plugin(self, n: int, workers: int = 0) -> Row:
        suite = write_suite(self.scratch / f"suite-{n}", n)
        cmd = plugin_command(suite, self.sim.url, workers)
        name = f"plugin -n {workers}" if workers else "plugin"
        row = self._counted(name, n, lambda: run_measured(cmd, bench_env(), suite), "")
        assert row.usage is not None
        return _with_verdict(row, pytest_verdict(row.usage, n))

    def naive(self, n: int, budget: float) -> Row:
        estimate = n * max(self.seconds, POLL_INTERVAL)
        if estimate > budget:
            return Row("naive", n, skipped=f"skipped (≈ {estimate:.0f} s)")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--naive-client", self.sim.url]
        cmd += ["--sizes", str(n)]
        row = self._counted("naive", n, lambda: run_measured(cmd, bench_env(), self.scratch), "")
        assert row.usage is not None
        ok = row.usage.exit_code == 0
        return _with_verdict(row, row.usage.last_line() if ok else f"exit {row.usage.exit_code}")

    def cli(self, n: int) -> Row:
        missing = cli_missing()
        if missing:
            return Row("cekura CLI", n, skipped=f"n/a: {missing}")
        ids = ",".join(str(FIRST_SCENARIO + i) for i in range(n))
        cmd = [sys.executable, "-m", "cekura.cli.main", "run", "start", "--mode", "pipecat"]
        cmd += ["--agent-id", "1", "--scenario-ids", ids, "--wait", "--timeout", "600"]
        home = self.scratch / "cli-home"  # no ~/.cekura/config.toml: no stored login is used
        home.mkdir(exist_ok=True)
        with append_slash_front(self.sim.url) as front:
            env = bench_env(CEKURA_API_URL=front, HOME=str(home), COLUMNS="200")
            row = self._counted("cekura CLI", n, lambda: run_measured(cmd, env, home), "")
        assert row.usage is not None
        if row.usage.exit_code == 0 and f"All {n} runs passed" in row.usage.output:
            return _with_verdict(row, f"{n}/{n} passed")
        return _with_verdict(row, f"exit {row.usage.exit_code}: {row.usage.last_line()}")


def _with_verdict(row: Row, verdict: str) -> Row:
    return Row(row.contender, row.n, row.usage, row.posts, row.gets, row.fired, verdict)


# -- the naive baseline, run as a subprocess of this script ---------------------------------


def naive_client(url: str, n: int) -> int:
    """One case at a time: POST one entry, GET its result every second until it ends."""
    passed = 0
    headers = {"X-CEKURA-API-KEY": os.environ["CEKURA_API_KEY"]}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for i in range(n):
            body = {"scenarios": [{"scenario": FIRST_SCENARIO + i, "pipecat_room_url": ROOM}]}
            created = client.post(START_PATH, json=body)
            created.raise_for_status()
            result_id = created.json()["id"]
            while True:
                time.sleep(POLL_INTERVAL)
                polled = client.get(RESULT_PATH.format(result_id))
                polled.raise_for_status()
                runs = polled.json()["runs"]
                run = next(iter(runs.values() if isinstance(runs, dict) else runs))
                if run["status"] in TERMINAL:
                    passed += run["status"] == "completed" and run["success"] is True
                    break
    print(f"{passed}/{n} passed")
    return 0 if passed == n else 1


# -- output --------------------------------------------------------------------------------


def render_table(rows: Sequence[Row], seconds: float, naive_budget: float, startup: Usage) -> str:
    header = (
        "| contender | N | wall (s) | wall / floor | POSTs | GETs | runs fired "
        "| CPU (s) | CPU / case (ms) | peak RSS (MiB) | outcome |"
    )
    lines = [header, "|" + "---|" * 11]
    for row in rows:
        usage = row.usage
        if usage is None:
            lines.append(f"| {row.contender} | {row.n:,} | {row.skipped} |" + " |" * 8)
            continue
        lines.append(
            f"| {row.contender} | {row.n:,} | {usage.wall:.1f} | {usage.wall / seconds:.1f}x "
            f"| {row.posts} | {row.gets} | {row.fired} | {usage.cpu:.2f} "
            f"| {1000 * usage.cpu / row.n:.1f} | {usage.peak_rss_mib:.0f} | {row.verdict} |"
        )
    cli_version = _version("cekura")
    notes = [
        f"Floor = {seconds:g} s: every scenario passes {seconds:g} s after it is fired, so no "
        "client can finish sooner. Wall time includes interpreter and pytest start-up.",
        "POSTs, GETs and runs fired are counted by the simulator (one run per fired entry).",
        "CPU = user + sys of the contender's process tree (pytest and, with -n, its workers), "
        "start-up included; peak RSS = the largest single process of that tree. "
        f"pytest start-up alone (plugin loaded, no cases, same flags): {startup.wall:.1f} s "
        f"wall, {startup.cpu:.2f} s CPU, {startup.peak_rss_mib:.0f} MiB.",
        f"plugin: --cekura-poll-interval={POLL_INTERVAL:g}, batch size {BATCH_SIZE} (default). "
        f"-n {XDIST_WORKERS}: pytest-xdist {_version('pytest-xdist')}.",
        f"naive: sequential, one POST of one entry per case, a GET every {POLL_INTERVAL:g} s "
        f"until the run ends; wall ≈ N x S, so it runs only where N x S ≤ {naive_budget:g} s "
        "(--naive-budget) and is skipped with the estimate elsewhere.",
        f"cekura CLI {cli_version}: `cekura run start --mode pipecat --agent-id 1 "
        "--scenario-ids <N ids> --wait` = one POST /test_framework/v1/scenarios-external/"
        f"run_scenarios_pipecat_v2 (all N scenarios), then GET /test_framework/v1/results/{{id}} "
        f"every {CLI_POLL_INTERVAL} s (fixed in the CLI) until the result's status is terminal "
        "(`completed` as soon as any run completed). Pointed at the simulator with "
        "CEKURA_API_URL + CEKURA_API_KEY, HOME set to an empty directory. Its paths have no "
        "trailing slash, which the simulator answers 404 by design: every CLI request goes "
        "through a loopback 307 append-slash redirector (bench.py); the hop is not counted.",
    ]
    title = (
        f"S = {seconds:g} s · simulator on 127.0.0.1 · Python {platform.python_version()} · "
        f"{os.cpu_count()} CPUs"
    )
    footnotes = [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    return "\n".join([title, "", *lines, "", *footnotes])


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


# -- modes ---------------------------------------------------------------------------------


def compare(sizes: Sequence[int], seconds: float, naive_budget: float) -> int:
    rows: list[Row] = []
    script = ScenarioScript(id=0, seconds=seconds)
    with (
        Simulator(api_key=API_KEY, default_outcome=script) as sim,
        tempfile.TemporaryDirectory(prefix="cekura-bench-") as scratch,
    ):
        bench = Bench(sim, seconds, Path(scratch))
        startup = bench.startup()
        for n in sizes:
            rows.append(bench.plugin(n))
            rows.append(bench.plugin(n, XDIST_WORKERS))
            rows.append(bench.naive(n, naive_budget))
            rows.append(bench.cli(n))
    print(render_table(rows, seconds, naive_budget, startup))
    return 0


def check_300() -> int:
    """Issue 5's done-when: 300 cases of 3 s under -n 4, one line per condition."""
    n, max_posts = CHECK_CASES, XDIST_WORKERS * math.ceil(CHECK_CASES / BATCH_SIZE)
    max_wall = CHECK_SECONDS + CHECK_SLACK
    script = ScenarioScript(id=0, seconds=CHECK_SECONDS)
    with (
        Simulator(api_key=API_KEY, default_outcome=script) as sim,
        tempfile.TemporaryDirectory(prefix="cekura-bench-") as scratch,
    ):
        row = Bench(sim, CHECK_SECONDS, Path(scratch)).plugin(n, XDIST_WORKERS)
    assert row.usage is not None
    print(f"check-300: {n} cases of {CHECK_SECONDS:g} s, pytest -n {XDIST_WORKERS}")
    checks = [
        (
            row.verdict == f"{n}/{n} passed" and row.fired == n,
            f"outcome {row.verdict}, {row.fired} entries fired (want all passed, exactly {n})",
        ),
        (row.posts <= max_posts, f"POSTs {row.posts} (want ≤ {max_posts})"),
        (row.gets <= CHECK_MAX_GETS, f"GETs {row.gets} (want ≤ {CHECK_MAX_GETS})"),
        (
            row.usage.wall <= max_wall,
            f"wall {row.usage.wall:.1f} s (want ≤ {max_wall:g} s: floor {CHECK_SECONDS:g} s "
            f"+ {CHECK_SLACK:g} s)",
        ),
    ]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"(CPU {row.usage.cpu:.2f} s, peak RSS {row.usage.peak_rss_mib:.0f} MiB)")
    return 0 if all(ok for ok, _ in checks) else 1


# -- overhead: the plugin's own CPU per case, against pytest's per-item cost ---------------


def write_trivial(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_trivial.py").write_text(
        f"import pytest\n\n\n@pytest.mark.parametrize('i', range({n}))\ndef test_x(i):\n    pass\n",
        encoding="utf-8",
    )
    return directory


def overhead_command(suite: Path, url: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "-q"]
    cmd += [f"--cekura-api-url={url}", f"--cekura-poll-interval={OVERHEAD_POLL_INTERVAL:g}"]
    return [*cmd, *extra]


def _best(runs: Sequence[Usage]) -> Usage:
    """The round with the least CPU: noise only ever adds time."""
    return min(runs, key=lambda usage: usage.cpu)


def _mb(usage: Usage) -> float:
    return usage.peak_rss_mib * 1024 * 1024 / 1e6


def overhead(n: int, rounds: int, profile: bool) -> int:
    """Issue 5's claim: collecting and firing a 5,000-case cekura.toml adds at most 2 ms of
    plugin CPU per case over pytest's own per-item cost; peak memory stays under 200 MB."""
    script = ScenarioScript(id=0, seconds=0)  # every run is terminal when first polled
    with (
        Simulator(api_key=API_KEY, default_outcome=script) as sim,
        tempfile.TemporaryDirectory(prefix="cekura-bench-") as scratch,
    ):
        trivial = write_trivial(Path(scratch) / "trivial", n)
        suite = write_suite(Path(scratch) / "toml", n)
        env = bench_env()
        measured: dict[str, list[Usage]] = {"i": [], "ic": [], "ii": [], "iii": []}
        counts = (0, 0, 0)
        for r in range(rounds):
            print(f"  overhead round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
            measured["i"].append(run_measured(overhead_command(trivial, sim.url), env, trivial))
            trivial_collect = overhead_command(trivial, sim.url, "--collect-only")
            measured["ic"].append(run_measured(trivial_collect, env, trivial))
            sim.reset()
            measured["ii"].append(run_measured(overhead_command(suite, sim.url), env, suite))
            counts = (
                sum(1 for q in sim.requests if q.method == "POST"),
                sum(1 for q in sim.requests if q.method == "GET"),
                sim.entries_fired(),
            )
            sim.reset()
            collect = overhead_command(suite, sim.url, "--collect-only")
            measured["iii"].append(run_measured(collect, env, suite))
        base, base_collect, fired, collected = (
            _best(measured[k]) for k in ("i", "ic", "ii", "iii")
        )
        ok_outcomes = [
            pytest_verdict(base, n) == f"{n}/{n} passed",
            pytest_verdict(fired, n) == f"{n}/{n} passed" and counts[2] == n,
            collected.exit_code == 0 and f"{n} tests collected" in collected.last_line(),
            base_collect.exit_code == 0 and f"{n} tests collected" in base_collect.last_line(),
        ]
        per_case_ms = 1000 * (fired.cpu - base.cpu) / n
        collect_ms = 1000 * (collected.cpu - base_collect.cpu) / n
        rows = [
            (f"(i) {n:,} trivial parametrized python tests", base, pytest_verdict(base, n)),
            ("(i-c) --collect-only of those", base_collect, base_collect.last_line()),
            (f"(ii) {n:,}-case cekura.toml, fired and polled", fired, pytest_verdict(fired, n)),
            ("(iii) --collect-only of that cekura.toml", collected, collected.last_line()),
        ]
        print(
            f"overhead: N = {n:,}, simulator on 127.0.0.1 (runs end at once), poll interval "
            f"{OVERHEAD_POLL_INTERVAL:g} s, batch size {BATCH_SIZE}, best of {rounds} round(s) by "
            f"CPU · Python {platform.python_version()} · {os.cpu_count()} CPUs"
        )
        print()
        print("| run | wall (s) | CPU (s) | CPU / item (ms) | peak RSS (MB) | outcome |")
        print("|---|---|---|---|---|---|")
        for name, usage, outcome in rows:
            print(
                f"| {name} | {usage.wall:.2f} | {usage.cpu:.2f} | {1000 * usage.cpu / n:.2f} "
                f"| {_mb(usage):.0f} | {outcome} |"
            )
        print()
        print(f"(ii): {counts[0]} POSTs, {counts[1]} GETs, {counts[2]} runs fired")
        print(
            f"plugin CPU per case = ((ii) - (i)) / {n:,} = {per_case_ms:.3f} ms "
            f"(of which collection, ((iii) - (i-c)) / {n:,}: {collect_ms:.3f} ms)"
        )
        checks = [
            (all(ok_outcomes), "every run passed / collected as expected"),
            (
                per_case_ms <= OVERHEAD_MAX_CPU_MS,
                f"plugin CPU per case {per_case_ms:.3f} ms (want ≤ {OVERHEAD_MAX_CPU_MS:g} ms)",
            ),
            (
                _mb(fired) < OVERHEAD_MAX_RSS_MB,
                f"peak RSS of (ii) {_mb(fired):.0f} MB (want < {OVERHEAD_MAX_RSS_MB:g} MB)",
            ),
        ]
        for ok, text in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
        passed = all(ok for ok, _ in checks)
        if profile or not passed:
            sim.reset()
            print()
            print(profile_hotspots(overhead_command(suite, sim.url), env, suite))
    return 0 if passed else 1


def profile_hotspots(pytest_cmd: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``pytest_cmd`` under cProfile in every thread (CPU time, not wall), then list the
    plugin's functions by cumulative CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="cekura-profile-") as tmp:
        out = Path(tmp) / "pytest.prof"
        # sys.executable -m pytest ARGS  ->  sys.executable bench.py --profile-pytest OUT ARGS
        cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-pytest", str(out)]
        run_measured([*cmd, *pytest_cmd[3:]], env, cwd)
        stats = pstats.Stats(str(out))
    total = sum(tt for _, _, tt, _, _ in stats.stats.values())  # type: ignore[attr-defined]
    rows: list[tuple[float, float, int, str]] = []
    for (filename, line, function), (_, calls, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if f"{os.sep}{PLUGIN_PACKAGE}{os.sep}" in filename and "simulator" not in filename:
            where = filename.split(f"{os.sep}{PLUGIN_PACKAGE}{os.sep}", 1)[1]
            rows.append((ct, tt, calls, f"{where}:{line}:{function}"))
    rows.sort(reverse=True)
    lines = [
        f"profile of (ii) (cProfile, thread CPU time, all threads; total {total:.2f} s CPU; "
        "profiling slows it down): plugin functions by cumulative CPU",
        "",
        "| cumulative (s) | own (s) | calls | plugin function |",
        "|---|---|---|---|",
    ]
    lines += [f"| {ct:.3f} | {tt:.3f} | {calls} | {name} |" for ct, tt, calls, name in rows[:20]]
    return "\n".join(lines)


def profile_pytest(out: str, args: Sequence[str]) -> int:
    """pytest.main(args) with one cProfile per thread (thread CPU time), merged into ``out``."""
    import pytest

    profiles: list[cProfile.Profile] = []
    run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main = cProfile.Profile(time.thread_time)
    main.enable()
    try:
        code = pytest.main(list(args))
    finally:
        main.disable()
        threading.Thread.run = run  # type: ignore[method-assign]
    stats = pstats.Stats(main)
    for profile in profiles:
        stats.add(profile)
    stats.dump_stats(out)
    return int(code)


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want positive integers, e.g. 10,100,1000")
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark pytest-cekura-pipecat against the local simulator (127.0.0.1).",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        help="numbers of cases (default 10,100,1000; --quick 10,100; --overhead: N, 5000)",
    )
    parser.add_argument(
        "--seconds", type=float, help="S, how long every run takes (default 3; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="N = 10,100 and S = 1")
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="run the sequential baseline only where N x S is at most this (default 60)",
    )
    parser.add_argument(
        "--check-300",
        action="store_true",
        help="300 cases of 3 s under -n 4: print PASS/FAIL for issue 5's four conditions",
    )
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="5,000 cases: plugin CPU per case over pytest's own (want ≤ 2 ms) and peak RSS "
        "(want < 200 MB), PASS/FAIL; profiles the plugin when a check fails",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="K",
        help="--overhead: measure K times, keep the least CPU of each run (default 1)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="--overhead: profile the plugin even on PASS"
    )
    parser.add_argument("--naive-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--profile-pytest", metavar="OUT", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = _parser().parse_known_args(argv)
    if args.profile_pytest:
        return profile_pytest(args.profile_pytest, rest)
    if rest:
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    sizes: list[int] = args.sizes or ([10, 100] if args.quick else [10, 100, 1000])
    if args.naive_client:
        return naive_client(args.naive_client, sizes[0])
    if args.check_300:
        return check_300()
    if args.overhead:
        n = args.sizes[0] if args.sizes else OVERHEAD_CASES
        return overhead(n, max(1, args.rounds), args.profile)
    seconds: float = args.seconds or (1.0 if args.quick else 3.0)
    return compare(sizes, seconds, args.naive_budget)


if __name__ == "__main__":
    sys.exit(main())

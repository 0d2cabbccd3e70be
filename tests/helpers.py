"""What the tests share besides fixtures: the simulator's scripts, the key and token they
expect, the stock cases, paths inside ``tests/``, and ``Suite``, a pytester project pointed
at the simulator.

A module of its own, not ``conftest.py``: a conftest is pytest's to load, as a plugin, one per
folder and each under the name ``conftest``, so ``from conftest import`` gets whichever one
was loaded last. The tests import this one as ``helpers``: the root ``conftest.py`` puts
``tests/`` on ``sys.path`` when pytest loads it (its folder has no ``__init__.py``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_cekura_pipecat.simulator import RecordedRequest, ScenarioScript, Simulator

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
STANDINS = TESTS / "standins"

API_KEY = "sk-test-SECRET-0123456789abcdef"
ROOM_TOKEN = "daily-token-SECRET-fedcba9876543210"
START = "/test_framework/v1/scenarios/run_scenarios_pipecat/"

SCRIPTS = [
    ScenarioScript(101, "Books a table", "pass", 0.3),
    ScenarioScript(
        102,
        "Refuses a late booking",
        "fail",
        0.3,
        reasons=("The agent booked 23:30 although the restaurant closes at 22:00.",),
        failed_metrics=("Respects opening hours",),
    ),
    ScenarioScript(103, "Cancels a booking", "error", 0.3, reasons=("Bot did not join the room",)),
    ScenarioScript(104, "Opening hours", "pass", 0.3),
    ScenarioScript(105, "Hangs forever", "stuck", 0.3),
    ScenarioScript(106, "Times out", "timeout", 0.3, reasons=("Call exceeded 10 minutes",)),
    ScenarioScript(107, "Gets cancelled", "cancelled", 0.3),
    ScenarioScript(108, "Takes a while", "pass", 2.5),
]

FOUR_CASES = """
pipecat_room_url = "https://acme.daily.co/room-abc"
pipecat_token = "${ROOM_TOKEN}"

[[case]]
name = "books-a-table"
scenario = 101
publish_data_message = { locale = "en-US" }

[[case]]
name = "late-booking"
scenario = 102

[[case]]
name = "cancels"
scenario = 103

[[case]]
name = "opening-hours"
scenario = 104
repeat = 2
"""


# pytest-github-actions-annotate-failures (a test dependency) annotates every failed test
# under GitHub Actions, and ours then leave failed cases to it: the pytest runs of a test
# leave it out unless the test asks for it (test_ci.py).
NO_OTHER_ANNOTATIONS = ("-p", "no:pytest_github_actions_annotate_failures")


@dataclass
class Suite:
    """A pytester project whose ini points at the simulator, with secrets in the env."""

    pytester: pytest.Pytester
    sim: Simulator

    def toml(self, text: str, name: str = "cekura.toml") -> Path:
        path = self.pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(
            "-p", "no:cacheprovider", *NO_OTHER_ANNOTATIONS, "--junitxml=junit.xml", *args
        )

    def posts(self) -> list[RecordedRequest]:
        return [r for r in self.sim.requests if r.method == "POST" and r.path == START]

    def gets(self, part: str = "/results/") -> list[RecordedRequest]:
        return [r for r in self.sim.requests if r.method == "GET" and part in r.path]

    def junit(self) -> ET.Element:
        return ET.parse(self.pytester.path / "junit.xml").getroot()

    def testcase(self, name: str) -> ET.Element:
        for case in self.junit().iter("testcase"):
            if case.get("name") == name:
                return case
        raise AssertionError(f"no testcase {name} in junit")

    def properties(self, name: str) -> list[tuple[str, str]]:
        return [
            (p.get("name", ""), p.get("value", "")) for p in self.testcase(name).iter("property")
        ]

    def sigterm_after_start(
        self, *args: str, settle: float = 0.0, signals: tuple[int, ...] = (signal.SIGTERM,)
    ) -> tuple[int, str]:
        """Run pytest in a subprocess, send ``signals`` (to its process group, 50 ms apart, as
        a terminal does) once a start request has been answered (and ``settle`` seconds
        more), return its exit code and output."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.pytester.path,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # killed whole (xdist workers too) if it hangs
        )
        deadline = time.monotonic() + 30
        while not [r for r in self.posts() if r.status == 200] and time.monotonic() < deadline:
            time.sleep(0.02)
        if len(signals) > 1:  # once the result is watched (a loaded machine can be slow to)
            while not self.gets() and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(settle)
        for i, signum in enumerate(signals):
            if i:
                time.sleep(0.05)
            if signum == signal.SIGTERM and len(signals) == 1:
                proc.send_signal(signum)  # CI cancels the job's main process
            else:
                os.killpg(proc.pid, signum)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(f"pytest did not exit within 30 s of SIGTERM:\n{out}") from None
        return proc.returncode, out

    def firer_pidfile(self) -> Path:
        """A conftest that writes the pid of the process building entries (the firing
        worker under xdist) to the returned file."""
        pidfile = self.pytester.path / "firer.pid"
        self.pytester.makeconftest(
            f"""
            import os

            def pytest_cekura_entry(case, entry):
                with open({str(pidfile)!r}, "w") as f:
                    f.write(str(os.getpid()))
            """
        )
        return pidfile

    def ended(self) -> list[RecordedRequest]:
        return [r for r in self.sim.requests if r.path.endswith("/end_calls/")]

    def artifacts(self, result: pytest.RunResult) -> str:
        junit = self.pytester.path / "junit.xml"
        text = "\n".join(result.outlines + result.errlines)
        return text + (junit.read_text() if junit.exists() else "")


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and not re.search(r"^E\s+File ", text, re.M)


class StreamedBody(httpx.AsyncByteStream):
    """A body that arrives as a stream, as from a socket. (``httpx.Response(json=...)`` is
    read at construction, and the client streams raw bytes to cap their size.)"""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data


def json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON answer whose body streams, as from a socket (for a mocked transport)."""
    head = {"Content-Type": "application/json", **(headers or {})}
    return httpx.Response(status, headers=head, stream=StreamedBody(json.dumps(data).encode()))

"""The project as a user meets it: the Quickstart, the example suite, the CLI server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quickstart() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_has_two_commands_and_ci_runs_the_second_verbatim() -> None:
    commands = quickstart()
    assert len(commands) == 2
    assert "example_suite" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    """The example suite in a clean environment: no key, no URL, only the local server."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "example_suite"),
            "-p",
            "no:cacheprovider",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_example_suite_passes_on_the_local_server(tmp_path: Path) -> None:
    result = run_example(f"--junitxml={tmp_path / 'junit.xml'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cekura: SIMULATED" in result.stdout
    assert "4 passed, 1 xfailed" in result.stdout
    assert "example conftest saw 6 finished run(s)" in result.stdout


@pytest.mark.parametrize("selection", ["-m smoke", "-k books"])
def test_example_suite_selection(selection: str) -> None:
    result = run_example(*selection.split())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deselected" in result.stdout


def test_cekura_simulator_fixture_serves_a_users_own_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_it(cekura_simulator):
            body = {"scenarios": [{"scenario": 5, "pipecat_room_url": "https://x.daily.co/r"}]}
            key = {"X-CEKURA-API-KEY": cekura_simulator.api_key}
            url = cekura_simulator.url + "/test_framework/v1/scenarios/run_scenarios_pipecat/"
            assert httpx.post(url, json=body, headers=key).status_code == 200
            assert cekura_simulator.entries_fired() == 1
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_simulator_cli_refuses_a_non_loopback_host() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_cekura_pipecat.simulator",
            "--default-outcome",
            "pass",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1

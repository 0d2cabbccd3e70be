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


def test_example_suite_passes_on_the_local_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "example_suite"), "-p", "no:cacheprovider",
         f"--junitxml={tmp_path / 'junit.xml'}"],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cekura: SIMULATED" in result.stdout
    assert "4 passed, 1 xfailed" in result.stdout


@pytest.mark.parametrize("marker", ["-m smoke", "-k books"])
def test_example_suite_selection(marker: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "example_suite"), "-p", "no:cacheprovider", *marker.split()],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deselected" in result.stdout

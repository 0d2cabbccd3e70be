"""The project as a user meets it: the Quickstart, the example suite, the CLI server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

import pytest
from helpers import ROOT


def quickstart() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def shell_lines(heading: str) -> list[str]:
    """Every line of every ``bash`` block of a README section, up to its next heading (a
    subsection too: the Quickstart's "Installing it in your project" shows placeholders)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.split(r"\n#{2,} ", readme.split(f"\n{heading}\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, f"no bash block under {heading}"
    return [line for block in blocks for line in block.splitlines() if line.strip()]


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


# -- the README a newcomer finishes, the docs built without a warning -------------------------


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


def test_install_lines_and_example_dates_hold_today() -> None:
    """No placeholder or tag that does not exist in an install line (the package is not on
    PyPI: it is installed from a checkout), and no example quarantine that expires soon."""
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        assert "OWNER/REPO" not in text, page
        for line in re.findall(r"pip install [^\n]*", text):
            assert "pytest-cekura-pipecat @" not in line and "@v" not in line, (page, line)
        for until in re.findall(r"until = \"?(\d{4})-(\d\d)-(\d\d)", text):
            assert date(*map(int, until)).year - date.today().year >= 50, (page, until)


def test_docs_build_strict_without_a_warning(tmp_path: Path) -> None:
    """mkdocs.yml is strict (a broken link or anchor is a warning, and a warning fails)."""
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert (tmp_path / "troubleshooting" / "index.html").exists()


# -- every README line of the Quickstart and the local server, as printed --------------------

_NOT_COPIED = (".git", ".venv", ".tox", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis")
_SERVER = "python -m pytest_cekura_pipecat.simulator"


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: this test's virtualenv, package path and Cekura
    settings left out; the interpreter that made this virtualenv first on PATH."""
    here = str(Path(sys.prefix) / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != here]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "CEKURA_", "PIPECAT_", "GITHUB_", "PYTHON"))
        and key != "VIRTUAL_ENV"
    }
    # CPython's own name for the interpreter a virtualenv was made from; typeshed leaves it out.
    base = sys._base_executable  # type: ignore[attr-defined]
    env["PATH"] = os.pathsep.join([str(Path(base).parent), *path])
    return env


def _bash(
    line: str, cwd: Path, env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Long-running lines (the standalone server): stopped at the end, whatever happened."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_every_quickstart_and_local_server_line_runs_as_printed(
    tmp_path: Path, served: list[subprocess.Popen[str]]
) -> None:
    """A copy of the repository, a user's environment. The Quickstart's first line runs as
    printed (it makes the runtime-only virtualenv, from PyPI); the local-server section's
    lines run in that virtualenv, from the repository root, as its first sentence says (the
    server's port 8765 is swapped for a free one, so that parallel runs do not collide).
    The Quickstart's second line is the project's own suite, this very run: it is checked
    to be what .ci/run runs, not run again from inside itself."""
    first, second = shell_lines("## Quickstart")
    assert second in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    env = _user_env()

    done = _bash(first, repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed, 1 xfailed" in done.stdout, done.stdout
    venv = dict(env, VIRTUAL_ENV=str(repo / ".venv"))
    venv["PATH"] = os.pathsep.join([str(repo / ".venv" / "bin"), env["PATH"]])
    assert _bash("python -c 'import xdist'", repo, venv).returncode != 0  # no test extra
    # The project's own test options (-n 2 needs xdist) do not reach a run from the root.
    done = _bash("pytest --markers", repo, venv)
    assert done.returncode == 0, done.stdout + done.stderr

    port = str(_free_port())
    for line in shell_lines("## The local Cekura-compatible server"):
        line = line.replace("8765", port)
        if line.startswith(_SERVER):
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {line}"],
                cwd=repo,
                env=venv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            served.append(proc)
            assert proc.stdout is not None
            ready = proc.stdout.readline()  # the server says where it listens, once it does
            assert f"listening on http://127.0.0.1:{port}" in ready, ready
            continue
        done = _bash(line, repo, venv)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        assert "4 passed, 1 xfailed" in done.stdout, f"{line}\n{done.stdout}"
    assert served, "the local-server section starts no server"

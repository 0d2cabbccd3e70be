"""What a new user trips over in the first hour (issue 12): config errors named once,
toml marks like test marks, an unreachable host said at once, a missing key said once,
"could not evaluate" as broken in allure, and the docs' hooks example run as written."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from helpers import ROOT, Suite

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'
MARKED = """
import pytest

@pytest.mark.cekura(scenario=101)
def test_marked():
    pass

def test_plain():
    pass
"""


def _out(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


# -- 3: a config error is named once --------------------------------------------------------


def test_bad_toml_key_beside_a_marked_test_is_one_error(suite: Suite) -> None:
    suite.toml(ROOM + "agentt = 5\n")
    suite.pytester.makepyfile(test_bot=MARKED)
    result = suite.run("test_bot.py")
    text = _out(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    result.assert_outcomes(passed=1, errors=1)
    assert "no room URL" not in text
    assert text.count("unknown key 'agentt'") == 1, text
    result.stdout.fnmatch_lines(["*cekura.toml at */cekura.toml is invalid (see above)"])
    assert suite.sim.requests == []


def test_collected_bad_toml_is_one_collection_error(suite: Suite) -> None:
    suite.toml(ROOM + "agentt = 5\n")
    suite.pytester.makepyfile(test_bot=MARKED)
    result = suite.run()
    text = _out(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED, text  # pytest's own collection error
    assert "no room URL" not in text
    assert text.count("unknown key 'agentt'") == 1, text


def test_marked_test_inherits_the_nearest_parent_toml(suite: Suite) -> None:
    suite.toml(ROOM, "tests/cekura.toml")
    suite.pytester.makepyfile(**{"tests/sub/test_bot": MARKED})
    result = suite.run("tests/sub")
    result.assert_outcomes(passed=2)
    assert len(suite.posts()) == 1


def test_no_toml_anywhere_says_which_files_were_looked_for(suite: Suite) -> None:
    suite.pytester.makepyfile(**{"tests/sub/test_bot": MARKED})
    result = suite.run("tests/sub")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, _out(result)
    result.stderr.fnmatch_lines(
        ["*no room URL*no cekura.toml at tests/sub/cekura.toml, tests/cekura.toml, cekura.toml)"]
    )


# -- 4: marks in cekura.toml -----------------------------------------------------------------

MARKED_CASE = (
    ROOM
    + '[[case]]\nname = "a"\nscenario = 101\n\n[[case]]\nname = "b"\nscenario = 101\nmarks = ["smok"]\n'
)


def test_unregistered_toml_mark_warns_at_the_file_and_line(suite: Suite) -> None:
    suite.toml(MARKED_CASE)
    result = suite.run("-W", "default::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        ["*cekura.toml:9: PytestUnknownMarkWarning: case b: unknown mark 'smok'*"]
    )
    assert "_pytest" not in result.stdout.str()


def test_unregistered_toml_mark_under_strict_markers_names_case_and_file(suite: Suite) -> None:
    suite.toml(MARKED_CASE)
    result = suite.run("--strict-markers")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["cekura.toml:9: case b: mark 'smok' is not registered*"])
    assert suite.sim.requests == []


@pytest.mark.parametrize("mark", ["__class__", "parametrize", "not-a-name"])
def test_a_mark_named_like_an_attribute_is_a_clean_error(suite: Suite, mark: str) -> None:
    suite.toml(MARKED_CASE.replace("smok", mark))
    result = suite.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"cekura.toml: case b: marks: '{mark}' *"])
    assert "Traceback" not in _out(result)


# -- 5: an unreachable host ------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_url_that_never_answered_ends_the_session_at_once(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused connection before any answer is a mistyped URL, not an outage: no retry
    window (here a day long: waiting it out would hang the test), one line naming the URL
    and the variable that set it, every case errors, nothing was fired."""
    url = f"http://127.0.0.1:{_closed_port()}"
    suite.pytester.makeini("[pytest]\ncekura_poll_interval = 0.1\n")
    monkeypatch.setenv("CEKURA_API_URL", url)
    suite.toml(
        ROOM + '[[case]]\nname = "a"\nscenario = 101\n[[case]]\nname = "b"\nscenario = 102\n'
    )
    result = suite.pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--cekura-retry-window=600",
        timeout=120,  # a hang guard only
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            f"*cannot connect to Cekura at {url} (set by env CEKURA_API_URL): ConnectError: *; "
            "it has not answered once in this session, so nothing is retried or fired: "
            "check the URL*"
        ]
    )
    assert "unreachable since" not in _out(result)
    assert "spend forecast" not in _out(result)  # nothing could be estimated


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A listening socket that never accepts or answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
def test_blackhole_is_said_within_5_s(
    pytester: pytest.Pytester, blackhole: str, workers: list[str]
) -> None:
    """Under xdist the firing worker's output is not shown: the controller prints it."""
    pytester.makeini("[pytest]\n")
    (pytester.path / "cekura.toml").write_text(ROOM + '[[case]]\nname = "a"\nscenario = 101\n')
    env = {**os.environ, "CEKURA_API_KEY": "sk-x"}
    started = time.monotonic()
    said_at = None
    lines = []
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--cekura-api-url={blackhole}",
         "--cekura-http-timeout=8", "--cekura-retry-window=3", *workers],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("collected") or " workers [" in line:  # not pytest's start-up
                started = time.monotonic()
            if said_at is None and "has not answered" in line:
                said_at = time.monotonic() - started
        proc.wait(timeout=30)
    text = "".join(lines)
    # The spend pre-flight's read of the scenario is the first request: nothing is fired.
    said = f"Cekura at {blackhole} (set by --cekura-api-url) has not answered GET"
    failed = f"not fired: Cekura at {blackhole} unreachable"
    assert said in text and failed in text, text
    # Said while the request still waits (5 s into its 8 s), not with its failure; the bound
    # only guards against a hang (a loaded machine stretches every second).
    assert text.index(said) < text.index(failed), text
    assert said_at is not None and said_at < 30, text


def test_retry_window_help_says_what_it_covers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    help_text = re.sub(r"\s+", " ", result.stdout.str())
    assert "start requests that provably did not reach the server" in help_text
    assert "reads of results and runs" in help_text


# -- 6: a missing key ------------------------------------------------------------------------


def test_missing_key_is_one_line_before_the_tests(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CEKURA_API_KEY")
    suite.toml(
        ROOM + '[[case]]\nname = "a"\nscenario = 101\n[[case]]\nname = "b"\nscenario = 102\n'
    )
    result = suite.run("-q")
    result.assert_outcomes(errors=2)
    out = result.outlines
    top = [i for i, line in enumerate(out) if line.startswith("cekura: CEKURA_API_KEY is not set")]
    assert len(top) == 1, _out(result)
    assert out[top[0] + 1].startswith("EE"), _out(result)  # before the first test's result
    assert result.stdout.str().count("not fired: CEKURA_API_KEY is not set") >= 2


# -- 9: "could not evaluate" is broken in allure, an error in pytest-html ------------------


def test_allure_shows_errors_as_broken_and_failures_as_failed(suite: Suite) -> None:
    pytest.importorskip("allure_pytest")
    suite.toml(
        ROOM
        + '[[case]]\nname = "ok"\nscenario = 101\n[[case]]\nname = "bad"\nscenario = 102\n[[case]]\nname = "broken"\nscenario = 103\n'
    )
    suite.run("--alluredir=allure")
    statuses = {}
    for path in (suite.pytester.path / "allure").glob("*-result.json"):
        data = json.loads(path.read_text())
        statuses[data["name"]] = data["status"]
    assert statuses == {"ok": "passed", "bad": "failed", "broken": "broken"}, statuses


def test_pytest_html_shows_an_error_for_a_case_that_could_not_be_evaluated(suite: Suite) -> None:
    pytest.importorskip("pytest_html")
    suite.toml(
        ROOM + '[[case]]\nname = "bad"\nscenario = 102\n[[case]]\nname = "broken"\nscenario = 103\n'
    )
    suite.run("--html=report.html")
    html = (suite.pytester.path / "report.html").read_text()
    found = re.search(r'data-jsonblob="([^"]*)"', html)
    assert found is not None, html
    blob = json.loads(found.group(1).replace("&#34;", '"').replace("&amp;", "&"))
    results = {t[0]["testId"].split("::")[1]: t[0]["result"] for t in blob["tests"].values()}
    assert results == {"bad": "Failed", "broken": "Error"}, results


# -- 10: the docs' hooks example runs as written --------------------------------------------


def _readme_hooks() -> str:
    readme = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    section = readme.split("### Hooks", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_hooks_example_runs(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECAT_ROOM_URL", "https://acme.daily.co/from-hook")
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    suite.pytester.makeconftest(_readme_hooks())
    # No room in the file: the room hook gives one. 102 scores 40, so the verdict hook fails it.
    suite.toml('[[case]]\nname = "ok"\nscenario = 101\n[[case]]\nname = "low"\nscenario = 102\n')
    result = suite.run("--log-level=INFO")
    result.assert_outcomes(passed=1, failed=1)
    (post,) = suite.posts()
    entries = post.body["scenarios"]
    assert {e["pipecat_room_url"] for e in entries} == {"https://acme.daily.co/from-hook"}
    assert all(e["publish_data_message"] == {"git_sha": "abc123"} for e in entries)
    assert "Traceback" not in _out(result)


# -- issue 28.3: what can be checked is checked before the first start request ----------------


@pytest.mark.parametrize(
    ("where", "args", "said"),
    [
        ("file", (), "set by case a (cekura.toml)"),
        ("flag", ("--cekura-agent=999999",), "it is also the --cekura-agent default"),
    ],
)
def test_an_agent_that_does_not_exist_is_one_line_and_nothing_is_fired(
    suite: Suite, where: str, args: tuple[str, ...], said: str
) -> None:
    suite.sim.configure(agents=frozenset({12}))
    agent = "agent = 999999\n" if where == "file" else ""
    suite.toml(
        agent
        + ROOM
        + '[[case]]\nname = "a"\nscenario = 101\n[[case]]\nname = "b"\nscenario = 102\n'
    )
    result = suite.run(*args)
    result.assert_outcomes(errors=2)
    url = f"{suite.sim.url}/test_framework/v1/aiagents/999999/"
    line = f"agent 999999 does not exist: GET {url} answered 404; set by case a (cekura.toml)"
    result.stdout.fnmatch_lines([f"cekura: nothing fired: {line}*"])
    assert said in _out(result)
    assert suite.posts() == []
    assert len(suite.gets("/aiagents/")) == 1  # one probe, not one per case


def test_an_agent_that_exists_is_looked_up_once_and_fired(suite: Suite) -> None:
    suite.sim.configure(agents=frozenset({12}))
    suite.toml("agent = 12\n" + ROOM + '[[case]]\nname = "a"\nscenario = 101\nrepeat = 2\n')
    result = suite.run()
    result.assert_outcomes(passed=1)
    assert len(suite.posts()) == 1
    assert len(suite.gets("/aiagents/12/")) == 1


def test_an_error_names_the_full_url_with_the_configured_prefix(suite: Suite) -> None:
    """A base URL with a path: the 404 names the URL that failed, not only Cekura's path."""
    suite.sim.configure(agents=frozenset({12}))
    base = f"{suite.sim.url}/api/v1"
    suite.toml("agent = 7\n" + ROOM + '[[case]]\nname = "a"\nscenario = 101\n')
    result = suite.run(f"--cekura-api-url={base}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*GET {base}/test_framework/v1/aiagents/7/ answered 404*"])
    assert suite.posts() == []


def test_collect_only_makes_no_preflight_request(suite: Suite) -> None:
    suite.sim.configure(agents=frozenset({12}))
    suite.toml("agent = 999999\n" + ROOM + '[[case]]\nname = "a"\nscenario = 101\n')
    result = suite.run("--collect-only")
    assert result.ret == pytest.ExitCode.OK
    assert suite.sim.requests == []

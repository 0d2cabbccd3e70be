"""Issue 27, items 1 and 2: what Cekura says (explanations, error messages, scenario and
metric names, transcripts) cannot steer CI or stall a session. End to end against a local
server whose every text is hostile, read the way the GitHub Actions runner, a terminal and
GitHub's Markdown read it; and the channel functions of ``_text`` one by one."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from actions_runner import annotation, commands
from helpers import API_KEY, NO_OTHER_ANNOTATIONS, Suite
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from pytest_cekura_pipecat._api.client import HttpPolicy
from pytest_cekura_pipecat._api.run import CekuraRun
from pytest_cekura_pipecat._fire.plan import Plan, Slot
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat._report.ci import github_annotations
from pytest_cekura_pipecat._report.comment import COMMENT_LIMIT
from pytest_cekura_pipecat._report.markdown import STEP_SUMMARY_LIMIT, md_code, md_text
from pytest_cekura_pipecat._report.record import CaseRecord
from pytest_cekura_pipecat._report.summary import terminal_lines
from pytest_cekura_pipecat._roles.role import Controller, Runtime, Worker
from pytest_cekura_pipecat._roles.shared import RUNS_LOG, SharedDir
from pytest_cekura_pipecat._text import (
    FAILURE_LIMIT,
    LINE_LIMIT,
    REPORT_LIMIT,
    cap,
    clean,
    loads,
    markdown_inert,
    plain,
)
from pytest_cekura_pipecat._watch.watcher import WatchSettings
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

OSC8 = "\x1b]8;;http://evil\x1b\\text\x1b]8;;\x1b\\"
HOSTILE = (
    "::stop-commands::x",
    "::add-mask::y",
    "  ::error file=a.py,line=1::z",
    "##[error]w",
    "text\r::error::v",
    "\x1b[2J",
    OSC8,
    "@org/team",
    "#1",
    "<img src=x onerror=alert(1)>",
)
EVERY = "\n".join(HOSTILE)
HUGE = "::error::huge " + "x" * 1_000_000
SURROGATE = "boom \ud800 went the model"
# Control characters (tab and newline aside): none may reach a terminal or a Markdown page.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'
CASES = ROOM + "".join(
    f'[[case]]\nname = "{name}"\nscenario = {scenario}\n'
    for name, scenario in (("hostile", 201), ("huge", 202), ("surrogate", 203), ("passes", 204))
)
VERDICTS = {"hostile": "failed", "huge": "error", "surrogate": "error", "passes": "passed"}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    scripts = [
        ScenarioScript(
            201,
            " ".join(HOSTILE),
            "fail",
            0.2,
            reasons=(*HOSTILE, EVERY),
            failed_metrics=HOSTILE,
            transcript=EVERY,
        ),
        ScenarioScript(202, HOSTILE[2], "error", 0.2, reasons=(HUGE,), transcript=HUGE),
        ScenarioScript(203, "cut \ud83d emoji", "error", 0.2, reasons=(SURROGATE,)),
        ScenarioScript(204, OSC8 + "\n@org/team", "pass", 0.2, transcript=EVERY),
    ]
    with Simulator(scripts, api_key=API_KEY) as simulator:
        yield simulator


def _no_raw_mention_or_reference(markdown: str) -> None:
    assert not re.search(r"@[\w-]", markdown), "a mention GitHub would ping"
    assert not re.search(r"(?<!&)\\?#\d", markdown), "a cross-reference GitHub would link"
    assert not re.search(r"GH\\?-\d", markdown, re.I)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_hostile_server_text_steers_nothing(suite: Suite, tmp_path: Path, workers: str) -> None:
    suite.toml(CASES)
    step = tmp_path / "step.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step)}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            *NO_OTHER_ANNOTATIONS,
            "-n",
            workers,
            "-rA",
            "--junitxml=junit.xml",
            "--cekura-report=report.json",
            "--cekura-pr-comment=comment.md",
            "--cekura-timeout=120",
        ],
        cwd=suite.pytester.path,
        env=env,
        capture_output=True,
        timeout=600,
    )
    took = time.monotonic() - started
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err

    # The runner sees only the plugin's own annotations: one per failed or errored case.
    found = commands(out) + commands(err)
    parsed = [annotation(c) for c in found]
    assert all(p is not None and p[0] == "error" for p in parsed), found
    assert sorted(p[1]["file"] for p in parsed if p) == ["cekura.toml"] * 3, found
    assert sorted(p[1]["title"] for p in parsed if p) == [
        "hostile (failed)",
        "huge (error)",
        "surrogate (error)",
    ]

    # No escape sequence or other control byte on the terminal; lines bounded.
    assert not CONTROL.search(out + err)
    assert max(len(line) for line in (out + err).splitlines()) <= 4 * LINE_LIMIT + 200
    assert len(out) < 20 * FAILURE_LIMIT  # the 1 MB message is not copied to stdout

    # The step summary and the PR comment: no control byte, mention, reference or HTML.
    for path, limit in (
        (step, STEP_SUMMARY_LIMIT),
        (suite.pytester.path / "comment.md", COMMENT_LIMIT),
    ):
        markdown = path.read_text(encoding="utf-8")
        assert len(markdown.encode()) <= limit
        assert not CONTROL.search(markdown)
        _no_raw_mention_or_reference(markdown)
        page = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
        assert "<img" not in page
        assert not commands(markdown) or all(annotation(c) is None for c in commands(markdown))

    # Every verdict right; the JSON report keeps the full text up to its cap.
    report = json.loads((suite.pytester.path / "report.json").read_text(encoding="utf-8"))
    assert {c["name"]: c["outcome"] for c in report["cases"]} == VERDICTS

    def strings(value: object) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    assert max(len(s) for s in strings(report)) <= REPORT_LIMIT
    huge = next(c for c in report["cases"] if c["name"] == "huge")
    assert huge["runs"][0]["error_message"].endswith(" more characters")
    assert huge["runs"][0]["error_message"].startswith("::error::huge xxx")

    # The surrogate case errors at once with its own message, the surrogate replaced.
    junit = ET.parse(suite.pytester.path / "junit.xml").getroot()
    by_name = {case.get("name"): case for case in junit.iter("testcase")}
    error = by_name["surrogate"].find("error")
    assert error is not None
    assert "boom \ufffd went the model" in (error.get("message") or "")
    for case in by_name.values():
        for element in case:
            text = (element.get("message") or "") + (element.text or "")
            assert not commands(text) and len(text) <= 4 * FAILURE_LIMIT + 1000
        for prop in case.iter("property"):
            assert len(prop.get("value", "")) <= LINE_LIMIT
    # Promptly: the runs take a second; a verdict lost between processes would wait for
    # the 120 s case timeout (and a minute of grace) before the case errored.
    assert took < 100


def test_a_hostile_bot_log_echoed_in_failures_steers_nothing(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot's own log (its tail ends the failure text of the cases it broke) is outside
    text too: whoever makes the bot print a line must not write commands into the job."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    said = EVERY.encode() + b"\n\xff invalid UTF-8\n"
    bot = shlex.join([sys.executable, "-c", f"import os, sys; os.write(1, {said!r}); sys.exit(3)"])
    suite.toml("[[case]]\nname = 'books'\nscenario = 201\n")
    result = suite.run(
        "-rA",
        f"--cekura-bot-command={bot}",
        f"--cekura-bot-start-url=http://127.0.0.1:{port}/start",
        "--cekura-bot-start-timeout=20",
    )
    result.assert_outcomes(errors=1)
    out = "\n".join(result.outlines + result.errlines)
    assert "last lines of cekura-bot.log" in out and "\ufffd invalid UTF-8" in out
    found = commands(out)
    assert len(found) == 1 and annotation(found[0]) is not None, found
    assert not CONTROL.search(out)


# -- the channel functions ------------------------------------------------------------------


@given(st.text())
def test_plain_never_leaves_a_command_or_a_control_character(text: str) -> None:
    shown = plain(text)
    assert commands(shown) == []
    assert not CONTROL.search(shown)
    assert not re.search("[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", shown)  # no other break
    assert "\n" not in plain(text, one_line=True) and "\t" not in plain(text, one_line=True)


@given(st.text(alphabet=st.sampled_from([":", " ", "\t", "#", "[", "\r", "\n", "\x1b", "a"])))
def test_plain_neutralizes_commands_built_from_their_own_characters(text: str) -> None:
    assert commands(plain(text)) == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_plain_keeps_hostile_text_readable(hostile: str) -> None:
    shown = plain(hostile).replace("\u200b", "")
    assert shown == hostile.replace("\r", "\\r").replace("\x1b", "\\x1b")


def test_plain_caps_lines_and_the_whole_text() -> None:
    assert plain("x" * 5000) == cap("x" * 5000, LINE_LIMIT)
    assert len(plain("x" * 5000)) == LINE_LIMIT
    assert plain("x" * 5000).endswith(" more characters")
    many = plain("\n".join(["y" * 100] * 1000))
    assert len(many) <= FAILURE_LIMIT and many.endswith(" more characters")


def test_a_terminal_row_stays_one_line_whatever_the_names() -> None:
    case = CaseRecord(
        "c",
        "cekura.toml::c",
        7,
        scenario_name="two\nlines\r::error::v\x1b[2J",
        verdict="failed",
        outcome="failed",
        reason="first\x1b]8;;http://evil\x1b\\line\nsecond",
    )
    lines = terminal_lines([case], [], width=200)
    assert lines[1].startswith("FAILED c  7 two lines\\r::error::v\\x1b[2J")
    assert lines[1].endswith("first\\x1b]8;;http://evil\\x1b\\line")
    assert lines[2].startswith("1 case(s)")


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_cap_is_bounded_and_idempotent(text: str, limit: int) -> None:
    capped = cap(text, limit)
    assert len(capped) <= limit
    assert cap(capped, limit) == capped
    if len(text) <= limit:
        assert capped == text


@given(st.text())
def test_markdown_text_has_no_mention_reference_html_or_control(text: str) -> None:
    for markdown in (md_text(text), md_code(text)):
        assert not CONTROL.search(markdown)
        assert "<" not in markdown.removeprefix("<code>").removesuffix("</code>")
        _no_raw_mention_or_reference(markdown)


def test_markdown_inert_breaks_pings_and_references_only() -> None:
    assert markdown_inert("@org/team and #1, org/repo#12, GH-3") == (
        "@\u200borg/team and #\u200b1, org/repo#\u200b12, GH\u200b-3"
    )
    assert markdown_inert("a &#124; b, issue #x, email me") == "a &#124; b, issue #x, email me"


@given(st.text())
def test_clean_text_always_encodes(text: str) -> None:
    assert isinstance(clean(text).encode("utf-8"), bytes)


def test_loads_replaces_lone_surrogates_and_invalid_utf8_and_keeps_pairs() -> None:
    body = b'{"a": "x\\ud800y", "\\udfff": ["\\ud83d\\ude00", "\xff"]}'
    assert loads(body) == {"a": "x\ufffdy", "\ufffd": ["\U0001f600", "\ufffd"]}
    assert loads('{"plain": 1}') == {"plain": 1}
    with pytest.raises(ValueError):
        loads("[" * 100_000)


def test_annotations_of_hostile_reasons_are_one_command_each() -> None:
    cases = [
        CaseRecord(f"c{i}", f"c{i}", 1, outcome="failed", reason=text, verdict="failed")
        for i, text in enumerate([*HOSTILE, EVERY, HUGE])
    ]
    lines = github_annotations(cases)
    for line in lines:
        assert "\n" not in line and "\r" not in line
        assert not CONTROL.search(line) and len(line) <= LINE_LIMIT + 200
        found = commands(line)
        assert len(found) == 1 and annotation(found[0]) is not None
    assert len(lines) == 11  # ten errors, then one notice


# -- item 2: no verdict waits on a publishing failure ----------------------------------------


def _runtime() -> Runtime:
    return Runtime(
        api_url="http://127.0.0.1:9",
        api_key=None,
        policy=HttpPolicy(),
        watch=WatchSettings(),
        redactor=Redactor(),
    )


def test_a_run_that_cannot_be_written_errors_its_case_at_once(tmp_path: Path) -> None:
    """Under xdist the controller publishes a run the workers wait for: one that cannot be
    serialized crosses as an error saying why, at once (not after the case timeout)."""
    slot = Slot("t::a", 0, 201, timeout=120.0, fired_at=time.time(), result_id=7, run_id=8)
    shared = SharedDir(tmp_path)
    shared.write_plan(Plan(time.time(), {"t::a": [slot]}))
    controller = Controller(_runtime(), tmp_path)
    try:
        run = CekuraRun(
            scenario_id=201, status="failed", run_id=8, result_id=7, error_message=SURROGATE
        )
        controller._publish(slot, run)
    finally:
        controller.close()
    worker = Worker(_runtime(), tmp_path)
    got: list[CekuraRun] = []
    waiting = threading.Thread(target=lambda: got.extend(worker.runs("t::a", 0)), daemon=True)
    waiting.start()
    waiting.join(30)  # a condition: the thread is done; the fallback takes milliseconds
    assert got, "the worker is still waiting for a verdict that cannot cross"
    assert got[0].verdict == "error" and got[0].run_id == 8
    assert got[0].error_message.startswith("boom \ufffd went the model (")
    assert "could not be passed between pytest-xdist processes" in got[0].error_message
    assert (tmp_path / RUNS_LOG).read_bytes().decode("utf-8")  # the log holds no surrogate

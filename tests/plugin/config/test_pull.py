"""``python -m pytest_cekura_pipecat pull`` and ``check``: scenarios into code, and back."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import tomli_w
from helpers import API_KEY, Suite
from test_select import CATALOGUE, CHOSEN, LIST, names

from pytest_cekura_pipecat.__main__ import main
from pytest_cekura_pipecat._config import toml_text
from pytest_cekura_pipecat._config.pull import pull_into
from pytest_cekura_pipecat._config.select import Listed
from pytest_cekura_pipecat._errors import ConfigError
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

PULL = ["pull", "--agent", "5", "--folder", "Booking/", "--tags", "booking,smoke"]
TOP = '# the booking suite\npipecat_room_url = "https://acme.daily.co/r"\nagent = 5\n'


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(CATALOGUE, api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def cli_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
    monkeypatch.setenv("CEKURA_API_URL", sim.url)
    return sim


def cases(path: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = tomllib.loads(path.read_text(encoding="utf-8"))["case"]
    return found


def with_name(scripts: list[ScenarioScript], scenario: int, name: str) -> list[ScenarioScript]:
    return [
        ScenarioScript(
            s.id,
            name if s.id == scenario else s.name,
            seconds=s.seconds,
            agent=s.agent,
            folder_path=s.folder_path,
            tags=s.tags,
        )
        for s in scripts
    ]


def test_pull_writes_cases_that_then_run_without_a_selection_request(
    suite: Suite, cli_env: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = suite.toml(TOP)
    assert main([*PULL, "--toml", str(path)]) == 0
    assert "2 case(s) added, 0 renamed, 0 unchanged" in capsys.readouterr().out
    text = path.read_text(encoding="utf-8")
    assert text.startswith(TOP)  # the rest of the file as written
    assert cases(path) == [
        {"name": "book-a-table-301", "scenario": 301},
        {"name": "book-a-table-302", "scenario": 302},
    ]
    suite.sim.reset()
    result = suite.run("-n", "0")
    result.assert_outcomes(passed=2)
    assert names(suite) == CHOSEN
    # The spend pre-flight reads each scenario (``LIST`` + id); no list is read.
    assert not [r for r in suite.sim.requests if r.method == "GET" and r.path == LIST]
    assert [r for r in suite.sim.requests if r.path.startswith(LIST)], "no pre-flight read"


def test_pull_updates_known_ids_in_place_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cekura.toml"
    before = (
        "agent = 6  # another agent's suite\n\n"
        "[[case]]\n"
        'name = "book-a-table-301"  # pulled\n'
        "scenario = 301\n"
        "repeat = 3\n\n"
        "[case.quarantine]\n"
        'until = 2099-01-01\nreason = "flaky"\n\n'
        "[[case]]\n"
        'name = "my-late-one"\n'
        "scenario = 302\n"
    )
    path.write_text(before, encoding="utf-8")
    renamed = with_name(CATALOGUE, 301, 'Reserve a "table"')
    with Simulator(renamed, api_key=API_KEY) as moved:
        monkeypatch.setenv("CEKURA_API_KEY", API_KEY)
        monkeypatch.setenv("CEKURA_API_URL", moved.url)
        assert main([*PULL, "--toml", str(path)]) == 0
    out = capsys.readouterr().out
    assert "case book-a-table-301 renamed reserve-a-table-301 (scenario 301)" in out
    assert "0 case(s) added, 1 renamed, 1 unchanged" in out
    after = path.read_text(encoding="utf-8")
    assert after == before.replace(
        'name = "book-a-table-301"  # pulled', 'name = "reserve-a-table-301"'
    )
    assert cases(path)[0]["quarantine"] == {"until": date(2099, 1, 1), "reason": "flaky"}


def test_pull_names_the_agent_when_the_file_has_another(tmp_path: Path, cli_env: Simulator) -> None:
    path = tmp_path / "cekura.toml"
    assert main(["pull", "--agent", "5", "--ids", "306", "--toml", str(path)]) == 0
    assert cases(path) == [{"name": "support-306", "scenario": 306, "agent": 5}]


def test_pull_refuses_an_id_of_another_agent_or_none(
    tmp_path: Path, cli_env: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cekura.toml"
    assert main(["pull", "--agent", "5", "--ids", "305,999", "--toml", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "pull: scenario 305 belongs to agent 6, not agent 5; scenario 999 does not exist on Cekura"
    ]
    assert not path.exists()


def test_check_passes_then_names_a_renamed_and_a_deleted_scenario(
    tmp_path: Path,
    cli_env: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "cekura.toml"
    path.write_text(TOP, encoding="utf-8")
    assert main([*PULL, "--toml", str(path)]) == 0
    assert main(["check", "--toml", str(path)]) == 0
    assert "check: " + str(path) + ": 2 case(s) match Cekura" in capsys.readouterr().out
    renamed = with_name(CATALOGUE, 301, "Reserve a table")
    with Simulator(renamed, api_key=API_KEY) as moved:
        monkeypatch.setenv("CEKURA_API_URL", moved.url)
        assert main(["check", "--toml", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"check: {path}: case book-a-table-301: scenario 301 is now named 'Reserve a table' "
        "(pull renames the case reserve-a-table-301)"
    ]
    deleted = [s for s in CATALOGUE if s.id != 302]
    with Simulator(deleted, api_key=API_KEY) as fewer:
        monkeypatch.setenv("CEKURA_API_URL", fewer.url)
        assert main(["check", "--toml", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"check: {path}: case book-a-table-302: scenario 302 no longer exists on Cekura"
    ]


def test_check_runs_as_a_module_and_needs_a_key(tmp_path: Path, sim: Simulator) -> None:
    path = tmp_path / "cekura.toml"
    path.write_text('agent = 6\n[[case]]\nname = "mine"\nscenario = 301\n', encoding="utf-8")
    env = {**os.environ, "CEKURA_API_URL": sim.url, "CEKURA_API_KEY": API_KEY}
    command = [sys.executable, "-m", "pytest_cekura_pipecat", "check", "--toml", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"check: {path}: case mine: scenario 301 belongs to agent 5, not agent 6"
    ]
    del env["CEKURA_API_KEY"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "check: CEKURA_API_KEY is not set: export your Cekura API key"
    ]


TRICKY = [
    "",
    "plain",
    'say "hi"',
    "back\\slash \\n not a newline",
    "".join(chr(c) for c in range(0x20)) + "\x7f",
    "tab\there, line\nbreak, cr\r",
    "Réserver une table — 予約 🍽️",
    "'''triple''' \"\"\"quotes\"\"\"",
    "# not a comment = [[case]]",
]


@pytest.mark.parametrize("text", TRICKY)
def test_the_toml_writer_round_trips_through_tomllib(text: str) -> None:
    written = toml_text.table("case", [("name", text), ("scenario", 7), ("marks", [text, "b"])])
    assert tomllib.loads(written) == {"case": [{"name": text, "scenario": 7, "marks": [text, "b"]}]}
    # tomli-w, an independent writer, spells a string that reads back the same.
    assert (
        tomllib.loads(tomli_w.dumps({"k": text}))["k"]
        == tomllib.loads(toml_text.pair("k", text))["k"]
    )


def test_the_toml_writer_replaces_a_lone_surrogate() -> None:
    assert tomllib.loads(toml_text.pair("k", "a\ud800b")) == {"k": "a\ufffdb"}
    assert tomllib.loads(toml_text.pair("odd key", True)) == {"odd key": True}


@pytest.mark.parametrize(
    "text",
    [
        'case = [{ scenario = 301, name = "x" }]\n',
        'notes = """\n[[case]]\n"""\n',
    ],
)
def test_pull_refuses_a_file_it_cannot_edit_safely(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        pull_into(text, [Listed(301, "Book a table", 5)], 5, "cekura.toml")
    assert info.value.problems[0].startswith("cekura.toml: ")


def test_a_tag_filter_without_tags_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["pull", "--agent", "5", "--tag-filter", "all"])
    assert info.value.code == 2
    assert "--tag-filter applies only with --tags" in capsys.readouterr().err

"""Cases chosen on Cekura by folder and tags (``[[select]]``), read once per session."""

from __future__ import annotations

import fnmatch
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import API_KEY, Suite, no_traceback

from pytest_cekura_pipecat._config.schema import TomlFile, read_file
from pytest_cekura_pipecat._config.select import Answer, Listed, case_name, entries, queries
from pytest_cekura_pipecat._errors import ConfigError
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

LIST = "/test_framework/v1/scenarios/"

CATALOGUE = [
    ScenarioScript(
        301, "Book a table", seconds=0.3, agent=5, folder_path="Booking/", tags=("smoke",)
    ),
    ScenarioScript(
        302, "Book a table", seconds=0.3, agent=5, folder_path="Booking/Late/", tags=("booking",)
    ),
    ScenarioScript(
        303, "Cancel a booking", seconds=0.3, agent=5, folder_path="Booking/", tags=("other",)
    ),
    ScenarioScript(
        304, "Bookings report", seconds=0.3, agent=5, folder_path="Bookingsx/", tags=("booking",)
    ),
    ScenarioScript(
        305, "Another agent's", seconds=0.3, agent=6, folder_path="Booking/", tags=("booking",)
    ),
    ScenarioScript(306, "Support", seconds=0.3, agent=5, folder_path="Support/", tags=("smoke",)),
]

SELECT = """
pipecat_room_url = "https://acme.daily.co/r"

[[select]]
agent = 5
folder_path = "Booking/"
tags = ["booking", "smoke"]
tag_filter_type = "any"
"""

CHOSEN = ["book-a-table-301", "book-a-table-302"]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(CATALOGUE, api_key=API_KEY) as simulator:
        yield simulator


def lists(suite: Suite) -> int:
    return len([r for r in suite.sim.requests if r.method == "GET" and r.path == LIST])


def names(suite: Suite) -> list[str]:
    return sorted(case.get("name", "") for case in suite.junit().iter("testcase"))


def test_a_folder_and_tags_select_exactly_their_scenarios(suite: Suite) -> None:
    suite.toml(SELECT)
    result = suite.run("-n", "0")
    result.assert_outcomes(passed=2)
    assert names(suite) == CHOSEN
    assert suite.sim.entries_fired() == 2
    assert lists(suite) == 1


def test_under_n2_the_workers_collect_the_same_items_from_one_request(suite: Suite) -> None:
    suite.toml(SELECT)
    result = suite.run("-n", "2")
    result.assert_outcomes(passed=2)
    assert names(suite) == CHOSEN
    assert suite.sim.entries_fired() == 2
    assert lists(suite) == 1


def test_an_explicit_case_wins_over_a_selected_one(suite: Suite) -> None:
    suite.toml(SELECT + '\n[[case]]\nname = "my-booking"\nscenario = 301\nrepeat = 2\n')
    result = suite.run("-n", "0")
    result.assert_outcomes(passed=2)
    assert names(suite) == ["book-a-table-302", "my-booking"]
    assert suite.sim.entries_fired() == 3


def test_a_select_table_gives_its_keys_to_each_case(suite: Suite) -> None:
    suite.toml(SELECT + 'repeat = 2\nmarks = ["smoke"]\n')
    result = suite.run("-n", "0", "-m", "smoke")
    result.assert_outcomes(passed=2)
    assert suite.sim.entries_fired() == 4


def test_collect_only_without_a_key_says_what_it_needs(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CEKURA_API_KEY")
    suite.toml(SELECT)
    result = suite.run("-n", "0", "--collect-only", "-q")
    assert result.ret != 0
    line = (
        "cekura.toml: [[select]] needs Cekura to list its scenarios and CEKURA_API_KEY is not "
        "set: export it (or write the cases into the file: python -m pytest_cekura_pipecat pull)"
    )
    assert line in result.outlines
    assert no_traceback(result.stdout.str())
    assert lists(suite) == 0


def test_collect_only_with_cekura_down_says_so_in_one_line(suite: Suite) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    suite.toml(SELECT)
    result = suite.run(
        "-n", "0", "--collect-only", "-q", f"--cekura-api-url=http://127.0.0.1:{port}"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "*cekura.toml: select #1: could not list scenarios (agent 5, folder 'Booking/', tags "
            "booking,smoke (any)): cannot connect to Cekura at http://127.0.0.1:*"
        ]
    )
    assert no_traceback(result.stdout.str())


def test_case_names_come_from_scenario_names() -> None:
    assert case_name("Book a table", 7) == "book-a-table-7"
    assert case_name("Réserver: [VIP] / soir", 8) == "réserver-vip-soir-8"
    assert case_name("???", 9) == "scenario-9"
    assert len(case_name("x" * 500, 10)) <= 63


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            'folder = "A/"',
            "cekura.toml: select #1: unknown key 'folder' (did you mean 'folder_path'?)",
        ),
        ('tags = ["a"]\ntag_filter_type = "some"', "cekura.toml: select #1: tag_filter_type: *"),
        (
            'tag_filter_type = "all"',
            "cekura.toml: select #1: tag_filter_type: applies only with tags",
        ),
        ('tags = ["a,b"]', "cekura.toml: select #1: tags: 'a,b' has a comma *"),
        ('tags = "a"', "cekura.toml: select #1: tags: *"),
        (
            "repeat = 2\nmin_passes = 3",
            "cekura.toml: select #1: min_passes: 3 is more than repeat (2)",
        ),
    ],
)
def test_a_select_table_is_checked_strictly(tmp_path: Path, table: str, line: str) -> None:
    path = tmp_path / "cekura.toml"
    path.write_text(f"[[select]]\nagent = 5\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_file(path, "cekura.toml")
    assert len(info.value.problems) == 1
    assert fnmatch.fnmatchcase(info.value.problems[0], line), info.value.problems


def _parsed(tmp_path: Path, text: str) -> TomlFile:
    path = tmp_path / "cekura.toml"
    path.write_text(text, encoding="utf-8")
    return read_file(path, "cekura.toml")


def test_two_tables_choosing_one_scenario_give_it_to_the_first(tmp_path: Path) -> None:
    parsed = _parsed(
        tmp_path,
        '[[case]]\nscenario = 3\n[[select]]\nagent = 5\ntags = ["a"]\nrepeat = 2\n'
        '[[select]]\nagent = 5\nfolder_path = "F/"\n',
    )
    first, second = chosen = queries(parsed, "cekura.toml", None)
    answers = {
        first: Answer((Listed(2, "Two", 5), Listed(1, "One", 5), Listed(3, "Three", 5))),
        second: Answer((Listed(2, "Two", 5), Listed(4, "Four", 5))),
    }
    got = entries(parsed, chosen, answers, "cekura.toml")
    assert [(e.name, e.scenario, e.repeat, e.agent) for e in got] == [
        ("one-1", 1, 2, 5),
        ("two-2", 2, 2, 5),
        ("four-4", 4, 1, 5),
    ]
    assert Answer.from_json(answers[first].to_json()) == answers[first]
    assert Answer.from_json("{") is None


def test_a_table_needs_an_agent_from_somewhere(tmp_path: Path) -> None:
    parsed = _parsed(tmp_path, '[[select]]\ntags = ["a"]\n')
    with pytest.raises(ConfigError) as info:
        queries(parsed, "cekura.toml", None)
    assert info.value.problems == [
        "cekura.toml: select #1: agent: required (set it in the table, at the top of the "
        "file, or with the cekura_agent ini key)"
    ]
    assert queries(parsed, "cekura.toml", 9)[0].agent == 9
    failed = {queries(parsed, "cekura.toml", 9)[0]: Answer(problem="no answer")}
    with pytest.raises(ConfigError, match=r"^cekura.toml: select #1: no answer$"):
        entries(parsed, list(failed), failed, "cekura.toml")

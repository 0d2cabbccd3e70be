"""The conversation as data (issue 33 item 1): ``cekura_run.turns``, tool calls, the figures
derived from the turns, and assertions whose failure names the turn."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers import API_KEY, Suite

from pytest_cekura_pipecat import (
    CekuraRun,
    NoConversation,
    ToolCall,
    assert_first_word_within,
    assert_tool_called,
    assert_tool_not_called,
    first_word_ms,
    interruptions,
    response_latencies_ms,
)
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

# As Cekura's webhook examples show a conversation: seconds from the start of the call.
TURNS = [
    {"role": "Main Agent", "content": "Hello, Luigi's.", "start_time": 1.2, "end_time": 2.0},
    {
        "role": "Testing Agent",
        "content": "A table for two at eight?",
        "start_time": 2.4,
        "end_time": 4.0,
    },
    {"role": "Main Agent", "content": "Let me check.", "start_time": 4.9, "end_time": 5.5},
    {
        "role": "Main Agent",
        "content": "Booked.",
        "start_time": 6.0,
        "end_time": 6.8,
        "tool_calls": [
            {"name": "book_table", "arguments": {"party_size": 2, "time": "20:00"}, "result": "ok"}
        ],
    },
    {"role": "Testing Agent", "content": "Thanks!", "start_time": 6.5, "end_time": 7.0},
]


def run_with(turns: object, *, raw: bool = False) -> CekuraRun:
    if raw:
        return CekuraRun(
            scenario_id=101, status="completed", run_id=9, raw={"transcript_object": turns}
        )
    return CekuraRun(scenario_id=101, status="completed", run_id=9, conversation=json.dumps(turns))


def test_turns_and_tool_calls() -> None:
    run = run_with(TURNS)
    turns = run.turns
    assert [t.speaker for t in turns] == ["agent", "caller", "agent", "agent", "caller"]
    assert turns[3].tool_calls[0] == ("book_table", {"party_size": 2, "time": "20:00"})
    assert turns[3].tool_calls[0].result == "ok"
    name, arguments = turns[3].tool_calls[0]
    assert (name, arguments["party_size"]) == ("book_table", 2)
    assert (turns[0].start, turns[0].end) == (1.2, 2.0)


def test_the_published_shape_and_arguments_as_json_text() -> None:
    published = [
        {"role": "assistant", "content": "Hi", "timestamp": 0.5},
        {"role": "user", "content": "Book it"},
        {
            "role": "assistant",
            "content": "Done",
            "tool_calls": [{"name": "book_table", "arguments": '{"party_size": 4}'}],
        },
    ]
    run = run_with(published, raw=True)
    assert first_word_ms(run) == 500
    assert run.turns[2].tool_calls == (ToolCall("book_table", {"party_size": 4}),)


def test_figures() -> None:
    run = run_with(TURNS)
    assert first_word_ms(run) == pytest.approx(1200)
    latencies = response_latencies_ms(run)
    assert [(t.index, round(ms)) for t, ms in latencies] == [(2, 900)]
    assert [t.index for t in interruptions(run)] == [4]  # the caller spoke over turn 3


def test_assertions_name_the_turn() -> None:
    run = run_with(TURNS)
    assert assert_tool_called(run, "book_table", party_size=2).result == "ok"
    with pytest.raises(AssertionError, match=r"^turn 3: book_table called with party_size=2$"):
        assert_tool_called(run, "book_table", party_size=3)
    with pytest.raises(
        AssertionError,
        match=r"cancel_table was never called \(tools called: book_table at turn 3\)",
    ):
        assert_tool_called(run, "cancel_table")
    with pytest.raises(
        AssertionError, match=r"book_table was called: turn 3: book_table\(party_size=2"
    ):
        assert_tool_not_called(run, "book_table")
    assert_tool_not_called(run, "cancel_table")
    assert assert_first_word_within(run, 1500) == pytest.approx(1200)
    with pytest.raises(AssertionError, match="first agent word after 1,200 ms"):
        assert_first_word_within(run, 1000)


def test_no_transcript_object_is_a_clear_error() -> None:
    run = CekuraRun(scenario_id=101, status="completed", run_id=9)
    with pytest.raises(NoConversation, match=r"run 9 \(scenario 101\) has no transcript_object"):
        _ = run.turns
    assert run_with([]).turns == ()  # an empty conversation is known: no turns


@pytest.fixture
def sim() -> Iterator[Simulator]:
    script = ScenarioScript(101, "Books a table", "pass", 0.3, turns=tuple(TURNS))
    with Simulator([script], api_key=API_KEY) as simulator:
        yield simulator


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_marked_test_reads_the_conversation(suite: Suite, workers: str) -> None:
    suite.pytester.makepyfile(
        test_bot="""
        import pytest
        from pytest_cekura_pipecat import assert_tool_called, first_word_ms

        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_books(cekura_run):
            assert cekura_run.turns[3].tool_calls[0] == ("book_table", {"party_size": 2, "time": "20:00"})
            assert first_word_ms(cekura_run) == 1200
            assert_tool_called(cekura_run, "book_table", party_size=2)

        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_wrong_party(cekura_run):
            assert_tool_called(cekura_run, "book_table", party_size=3)
        """
    )
    result = suite.run("-n", workers)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: turn 3: book_table called with party_size=2*"])

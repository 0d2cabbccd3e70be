"""A run's conversation as data: turns, tool calls, the figures derived from them, and small
assertions whose failure names the turn.

Cekura sends the conversation as ``transcript_object``, a list of turns. Its published schema
gives ``{"role", "content", "timestamp"}``; its webhook examples give ``{"role": "Testing
Agent" | "Main Agent", "content", "start_time", "end_time"}`` with times in seconds from the
start of the call. Both are read. Tool calls are not fixed by the published schema: an agent
turn's ``"tool_calls": [{"name", "arguments", "result"}]`` is read (``arguments`` an object
or its JSON text), here and nowhere else. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .._errors import CekuraError

Speaker = Literal["agent", "caller", "other"]

# Who speaks, by the names Cekura and common transcripts use (lower case).
_AGENT = frozenset({"main agent", "agent", "assistant", "bot", "ai"})
_CALLER = frozenset({"testing agent", "caller", "user", "customer", "human", "tester"})


class NoConversation(CekuraError):
    """The run carries no ``transcript_object``: its conversation is unknown (never "no
    turns")."""


@dataclass(frozen=True, eq=False)
class ToolCall:
    """One tool the agent called: compares equal to the tuple ``(name, arguments)``."""

    name: str
    arguments: Mapping[str, Any]
    result: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.name, self.arguments))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ToolCall):
            return (self.name, dict(self.arguments), self.result) == (
                other.name,
                dict(other.arguments),
                other.result,
            )
        if isinstance(other, tuple):
            return (self.name, dict(self.arguments)) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # arguments are a mapping

    def shown(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.name}({args})"


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation. ``index`` is its place in ``transcript_object`` (0
    first); times are seconds from the start of the call, None when Cekura gave none."""

    index: int
    speaker: Speaker
    role: str  # as Cekura wrote it
    text: str
    start: float | None = None
    end: float | None = None
    tool_calls: tuple[ToolCall, ...] = field(default=())

    @property
    def is_agent(self) -> bool:
        return self.speaker == "agent"


def _speaker(role: str) -> Speaker:
    name = role.strip().lower()
    if name in _AGENT:
        return "agent"
    if name in _CALLER:
        return "caller"
    return "other"


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _arguments(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"": value}
    return dict(value) if isinstance(value, Mapping) else {}


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    if not isinstance(value, list):
        return ()
    calls = []
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            calls.append(
                ToolCall(item["name"], _arguments(item.get("arguments")), item.get("result"))
            )
    return tuple(calls)


def _turn(index: int, item: Mapping[str, Any]) -> Turn:
    role = item.get("role")
    role = role if isinstance(role, str) else ""
    text = item.get("content")
    start = _seconds(item.get("start_time"))
    if start is None:
        start = _seconds(item.get("timestamp"))
    if start is None:
        start = _seconds(item.get("time"))
    return Turn(
        index=index,
        speaker=_speaker(role),
        role=role,
        text=text if isinstance(text, str) else "",
        start=start,
        end=_seconds(item.get("end_time")),
        tool_calls=_tool_calls(item.get("tool_calls")),
    )


def parse_turns(data: Any) -> tuple[Turn, ...] | None:
    """The turns of a ``transcript_object``; None when it is absent or not a list (an
    item that is not an object is skipped, its index kept)."""
    if not isinstance(data, list):
        return None
    return tuple(_turn(i, item) for i, item in enumerate(data) if isinstance(item, Mapping))


class CekuraRun(Protocol):
    """What the figures and assertions read of a run (``_api.run.CekuraRun`` has it)."""

    @property
    def run_id(self) -> int | None: ...
    @property
    def scenario_id(self) -> int: ...
    def turns_or_none(self) -> tuple[Turn, ...] | None: ...


def conversation_of(run: CekuraRun) -> tuple[Turn, ...]:
    """``run.turns``: raises ``NoConversation`` naming the run when Cekura sent none."""
    turns = run.turns_or_none()
    if turns is None:
        raise NoConversation(
            f"run {run.run_id} (scenario {run.scenario_id}) has no transcript_object: Cekura "
            "sent no conversation for it (a call that never connected, or a run read before "
            "its end)"
        )
    return turns


# -- figures -------------------------------------------------------------------------------


def first_word_ms(run: CekuraRun) -> float | None:
    """Milliseconds from the start of the call to the agent's first turn (None: no agent
    turn with a time)."""
    for turn in conversation_of(run):
        if turn.is_agent and turn.start is not None:
            return round(turn.start * 1000, 3)
    return None


def response_latencies_ms(run: CekuraRun) -> list[tuple[Turn, float]]:
    """Each agent turn that answers a caller turn, with the time from the end of the
    caller's turn to the start of the agent's, in milliseconds (turns without times are
    left out)."""
    out: list[tuple[Turn, float]] = []
    previous: Turn | None = None
    for turn in conversation_of(run):
        caller_end = previous.end if previous is not None and previous.speaker == "caller" else None
        if turn.is_agent and caller_end is not None and turn.start is not None:
            out.append((turn, round((turn.start - caller_end) * 1000, 3)))
        if turn.speaker != "other":
            previous = turn
    return out


def interruptions(run: CekuraRun) -> list[Turn]:
    """Turns that started before the other speaker's previous turn ended (where both
    times are known)."""
    out: list[Turn] = []
    previous: Turn | None = None
    for turn in conversation_of(run):
        if turn.speaker == "other":
            continue
        if (
            previous is not None
            and previous.speaker != turn.speaker
            and previous.end is not None
            and turn.start is not None
            and turn.start < previous.end
        ):
            out.append(turn)
        previous = turn
    return out


# -- assertions ----------------------------------------------------------------------------


def _calls(run: CekuraRun, name: str) -> list[tuple[Turn, ToolCall]]:
    return [(t, c) for t in conversation_of(run) for c in t.tool_calls if c.name == name]


def _mismatch(call: ToolCall, expected: Mapping[str, Any]) -> list[str]:
    missing = object()
    shown = []
    for key, want in expected.items():
        got = call.arguments.get(key, missing)
        if got is missing:
            shown.append(f"no {key}")
        elif got != want:
            shown.append(f"{key}={got!r}")
    return shown


def assert_tool_called(run: CekuraRun, name: str, /, **arguments: Any) -> ToolCall:
    """Assert the agent called ``name`` with at least these arguments; returns the call.
    The failure names each turn that called it with other arguments, or the tools that
    were called."""
    calls = _calls(run, name)
    for _, call in calls:
        if not _mismatch(call, arguments):
            return call
    if calls:
        lines = [
            f"turn {t.index}: {name} called with {', '.join(_mismatch(c, arguments))}"
            for t, c in calls
        ]
        raise AssertionError("; ".join(lines))
    others = [f"{c.name} at turn {t.index}" for t in conversation_of(run) for c in t.tool_calls]
    called = ", ".join(others) if others else "none"
    raise AssertionError(f"{name} was never called (tools called: {called})")


def assert_tool_not_called(run: CekuraRun, name: str) -> None:
    """Assert the agent never called ``name``; the failure names the turns that did."""
    calls = _calls(run, name)
    if calls:
        shown = "; ".join(f"turn {t.index}: {c.shown()}" for t, c in calls)
        raise AssertionError(f"{name} was called: {shown}")


def assert_first_word_within(run: CekuraRun, ms: float) -> float:
    """Assert the agent's first turn started within ``ms`` of the call's start."""
    measured = first_word_ms(run)
    if measured is None:
        raise AssertionError("the agent never spoke with a time Cekura gave (no first word)")
    if measured > ms:
        raise AssertionError(f"first agent word after {measured:,.0f} ms (at most {ms:,.0f} ms)")
    return measured


def tool_calls(turns: Sequence[Turn]) -> list[ToolCall]:
    """Every tool call of these turns, in order."""
    return [call for turn in turns for call in turn.tool_calls]

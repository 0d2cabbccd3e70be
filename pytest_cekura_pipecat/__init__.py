"""pytest-cekura-pipecat: Cekura voice-agent evaluations of Pipecat bots as pytest items."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config.case import Case, Room
from ._errors import (
    ApiError,
    AuthError,
    CekuraError,
    ConfigError,
    CreditError,
    FateUnknown,
    NotEvaluated,
    StartRejected,
    Unreachable,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._api.conversation import (
        NoConversation,
        ToolCall,
        Turn,
        assert_first_word_within,
        assert_tool_called,
        assert_tool_not_called,
        first_word_ms,
        interruptions,
        response_latencies_ms,
    )
    from ._api.run import CekuraRun, ExpectedOutcomeResult, MetricResult

# The verdict types pull in pydantic (through .models); the pytest plugin imports this
# package in every pytest run, so they are loaded on first use, not here.
_LAZY = frozenset({"CekuraRun", "ExpectedOutcomeResult", "MetricResult"})
_CONVERSATION = frozenset(
    {
        "NoConversation",
        "ToolCall",
        "Turn",
        "assert_first_word_within",
        "assert_tool_called",
        "assert_tool_not_called",
        "first_word_ms",
        "interruptions",
        "response_latencies_ms",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ._api import run

        return getattr(run, name)
    if name in _CONVERSATION:
        from ._api import conversation

        return getattr(conversation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ApiError",
    "AuthError",
    "Case",
    "CekuraError",
    "CekuraRun",
    "ConfigError",
    "CreditError",
    "ExpectedOutcomeResult",
    "FateUnknown",
    "MetricResult",
    "NoConversation",
    "NotEvaluated",
    "Room",
    "StartRejected",
    "ToolCall",
    "Turn",
    "Unreachable",
    "__version__",
    "assert_first_word_within",
    "assert_tool_called",
    "assert_tool_not_called",
    "first_word_ms",
    "interruptions",
    "response_latencies_ms",
]

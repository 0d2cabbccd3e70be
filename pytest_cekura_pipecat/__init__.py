"""pytest-cekura-pipecat: Cekura voice-agent evaluations of Pipecat bots as pytest items."""

from __future__ import annotations

__version__ = "0.1.0"

from .case import Case, Room
from .errors import (
    ApiError,
    AuthError,
    CekuraError,
    ConfigError,
    CreditError,
    FateUnknown,
    StartRejected,
    Unreachable,
)
from .verdict import CekuraRun, ExpectedOutcomeResult, MetricResult

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
    "Room",
    "StartRejected",
    "Unreachable",
    "__version__",
]

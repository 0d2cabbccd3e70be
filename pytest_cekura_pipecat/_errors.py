"""The plugin's exceptions. Each one's ``str()`` is a single line a user can act on."""

from __future__ import annotations


class CekuraError(Exception):
    """Base class: anything the plugin raises on purpose."""


class ConfigError(CekuraError):
    """A ``cekura.toml``, marker or option is invalid. Carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ApiError(CekuraError):
    """Cekura answered in a way that ends a request for good."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AuthError(ApiError):
    """401/403: the API key was rejected. Systemic: nothing else can succeed."""


class CreditError(ApiError):
    """402, or a 400 that says so: the account cannot pay for more runs. Systemic."""


class StartRejected(ApiError):
    """400 on a start request. ``by_entry`` maps an entry index of the batch to its messages;
    ``general`` holds the messages that name no entry."""

    def __init__(
        self,
        message: str,
        status: int,
        by_entry: dict[int, list[str]],
        general: list[str],
    ) -> None:
        self.by_entry = by_entry
        self.general = general
        super().__init__(message, status)


class FateUnknown(ApiError):
    """A start request went out and no usable answer came back: its runs may exist.
    ``reason`` says what went wrong, in a few words ("HTTP 500")."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        self.reason = reason or message
        super().__init__(message, status)


class Unreachable(ApiError):
    """Transient failures lasted longer than the retry window."""


class NotSent(ApiError):
    """A request that provably never left this machine (httpx refused to build it)."""


class NotEvaluated(CekuraError):
    """A case that could not be evaluated (nothing fired, the run errored, Cekura or the
    configuration failed): the test errors, it does not fail. Not an ``AssertionError``, so
    reporters such as allure-pytest classify it as broken rather than failed."""


# Shown as ``pytest_cekura_pipecat.NotEvaluated`` in reports: where users import it from.
NotEvaluated.__module__ = "pytest_cekura_pipecat"

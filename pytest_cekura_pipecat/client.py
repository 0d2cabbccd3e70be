"""The one place that knows Cekura's URLs, headers and retry policy.

GETs are idempotent: 408, 429, 5xx, connection errors and non-JSON bodies are retried with
exponential backoff and jitter (``Retry-After`` honoured) for ``retry_window`` seconds.

A start POST is retried only when it provably did not take effect: the connection was never
made, or the server answered 429. Any other failure after the body may have gone out is
final (``FateUnknown``): Cekura may already have placed and billed every call of the batch,
so re-sending would place them twice. There is deliberately no switch to change that.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from .errors import ApiError, AuthError, CreditError, FateUnknown, StartRejected, Unreachable
from .models import Agent, Result, Run
from .redact import Redactor

DEFAULT_API_URL = "https://api.cekura.ai"
START_PATH = "/test_framework/v1/scenarios/run_scenarios_pipecat/"
_ENTRY_KEY = re.compile(r"^scenarios\[(\d+)\](?:\.(.+))?$")
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")


@dataclass(frozen=True)
class HttpPolicy:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retry_window: float = 150.0
    max_backoff: float = 15.0


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        return [m for item in value for m in _messages(item)]
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages(v)]
    return [str(value)] if value not in (None, "") else []


def parse_rejection(body: Any) -> tuple[dict[int, list[str]], list[str]]:
    """A 400 body in any documented shape -> (messages by entry index, other messages)."""
    by_entry: dict[int, list[str]] = {}
    general: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            match = _ENTRY_KEY.match(str(key))
            if match:
                index, field = int(match.group(1)), match.group(2)
                by_entry.setdefault(index, []).extend(
                    f"{field}: {m}" if field else m for m in _messages(value)
                )
            elif (
                key == "scenarios"
                and isinstance(value, list)
                and any(isinstance(item, dict) for item in value)
            ):
                # DRF's nested form: one dict of field errors per entry.
                for index, item in enumerate(value):
                    if item:
                        by_entry.setdefault(index, []).extend(_messages(item))
            else:
                general.extend(f"{key}: {m}" for m in _messages(value))
    else:
        general.extend(_messages(body))
    return by_entry, general


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%SZ")


class CekuraClient:
    """A synchronous client; safe to share between threads (httpx.Client is)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        redactor: Redactor,
        policy: HttpPolicy = HttpPolicy(),
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        from . import __version__

        redactor.add(api_key)
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.simulated = False
        self._redact = redactor
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "X-CEKURA-API-KEY": api_key,
                "Accept": "application/json",
                "User-Agent": f"pytest-cekura-pipecat/{__version__}",
            },
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # -- retry machinery -------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.max_backoff * 4)
        backoff = wait_exponential_jitter(initial=0.5, max=self.policy.max_backoff, jitter=0.5)
        return float(backoff(state))

    def _retrying(self, what: str, attempt: Callable[[], _T]) -> _T:
        since = _stamp()
        last: list[str] = []

        def record(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            last[:] = [str(exc)]

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=self._wait,
            stop=stop_after_delay(self.policy.retry_window),
            sleep=self._sleep,
            before_sleep=record,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as exc:
            raise Unreachable(
                f"Cekura unreachable since {since} ({what}): last error {exc}"
            ) from None

    def _check_auth(self, response: httpx.Response) -> None:
        if response.headers.get("x-cekura-simulator"):
            self.simulated = True
        if response.status_code in (401, 403):
            raise AuthError(
                f"Cekura rejected the API key (HTTP {response.status_code}): check CEKURA_API_KEY",
                response.status_code,
            )

    # -- GET -------------------------------------------------------------------------------

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        def attempt() -> Any:
            try:
                response = self._http.get(path, params=params)
            except httpx.TransportError as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from None
            self._check_auth(response)
            status = response.status_code
            if status == 408 or status == 429 or status >= 500:
                raise _Transient(
                    f"HTTP {status}", parse_retry_after(response.headers.get("retry-after"))
                )
            if status == 404:
                raise ApiError(f"Cekura has no {path} (HTTP 404)", status)
            if status >= 400:
                body = self._redact(str(_json_or_text(response)))
                raise ApiError(f"Cekura refused GET {path} (HTTP {status}): {body}", status)
            try:
                return response.json()
            except ValueError:
                raise _Transient(f"HTTP {status} with a body that is not JSON") from None

        return self._retrying(f"GET {path}", attempt)

    def _validate(self, model: type[_M], data: Any, what: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(body)"
            raise ApiError(f"Cekura's {what} could not be read: {field}: {first['msg']}") from None

    def result_json(self, result_id: int) -> Any:
        return self._get_json(f"/test_framework/v1/results/{result_id}/")

    def parse_result(self, data: Any, result_id: int) -> Result:
        return self._validate(Result, data, f"result {result_id}")

    def bulk_runs(self, run_ids: list[int]) -> list[Run]:
        data = self._get_json(
            "/test_framework/v1/runs/bulk/", {"run_ids": ",".join(str(i) for i in run_ids)}
        )
        if isinstance(data, dict):
            data = data.get("results", data.get("runs", []))
        if not isinstance(data, list):
            raise ApiError("Cekura's runs/bulk answer is not a list")
        return [self._validate(Run, item, "run") for item in data]

    def agent(self, agent_id: int) -> Agent:
        return self._validate(
            Agent, self._get_json(f"/test_framework/v1/aiagents/{agent_id}/"), "agent"
        )

    # -- POST ------------------------------------------------------------------------------

    def start_runs(self, body: dict[str, Any]) -> Result:
        """Fire one batch. Raises FateUnknown when runs may exist but no answer says so."""
        entries = len(body.get("scenarios", []))

        def unknown(reason: str, status: int | None = None) -> NoReturn:
            raise FateUnknown(
                f"the start request for {entries} run(s) failed after it was sent ({reason}): "
                "runs may already exist and were not re-sent, to avoid placing and billing them "
                f"twice; check the agent's results on the Cekura dashboard (request at {_stamp()})",
                status,
            )

        def attempt() -> Result:
            try:
                # A fresh connection: a stale keep-alive socket must not turn into an
                # ambiguous failure of a request that never left.
                response = self._http.post(START_PATH, json=body, headers={"Connection": "close"})
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from None
            except httpx.TransportError as exc:
                unknown(type(exc).__name__)
            self._check_auth(response)
            status = response.status_code
            if status == 429:
                raise _Transient(
                    "HTTP 429", parse_retry_after(response.headers.get("retry-after")) or 1.0
                )
            if status == 402:
                raise CreditError(
                    f"Cekura refused to start runs: insufficient credit (HTTP 402): "
                    f"{self._redact(str(_json_or_text(response)))}",
                    status,
                )
            if status == 400:
                self._reject(response)
            if status == 404:
                raise ApiError(
                    f"Cekura has no {START_PATH} at {self.base_url} (HTTP 404): "
                    "check --cekura-api-url / CEKURA_API_URL",
                    status,
                )
            if status not in (200, 201):
                unknown(f"HTTP {status}", status)
            try:
                data = response.json()
            except ValueError:
                unknown(f"HTTP {status} with a body that is not JSON", status)
            try:
                return Result.model_validate(data)
            except ValidationError:
                unknown(f"HTTP {status} with a body that is not a result", status)

        return self._retrying("start runs", attempt)

    def _reject(self, response: httpx.Response) -> NoReturn:
        body = _json_or_text(response)
        by_entry, general = parse_rejection(body)
        text = self._redact("; ".join(general + [m for ms in by_entry.values() for m in ms]))
        if "credit" in text.lower() or "balance" in text.lower():
            raise CreditError(f"Cekura refused to start runs: insufficient credit: {text}", 400)
        raise StartRejected(
            f"Cekura rejected the start request (HTTP 400): {text}",
            400,
            {i: [self._redact(m) for m in ms] for i, ms in by_entry.items()},
            [self._redact(m) for m in general],
        )

    def end_calls(self, result_id: int, timeout: float = 5.0) -> bool:
        """Best effort: end every live call of a result. True when Cekura said yes."""
        return self._best_effort(f"/test_framework/v1/results/{result_id}/end_calls/", timeout)

    def end_call(self, run_id: int, timeout: float = 5.0) -> bool:
        return self._best_effort(f"/test_framework/v1/runs-external/{run_id}/end_call/", timeout)

    def _best_effort(self, path: str, timeout: float) -> bool:
        try:
            response = self._http.post(path, timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.is_success

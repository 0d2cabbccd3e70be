"""The one place that knows Cekura's URLs, headers and what each HTTP failure means.

Every request has a total deadline (connect, send and the whole body) and a body size cap, so
no server can hang the session by dripping bytes. One function, ``classify``, decides for each
failure whether it is transient (worth another try), and whether a start request may have
reached Cekura.

A start POST is retried only when it provably did not take effect: nothing was sent, or the
server answered 429. Any other failure after the request may have gone out is final
(``FateUnknown``): Cekura may already have placed and billed every call of the batch, so
re-sending would place them twice. There is deliberately no switch to change that.

Reads (results, runs) are made one attempt at a time: the watcher owns the schedule, so an
outage costs one retry window for the whole session, not one per case. The client remembers
since when its requests have been failing, whichever made them: a start request made while
an outage is already under way has only the rest of that window, not a new one.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential, wait_random

from .._errors import (
    ApiError,
    AuthError,
    CreditError,
    FateUnknown,
    NotSent,
    StartRejected,
    Unreachable,
)
from .._redact import Redactor
from .._text import loads
from .._version import __version__
from .catalogue import Billing, Scenario
from .models import Agent, ListedResult, Result, RunDetails

DEFAULT_API_URL = "https://api.cekura.ai"
API_VERSION = "v1"  # the version of Cekura's API the plugin is built around (reports say it)
START_PATH = "/test_framework/v1/scenarios/run_scenarios_pipecat/"
AGENT_PATH = "/test_framework/v1/aiagents/{}/"
SCENARIO_PATH = "/test_framework/v1/scenarios/{}/"
SCENARIOS_PATH = "/test_framework/v1/scenarios/"
BILLING_PATH = "/test_framework/billing/info/"
_MAX_PAGES = 1000  # of a scenario list, 100 scenarios a page: 100,000 scenarios at most
_PAGES_AT_ONCE = 4  # pages of a scenario list read at once, once the first gave the count
RESULTS_PATH = "/test_framework/v2/results/"
MAX_BODY = 32 * 1024 * 1024
_V2_GONE_AFTER = 2  # v2 misses in a row, each answered on v1, that move an endpoint to v1
_ENTRY_KEY = re.compile(r"^scenarios\[(\d+)\](?:\.(.+))?$")
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")


@dataclass(frozen=True)
class HttpPolicy:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # also the total deadline of one request
    retry_window: float = 150.0
    max_backoff: float = 15.0
    max_body: int = MAX_BODY
    slow_notice: float = 5.0  # seconds without a first answer before saying so


class Transient(Exception):
    """A failure worth another try. ``sent`` is False when the request provably never left;
    ``unconnected`` is True when no connection could be made at all (refused, DNS, TLS)."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        *,
        sent: bool = True,
        unconnected: bool = False,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.sent = sent
        self.unconnected = unconnected


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds to wait: ASCII delta-seconds or an HTTP date; else None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), 3600.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    try:
        return max(0.0, min(when.timestamp() - now(), 3600.0))
    except (OverflowError, ValueError, OSError):
        return None


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


def _stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%SZ")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` for anything that is not (RecursionError too)."""
        try:
            return loads(self.body)  # the boundary: lone surrogates become U+FFFD
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", "replace")


def classify(answer: Answer) -> Transient | None:
    """Transient statuses (408, 429, 5xx); None for an answer to act on."""
    status = answer.status
    if status == 408 or status == 429 or status >= 500:
        return Transient(f"HTTP {status}", parse_retry_after(answer.headers.get("retry-after")))
    return None


def _transient(exc: httpx.HTTPError, sent: bool) -> Transient:
    """A failed exchange: nothing reached the server when no connection (or none from the
    pool) was had; otherwise, whether the request's headers had begun to go."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Transient(text, sent=False, unconnected=True)
    if isinstance(exc, httpx.PoolTimeout):
        return Transient(text, sent=False)
    return Transient(text, sent=sent)


class CekuraClient:
    """An asyncio client; every method is one request (``start_runs`` and ``agent`` retry
    within the retry window where that is safe)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        redactor: Redactor,
        policy: HttpPolicy = HttpPolicy(),
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        notice: Callable[[str], None] | None = None,
        url_source: str = "",
    ) -> None:
        redactor.add(api_key)
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.simulated = False
        # Reads whose v2 path is gone, by endpoint ("results", "runs/bulk"): read on v1 for
        # the rest of the session. A v2 404 that v1 answers counts as evidence; only
        # ``_V2_GONE_AFTER`` of them in a row move an endpoint to v1 (a new result may
        # answer 404 at first, on v2 and v1 alike).
        self.v1_reads: set[str] = set()
        self._v2_misses: dict[str, int] = {}
        self._redact = redactor
        self._sleep = sleep
        self._notice = notice
        self._url_source = url_source
        self._answered = False  # a first complete answer: the host is reachable
        # (monotonic, wall-clock stamp) of the first of the failures in a row, of any request
        self._failing: tuple[float, str] | None = None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "X-CEKURA-API-KEY": api_key,
                "Accept": "application/json",
                "User-Agent": f"pytest-cekura-pipecat/{__version__}",
            },
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _trouble(self, what: str) -> None:
        """Until the host has answered once, say at once that it is slow to answer (where the
        URL came from, how long a request may take), so a black-holed host is not silent."""
        if self._answered or self._notice is None:
            return
        source = f" (set by {self._url_source})" if self._url_source else ""
        self._notice(
            self._redact(
                f"cekura: Cekura at {self.base_url}{source} has not answered {what}; still "
                f"waiting, up to {self.policy.read_timeout:g} s a request (--cekura-http-timeout)"
            )
        )

    def never_reached(self, what: str) -> str:
        """Why the session stops when the host has never answered and a connection could not
        even be made: a mistyped host is not an outage worth a retry window."""
        source = f" (set by {self._url_source})" if self._url_source else ""
        return (
            f"cannot connect to Cekura at {self.base_url}{source}: {what}; it has not answered "
            "once in this session, so nothing is retried or fired: check the URL"
        )

    def url(self, path: str) -> str:
        """The full URL of a path, the configured base (and its own path) included."""
        return self.base_url + path

    # -- one request -----------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        total: float | None = None,
        fresh: bool = False,
    ) -> Answer:
        """One request with a total deadline and a size cap. Raises ``Transient`` (with
        ``sent`` False only when nothing can have reached the server)."""
        sent = False

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            nonlocal sent
            if event.endswith("send_request_headers.started"):
                sent = True

        total = self.policy.read_timeout if total is None else total
        headers = {"Connection": "close"} if fresh else None
        slow = self._slow_timer(method, path)
        try:
            async with asyncio.timeout(total):
                async with self._http.stream(
                    method,
                    path,
                    params=params,
                    json=body,
                    headers=headers,
                    extensions={"trace": trace},
                ) as response:
                    answer = await self._body(response, method, path)
        except TimeoutError:
            self._failed()
            raise Transient(
                f"no complete answer to {method} {self.url(path)} within {total:g} s", sent=sent
            ) from None
        except Transient:
            self._failed()
            raise
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise self._not_sent(exc, method, path) from None
        except httpx.HTTPError as exc:
            self._failed()
            raise _transient(exc, sent) from None
        finally:
            if slow is not None:
                slow.cancel()
        if classify(answer) is None:
            self._failing = None
        else:
            self._failed()
        return answer

    def _slow_timer(self, method: str, path: str) -> asyncio.TimerHandle | None:
        """Until the host has answered once, a request slower than the slow notice says so."""
        if self._answered or self._notice is None:
            return None
        return asyncio.get_running_loop().call_later(
            self.policy.slow_notice,
            self._trouble,
            f"{method} {path} within {self.policy.slow_notice:g} s",
        )

    async def _body(self, response: httpx.Response, method: str, path: str) -> Answer:
        """The whole answer, within the size cap."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self.policy.max_body:
                raise Transient(
                    f"the answer to {method} {self.url(path)} is larger than "
                    f"{self.policy.max_body // (1024 * 1024)} MiB"
                )
            chunks.append(chunk)
        if response.headers.get("x-cekura-simulator"):
            self.simulated = True
        self._answered = True
        return Answer(response.status_code, response.headers, b"".join(chunks))

    def _not_sent(self, exc: Exception, method: str, path: str) -> NotSent:
        """httpx refused to build the request (a header value with a newline, a bad URL):
        not a byte left this machine. A bad header can only be the API key (the one header a
        user sets), and httpx quotes it escaped, where redaction cannot see it."""
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, httpx.LocalProtocolError) and "header" in str(exc).lower():
            reason = "CEKURA_API_KEY is not a valid HTTP header value (a newline in it?)"
        return NotSent(self._redact(f"{method} {self.url(path)} was not sent: {reason}"))

    def _failed(self) -> None:
        if self._failing is None:
            self._failing = (time.monotonic(), _stamp())

    def _check_auth(self, answer: Answer) -> None:
        if answer.status in (401, 403):
            raise AuthError(
                f"Cekura rejected the API key (HTTP {answer.status}): check CEKURA_API_KEY",
                answer.status,
            )

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """One GET: JSON, or ``Transient``/``ApiError`` (404 raises ``ApiError`` status 404)."""
        return self._json(await self._get(path, params))

    @staticmethod
    def _json(answer: Answer) -> Any:
        try:
            return answer.json()
        except ValueError as exc:
            raise Transient(f"HTTP {answer.status} with a body that is not JSON ({exc})") from None

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Answer:
        """One GET that succeeded, or ``Transient``/``ApiError`` (404: status 404)."""
        answer = await self._send("GET", path, params=params)
        self._check_auth(answer)
        transient = classify(answer)
        if transient is not None:
            raise transient
        if answer.status == 404:
            raise ApiError(f"Cekura has no {self.url(path)} (HTTP 404)", 404)
        if answer.status >= 400:
            text = self._redact(answer.text())
            raise ApiError(
                f"Cekura refused GET {self.url(path)} (HTTP {answer.status}): {text}",
                answer.status,
            )
        return answer

    async def _read(
        self, endpoint: str, tail: str, params: Mapping[str, str] | None = None
    ) -> Answer:
        """A read on v2; if v2 answers 404 or 405, the same read on v1. An endpoint moves
        to v1 for the session only once v2 has been missing while v1 answered, several
        times in a row."""
        if endpoint in self.v1_reads:
            return await self._get(f"/test_framework/v1/{tail}", params)
        try:
            answer = await self._get(f"/test_framework/v2/{tail}", params)
        except ApiError as exc:
            if exc.status not in (404, 405):
                raise
            answer = await self._get(f"/test_framework/v1/{tail}", params)
            misses = self._v2_misses[endpoint] = self._v2_misses.get(endpoint, 0) + 1
            if misses >= _V2_GONE_AFTER:
                self.v1_reads.add(endpoint)
            return answer
        self._v2_misses.pop(endpoint, None)
        return answer

    @staticmethod
    def _validate(
        model: type[_M], data: Any, what: str, context: dict[str, Any] | None = None
    ) -> _M:
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(body)"
            raise Transient(f"Cekura's {what} could not be read: {field}: {first['msg']}") from None
        except RecursionError:
            raise Transient(f"Cekura's {what} is nested too deeply to read") from None

    # -- reads -----------------------------------------------------------------------------

    async def result(self, result_id: int, settled: Collection[int] = ()) -> Result:
        """One GET of a result (transient problems raise ``Transient``). Runs in ``settled``
        (verdicts already taken) are read for their id, status and scenario only."""
        data = self._json(await self._read("results", f"results/{result_id}/"))
        return self._validate(Result, data, f"result {result_id}", {"settled": settled})

    async def results_list(
        self,
        agent: int | None,
        page: int = 1,
        page_size: int = 100,
        scenarios: Collection[int] = (),
    ) -> tuple[list[ListedResult], bool]:
        """One page of the results list (newest first), of one agent's results and, given
        scenario ids, of those only; whether a next page exists. One attempt
        (``Transient``/``ApiError``; a 404 or 405 of both v2 and v1 raises ``ApiError``); an
        item that cannot be read is left out."""
        params = {"page": str(page), "page_size": str(page_size)}
        if agent is not None:
            params["agent_id"] = str(agent)
        if scenarios:
            params["scenarios"] = ",".join(str(s) for s in sorted(set(scenarios)))
        data = self._json(await self._read("results list", "results/", params))
        items = data.get("results") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise Transient("Cekura's results list could not be read: it is not a list")
        more = isinstance(data, dict) and bool(data.get("next"))
        return [r for r in map(ListedResult.read, items) if r is not None], more

    async def bulk_runs(self, run_ids: list[int]) -> dict[int, RunDetails]:
        """The transcript and recording of finished runs, by run id. Only those two fields
        are read (the verdict comes from the result): an odd run loses its details, not the
        others."""
        run_ids_text = ",".join(str(i) for i in run_ids)
        answer = await self._read("runs/bulk", "runs/bulk/", {"run_ids": run_ids_text})
        read = RunDetails.read_list(answer.body)
        if read is None:  # not the usual list: read as JSON, every variant tolerated
            data = self._json(answer)
            if isinstance(data, dict):
                data = data.get("results", data.get("runs", []))
            if not isinstance(data, list):
                raise Transient("Cekura's runs/bulk answer is not a list")
            read = [RunDetails.read(item) for item in data]
        return {details.run_id: details for details in read if details is not None}

    async def agent(self, agent_id: int) -> Agent:
        async def once() -> Agent:
            data = await self._get_json(AGENT_PATH.format(agent_id))
            return self._validate(Agent, data, "agent")

        return await self._retrying("GET agent", once, lambda exc: True)

    async def scenario(self, scenario_id: int) -> Scenario:
        """One scenario (``ApiError`` 404 when Cekura has none with that id)."""

        async def once() -> Scenario:
            data = await self._get_json(SCENARIO_PATH.format(scenario_id))
            return self._validate(Scenario, data, f"scenario {scenario_id}")

        return await self._retrying("GET scenario", once, lambda exc: True)

    async def scenarios(
        self,
        agent_id: int | None = None,
        folder_path: str = "",
        tags: tuple[str, ...] = (),
        tag_filter_type: str = "",
    ) -> list[Scenario]:
        """Every scenario the list selects, page after page (newest Cekura order kept)."""
        params = {"page_size": "100"}
        if agent_id is not None:
            params["agent_id"] = str(agent_id)
        if folder_path:
            params["folder_path"] = folder_path
        if tags:
            params["tags"] = ",".join(tags)
        if tag_filter_type:
            params["tag_filter_type"] = tag_filter_type
        found, more, pages = await self._scenario_page(params, 1)
        if more and pages is not None and pages > 1:
            # The first page says how many there are: the others are read a few at once.
            if pages > _MAX_PAGES:
                raise ApiError(f"Cekura's scenario list has more than {_MAX_PAGES} pages", None)
            limit = asyncio.Semaphore(_PAGES_AT_ONCE)

            async def page(number: int) -> list[Scenario]:
                async with limit:
                    return (await self._scenario_page(params, number))[0]

            for items in await asyncio.gather(*(page(n) for n in range(2, pages + 1))):
                found.extend(items)
            return found
        for number in range(2, _MAX_PAGES + 1):  # no count: page after page, to the last
            if not more:
                return found
            items, more, _ = await self._scenario_page(params, number)
            found.extend(items)
        raise ApiError(f"Cekura's scenario list has more than {_MAX_PAGES} pages", None)

    async def _scenario_page(
        self, params: Mapping[str, str], number: int
    ) -> tuple[list[Scenario], bool, int | None]:
        """One page of the scenario list: its scenarios, whether another page follows, and
        how many pages there are when the page says (its ``count`` over its length)."""

        async def once() -> Any:
            return await self._get_json(SCENARIOS_PATH, {**params, "page": str(number)})

        data: Any = await self._retrying("GET scenarios", once, lambda exc: True)
        items = data.get("results") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise Transient("Cekura's scenario list could not be read: no results")
        found = [self._validate(Scenario, item, "scenario list") for item in items]
        more = isinstance(data, dict) and bool(data.get("next"))
        count = data.get("count") if isinstance(data, dict) else None
        pages = None
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0 and items:
            pages = -(-count // len(items))
        return found, more, pages

    async def billing(self) -> Billing:
        """Credits left and used (Cekura's figures lag up to 30 minutes)."""

        async def once() -> Billing:
            return self._validate(Billing, await self._get_json(BILLING_PATH), "billing info")

        return await self._retrying("GET billing", once, lambda exc: True)

    # -- retry machinery (start requests and the agent lookup) -------------------------------

    async def _retrying(
        self, what: str, attempt: Callable[[], Any], may_retry: Callable[[Transient], bool]
    ) -> _T:
        opened, stamp = time.monotonic(), _stamp()

        def window_opened() -> tuple[float, str]:
            # At this request's first try, or earlier if an outage was already under way
            # (the first failure in a row, of this or any request): one window per outage.
            if self._failing is not None and self._failing[0] < opened:
                return self._failing
            return opened, stamp

        def window_over(state: RetryCallState) -> bool:
            return time.monotonic() - window_opened()[0] >= self.policy.retry_window

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Transient),
            wait=self._wait,
            stop=window_over,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    try:
                        result: _T = await attempt()
                    except Transient as exc:
                        if exc.unconnected and not self._answered:
                            raise Unreachable(self.never_reached(str(exc))) from None
                        if not may_retry(exc):
                            raise _Final(exc) from None
                        raise
                    return result
        except Transient as exc:
            since = window_opened()[1]
            raise Unreachable(
                f"Cekura at {self.base_url} unreachable since {since} ({what}): last error {exc}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.max_backoff * 4)
        backoff = wait_exponential(multiplier=0.5, max=self.policy.max_backoff) + wait_random(
            0, 0.5
        )
        return float(backoff(state))

    # -- start -----------------------------------------------------------------------------

    async def start_runs(self, body: dict[str, Any]) -> Result:
        """Fire one batch. Raises FateUnknown when runs may exist but no answer says so."""
        entries = len(body.get("scenarios", []))

        def unknown(reason: str, status: int | None = None) -> NoReturn:
            raise FateUnknown(
                f"the start request for {entries} run(s) to {self.base_url} failed after it "
                f"was sent ({reason}): "
                "runs may already exist and were not re-sent, to avoid placing and billing them "
                f"twice; check the agent's results on the Cekura dashboard (request at {_stamp()})",
                status,
                reason,
            )

        async def attempt() -> Result:
            # A fresh connection: a stale keep-alive socket must not turn into an ambiguous
            # failure of a request that never left.
            answer = await self._send("POST", START_PATH, body=body, fresh=True)
            self._check_auth(answer)
            status = answer.status
            if status == 429:
                raise Transient(
                    "HTTP 429",
                    parse_retry_after(answer.headers.get("retry-after")) or 1.0,
                    sent=False,  # the server said it did not take it
                )
            if status == 402:
                raise CreditError(
                    "Cekura refused to start runs: insufficient credit (HTTP 402): "
                    + self._redact(answer.text()),
                    status,
                )
            if status == 400:
                self._reject(answer)
            if status == 404:
                raise ApiError(
                    f"Cekura has no {self.url(START_PATH)} (HTTP 404): "
                    "check --cekura-api-url / CEKURA_API_URL",
                    status,
                )
            if status not in (200, 201, 202):  # 202: accepted, as the official SDK reads it
                unknown(f"HTTP {status}", status)
            try:
                data = answer.json()
            except ValueError:
                unknown(f"HTTP {status} with a body that is not JSON", status)
            if isinstance(data, dict) and "id" not in data and "result_id" in data:
                data = {**data, "id": data["result_id"]}
            try:
                return Result.model_validate(data)
            except (ValidationError, RecursionError):
                unknown(f"HTTP {status} with a body that is not a result", status)

        try:
            return await self._retrying("start runs", attempt, lambda exc: not exc.sent)
        except _Final as final:
            unknown(str(final.transient))

    def _reject(self, answer: Answer) -> NoReturn:
        try:
            body: Any = answer.json()
        except ValueError:
            body = answer.text()
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

    # -- ending calls ----------------------------------------------------------------------

    async def end_calls(self, result_id: int, timeout: float = 5.0) -> bool:
        """Best effort: end every live call of a result. True when Cekura said yes."""
        return await self._best_effort(
            f"/test_framework/v1/results/{result_id}/end_calls/", timeout
        )

    async def end_call(self, run_id: int, timeout: float = 5.0) -> bool:
        return await self._best_effort(
            f"/test_framework/v1/runs-external/{run_id}/end_call/", timeout
        )

    async def _best_effort(self, path: str, timeout: float) -> bool:
        try:
            answer = await self._send("POST", path, total=timeout)
        except (Transient, NotSent):
            return False
        return 200 <= answer.status < 300


class _Final(Exception):
    """A transient failure that must not be retried (a start request that may have been sent)."""

    def __init__(self, transient: Transient) -> None:
        super().__init__(str(transient))
        self.transient = transient

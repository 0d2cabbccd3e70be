"""Issue 9's "Done when", end to end: the plugin against a simulator whose reads changed shape.

Each test drives the real plugin (pytester) against the local simulator, or the real client
against ``httpx.MockTransport``; none talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import API_KEY, FOUR_CASES, SCRIPTS, StreamedBody, Suite, json_answer, no_traceback

from pytest_cekura_pipecat._api.client import START_PATH, CekuraClient, HttpPolicy, Transient
from pytest_cekura_pipecat._errors import Unreachable
from pytest_cekura_pipecat._redact import Redactor
from pytest_cekura_pipecat.simulator import RecordedRequest, ScenarioScript, Simulator
from pytest_cekura_pipecat.simulator._app import App, Reply, json_reply
from pytest_cekura_pipecat.simulator._model import V1Reads

ROOM = "https://acme.daily.co/room-abc"
POLL = 0.2
SECONDS = 0.3
METRIC = "Confirms the booking time"
NEVER_JOINED = "The testing agent could not join room 42"

CONTRACT_SCRIPTS = [
    *SCRIPTS,
    ScenarioScript(201, "Books a table", "pass", SECONDS),
    ScenarioScript(202, "Confirms the time", "fail", SECONDS, failed_metrics=(METRIC,)),
    ScenarioScript(203, "Answers quickly", "rubric_fail", SECONDS),
    ScenarioScript(204, "Never joins", "never_connected", SECONDS, reasons=(NEVER_JOINED,)),
    ScenarioScript(205, "Orphaned", "pending_forever", SECONDS),
]

CONTRACT_CASES = f"""
pipecat_room_url = "{ROOM}"

[[case]]
name = "passes"
scenario = 201

[[case]]
name = "metric-fails"
scenario = 202

[[case]]
name = "rubric-fails"
scenario = 203

[[case]]
name = "never-connected"
scenario = 204

[[case]]
name = "orphaned"
scenario = 205
"""


class _NoV2Reads(App):
    """A server from before v2: every ``/test_framework/v2/`` read answers 404."""

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        parsed: Any,
    ) -> Reply:
        if method == "GET" and path.startswith("/test_framework/v2/"):
            return json_reply(404, {"detail": "Not found."})
        return super()._dispatch(method, path, query, headers, parsed)


# (v1_reads, whether v2 reads exist)
SERVERS: dict[str, tuple[V1Reads, bool]] = {
    "v1-legacy": ("legacy", True),
    "v1-removed": ("removed", True),
    "v2-missing-v1-legacy": ("legacy", False),
}


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """Overrides conftest's ``sim``: ``indirect`` parametrization picks the server."""
    v1_reads, has_v2 = SERVERS[getattr(request, "param", "v1-legacy")]
    simulator = Simulator(CONTRACT_SCRIPTS, api_key=API_KEY, v1_reads=v1_reads)
    if not has_v2:
        # The simulator has no switch to remove v2; its request handler is swapped for one
        # that refuses v2 reads (same state, same faults).
        simulator._app.__class__ = _NoV2Reads
    with simulator:
        yield simulator


def _reads(suite: Suite) -> list[RecordedRequest]:
    return [
        r
        for r in suite.sim.requests
        if r.method == "GET" and ("/results/" in r.path or "/runs/bulk" in r.path)
    ]


def _failure_text(suite: Suite, name: str, kind: str) -> str:
    node = suite.testcase(name).find(kind)
    assert node is not None, f"{name} has no <{kind}> in junit"
    return (node.get("message") or "") + "\n" + (node.text or "")


# -- 1. verdicts and read paths against changed reads ------------------------------------------


@pytest.mark.parametrize("sim", list(SERVERS), indirect=True)
def test_verdicts_name_their_reasons_whatever_the_reads(suite: Suite, request: Any) -> None:
    server = request.node.callspec.params["sim"]
    suite.toml(CONTRACT_CASES)
    result = suite.run("-rA", f"--cekura-poll-interval={POLL}")
    out = result.stdout.str()
    assert no_traceback(out), out
    result.assert_outcomes(passed=1, failed=2, errors=2)

    # A failing metric is named, with its explanation, in the output and in junit.
    metric = (
        f"metric '{METRIC}' did not pass: The agent did not satisfy '{METRIC}' during the call."
    )
    assert metric in out
    assert metric in _failure_text(suite, "metric-fails", "failure")
    # A rubric failure names its rule, its condition and the value measured.
    rule = "rubric rule 'Latency (ms)' (value lte 1500) did not hold with value 2300"
    assert rule in out
    assert rule in _failure_text(suite, "rubric-fails", "failure")
    # A call that never connected is an error carrying Cekura's error_message.
    assert NEVER_JOINED in _failure_text(suite, "never-connected", "error")
    assert suite.testcase("never-connected").find("failure") is None
    # A result that failed while its run stayed pending errors at the second poll that saw it.
    orphan = "ended with status 'failed' while this run stayed 'pending'"
    assert orphan in _failure_text(suite, "orphaned", "error")
    (post,) = suite.posts()
    result_gets = [
        r for r in suite.gets() if r.path.rstrip("/").split("/")[-1].isdigit() and r.status == 200
    ]
    failed_at = post.at + SECONDS  # every run of the batch was created by that POST
    after = [r for r in result_gets if r.at >= failed_at]
    assert 1 <= len(after) <= 2, [round(r.at - failed_at, 3) for r in result_gets]
    # Without that rule the run would wait for its case timeout (1800 s); a loose bound
    # keeps this steady on a busy machine, the poll count above is the exact proof.
    assert after[-1].at - failed_at < 1.0

    # Which read paths the client used.
    reads = _reads(suite)
    assert reads and all(r.status == 200 for r in reads if r.path.startswith("/test_framework/v1/"))
    if server == "v2-missing-v1-legacy":
        # Each read path tries v2 twice (404, answered on v1), then reads v1 for the rest
        # of the session: one 404 is no evidence that v2 is gone.
        for kind in ("/results/", "/runs/bulk"):
            on_v2 = [
                r for r in suite.sim.requests if r.path.startswith(f"/test_framework/v2{kind}")
            ]
            assert on_v2 and len(on_v2) <= 2, kind
            assert all(r.status == 404 for r in on_v2), kind
            later = [r for r in reads if kind in r.path and r.at > on_v2[-1].at]
            assert all(r.path.startswith("/test_framework/v1/") for r in later), kind
    else:
        assert all(r.path.startswith("/test_framework/v2/") for r in reads)
        assert all(r.status == 200 for r in reads)
        # No read falls back to v1 (the spend pre-flight's scenario reads exist on v1 only).
        assert not [
            r
            for r in suite.sim.requests
            if r.path.startswith("/test_framework/v1/")
            and r.method == "GET"
            and not r.path.startswith("/test_framework/v1/scenarios/")
        ]


# -- 2. mock_tool_names reaches the start body as written --------------------------------------


def test_mock_tool_names_reach_the_start_body(suite: Suite) -> None:
    suite.toml(
        f"""
        pipecat_room_url = "{ROOM}"
        mock_tool_names = []
        [[case]]
        name = "none-mocked"
        scenario = 101
        [[case]]
        name = "one-mocked"
        scenario = 104
        mock_tool_names = ["lookup_booking"]
        """.replace("        ", "")
    )
    suite.toml(
        f"""
        pipecat_room_url = "{ROOM}"
        [[case]]
        name = "all-mocked"
        scenario = 101
        """.replace("        ", ""),
        name="other/cekura.toml",
    )
    suite.pytester.makepyfile(
        test_marked=f"""
        import pytest

        @pytest.mark.cekura(scenario=101, pipecat_room_url="{ROOM}",
                            mock_tool_names=["create_booking"])
        def test_marked_list(cekura_run):
            assert cekura_run.mocked_tool_names == ("create_booking",)

        @pytest.mark.cekura(scenario=104, pipecat_room_url="{ROOM}", mock_tool_names=[])
        def test_marked_empty(cekura_run):
            assert cekura_run.mocked_tool_names == ()
        """
    )
    result = suite.run()
    result.assert_outcomes(passed=5)
    posts = suite.posts()
    # One request per distinct value; [] from the file and from the marker go together.
    sent = {
        json.dumps(post.body.get("mock_tool_names", "absent")): sorted(
            e["scenario"] for e in post.body["scenarios"]
        )
        for post in posts
    }
    assert len(posts) == 4
    assert sent == {
        "[]": [101, 104],
        '["lookup_booking"]': [104],
        '["create_booking"]': [101],
        '"absent"': [101],
    }


# -- 3. transient 5xx under -W error; the start retry path under warnings as errors -------------


def test_every_second_get_failing_changes_no_verdict(suite: Suite) -> None:
    suite.sim.faults.get_5xx_every = 2  # see test_reliability: a late poll can make three two
    suite.toml(FOUR_CASES)
    result = suite.run("-W", "error", "-rA")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    out = result.stdout.str()
    assert no_traceback(out), out
    assert "Warning" not in out
    assert [r.status for r in suite.gets()].count(503) >= 1  # the fault did hit the reads
    assert "Bot did not join the room" in out  # the error is the scenario's, not the outage's


def _start_answer(result_key: str = "id") -> httpx.Response:
    return json_answer(
        200,
        {
            result_key: 4242,
            "status": "pending",
            "runs": [{"id": 9001, "scenario": 101, "status": "pending"}],
        },
    )


def _client(handler: Any, sleeps: list[float]) -> CekuraClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return CekuraClient(
        "http://127.0.0.1:9",
        API_KEY,
        Redactor(),
        HttpPolicy(retry_window=30),
        transport=httpx.MockTransport(handler),
        sleep=sleep,
    )


def test_start_rides_out_a_429_and_a_refused_connection() -> None:
    """Once the host has answered (here with a 429), a refused connection is an outage:
    ridden out within the retry window."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == START_PATH
        seen.append(request.method)
        if len(seen) == 1:
            return json_answer(429, {"detail": "Request was throttled."}, {"Retry-After": "0"})
        if len(seen) == 2:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return _start_answer()

    sleeps: list[float] = []

    async def main() -> Any:
        client = _client(handler, sleeps)
        try:
            return await client.start_runs({"scenarios": [{"scenario": 101}]})
        finally:
            await client.aclose()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = asyncio.run(main())
    assert result.id == 4242 and [r.id for r in result.runs] == [9001]
    assert seen == ["POST", "POST", "POST"]
    # One wait after the 429, one after the refused connection (back-off): the client waits
    # 1 s at most after a throttled start (today exactly 1 s even when Retry-After says 0).
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectError("[Errno -2] Name or service not known"),
        httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
        httpx.ConnectTimeout("timed out"),
    ],
    ids=["refused", "dns", "tls", "connect-timeout"],
)
@pytest.mark.parametrize("request_kind", ["start", "agent"])
def test_a_host_that_never_answered_is_not_retried(
    failure: httpx.TransportError, request_kind: str
) -> None:
    """No connection could be made and nothing ever answered: a wrong URL, not an outage.
    No retry window is entered (no wait at all), and the error names the URL and where it
    was set."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        raise type(failure)(str(failure), request=request)

    async def main() -> None:
        async def sleep(seconds: float) -> None:
            raise AssertionError(f"a retry window was entered (a wait of {seconds:g} s)")

        client = CekuraClient(
            "http://127.0.0.1:9/api/v1",
            API_KEY,
            Redactor(),
            HttpPolicy(retry_window=86400),
            transport=httpx.MockTransport(handler),
            sleep=sleep,
            url_source="env CEKURA_API_URL",
        )
        try:
            if request_kind == "start":
                await client.start_runs({"scenarios": [{"scenario": 101}]})
            else:
                await client.agent(12)
        finally:
            await client.aclose()

    with pytest.raises(Unreachable) as raised:
        asyncio.run(main())
    assert str(raised.value).startswith(
        "cannot connect to Cekura at http://127.0.0.1:9/api/v1 (set by env CEKURA_API_URL): "
    )
    assert len(seen) == 1


# -- 4. a start answer naming the result result_id ---------------------------------------------


def test_start_answer_with_result_id_is_accepted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _start_answer("result_id")

    async def main() -> Any:
        client = _client(handler, [])
        try:
            return await client.start_runs({"scenarios": [{"scenario": 101}]})
        finally:
            await client.aclose()

    result = asyncio.run(main())
    assert result.id == 4242
    assert [(r.id, r.scenario) for r in result.runs] == [(9001, 101)]


# -- 5. an API key with a trailing newline -----------------------------------------------------


def test_key_with_trailing_newline_is_one_clear_line(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEKURA_API_KEY", API_KEY + "\n")
    suite.toml(FOUR_CASES)
    result = suite.run()
    text = suite.artifacts(result)  # output and junit
    assert "may already exist" not in text
    assert "CEKURA_API_KEY" in text
    assert no_traceback(text), text
    assert API_KEY not in text
    assert not suite.posts() or all(r.status == 401 for r in suite.posts())


# -- 6. runs/bulk in every shape ---------------------------------------------------------------

_FULL_RUN = {
    "status": "completed",
    "evaluation": {"metrics": [{"name": "Polite", "eval_type": "binary", "passed": True}]},
    "transcript_object": [{"role": "Main Agent", "content": "Hello"}] * 20,
}
_BULK_RUNS = [
    {
        **_FULL_RUN,
        "id": 11,
        "transcript": "Main Agent: Hello",
        "voice_recording_url": "https://r/11",
    },
    {**_FULL_RUN, "id": "12", "transcript": None},
    {**_FULL_RUN, "id": 13.0, "transcript": 42, "voice_recording_url": None},
]
_BULK_READ = {
    11: ("Main Agent: Hello", "https://r/11"),
    12: (None, None),
    13: ("42", None),
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(json.dumps(_BULK_RUNS), _BULK_READ, id="list"),
        pytest.param(json.dumps({"results": _BULK_RUNS}), _BULK_READ, id="page-results"),
        pytest.param(json.dumps({"runs": _BULK_RUNS}), _BULK_READ, id="page-runs"),
        # Odd items cost only themselves, whichever reader takes the body.
        pytest.param(
            json.dumps([*_BULK_RUNS, 5, None, {"id": "x"}, {"transcript": "no id"}]),
            _BULK_READ,
            id="odd-items",
        ),
        pytest.param(
            '[{"id": 14, "transcript": "\\ud800 lone"}]',
            {14: ("\ufffd lone", None)},  # replaced at the boundary
            id="surrogate",
        ),
        pytest.param("[]", {}, id="empty"),
    ],
)
def test_runs_bulk_is_read_in_every_shape(body: str, expected: dict[int, Any]) -> None:
    """The usual list is read straight from its bytes; every other shape as JSON, with the
    same details either way (an answer's odd items are skipped, never the answer)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/runs/bulk/")
        assert request.url.params["run_ids"] == "11,12,13,14"
        head = {"Content-Type": "application/json"}
        return httpx.Response(200, headers=head, stream=StreamedBody(body.encode()))

    async def main() -> Any:
        client = _client(handler, [])
        try:
            return await client.bulk_runs([11, 12, 13, 14])
        finally:
            await client.aclose()

    details = asyncio.run(main())
    assert {i: (d.transcript, d.recording_url) for i, d in details.items()} == expected


@pytest.mark.parametrize("body", ["not json", '{"results": 5}', "5"])
def test_a_runs_bulk_answer_that_cannot_be_read_is_transient(body: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        head = {"Content-Type": "application/json"}
        return httpx.Response(200, headers=head, stream=StreamedBody(body.encode()))

    async def main() -> Any:
        client = _client(handler, [])
        try:
            return await client.bulk_runs([11])
        finally:
            await client.aclose()

    with pytest.raises(Transient, match=r"not JSON|not a list"):
        asyncio.run(main())

"""The recording's transports (issue 33, item 4): matching, order of polls, misses, masking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pytest_cekura_pipecat._api.recording import (
    FORMAT,
    Exchange,
    Recorder,
    RecordingError,
    Replay,
    proxy_for,
    request_body,
)
from pytest_cekura_pipecat._redact import Redactor

SECRET = "tok-SECRET-0123456789"


def _exchange(
    sequence: int, path: str, body: object, *, query: str = "", request: str = ""
) -> Exchange:
    return Exchange(
        format=FORMAT,
        process="main",
        sequence=sequence,
        method="GET" if not request else "POST",
        path=path,
        query=query,
        request=request,
        status=200,
        headers={"content-type": "application/json"},
        body=body,
    )


async def _get(replay: Replay, url: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=replay.transport(), base_url="https://api") as client:
        return await client.get(url)


def test_polls_get_recorded_answers_in_order_then_the_last() -> None:
    replay = Replay(
        [
            _exchange(2, "/r/1/", {"status": "running"}),
            _exchange(5, "/r/1/", {"status": "completed"}),
            _exchange(3, "/r/", {"page": 2}, query="page=2&size=10"),
        ],
        Redactor(),
    )

    async def polls() -> list[object]:
        return [(await _get(replay, "/r/1/")).json()["status"] for _ in range(3)]

    assert asyncio.run(polls()) == ["running", "completed", "completed"]
    # the query is matched normalised: its order does not matter
    assert asyncio.run(_get(replay, "/r/?size=10&page=2")).json() == {"page": 2}
    assert replay.notes() == []


def test_a_request_not_recorded_is_410_and_noted() -> None:
    replay = Replay([_exchange(1, "/r/1/", {})], Redactor())
    answer = asyncio.run(_get(replay, "/r/2/"))
    assert answer.status_code == 410
    assert "not in the recording: GET /r/2/" in answer.text
    assert replay.notes() == [
        "cekura: --cekura-replay: 1 request(s) had no recorded answer (answered HTTP 410), "
        "the first GET /r/2/: replay with the firing options of the recorded session"
    ]


def test_request_body_leaves_out_the_room_and_masks_secrets() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    one = {"scenarios": [{"scenario": 1, "pipecat_room_url": "https://a", "note": SECRET}]}
    two = {"scenarios": [{"pipecat_room_url": "https://b", "note": SECRET, "scenario": 1}]}
    key = request_body(json.dumps(one).encode(), redactor)
    assert key == request_body(json.dumps(two).encode(), redactor)
    assert SECRET not in key and '"pipecat_room_url":"*"' in key


def test_recorder_writes_one_masked_file_per_answer(tmp_path: Path) -> None:
    redactor = Redactor()
    redactor.add(SECRET)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"echo": SECRET, "n": 1}, headers={"set-cookie": "x"})

    recorder = Recorder(tmp_path / "rec", redactor)
    transport = recorder.transport(inner=httpx.MockTransport(answer))

    async def two() -> list[object]:
        async with httpx.AsyncClient(transport=transport, base_url="https://api") as client:
            headers = {"X-CEKURA-API-KEY": SECRET}
            return [(await client.get(f"/r/?page={n}", headers=headers)).json() for n in (1, 2)]

    assert asyncio.run(two()) == [{"echo": SECRET, "n": 1}] * 2  # the client sees the answer
    files = sorted((tmp_path / "rec").iterdir())
    assert [f.name for f in files] == ["main-000001.json", "main-000002.json"]
    text = files[0].read_text()
    assert SECRET not in text and "set-cookie" not in text
    kept = Exchange.model_validate_json(text)
    assert (kept.method, kept.path, kept.query, kept.status) == ("GET", "/r/", "page=1", 200)


def test_replay_refuses_another_format_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "main-000001.json").write_text('{"format": 99}')
    with pytest.raises(
        RecordingError, match=r"main-000001.json: format 99, this version reads format 1"
    ):
        Replay.load(tmp_path, Redactor())


def test_recorder_keeps_the_clients_size_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_cekura_pipecat._api import recording

    monkeypatch.setattr(recording, "MAX_BODY", 10)

    class Streamed(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"0123456"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Streamed())

    transport = Recorder(tmp_path, Redactor()).transport(inner=httpx.MockTransport(answer))

    async def get() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="https://api") as client:
            await client.get("/r/")

    with pytest.raises(httpx.ReadError, match="larger than"):
        asyncio.run(get())
    assert list(tmp_path.iterdir()) == []  # nothing kept of it


def test_recording_goes_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert proxy_for("https://api.cekura.ai") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert proxy_for("https://api.cekura.ai") == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "api.cekura.ai")
    assert proxy_for("https://api.cekura.ai") is None

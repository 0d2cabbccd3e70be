"""A recorded session served over HTTP: ``Simulator.from_recording(DIR)`` and the CLI's
``--recording DIR`` answer each request with what Cekura answered the session that
``--cekura-record=DIR`` recorded, so a user's own tests can use real answers.

The simulator imports nothing of the plugin: the recording's file format (format 1) is read
here again. A request is matched by method, path and its normalised query and JSON body (the
room URL and token of a start entry left out); failing that, by method, path and query; a
repeated request (a poll) gets the recorded answers in order, then the last one. Any key is
accepted (the recording holds none); a request the recording has no answer for gets HTTP 410.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ._app import App, Reply, json_reply
from ._model import SimulatorConfigError, Variants
from ._runs import RunStore

FORMAT = 1
MISSING = 410
_VOLATILE = frozenset({"pipecat_room_url", "pipecat_token"})
_Key = tuple[str, str, str, str]


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in _VOLATILE else _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _body_key(parsed: Any) -> str:
    if parsed is None:
        return ""
    return json.dumps(_normalised(parsed), sort_keys=True, separators=(",", ":"))


def _query_key(query: dict[str, list[str]]) -> str:
    return urlencode(sorted((k, v) for k, values in query.items() for v in values))


class _Answer:
    def __init__(self, data: dict[str, Any], where: str) -> None:
        try:
            self.key: _Key = (
                str(data["method"]),
                str(data["path"]),
                str(data["query"]),
                str(data["request"]),
            )
            self.order = (str(data["process"]), int(data["sequence"]))
            self.status = int(data["status"])
            headers = data.get("headers") or {}
            text = data.get("text")
        except (KeyError, TypeError, ValueError) as exc:
            raise SimulatorConfigError(f"{where}: not a recorded answer ({exc})") from None
        self.content_type = str(headers.get("content-type", "application/json"))
        self.headers = tuple(
            (str(k), str(v)) for k, v in headers.items() if k.lower() == "retry-after"
        )
        self.body = (
            text.encode() if isinstance(text, str) else json.dumps(data.get("body")).encode()
        )

    def reply(self) -> Reply:
        return Reply(self.status, self.body, self.content_type, self.headers)


def load_recording(directory: str | os.PathLike[str]) -> list[_Answer]:
    """Every recorded answer of a ``--cekura-record`` directory (``SimulatorConfigError``, one
    line naming the file, for anything else)."""
    path = Path(directory)
    if not path.is_dir():
        raise SimulatorConfigError(f"{path}: not a directory (a --cekura-record DIR)")
    answers = []
    for file in sorted(path.glob("*-*.json")):
        try:
            data = json.loads(file.read_bytes())
        except (OSError, ValueError) as exc:
            raise SimulatorConfigError(f"{file}: cannot read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SimulatorConfigError(f"{file}: not a recorded answer of format {FORMAT}")
        answers.append(_Answer(data, str(file)))
    if not answers:
        raise SimulatorConfigError(f"{path}: holds no recorded answer")
    return answers


class RecordedApp(App):
    """The simulator's app, answering from a recording instead of scripts (requests are
    still recorded, in ``Simulator.requests``)."""

    def __init__(self, answers: Iterable[_Answer], api_key: str) -> None:
        super().__init__(
            RunStore({}, None),
            variants=Variants(),
            api_key=api_key,
            pipecat_cloud_key="",
            clock=lambda: 0.0,
        )
        self._exact: dict[_Key, list[_Answer]] = {}
        self._loose: dict[tuple[str, str, str], list[_Answer]] = {}
        for answer in sorted(answers, key=lambda a: a.order):
            self._exact.setdefault(answer.key, []).append(answer)
            self._loose.setdefault(answer.key[:3], []).append(answer)
        self._asked: dict[object, int] = {}
        self._asked_lock = threading.Lock()

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        parsed: Any,
    ) -> Reply:
        query_key = _query_key(query)
        key: _Key = (method, path, query_key, _body_key(parsed))
        found: tuple[object, list[_Answer]] | None = None
        if key in self._exact:
            found = key, self._exact[key]
        elif key[:3] in self._loose:
            found = key[:3], self._loose[key[:3]]
        if found is None:
            what = f"{method} {path}" + (f"?{query_key}" if query_key else "")
            return json_reply(MISSING, {"detail": f"not in the recording: {what}"})
        which, answers = found
        with self._asked_lock:
            asked = self._asked.get(which, 0)
            self._asked[which] = asked + 1
        return answers[min(asked, len(answers) - 1)].reply()

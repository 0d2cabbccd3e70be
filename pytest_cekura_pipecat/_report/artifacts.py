"""Evidence of the runs that did not pass, written beside the session (``--cekura-artifacts``).

For each run of a case whose verdict is not ``passed``: its recording (streamed, cut at
``RECORDING_CAP``) and its conversation as JSON, under ``DIR/<case>/``. Called where the
item is judged (an xdist worker under ``-n``), once its verdict is taken: nothing here
changes a verdict; a download that fails or takes too long is one note line.

The recording link is a signed URL: it is never shown whole (``masked_url``), never sent
the API key (a plain client of its own), and never makes a path. Neither does any other
outside text: the directory is ``case_dir(name)``, the files are named by the run's id.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from _pytest.junitxml import bin_xml_escape, xml_key

from .._text import plain
from .record import Artifact, CaseRecord, RunRecord

if TYPE_CHECKING:
    from .._api.run import CekuraRun
    from .._redact import Redactor

RECORDING_CAP = 50 * 1024 * 1024  # bytes of one recording kept; the rest is not read
DOWNLOAD_DEADLINE = 120.0  # seconds one recording may take in all, however it trickles
_CHUNK = 64 * 1024
_NAME_LIMIT = 80  # characters of a case's directory name
_UNSAFE = re.compile(r"(?:[^A-Za-z0-9._-]|\.\.)+")  # ".." is never part of a name
_SUFFIX = re.compile(r"\.(wav|mp3|ogg|opus|m4a|flac|webm)$", re.IGNORECASE)
# Names Windows keeps for devices, whatever the extension.
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)


@dataclass(frozen=True)
class Target:
    """Where evidence goes and how long a download may take. ``root`` is absolute;
    paths are shown relative to ``shown_from`` (where pytest was invoked) when inside it."""

    root: Path
    shown_from: Path
    timeout: float  # seconds to connect, and between two reads
    cap: int = RECORDING_CAP
    deadline: float = DOWNLOAD_DEADLINE
    transport: httpx.BaseTransport | None = None  # tests only; None: the network
    clock: Callable[[], float] = time.monotonic

    def shown(self, path: Path) -> str:
        try:
            return path.relative_to(self.shown_from).as_posix()
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class Evidence:
    """A case's record with each run's artifacts, and the notes the downloads left."""

    record: CaseRecord
    notes: tuple[str, ...] = ()


def case_dir(name: str) -> str:
    """A directory name for a case: letters, digits, ``.``, ``_`` and ``-`` only, no
    leading dot and no ``..`` anywhere, at most ``_NAME_LIMIT`` characters; a name that had to be
    changed gets a short hash of itself, so two names never share a directory by it."""
    safe = _UNSAFE.sub("_", name).strip("._-")[:_NAME_LIMIT].strip("._-")
    if safe.split(".")[0].upper() in _RESERVED:
        safe = "_" + safe
    if safe and safe == name:
        return safe
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else f"case-{digest}"


def masked_url(url: str) -> str:
    """A signed link as a message may show it: its scheme and host, nothing else."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "the recording link"
    return f"{parts.scheme}://{host}/…" if host else "the recording link"


def gather(
    target: Target,
    record: CaseRecord,
    runs: Sequence[CekuraRun],
    redactor: Redactor,
) -> Evidence:
    """The record with the evidence of each run that did not pass written under
    ``target.root`` and listed on its run record (``runs`` are the verdict's runs, in the
    record's order). A case whose runs all passed is returned as it is, and nothing is
    written."""
    if all(r.verdict == "passed" for r in record.runs):
        return Evidence(record)
    folder = target.root / case_dir(record.name)
    notes: list[str] = []
    kept: list[RunRecord] = []
    for run_record, run in zip(record.runs, runs, strict=True):
        if run_record.verdict == "passed" or run.run_id is None:
            kept.append(run_record)  # a run never started has no evidence either
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            notes.append(_note(record.name, run.run_id, f"cannot create {folder}: {exc}"))
            kept.append(run_record)
            continue
        found, note = _run_evidence(target, folder, record, run_record, run, redactor)
        notes.extend(_note(record.name, run.run_id, n) for n in note)
        kept.append(replace(run_record, artifacts=found))
    return Evidence(replace(record, runs=tuple(kept)), tuple(notes))


def _note(case: str, run_id: int | None, what: str) -> str:
    return plain(f"cekura: case {case}, run {run_id}: {what}", one_line=True)


def _run_evidence(
    target: Target,
    folder: Path,
    record: CaseRecord,
    run_record: RunRecord,
    run: CekuraRun,
    redactor: Redactor,
) -> tuple[tuple[Artifact, ...], list[str]]:
    found: list[Artifact] = []
    notes: list[str] = []
    if run.recording_url:
        recording, note = download(target, run.recording_url, folder, f"run-{run.run_id}")
        found.extend([recording] if recording is not None else [])
        notes.extend([note] if note else [])
    path = folder / f"run-{run.run_id}.json"
    data = redactor.tree(_conversation(record, run_record, run))
    try:
        size = _write(path, json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        notes.append(f"transcript not written: {exc}")
    else:
        found.append(Artifact("transcript", target.shown(path), size))
    return tuple(found), notes


def _conversation(record: CaseRecord, run_record: RunRecord, run: CekuraRun) -> dict[str, object]:
    """The run's transcript file: who it is, how it ended, and the whole conversation as
    Cekura sent it (``transcript_object``; null when Cekura sent none)."""
    return {
        "case": record.name,
        "nodeid": record.nodeid,
        "run_id": run.run_id,
        "result_id": run.result_id,
        "scenario_id": run.scenario_id,
        "scenario_name": run.scenario_name,
        "status": run.status,
        "verdict": run_record.verdict,
        "cekura_verdict": run.verdict,
        "dashboard_url": run.dashboard_url,
        "transcript_object": _turns(run),
        "transcript": run.transcript,
    }


def _turns(run: CekuraRun) -> Any:
    if run.conversation is not None:
        try:
            return json.loads(run.conversation)
        except ValueError:
            return None
    raw: Mapping[str, Any] = run.raw
    return raw.get("transcript_object")


def _write(path: Path, body: bytes) -> int:
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(body)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return len(body)


class _TooSlow(Exception):
    pass


def download(target: Target, url: str, folder: Path, stem: str) -> tuple[Artifact | None, str]:
    """Stream the recording at ``url`` to ``folder/stem.<ext>``, at most ``target.cap``
    bytes, within ``target.deadline`` seconds: (the artifact or None, a note or "")."""
    where = masked_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        return None, f"recording not downloaded: {where} is not an http(s) link"
    match = _SUFFIX.search(urlsplit(url).path)
    path = folder / (stem + (match.group(0).lower() if match else ".audio"))
    part = path.with_name(path.name + ".part")
    timeout = httpx.Timeout(target.timeout)
    try:
        with httpx.Client(
            timeout=timeout, follow_redirects=True, transport=target.transport
        ) as client:
            size, cut = _stream(client, url, part, target)
        os.replace(part, path)
    except httpx.HTTPStatusError as exc:
        return None, f"recording not downloaded: HTTP {exc.response.status_code} from {where}"
    except (httpx.HTTPError, OSError, _TooSlow) as exc:
        why = f"took more than {target.deadline:g} s" if isinstance(exc, _TooSlow) else None
        return None, f"recording not downloaded from {where}: {why or type(exc).__name__}"
    finally:
        part.unlink(missing_ok=True)
    note = f"recording cut at {_megabytes(target.cap)} (the cap): {target.shown(path)}"
    return Artifact("recording", target.shown(path), size, cut), note if cut else ""


def _stream(client: httpx.Client, url: str, part: Path, target: Target) -> tuple[int, bool]:
    """The body into ``part``: (bytes written, whether it was cut at the cap)."""
    started = target.clock()
    size = 0
    with client.stream("GET", url) as response, part.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(_CHUNK):
            room = target.cap - size
            out.write(chunk[:room])
            size += min(len(chunk), room)
            if len(chunk) > room:
                return size, True
            if target.clock() - started > target.deadline:
                raise _TooSlow
    return size, False


def _megabytes(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    return f"{size:,} bytes"


def junit_lines(data: object) -> list[str]:
    """The JUnit attachment lines of a case's record as it rides on a report (``data``:
    ``CaseRecord.to_json``; anything else has none): ``[[ATTACHMENT|path]]``, what
    Jenkins' JUnit attachments and GitLab's test reports read from ``system-out``."""
    if not isinstance(data, Mapping) or "nodeid" not in data:
        return []
    return [
        f"[[ATTACHMENT|{artifact.path}]]"
        for run in CaseRecord.from_json(data).runs
        for artifact in run.artifacts
        if "]]" not in artifact.path and "\n" not in artifact.path
    ]


def attach_to_junit(config: pytest.Config, report: pytest.TestReport, lines: list[str]) -> None:
    """``lines`` as a ``system-out`` of the report's JUnit testcase, whatever
    ``junit_logging`` says; called by the process that writes ``--junitxml`` (the
    controller under ``-n``) before the testcase is closed."""
    xml = config.stash.get(xml_key, None)
    if xml is not None and lines:
        node = ElementTree.Element("system-out")
        node.text = bin_xml_escape("\n".join(lines) + "\n")
        xml.node_reporter(report).append(node)

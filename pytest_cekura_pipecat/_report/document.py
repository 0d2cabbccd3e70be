"""The JSON report document (schema ``report.schema.json``): build, write atomically, and
merge shard documents."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .._api.client import API_VERSION
from .._text import REPORT_LIMIT, cap_tree
from .record import CaseRecord
from .summary import OUTCOMES, SCHEMA_VERSION, VERDICTS, Summary, Totals

# -- the JSON document ---------------------------------------------------------------------

_REQUIRED = ("schema_version", "plugin_version", "api_version", "api_url", "simulated", "cases")


@dataclass(frozen=True)
class Report:
    """A report: the final records and what the session says about itself. Its JSON is the
    ``--cekura-report`` document; the step summary and PR comment render from it."""

    cases: tuple[CaseRecord, ...]
    plugin_version: str
    api_url: str
    simulated: bool
    notes: tuple[str, ...] = ()
    # Where the report was made (``ci.provenance``, or a merged report's latest): JSON
    # values by name, written back as they came.
    provenance: Mapping[str, object] = field(default_factory=dict)
    # The spend forecast and cap (``_fire/credits.py``'s ``Forecast.to_json``), as written.
    spend: Mapping[str, object] | None = None

    @cached_property
    def totals(self) -> Totals:
        return Totals(self.cases)

    @property
    def agents(self) -> list[int]:
        """The agent ids the cases were fired with, once each, in order."""
        return sorted({c.agent for c in self.cases if isinstance(c.agent, int)})

    def to_json(self) -> dict[str, Any]:
        """The document (schema: ``report.schema.json`` in the package)."""
        document: dict[str, Any] = finite(
            {
                "schema_version": SCHEMA_VERSION,
                "plugin_version": self.plugin_version,
                "api_version": API_VERSION,
                "api_url": self.api_url,
                "simulated": self.simulated,
                "provenance": {**self.provenance, "agents": self.agents},
                "totals": self.totals.to_json(),
                # Outside text in full up to REPORT_LIMIT characters a string (every other
                # output shows less of it).
                "cases": cap_tree([c.to_json() for c in self.cases], REPORT_LIMIT),
                "notes": cap_tree(list(self.notes), REPORT_LIMIT),
            }
        )
        gate = self.totals.gate_json()
        if gate is not None:
            document["gate"] = gate
        if self.spend is not None:
            spend = dict(self.spend)
            if self.totals.credits is not None:
                spend["actual_credits"] = self.totals.credits  # beside the forecast
            document["spend"] = finite(spend)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Report:
        """A document that passed ``check`` (or that ``to_json`` wrote)."""
        provenance = document.get("provenance")
        return cls(
            cases=tuple(CaseRecord.from_json(c) for c in document["cases"]),
            plugin_version=str(document.get("plugin_version", "")),
            api_url=str(document.get("api_url", "")),
            simulated=bool(document.get("simulated")),
            notes=tuple(str(n) for n in document.get("notes") or ()),
            provenance={k: v for k, v in provenance.items() if k != "agents"}
            if isinstance(provenance, dict)
            else {},
            spend=spend if isinstance(spend := document.get("spend"), dict) else None,
        )


def session_report(
    summary: Summary,
    *,
    plugin_version: str,
    api_url: str,
    simulated: bool,
    provenance: Mapping[str, object] | None = None,
) -> Report:
    """The session's report, from its summary."""
    return Report(
        cases=summary.cases(),
        plugin_version=plugin_version,
        api_url=api_url,
        simulated=simulated,
        notes=tuple(summary.notes),
        provenance=dict(provenance or {}),
        spend=None if summary.forecast is None else summary.forecast.to_json(),
    )


def finite(value: Any) -> Any:
    """A copy with NaN and infinities as None: the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(finite(document), indent=2, allow_nan=False)


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write through a temporary file in the same directory and ``os.replace``: a reader
    never sees half a file, a failed write leaves the old one. Raises OSError."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# -- merging shard reports -----------------------------------------------------------------


class MergeError(ValueError):
    """One line: a bad input file or a case reported twice."""


def check(document: Any, where: str) -> dict[str, Any]:
    """A light structural check of a report (jsonschema is not a runtime dependency)."""
    if not isinstance(document, dict):
        raise MergeError(f"{where}: not a pytest-cekura-pipecat report (not a JSON object)")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MergeError(
            f"{where}: schema_version {version!r} is not {SCHEMA_VERSION} "
            "(write the reports with the same plugin version)"
        )
    missing = [k for k in _REQUIRED if k not in document]
    if missing:
        raise MergeError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(document["cases"], list):
        raise MergeError(f"{where}: cases is not a list")
    for i, case in enumerate(document["cases"]):
        _check_case(case, f"{where}: cases[{i}]")
    provenance = document.get("provenance", {})
    if not isinstance(provenance, dict):
        raise MergeError(f"{where}: provenance is not an object")
    return document


def _check_case(case: Any, where: str) -> None:
    if not isinstance(case, dict) or not isinstance(case.get("nodeid"), str):
        raise MergeError(f"{where} has no nodeid")
    for key, kinds in (("name", str), ("scenario", int), ("runs", list)):
        if not isinstance(case.get(key), kinds):
            raise MergeError(f"{where} ({case['nodeid']}): bad or missing {key}")
    if not all(isinstance(run, dict) for run in case["runs"]):
        raise MergeError(f"{where} ({case['nodeid']}): a run is not an object")
    if case.get("outcome") not in (*OUTCOMES, None):
        raise MergeError(f"{where} ({case['nodeid']}): bad outcome")
    if case.get("verdict") not in (*VERDICTS, None):
        raise MergeError(f"{where} ({case['nodeid']}): bad verdict")


def _attempt(report: Report) -> int:
    attempt = report.provenance.get("attempt")
    return attempt if isinstance(attempt, int) else 0


def merge(reports: Sequence[tuple[str, Report]]) -> Report:
    """One report from shard reports: every case once. A case in reports of different CI
    attempts comes from the latest; in two reports of the same attempt it is an error."""
    chosen: dict[str, tuple[int, str, CaseRecord]] = {}
    for where, report in reports:
        attempt = _attempt(report)
        for case in report.cases:
            previous = chosen.get(case.nodeid)
            if previous is not None and previous[0] == attempt:
                raise MergeError(
                    f"case {case.nodeid} is in both {previous[1]} and {where} (same attempt): "
                    "the shards overlap"
                )
            if previous is None or attempt > previous[0]:
                chosen[case.nodeid] = (attempt, where, case)
    latest = max((r for _, r in reports), key=_attempt, default=None)
    notes: list[str] = []
    for _, report in reports:
        notes.extend(n for n in report.notes if n not in notes)
    # Provenance is the latest attempt's (its run URL and attempt); the agents are those
    # of the merged cases. Shards of different commits are merged, but said so.
    commits = sorted({str(c) for _, r in reports if (c := r.provenance.get("commit"))})
    if len(commits) > 1:
        notes.append(f"cekura: merged reports of different commits: {', '.join(commits)}")
    return Report(
        cases=tuple(chosen[k][2] for k in sorted(chosen)),
        plugin_version=latest.plugin_version if latest is not None else "",
        api_url=latest.api_url if latest is not None else "",
        simulated=any(r.simulated for _, r in reports),
        notes=tuple(notes),
        provenance=latest.provenance if latest is not None else {},
    )


def load_report(path: str) -> Report:
    """A report file, checked (one MergeError line naming the file for any problem)."""
    return Report.from_json(load_document(path))


def load_document(path: str) -> dict[str, Any]:
    """A report file's document, checked, with every field it carries (the HTML page shows
    a run's transcript and recording link when a report has them)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MergeError(f"{path}: not JSON: {exc}") from None
    checked: dict[str, Any] = check(document, path)
    return checked

"""The JSON report document (schema ``report.schema.json``): build, write atomically, and
merge shard documents."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._judge.gating import gate_totals
from .._text import REPORT_LIMIT, cap_tree
from .summary import OUTCOMES, SCHEMA_VERSION, VERDICTS, Case, Document, Summary, totals

# -- the JSON document ---------------------------------------------------------------------

_REQUIRED = ("schema_version", "plugin_version", "api_version", "api_url", "simulated", "cases")


def json_document(
    summary: Summary,
    *,
    plugin_version: str,
    api_url: str,
    simulated: bool,
    provenance: dict[str, Any] | None = None,
) -> Document:
    """The ``--cekura-report`` document (schema: ``report.schema.json`` in the package)."""
    cases = summary.cases()
    document = build_document(
        cases,
        plugin_version=plugin_version,
        api_url=api_url,
        simulated=simulated,
        notes=list(summary.notes),
        provenance=provenance,
    )
    if summary.forecast is not None:
        document["spend"] = finite(dict(summary.forecast.to_json()))
    return document


def build_document(
    cases: list[Case],
    *,
    plugin_version: str,
    api_url: str,
    simulated: bool,
    notes: list[str],
    provenance: dict[str, Any] | None,
) -> Document:
    document: Document = finite(
        {
            "schema_version": SCHEMA_VERSION,
            "plugin_version": plugin_version,
            "api_version": "v1",
            "api_url": api_url,
            "simulated": simulated,
            "provenance": {**(provenance or {}), "agents": agents(cases)},
            "totals": totals(cases),
            # Outside text in full up to REPORT_LIMIT characters a string (every other
            # output shows less of it).
            "cases": cap_tree(cases, REPORT_LIMIT),
            "notes": cap_tree(notes, REPORT_LIMIT),
        }
    )
    gate = gate_totals(cases)
    if gate is not None:
        document["gate"] = gate
    return document


def agents(cases: Sequence[Case]) -> list[int]:
    """The agent ids the cases were fired with, once each, in order."""
    return sorted({c["agent"] for c in cases if isinstance(c.get("agent"), int)})


def finite(value: Any) -> Any:
    """A copy with NaN and infinities as None: the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(document: Document) -> str:
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


# -- Markdown ------------------------------------------------------------------------------

# -- merging shard reports -----------------------------------------------------------------


class MergeError(ValueError):
    """One line: a bad input file or a case reported twice."""


def check(document: Any, where: str) -> Document:
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
        if not isinstance(case, dict) or not isinstance(case.get("nodeid"), str):
            raise MergeError(f"{where}: cases[{i}] has no nodeid")
        for key, kinds in (("name", str), ("scenario", int), ("runs", list)):
            if not isinstance(case.get(key), kinds):
                raise MergeError(f"{where}: cases[{i}] ({case['nodeid']}): bad or missing {key}")
        if case.get("outcome") not in (*OUTCOMES, None):
            raise MergeError(f"{where}: cases[{i}] ({case['nodeid']}): bad outcome")
        if case.get("verdict") not in (*VERDICTS, None):
            raise MergeError(f"{where}: cases[{i}] ({case['nodeid']}): bad verdict")
    provenance = document.get("provenance", {})
    if not isinstance(provenance, dict):
        raise MergeError(f"{where}: provenance is not an object")
    return document


def _provenance(document: Document) -> dict[str, Any]:
    provenance = document.get("provenance")
    return provenance if isinstance(provenance, dict) else {}


def _attempt(document: Document) -> int:
    attempt = _provenance(document).get("attempt")
    return attempt if isinstance(attempt, int) else 0


def merge(documents: Sequence[tuple[str, Document]]) -> Document:
    """One document from shard reports: every case once. A case in reports of different CI
    attempts comes from the latest; in two reports of the same attempt it is an error."""
    chosen: dict[str, tuple[int, str, Case]] = {}
    for where, document in documents:
        attempt = _attempt(document)
        for case in document["cases"]:
            nodeid = case["nodeid"]
            previous = chosen.get(nodeid)
            if previous is not None and previous[0] == attempt:
                raise MergeError(
                    f"case {nodeid} is in both {previous[1]} and {where} (same attempt): "
                    "the shards overlap"
                )
            if previous is None or attempt > previous[0]:
                chosen[nodeid] = (attempt, where, case)
    latest = max((d for _, d in documents), key=_attempt, default={})
    notes: list[str] = []
    for _, document in documents:
        notes.extend(n for n in document.get("notes", []) if n not in notes)
    # Provenance is the latest attempt's (its run URL and attempt); the agents are those
    # of the merged cases. Shards of different commits are merged, but said so.
    commits = sorted({str(c) for _, d in documents if (c := _provenance(d).get("commit"))})
    if len(commits) > 1:
        notes.append(f"cekura: merged reports of different commits: {', '.join(commits)}")
    return build_document(
        [chosen[k][2] for k in sorted(chosen)],
        plugin_version=str(latest.get("plugin_version", "")),
        api_url=str(latest.get("api_url", "")),
        simulated=any(bool(d.get("simulated")) for _, d in documents),
        notes=notes,
        provenance=latest.get("provenance") or {},
    )


def load_report(path: str) -> Document:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MergeError(f"{path}: not JSON: {exc}") from None
    return check(document, path)

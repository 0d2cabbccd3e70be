"""Which non-passing cases block the session: quarantines and a baseline report.

A case that did not pass either blocks (pytest fails or errors it) or is excused: reported
as pytest's xfail (non-strict: never an XPASS, a passing case is simply passed). Excused are
a case under an active quarantine, and a *known* failure: a case that did not pass in the
baseline report either (unless ``--cekura-baseline-strict``). Pure decisions plus the one
baseline reader: a ``--cekura-report`` file read at its boundary for the outcome of each case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .._config.case import Case
from .._config.thresholds import Quarantine
from .confirm import Compared, Confirmation
from .stats import Counts

BaselineClass = Literal["new", "known", "fixed"]
_PASSED = ("passed", "xpassed")
_NOT_PASSED = ("failed", "error", "xfailed")


def today() -> date:
    """The date quarantines are checked against (tests replace it)."""
    return date.today()


class BaselineError(ValueError):
    """The baseline report cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Baseline:
    """A baseline report: for each case (by node id) whether it passed. A case the report
    skipped or did not finish is not in ``passed``: it counts as missing."""

    path: str
    passed: Mapping[str, bool]
    strict: bool = False
    # Each case's runs in the report: passed of counted (errored left out), and errored.
    runs: Mapping[str, tuple[Counts, int]] = field(default_factory=dict)


REPORT_SCHEMA_VERSION = 2  # of report.schema.json: the report stage writes this version


class _BaselineRun(BaseModel):
    model_config = ConfigDict(extra="ignore")
    verdict: str | None = None


class _BaselineCase(BaseModel):
    model_config = ConfigDict(extra="ignore")
    nodeid: str
    outcome: str | None = None
    runs: list[_BaselineRun] = []

    def counts(self) -> tuple[Counts, int]:
        """Its runs: passed of counted, and the errored ones (left out)."""
        verdicts = [run.verdict for run in self.runs]
        passed, failed = verdicts.count("passed"), verdicts.count("failed")
        return Counts(passed, passed + failed), len(verdicts) - passed - failed


class _BaselineReport(BaseModel):
    """What the judge reads of a report: each case's node id and final outcome."""

    model_config = ConfigDict(extra="ignore")
    cases: list[_BaselineCase]


def load_baseline(path: str, strict: bool = False) -> Baseline:
    """Read a ``--cekura-report`` document; any problem is a BaselineError of one line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(
            f"--cekura-baseline: {path}: cannot read: {exc.strerror or exc}"
        ) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BaselineError(f"--cekura-baseline: {path}: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BaselineError(
            f"--cekura-baseline: {path}: not a pytest-cekura-pipecat report (not a JSON object)"
        )
    version = document.get("schema_version")
    if version != REPORT_SCHEMA_VERSION:
        raise BaselineError(
            f"--cekura-baseline: {path}: schema_version {version!r} is not "
            f"{REPORT_SCHEMA_VERSION} (write the reports with the same plugin version)"
        )
    try:
        report = _BaselineReport.model_validate(document)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise BaselineError(f"--cekura-baseline: {path}: {where}: {problem['msg']}") from None
    passed: dict[str, bool] = {}
    for case in report.cases:
        if case.outcome in _PASSED:
            passed[case.nodeid] = True
        elif case.outcome in _NOT_PASSED:
            passed[case.nodeid] = False
    runs = {case.nodeid: case.counts() for case in report.cases if case.nodeid in passed}
    return Baseline(path, passed, strict, runs)


@dataclass(frozen=True)
class Gating:
    """How one case's outcome is gated. ``excuse``: report the non-passing case as xfail
    with this reason. ``note``: a line added to a blocking failure's message. ``baseline``
    and ``quarantine`` (active or not on the day) are what the case's record shows."""

    excuse: str | None = None
    note: str | None = None
    baseline: BaselineClass | None = None
    quarantine: Quarantine | None = None
    quarantine_active: bool = False
    confirmation: Confirmation | None = None
    compared: Compared | None = None


def gate(
    case: Case,
    nodeid: str,
    passed: bool,
    baseline: Baseline | None,
    today: date,
    *,
    confirmation: Confirmation | None = None,
    compared: Compared | None = None,
) -> Gating:
    """The gating of a case whose verdict ``passed`` (or not), on ``today``; a failing
    case's ``confirmation`` runs and pass rate ``compared`` with the baseline's, if any."""
    excuse: str | None = None
    notes: list[str] = []
    quarantine = case.quarantine
    if quarantine is not None and not passed:
        if quarantine.active(today):
            excuse = f"quarantined {quarantine.describe()}"
        else:
            notes.append(
                f"quarantine expired on {quarantine.until.isoformat()} "
                f"({quarantine.reason}): this case blocks again"
            )
    kind: BaselineClass | None = None
    before = baseline.passed.get(nodeid) if baseline is not None else None
    if baseline is not None and before is not None:
        if before and not passed:
            kind = "new"
            notes.append(f"new failure: it passed in the baseline {baseline.path}")
        elif not before and not passed:
            kind = "known"
            if baseline.strict:
                notes.append("known failure (it did not pass in the baseline either)")
            elif excuse is None:
                excuse = f"known failure: it did not pass in the baseline {baseline.path} either"
        elif not before and passed:
            kind = "fixed"
    if not passed:
        excuse = _second_look(excuse, notes, baseline, confirmation, compared)
    return Gating(
        excuse=excuse,
        note="; ".join(notes) or None,
        baseline=kind,
        quarantine=quarantine,
        quarantine_active=quarantine is not None and quarantine.active(today),
        confirmation=confirmation,
        compared=compared,
    )


def _second_look(
    excuse: str | None,
    notes: list[str],
    baseline: Baseline | None,
    confirmation: Confirmation | None,
    compared: Compared | None,
) -> str | None:
    """The excuse of a failing case once its pass rate was compared (a regression blocks
    even a known failure; no change or inconclusive does not block, unless strict) and its
    confirmation runs are in (a recovery makes it flaky)."""
    quarantined = excuse is not None and excuse.startswith("quarantined")
    if compared is not None and not quarantined:
        line = compared.describe()
        if compared.comparison.verdict == "regression" or (baseline and baseline.strict):
            excuse = None
            notes.append(line)
        else:
            excuse = line
    if confirmation is not None and excuse is None:
        if confirmation.passed:
            return confirmation.describe()
        notes.append(confirmation.describe())
    return excuse

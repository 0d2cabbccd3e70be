"""Which non-passing cases block the session: quarantines and a baseline report.

A case that did not pass either blocks (pytest fails or errors it) or is excused: reported
as pytest's xfail (non-strict: never an XPASS, a passing case is simply passed). Excused are
a case under an active quarantine, and a *known* failure: a case that did not pass in the
baseline report either (unless ``--cekura-baseline-strict``), and a failure whose scenario
version or metric definitions changed since the baseline, where it passed: the evaluator
changed, not necessarily the agent (unless ``--cekura-evaluator-changed-blocks``). Pure
decisions plus the one baseline reader: a ``--cekura-report`` file read at its boundary for
the outcome and the evaluator of each case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .._api.catalogue import Evaluator
from .._config.case import Case
from .._config.thresholds import Quarantine
from .confirm import Compared, Confirmation
from .stats import Counts

BaselineClass = Literal["new", "known", "fixed", "evaluator_changed"]
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
    # Each case's scenario version and metric hash there (cases of older reports: none).
    evaluators: Mapping[str, Evaluator] = field(default_factory=dict)
    evaluator_blocks: bool = False  # --cekura-evaluator-changed-blocks

    def changed(self, nodeid: str, now: Evaluator | None) -> str | None:
        """What changed in the case's evaluator since the baseline, or None."""
        before = self.evaluators.get(nodeid)
        return None if before is None or now is None else now.changed(before)

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
    scenario_version: str | None = None
    metrics_hash: str | None = None
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


def load_baseline(path: str, strict: bool = False, evaluator_blocks: bool = False) -> Baseline:
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
    evaluators: dict[str, Evaluator] = {}
    for case in report.cases:
        if case.outcome in _PASSED:
            passed[case.nodeid] = True
        elif case.outcome in _NOT_PASSED:
            passed[case.nodeid] = False
        if case.scenario_version is not None or case.metrics_hash is not None:
            evaluators[case.nodeid] = Evaluator(case.scenario_version, case.metrics_hash)
    runs = {case.nodeid: case.counts() for case in report.cases if case.nodeid in passed}
    return Baseline(path, passed, strict, evaluators, evaluator_blocks, runs)


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
    evaluator: Evaluator | None = None  # what judged the case now (the record shows it)
    confirmation: Confirmation | None = None
    compared: Compared | None = None


def gate(
    case: Case,
    nodeid: str,
    passed: bool,
    baseline: Baseline | None,
    today: date,
    evaluator: Evaluator | None = None,
    *,
    confirmation: Confirmation | None = None,
    compared: Compared | None = None,
) -> Gating:
    """The gating of a case whose verdict ``passed`` (or not), on ``today``, judged by
    ``evaluator`` (its scenario version and metric hash, None: not known); a failing
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
    if baseline is not None:
        kind, excuse = _against(baseline, nodeid, passed, evaluator, excuse, notes)
    if not passed:
        excuse = _second_look(excuse, notes, baseline, confirmation, compared)
    return Gating(
        excuse=excuse,
        note="; ".join(notes) or None,
        baseline=kind,
        quarantine=quarantine,
        quarantine_active=quarantine is not None and quarantine.active(today),
        evaluator=evaluator,
        confirmation=confirmation,
        compared=compared,
    )


def _against(
    baseline: Baseline,
    nodeid: str,
    passed: bool,
    evaluator: Evaluator | None,
    excuse: str | None,
    notes: list[str],
) -> tuple[BaselineClass | None, str | None]:
    """The case's class against the baseline and its excuse (notes appended): new,
    known, fixed or evaluator_changed; None when the baseline does not hold the case."""
    before = baseline.passed.get(nodeid)
    if before is None:
        return None, excuse
    kind: BaselineClass | None = None
    changed = baseline.changed(nodeid, evaluator)
    if before and not passed and changed is not None:
        kind = "evaluator_changed"
        said = f"evaluator changed ({changed}) since the baseline {baseline.path}"
        if baseline.evaluator_blocks:
            notes.append(f"{said}, where it passed")
        elif excuse is None:
            excuse = f"{said}, where it passed (not blocking)"
    elif before and not passed:
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
    return kind, excuse


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

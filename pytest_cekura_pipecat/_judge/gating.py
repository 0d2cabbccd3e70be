"""Which non-passing cases block the session: quarantines and a baseline report.

A case that did not pass either blocks (pytest fails or errors it) or is excused: reported
as pytest's xfail (non-strict: never an XPASS, a passing case is simply passed). Excused are
a case under an active quarantine, and a *known* failure: a case that did not pass in the
baseline report either (unless ``--cekura-baseline-strict``). Pure decisions plus the one
baseline reader; light imports (this runs in every process that judges a case).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from .._config.case import Case

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


def load_baseline(path: str, strict: bool = False) -> Baseline:
    """Read a ``--cekura-report`` document; any problem is a BaselineError of one line."""
    from .._report.document import MergeError, load_report

    try:
        document = load_report(path)
    except MergeError as exc:
        raise BaselineError(f"--cekura-baseline: {exc}") from None
    passed: dict[str, bool] = {}
    for case in document["cases"]:
        outcome = case.get("outcome")
        if outcome in _PASSED:
            passed[case["nodeid"]] = True
        elif outcome in _NOT_PASSED:
            passed[case["nodeid"]] = False
    return Baseline(path, passed, strict)


@dataclass(frozen=True)
class Gating:
    """How one case's outcome is gated. ``excuse``: report the non-passing case as xfail
    with this reason. ``note``: a line added to a blocking failure's message."""

    excuse: str | None = None
    note: str | None = None
    baseline: BaselineClass | None = None
    quarantine: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """The fields a case's record (and the JSON report) carries."""
        data: dict[str, Any] = {}
        if self.baseline is not None:
            data["baseline"] = self.baseline
        if self.quarantine is not None:
            data["quarantine"] = self.quarantine
        return data


def gate(case: Case, nodeid: str, passed: bool, baseline: Baseline | None, today: date) -> Gating:
    """The gating of a case whose verdict ``passed`` (or not), on ``today``."""
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
    return Gating(
        excuse=excuse,
        note="; ".join(notes) or None,
        baseline=kind,
        quarantine=quarantine.to_json(today) if quarantine is not None else None,
    )


def gate_lines(cases: Sequence[Mapping[str, Any]]) -> list[str]:
    """Terminal lines under the table: new / known / fixed, and the quarantined cases."""
    lines: list[str] = []
    if any(c.get("baseline") for c in cases):
        groups = {
            kind: [str(c["name"]) for c in cases if c.get("baseline") == kind]
            for kind in ("new", "known", "fixed")
        }
        lines.append(
            "baseline: "
            + ", ".join(
                f"{len(names)} {kind}" + (f" ({', '.join(names)})" if names else "")
                for kind, names in (
                    ("new failure(s)", groups["new"]),
                    ("known failure(s)", groups["known"]),
                    ("fixed", groups["fixed"]),
                )
            )
        )
    for c in cases:
        q = c.get("quarantine")
        if not isinstance(q, dict):
            continue
        state = "active" if q.get("active") else "EXPIRED"
        owner = f", owner {q['owner']}" if q.get("owner") else ""
        issue = f" ({q['issue']})" if q.get("issue") else ""
        lines.append(
            f"quarantined: {c['name']} ({c.get('outcome') or 'unknown'}): until {q['until']} "
            f"[{state}]{owner}: {q['reason']}{issue}"
        )
    return lines


def gate_totals(cases: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """Counts for the report, or None when no case was gated by a baseline or quarantine."""
    if not any("baseline" in c or "quarantine" in c for c in cases):
        return None
    return {
        "new": sum(c.get("baseline") == "new" for c in cases),
        "known": sum(c.get("baseline") == "known" for c in cases),
        "fixed": sum(c.get("baseline") == "fixed" for c in cases),
        "quarantined": sum(isinstance(c.get("quarantine"), dict) for c in cases),
    }

"""A case's behaviour across CI runs: the history file (JSON lines, append-only, one line a
session), folding reports into it, and per case over its last N sessions: pass rate, flips,
infra errors (counted apart from failures) and the last failure.

Nothing here changes a verdict: flaky cases are listed and a quarantine is *suggested*, as
a line to paste into ``cekura.toml``; nothing is ever quarantined by itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .markdown import md_code, md_text
from .view import CaseView, Kind, case_views, is_toml_case

FORMAT = 1  # the version of a line's format ("v"); a reader skips lines of other versions
DEFAULT_WINDOW = 20  # sessions of a case the figures are over
QUARANTINE_DAYS = 90  # a suggested quarantine's length
FLAKY_LISTED = 50  # flaky cases listed at most (the rest are counted)


class HistoryError(ValueError):
    """One line: a history file that cannot be read or written."""


# -- the file format (pydantic at the file boundary: tolerant, an unknown key is ignored) ---


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CaseEntry(_Tolerant):
    name: str
    kind: Literal["pass", "fail", "infra"]
    score: float | None = None


class SessionLine(_Tolerant):
    """One session: where and when it ran and each case's result, by node id."""

    v: Literal[1] = 1
    id: str  # the report's id: a digest of its canonical JSON (folding it again adds nothing)
    time: str | None = None
    commit: str | None = None
    branch: str | None = None
    run_url: str | None = None
    simulated: bool = False
    cases: dict[str, CaseEntry] = {}


@dataclass(frozen=True)
class History:
    sessions: tuple[SessionLine, ...]
    skipped: int = 0  # lines that were not a session of this format (a note says so)
    missing: bool = False  # no file yet (the first run of a CI cache)


def report_id(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:20]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def session_line(document: Mapping[str, Any], now: datetime) -> SessionLine:
    """A report as a history line: commit, branch, run and time from its provenance (the
    time the report was folded when the provenance has none), each case's result."""
    provenance = document.get("provenance")
    where: Mapping[str, Any] = provenance if isinstance(provenance, Mapping) else {}
    cases = {
        c.nodeid: CaseEntry(name=c.name, kind=c.kind, score=c.score)
        for c in case_views(document)
        if c.kind != "skip" and c.nodeid
    }
    return SessionLine(
        id=report_id(document),
        time=_text(where.get("time")) or now.astimezone(UTC).isoformat(timespec="seconds"),
        commit=_text(where.get("commit")),
        branch=_text(where.get("branch")),
        run_url=_text(where.get("run_url")),
        simulated=document.get("simulated") is True,
        cases=cases,
    )


def _parse(text: str) -> SessionLine | None:
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("v") != FORMAT:
        return None  # another format's line (a newer plugin's): skipped, not an error
    try:
        return SessionLine.model_validate(raw)
    except ValidationError:
        return None


def read_history(path: str | Path) -> History:
    """The sessions of a history file, oldest first (the order they were folded in); a line
    that is not a session of this format is skipped and counted. A missing file is an empty
    history; one that cannot be read is a HistoryError."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return History((), missing=True)
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    sessions: list[SessionLine] = []
    skipped = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        line = _parse(raw)
        if line is None:
            skipped += 1
        else:
            sessions.append(line)
    return History(tuple(sessions), skipped)


def fold(path: str | Path, documents: Iterable[Mapping[str, Any]], now: datetime) -> int:
    """Append a line for each report whose id the file does not hold yet; the number added.
    Raises HistoryError."""
    history = read_history(path)
    known = {s.id for s in history.sessions}
    lines: list[str] = []
    for document in documents:
        line = session_line(document, now)
        if line.id in known:
            continue
        known.add(line.id)
        lines.append(line.model_dump_json(exclude_none=True, exclude_defaults=False))
    if not lines:
        return 0
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a+b") as handle:
            handle.seek(0, 2)
            if handle.tell():
                handle.seek(-1, 2)
                if handle.read(1) != b"\n":  # a last line cut short: start a fresh one
                    handle.write(b"\n")
            handle.write(("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as exc:
        raise HistoryError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return len(lines)


# -- per case ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """A case in one session."""

    kind: Kind
    score: float | None
    time: str | None
    commit: str | None


@dataclass(frozen=True)
class CaseHistory:
    nodeid: str
    name: str
    points: tuple[Point, ...]  # the window, oldest first
    last_failure: Point | None  # over the whole file, not only the window

    @property
    def passes(self) -> int:
        return sum(p.kind == "pass" for p in self.points)

    @property
    def failures(self) -> int:
        return sum(p.kind == "fail" for p in self.points)

    @property
    def infra(self) -> int:
        return sum(p.kind == "infra" for p in self.points)

    @property
    def pass_rate(self) -> float | None:
        """Passes over passes and failures: an infra error is neither."""
        judged = self.passes + self.failures
        return self.passes / judged if judged else None

    @property
    def flips(self) -> int:
        """Changes between pass and fail from one session to the next (infra errors
        between them are stepped over)."""
        judged = [p.kind for p in self.points if p.kind in ("pass", "fail")]
        return sum(a != b for a, b in pairwise(judged))

    @property
    def flaky(self) -> bool:
        return self.flips >= 1

    def running_rates(self) -> list[float | None]:
        """The pass rate up to each point of the window (the trend the page draws)."""
        rates: list[float | None] = []
        passes = judged = 0
        for p in self.points:
            if p.kind in ("pass", "fail"):
                judged += 1
                passes += p.kind == "pass"
            rates.append(passes / judged if judged else None)
        return rates


def case_histories(
    sessions: Sequence[SessionLine], window: int = DEFAULT_WINDOW
) -> dict[str, CaseHistory]:
    """Each case's last ``window`` sessions in which it ran (a case counts its own
    sessions: shards and cases added later are fine), by node id."""
    points: dict[str, list[Point]] = {}
    names: dict[str, str] = {}
    for session in sessions:
        for nodeid, entry in session.cases.items():
            names[nodeid] = entry.name
            point = Point(entry.kind, entry.score, session.time, session.commit)
            points.setdefault(nodeid, []).append(point)
    return {
        nodeid: CaseHistory(
            nodeid=nodeid,
            name=names[nodeid],
            points=tuple(found[-window:]),
            last_failure=next((p for p in reversed(found) if p.kind == "fail"), None),
        )
        for nodeid, found in sorted(points.items())
    }


def with_session(history: History, document: Mapping[str, Any], now: datetime) -> History:
    """The history with this session's report as its latest line (unless it was folded
    already)."""
    line = session_line(document, now)
    if any(s.id == line.id for s in history.sessions):
        return history
    return History((*history.sessions, line), history.skipped, history.missing)


# -- the suggestion ------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)  # a JSON string is a TOML basic string


def quarantine_reason(case: CaseHistory) -> str:
    rate = case.pass_rate
    rate_text = f"pass rate {rate:.0%}, " if rate is not None else ""
    return f"flaky in CI: {case.flips} flip(s), {rate_text}over {len(case.points)} session(s)"


def suggestion(case: CaseHistory, today: date, *, toml: bool = True) -> str:
    """A ready-to-paste quarantine: for a case's ``[[case]]`` in ``cekura.toml`` (``toml``),
    else as the keyword argument of its ``@pytest.mark.cekura``."""
    until = (today + timedelta(days=QUARANTINE_DAYS)).isoformat()
    reason = _toml_string(quarantine_reason(case))
    if toml:
        return f"quarantine = {{ until = {until}, reason = {reason} }}"
    return f'quarantine={{"until": "{until}", "reason": {reason}}}'


# -- what a session shows ------------------------------------------------------------------


@dataclass(frozen=True)
class Flaky:
    history: CaseHistory
    toml: bool  # declared in a cekura.toml (else by a marker)
    quarantined: bool  # already quarantined in this session


@dataclass(frozen=True)
class HistoryView:
    """What the session's outputs show of the history: the flaky cases of this session's
    report (or every flaky case of the history, without a report), each case's figures,
    and the day the suggestions count from."""

    source: str
    window: int
    today: date
    cases: dict[str, CaseHistory]
    flaky: tuple[Flaky, ...]
    skipped: int = 0
    missing: bool = False


def history_view(
    history: History,
    document: Mapping[str, Any] | None,
    *,
    source: str,
    window: int,
    now: datetime,
) -> HistoryView:
    if document is not None:
        history = with_session(history, document, now)
    cases = case_histories(history.sessions, window)
    views: dict[str, CaseView] = (
        {c.nodeid: c for c in case_views(document)} if document is not None else {}
    )
    flaky = tuple(
        Flaky(
            c,
            toml=is_toml_case(c.nodeid),
            quarantined=bool(
                c.nodeid in views and (q := views[c.nodeid].quarantine) is not None and q.active
            ),
        )
        for c in cases.values()
        if c.flaky and (document is None or c.nodeid in views)
    )
    return HistoryView(
        source=source,
        window=window,
        today=now.astimezone(UTC).date(),
        cases=cases,
        flaky=flaky,
        skipped=history.skipped,
        missing=history.missing,
    )


def _figures(case: CaseHistory) -> str:
    rate = case.pass_rate
    parts = [
        f"pass rate {rate:.0%} ({case.passes} of {case.passes + case.failures})"
        if rate is not None
        else "no judged session",
        f"{case.flips} flip(s)",
    ]
    if case.infra:
        parts.append(f"{case.infra} infra error(s) apart")
    last = case.last_failure
    if last is not None:
        where = " ".join(
            x for x in (last.time, f"commit {last.commit[:12]}" if last.commit else "") if x
        )
        parts.append(f"last failed {where}" if where else "failed before")
    return ", ".join(parts)


def _head(view: HistoryView) -> str:
    head = f"cekura history ({view.source}, each case's last {view.window} sessions)"
    if view.missing:
        return f"{head}: no history file yet (fold reports into it: python -m pytest_cekura_pipecat.report history)"
    notes = f"; {view.skipped} line(s) of another format skipped" if view.skipped else ""
    if not view.flaky:
        return f"{head}: no flaky case among {len(view.cases)} case(s) with history{notes}"
    return (
        f"{head}: {len(view.flaky)} flaky case(s){notes}; a quarantine is only suggested, "
        "nothing changes by itself"
    )


def terminal_lines(view: HistoryView) -> list[str]:
    lines = [_head(view)]
    for f in view.flaky[:FLAKY_LISTED]:
        lines.append(f"  {f.history.name}: {_figures(f.history)}")
        if f.quarantined:
            lines.append("    quarantined already")
            continue
        where = "in its [[case]] of cekura.toml" if f.toml else "in its @pytest.mark.cekura"
        lines.append(f"    suggested, {where}: {suggestion(f.history, view.today, toml=f.toml)}")
    if len(view.flaky) > FLAKY_LISTED:
        lines.append(f"  … {len(view.flaky) - FLAKY_LISTED} more flaky case(s)")
    return lines


def markdown_lines(view: HistoryView) -> list[str]:
    """The flaky cases for the step summary and the PR comment (empty when there is none)."""
    if not view.flaky:
        return []
    lines = [
        f"**Flaky cases ({len(view.flaky)})** over each case's last {view.window} sessions "
        "of the history: a quarantine is only suggested, nothing changes by itself.",
        "",
        "| case | pass rate | flips | infra errors | suggested quarantine |",
        "|---|---|---|---|---|",
    ]
    for f in view.flaky[:FLAKY_LISTED]:
        h = f.history
        rate = (
            "-"
            if h.pass_rate is None
            else f"{h.pass_rate:.0%} ({h.passes}/{h.passes + h.failures})"
        )
        line = (
            "quarantined already"
            if f.quarantined
            else md_code(suggestion(h, view.today, toml=f.toml))
        )
        lines.append(f"| {md_code(h.name)} | {md_text(rate)} | {h.flips} | {h.infra} | {line} |")
    if len(view.flaky) > FLAKY_LISTED:
        lines.append(f"… {len(view.flaky) - FLAKY_LISTED} more flaky case(s)")
    lines.append("")
    return lines


def session_history(
    path: str, window: int, document: Mapping[str, Any], now: datetime
) -> tuple[HistoryView | None, str | None]:
    """The session's view of its history file, or why there is none (one line)."""
    try:
        history = read_history(path)
    except HistoryError as exc:
        return None, f"cekura history: {exc}: no flaky case is listed"
    return history_view(history, document, source=path, window=window, now=now), None

"""One self-contained HTML page of a report (``--cekura-html``, ``report html``): totals,
the failing cases first with their reasons, transcripts and recordings, a trend chart per
case from the history, quarantined and evaluator-changed cases.

No script, no external stylesheet, font or image: the page's Content-Security-Policy
forbids every load but inline styles, ``data:`` images and the recordings' audio (fetched
only when the reader presses play: ``preload="none"``). Every outside text (names, reasons,
transcripts, links) is escaped here; a link is a link only when it is http(s).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .._text import REPORT_LIMIT, cap, visible
from .history import CaseHistory, HistoryView, suggestion
from .view import CaseView, RunView, case_views

# No load of any kind but the recordings' audio (on play) and data: images; no script,
# no form, no base URL. Inline styles only (frame-ancestors has no effect in a meta).
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src https: http:; "
    "base-uri 'none'; form-action 'none'"
)
TEXT_LIMIT = 20_000  # characters of one outside text on the page (a transcript, a reason)

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:70rem;padding:0 1rem;color:#1b1f23}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.banner{background:#fff3cd;padding:.4rem .8rem;border-radius:4px}
.totals span{display:inline-block;margin-right:1rem}
.case{border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;margin:.8rem 0}
.case.bad{border-left:5px solid #cf222e}.case.good{border-left:5px solid #1a7f37}
.case.other{border-left:5px solid #9a6700}
.label{font-weight:600;margin-right:.5rem}.muted{color:#57606a}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.5rem;margin:.3rem 0}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
svg.trend{display:block;margin:.4rem 0}code{background:#f6f8fa;padding:0 .2rem}
"""


def text(value: str, limit: int = TEXT_LIMIT) -> str:
    """Outside text as HTML that shows exactly it: capped, control characters visible,
    every markup character an entity."""
    return html.escape(visible(cap(value, limit)), quote=True)


def link(label: str, url: str | None) -> str:
    """A link only to an http(s) URL; any other is shown as text."""
    if not url:
        return ""
    if not url.lower().startswith(("https://", "http://")):
        return f'<span class="muted">{text(url, 500)}</span>'
    return f'<a href="{text(url, 2_000)}" rel="noreferrer noopener">{text(label, 200)}</a>'


# -- the chart -----------------------------------------------------------------------------

_W, _H, _PAD = 360, 90, 8
_DOT = {"pass": "#1a7f37", "fail": "#cf222e", "infra": "#8c959f"}
_ROW = {"pass": 1.0, "fail": 0.0, "infra": 0.5}  # a dot's height: pass top, fail bottom


def _x(i: int, n: int) -> float:
    return _PAD + (_W - 2 * _PAD) * (i / (n - 1) if n > 1 else 0.5)


def _y(fraction: float) -> float:
    return _PAD + (_H - 2 * _PAD) * (1 - max(0.0, min(1.0, fraction)))


def _polyline(values: Sequence[float | None], colour: str, dashed: bool = False) -> str:
    points = [
        f"{_x(i, len(values)):.1f},{_y(v):.1f}" for i, v in enumerate(values) if v is not None
    ]
    if not points:
        return ""
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return (
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} '
        f'points="{" ".join(points)}"/>'
    )


def chart(case: CaseHistory) -> str:
    """An inline SVG: the pass rate up to each session (solid) and the lowest expected-
    outcome score (dashed, 0-100), a dot a session: green pass (top), red fail (bottom),
    grey infra error (middle)."""
    n = len(case.points)
    rate = case.running_rates()
    scores = [None if p.score is None else p.score / 100 for p in case.points]
    dots = "".join(
        f'<circle cx="{_x(i, n):.1f}" cy="{_y(_ROW[p.kind]):.1f}" r="3" '
        f'fill="{_DOT[p.kind]}"><title>{text(p.kind + " " + (p.time or "") + " " + (p.commit or "")[:12], 200)}</title></circle>'
        for i, p in enumerate(case.points)
    )
    label = (
        f"{case.name}: pass rate and expected-outcome score over {n} session(s), "
        f"{case.flips} flip(s)"
    )
    return (
        f'<svg class="trend" data-case="{text(case.nodeid, 500)}" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{text(label, 500)}</title>"
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fafbfc" stroke="#ddd"/>'
        f"{_polyline(rate, '#0969da')}{_polyline(scores, '#8250df', dashed=True)}{dots}</svg>"
        f'<div class="muted">pass rate (solid) and lowest expected-outcome score (dashed) '
        f"over the last {n} session(s)</div>"
    )


# -- cases ---------------------------------------------------------------------------------


def _run(run: RunView, index: int) -> str:
    parts = [
        f"<li>run {index}: <b>{text(run.verdict or run.status, 40)}</b> "
        f"({text(run.status, 40)})"
        + ("" if run.score is None else f", score {run.score:g}")
        + (f" {link('dashboard', run.dashboard_url)}" if run.dashboard_url else "")
    ]
    if run.error_message:
        parts.append(f"<pre>{text(run.error_message)}</pre>")
    for metric in run.failed_metrics:
        parts.append(f"<div>failed metric <b>{text(metric.name, 300)}</b></div>")
        parts.extend(f"<pre>{text(e)}</pre>" for e in metric.explanation)
    if run.recording_url:
        url = run.recording_url
        if url.lower().startswith(("https://", "http://")):
            parts.append(
                f'<div><audio controls preload="none" src="{text(url, 2_000)}"></audio></div>'
            )
        else:
            parts.append(f'<div class="muted">recording: {text(url, 500)}</div>')
    if run.transcript:
        parts.append(
            f"<details><summary>transcript</summary><pre>{text(run.transcript, REPORT_LIMIT)}"
            "</pre></details>"
        )
    parts.append("</li>")
    return "".join(parts)


def _case(case: CaseView, history: CaseHistory | None) -> str:
    css = "bad" if case.bad else "good" if case.outcome == "passed" else "other"
    head = (
        f'<div class="case {css}" id="case-{text(case.nodeid, 500)}">'
        f'<div><span class="label">{text((case.outcome or "unknown").upper(), 20)}</span>'
        f"<b>{text(case.name, 300)}</b> "
        f'<span class="muted">scenario {case.scenario} · evaluation '
        f"{text(case.verdict or '-', 20)}</span> {link('dashboard', case.dashboard_url)}</div>"
    )
    body = [head]
    if case.reason and case.outcome != "passed":
        body.append(f"<pre>{text(case.reason)}</pre>")
    if case.summary:
        body.append(f"<div>Cekura's summary:</div><pre>{text(case.summary)}</pre>")
    if case.quarantine is not None:
        q = case.quarantine
        state = "" if q.active else " (expired)"
        owner = f", owner {text(q.owner, 200)}" if q.owner else ""
        body.append(
            f"<div>quarantined until {text(q.until, 20)}{state}{owner}: {text(q.reason, 500)}</div>"
        )
    if history is not None and history.points:
        body.append(chart(history))
    if case.runs and (case.bad or case.outcome != "passed" or any(r.transcript for r in case.runs)):
        body.append("<ul>" + "".join(_run(r, i + 1) for i, r in enumerate(case.runs)) + "</ul>")
    body.append("</div>")
    return "".join(body)


def _section(title: str, cases: Sequence[CaseView], history: HistoryView | None) -> str:
    if not cases:
        return ""
    known = history.cases if history is not None else {}
    return f"<h2>{text(title, 200)} ({len(cases)})</h2>" + "".join(
        _case(c, known.get(c.nodeid)) for c in cases
    )


def _flaky(history: HistoryView) -> str:
    if not history.flaky:
        return ""
    rows = []
    for f in history.flaky:
        h = f.history
        rate = "-" if h.pass_rate is None else f"{h.pass_rate:.0%}"
        line = (
            "quarantined already"
            if f.quarantined
            else f"<code>{text(suggestion(h, history.today, toml=f.toml), 1_000)}</code>"
        )
        rows.append(
            f"<tr><td>{text(h.name, 300)}</td><td>{rate}</td><td>{h.flips}</td>"
            f"<td>{h.infra}</td><td>{line}</td></tr>"
        )
    return (
        f"<h2>Flaky cases ({len(history.flaky)})</h2><p>Over each case's last "
        f"{history.window} sessions of the history. A quarantine is only suggested: "
        "nothing changes by itself.</p><table><tr><th>case</th><th>pass rate</th>"
        "<th>flips</th><th>infra errors</th><th>suggested quarantine</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _provenance(document: Mapping[str, Any]) -> str:
    provenance = document.get("provenance")
    if not isinstance(provenance, Mapping):
        return ""
    parts = []
    for key in ("commit", "branch", "time"):
        value = provenance.get(key)
        if isinstance(value, str) and value:
            parts.append(f"{key} <code>{text(value, 200)}</code>")
    run_url = provenance.get("run_url")
    if isinstance(run_url, str):
        parts.append(link("CI run", run_url))
    return f'<p class="muted">{" · ".join(parts)}</p>' if parts else ""


_ORDER = {"failed": 0, "error": 1, "xpassed": 2, "xfailed": 3, "skipped": 4, "passed": 5}


def page(document: Mapping[str, Any], history: HistoryView | None = None) -> str:
    """The whole page."""
    cases = sorted(case_views(document), key=lambda c: (_ORDER.get(c.outcome or "", 9), c.nodeid))
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.outcome or "unknown"] = counts.get(c.outcome or "unknown", 0) + 1
    totals = "".join(f"<span><b>{n}</b> {text(k, 20)}</span>" for k, n in sorted(counts.items()))
    bad = [c for c in cases if c.bad]
    changed = [c for c in cases if c.evaluator_changed]
    quarantined = [c for c in cases if c.quarantine is not None]
    rest = [c for c in cases if not c.bad]
    banner = (
        '<p class="banner">SIMULATED: verdicts came from the local server, not from Cekura.</p>'
        if document.get("simulated") is True
        else ""
    )
    source = (
        f'<p class="muted">History: {text(history.source, 500)}</p>' if history is not None else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Cekura evaluations</title><style>{_STYLE}</style></head><body>"
        f"<h1>Cekura evaluations</h1>{banner}{_provenance(document)}"
        f'<p class="totals"><span><b>{len(cases)}</b> case(s)</span>{totals}</p>{source}'
        + _section("Failing cases", bad, history)
        + _section("Evaluator changed", changed, None)
        + (_flaky(history) if history is not None else "")
        + _section("Quarantined", quarantined, None)
        + _section("Other cases", rest, history)
        + "</body></html>\n"
    )

"""The HTML page of a report: escaped like every other channel, self-contained, and opened
in a real headless browser (Chromium) with no console message and no network request."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import Suite
from history_reports import HOSTILE, SUITE, folded, report

from pytest_cekura_pipecat import report as report_cli
from pytest_cekura_pipecat._report.html import CSP, page


def hostile_report(tmp_path: Path, port: int) -> Path:
    """The last session's report with a hostile explanation (a script, an image from a
    local listener, an onerror handler) and run fields beyond the schema: a transcript
    and recording links, one of them not http(s)."""
    document = report(4, explanation=HOSTILE + f'<img src="http://127.0.0.1:{port}/x">')
    for case in document["cases"]:
        run = case["runs"][0]
        run["transcript"] = f"Agent: hello <b>there</b>\nUser: {HOSTILE}"
        run["recording_url"] = f"http://127.0.0.1:{port}/recording.wav"
    document["cases"][1]["runs"][0]["recording_url"] = "javascript:alert(3)"
    document["cases"][1]["dashboard_url"] = "javascript:alert(4)"
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_outside_text_is_escaped_and_links_are_http_only() -> None:
    document = report(1, explanation=HOSTILE)
    document["cases"][1]["dashboard_url"] = "javascript:alert(4)"
    document["cases"][1]["runs"][0]["recording_url"] = "https://cdn.example/r.wav?a=1&b=2"
    document["cases"][0]["runs"][0]["recording_url"] = "data:audio/wav;base64,AAAA"
    html = page(document)
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
        in html
    )
    assert "<script" not in html and "<img" not in html and 'onerror="' not in html
    assert 'href="javascript:' not in html and "javascript:alert(4)</span>" in html
    assert '<audio controls preload="none" src="https://cdn.example/r.wav?a=1&amp;b=2">' in html
    assert "recording: data:audio/wav;base64,AAAA" in html  # shown, never loaded
    # Failing cases first: late-booking and books-a-table (failed in session 1) before the rest.
    order = [m.group(1) for m in re.finditer(r'id="case-cekura\.toml::([\w-]+)"', html)]
    assert order == ["books-a-table", "late-booking", "opening-hours"]


def test_the_command_writes_a_page_with_a_chart_per_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = folded(tmp_path)
    out = tmp_path / "page.html"
    last = sorted(tmp_path.glob("report-*.json"))[-1]
    assert report_cli.main(["html", str(out), str(last), "--history", str(history)]) == 0
    html = out.read_text()
    assert len(re.findall(r'<svg class="trend"', html)) == 3
    assert "<h2>Flaky cases (1)</h2>" in html
    assert "quarantine = { until = " in html
    assert "report html:" in capsys.readouterr().out
    # Without a history: no chart.
    assert report_cli.main(["html", str(out), str(last)]) == 0
    assert "<svg" not in out.read_text()


def test_a_bad_report_writes_no_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert report_cli.main(["html", str(tmp_path / "page.html"), str(bad)]) == 1
    assert not (tmp_path / "page.html").exists()
    assert capsys.readouterr().err.startswith(f"report html: {bad}: not JSON")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["local", "xdist"])
def test_a_session_writes_its_page(suite: Suite, tmp_path: Path, workers: list[str]) -> None:
    suite.toml(SUITE)
    history = folded(tmp_path)
    result = suite.run(*workers, "--cekura-html=out/page.html", f"--cekura-history={history}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["cekura: HTML page written to *page.html"])
    html = (suite.pytester.path / "out" / "page.html").read_text()
    assert html.count('class="case ') == 3  # the controller's page holds every case
    assert html.count('<svg class="trend"') == 3
    assert html.index("late-booking") < html.index("opening-hours")  # failing first


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_the_page_opens_in_a_headless_browser_without_a_request(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    history = folded(tmp_path)
    out = tmp_path / "page.html"
    source = hostile_report(tmp_path, port)
    assert report_cli.main(["html", str(out), str(source), "--history", str(history)]) == 0
    try:
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                out.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected: no request left the page
            listener.accept()[0].close()
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no error, no blocked load, nothing logged by the page
    dom = done.stdout
    assert dom.count('<svg class="trend"') == 3  # one chart per case with history
    assert "<script" not in dom and "<img" not in dom  # the hostile markup is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=" in dom
    assert f'&lt;img src="http://127.0.0.1:{port}/x"&gt;' in dom
    assert dom.count("<audio ") == 2  # the http(s) recordings; the javascript: one is text

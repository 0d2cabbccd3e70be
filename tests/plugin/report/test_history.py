"""The history across CI runs: folding reports, reading the file, each case's figures, and
what a session with --cekura-history shows (flaky cases, a suggested quarantine)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from helpers import Suite
from history_reports import COMMITS, SUITE, folded, report, write_reports

from pytest_cekura_pipecat import report as report_cli
from pytest_cekura_pipecat._report.history import (
    case_histories,
    fold,
    read_history,
    suggestion,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_folding_is_append_only_and_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = folded(tmp_path)
    lines = history.read_text().splitlines()
    assert len(lines) == 5
    assert "5 session(s) added" in capsys.readouterr().out
    first = json.loads(lines[0])
    assert first["v"] == 1 and first["commit"] == COMMITS[0] and first["branch"] == "main"
    assert first["cases"]["cekura.toml::books-a-table"] == {
        "name": "books-a-table",
        "kind": "pass",
        "score": 92.0,
    }
    # The same reports again (and one of them twice): nothing is added, nothing rewritten.
    paths = sorted(str(p) for p in tmp_path.glob("report-*.json"))
    assert report_cli.main(["history", str(history), *paths, paths[0]]) == 0
    assert history.read_text().splitlines() == lines
    assert "0 session(s) added" in capsys.readouterr().out
    assert max(map(len, lines)) < 500  # small: a few keys a session, a few a case


def test_a_bad_report_folds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_reports(tmp_path)[0]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    history = tmp_path / "history.jsonl"
    assert report_cli.main(["history", str(history), good, str(bad)]) == 1
    assert not history.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"report history: {bad}: schema_version None is not 2 (write the reports "
        "with the same plugin version)"
    ]


def test_the_file_is_read_tolerantly(tmp_path: Path) -> None:
    history = folded(tmp_path)
    lines = history.read_text().splitlines()
    newer = json.dumps({"v": 2, "id": "x", "cases": "another shape"})
    extra = json.loads(lines[1])
    extra["added_later"] = {"any": "thing"}
    history.write_text(
        "\n".join([lines[0], "not json", newer, json.dumps(extra), *lines[2:]]) + '\n{"v": 1'
    )
    read = read_history(history)
    assert len(read.sessions) == 5 and read.skipped == 3
    # A line cut short is closed before the next one is appended.
    fold(history, [report(0, explanation="another report")], NOW)
    assert len(read_history(history).sessions) == 6


def test_each_case_has_its_pass_rate_flips_and_infra_errors_apart(tmp_path: Path) -> None:
    cases = case_histories(read_history(folded(tmp_path)).sessions)
    books = cases["cekura.toml::books-a-table"]
    assert [p.kind for p in books.points] == ["pass", "fail", "pass", "infra", "pass"]
    assert (books.passes, books.failures, books.infra, books.flips) == (3, 1, 1, 2)
    assert books.pass_rate == 0.75 and books.flaky
    assert books.last_failure is not None and books.last_failure.commit == COMMITS[1]
    late = cases["cekura.toml::late-booking"]
    assert (late.pass_rate, late.flips, late.flaky) == (0.0, 0, False)
    assert not cases["cekura.toml::opening-hours"].flaky
    # The window: each case's last N sessions.
    short = case_histories(read_history(tmp_path / "history.jsonl").sessions, window=2)
    assert [p.kind for p in short["cekura.toml::books-a-table"].points] == ["infra", "pass"]
    assert not short["cekura.toml::books-a-table"].flaky
    line = suggestion(books, date(2026, 12, 3))
    assert line == (
        'quarantine = { until = 2027-03-03, reason = "flaky in CI: 2 flip(s), pass rate 75%, '
        'over 5 session(s)" }'
    )


def _today_plus_90() -> set[str]:
    # The session's day, counted in UTC (a run across midnight may see either day).
    return {(datetime.now(UTC).date() + timedelta(days=90 + d)).isoformat() for d in (-1, 0)}


def test_a_session_lists_flaky_cases_and_changes_no_verdict(
    suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.toml(SUITE)
    plain = suite.run("--cekura-report=plain.json")
    plain.assert_outcomes(passed=2, failed=1)
    history = folded(tmp_path)
    step = suite.pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = suite.run(
        f"--cekura-history={history}",
        "--cekura-report=with.json",
        "--cekura-pr-comment=comment.md",
    )
    result.assert_outcomes(passed=2, failed=1)  # the same verdicts, the same exit status
    assert result.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert re.search(
        r"cekura history \(.*history\.jsonl, each case's last 20 sessions\): 1 "
        r"flaky case\(s\)",
        out,
    ), out
    # This session (books-a-table passed) is the latest point: P F P (infra) P P.
    result.stdout.fnmatch_lines(
        [
            "  books-a-table: pass rate 80% (4 of 5), 2 flip(s), 1 infra error(s) apart, "
            f"last failed * commit {COMMITS[1]}",
        ]
    )
    assert ("    suggested, in its [[case]] of cekura.toml: quarantine = { until = ") in out
    assert ', reason = "flaky in CI: 2 flip(s), pass rate 80%, over 6 session(s)" }\n' in out
    assert "late-booking:" not in out and "opening-hours:" not in out
    until = re.search(r"quarantine = \{ until = (\S+),", out)
    assert until is not None and until.group(1) in _today_plus_90()
    docs = [json.loads((suite.pytester.path / n).read_text()) for n in ("plain.json", "with.json")]
    verdicts = [{c["name"]: (c["verdict"], c["outcome"]) for c in d["cases"]} for d in docs]
    assert verdicts[0] == verdicts[1]
    assert all("quarantine" not in c for c in docs[1]["cases"])  # nothing quarantined
    for markdown in (step.read_text(), (suite.pytester.path / "comment.md").read_text()):
        assert "**Flaky cases (1)**" in markdown
        assert (
            "| <code>books-a-table</code> | 80% \\(4/5\\) | 2 | 1 | <code>quarantine = " in markdown
        )
        assert (
            "late\\-booking</code> |" not in markdown
            and "<code>late-booking</code> | 0%" not in markdown
        )


def test_the_suggested_line_is_accepted_by_cekura_toml(suite: Suite, tmp_path: Path) -> None:
    suite.toml(SUITE)
    history = folded(tmp_path)
    out = suite.run(f"--cekura-history={history}").stdout.str()
    line = re.search(
        r"suggested, in its \[\[case\]\] of cekura\.toml: (quarantine = .*)$", out, re.M
    )
    assert line is not None, out
    # Pasted into books-a-table's [[case]], and (to see it act) into late-booking's too.
    quarantined = SUITE.replace("scenario = 101\n", f"scenario = 101\n{line.group(1)}\n")
    quarantined = quarantined.replace("scenario = 102\n", f"scenario = 102\n{line.group(1)}\n")
    suite.toml(quarantined)
    result = suite.run("--cekura-report=report.json")
    result.assert_outcomes(passed=2, xfailed=1)
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    books = next(c for c in doc["cases"] if c["name"] == "books-a-table")
    assert books["quarantine"]["active"] is True
    assert books["quarantine"]["until"] in _today_plus_90()
    assert books["quarantine"]["reason"].startswith("flaky in CI: 2 flip(s)")


def test_a_missing_history_file_is_said_not_an_error(suite: Suite, tmp_path: Path) -> None:
    suite.toml(SUITE)
    result = suite.run(f"--cekura-history={tmp_path / 'none.jsonl'}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["cekura history (*none.jsonl, *): no history file yet *"])


def test_a_bad_window_is_a_usage_error(suite: Suite) -> None:
    suite.toml(SUITE)
    result = suite.run("--cekura-history=h.jsonl", "--cekura-history-window=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--cekura-history-window: '0' is not valid*"])


def test_merged_shard_reports_list_flaky_cases(tmp_path: Path) -> None:
    history = folded(tmp_path)
    shard = report(4)
    shards = []
    for i, cases in enumerate((shard["cases"][:1], shard["cases"][1:])):
        path = tmp_path / f"shard-{i}.json"
        path.write_text(json.dumps({**shard, "cases": cases}))
        shards.append(str(path))
    comment = tmp_path / "comment.md"
    merged = str(tmp_path / "merged.json")
    args = ["merge", merged, *shards, "--pr-comment", str(comment), "--history", str(history)]
    assert report_cli.main(args) == 0
    text = comment.read_text()
    # The shards merge into the last session's report, folded already: counted once.
    assert "**Flaky cases (1)**" in text
    assert "| <code>books-a-table</code> | 75% \\(3/4\\) | 2 | 1 | <code>quarantine" in text


def test_the_suggestion_for_a_marked_case_is_accepted_by_the_marker(
    suite: Suite, tmp_path: Path
) -> None:
    cases = case_histories(read_history(folded(tmp_path)).sessions)
    books = cases["cekura.toml::books-a-table"]
    line = suggestion(books, datetime.now(UTC).date(), toml=False)
    assert line.startswith('quarantine={"until": "')
    suite.pytester.makepyfile(
        test_bot=f"""
        import pytest

        @pytest.mark.cekura(scenario=102, pipecat_room_url="https://acme.daily.co/r", {line})
        def test_late():
            pass
        """
    )
    result = suite.run("--cekura-report=report.json")
    result.assert_outcomes(xfailed=1)  # the failing case, quarantined by the pasted line
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    assert doc["cases"][0]["quarantine"]["until"] in _today_plus_90()

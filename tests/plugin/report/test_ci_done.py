"""Issue 15's "Done when", end to end: pytest against the local server, then the files and
outputs it wrote, read by the consumers people use (jsonschema, a Markdown renderer)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from helpers import API_KEY, FOUR_CASES, ROOM_TOKEN, ROOT, SCRIPTS, Suite
from markdown_it import MarkdownIt

from pytest_cekura_pipecat._report.comment import MARKER
from pytest_cekura_pipecat._report.document import Report
from pytest_cekura_pipecat._report.record import CaseRecord
from pytest_cekura_pipecat.simulator import ScenarioScript, Simulator

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'
TWICE = "The agent said <twice> the price | and *shouted*"
SCHEMA = json.loads(
    resources.files("pytest_cekura_pipecat").joinpath("report.schema.json").read_text()
)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    scripts = [*SCRIPTS, ScenarioScript(120, "Says <b>it</b>", "fail", 0.2, reasons=(TWICE,))]
    with Simulator(scripts, api_key=API_KEY) as simulator:
        yield simulator


def cases(count: int, scenario: int = 102, padding: str = "") -> str:
    return ROOM + "".join(
        f'[[case]]\nname = "c{i:03d}{padding}"\nscenario = {scenario}\n' for i in range(count)
    )


def run_merge(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_cekura_pipecat.report", "merge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_reason_with_html_shows_escaped_in_the_step_summary(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    suite.toml(ROOM + '[[case]]\nname = "twice"\nscenario = 120\n')
    suite.run().assert_outcomes(failed=1)
    markdown = step.read_text()
    page = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    row = next(r for r in page.split("<tr>") if "twice" in r and "<td>" in r)
    # Shown as text: not a tag a browser would swallow, the pipe inside its cell.
    assert "The agent said &lt;twice&gt; the price | and *shouted*" in row
    assert "<twice>" not in page and "<b>it</b>" not in page
    assert "Says &lt;b&gt;it&lt;/b&gt;" in row
    assert row.count("<td>") == 7  # the table kept its columns


def test_300_failing_cases_give_a_bounded_pr_comment_and_ten_annotations(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/bot")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    suite.toml(cases(300, padding="-refuses-a-late-booking" * 8))  # rows that cannot all fit
    result = suite.run("-q", "--cekura-pr-comment=comment.md")
    result.assert_outcomes(failed=300)
    body = (suite.pytester.path / "comment.md").read_bytes()
    assert body.startswith(MARKER.encode() + b"\n")
    assert len(body) < 65536
    text = body.decode()
    shown = text.count("<code>c")
    assert 0 < shown < 300
    assert f"… {300 - shown} more, see the report" in text
    assert "https://github.com/acme/bot/actions/runs/42" in text
    annotations = [line for line in result.outlines if line.startswith("::")]
    assert [line.split(" ", 1)[0] for line in annotations] == ["::error"] * 10 + ["::notice::290"]
    for artifact in (text, result.stdout.str()):
        assert API_KEY not in artifact and ROOM_TOKEN not in artifact


def test_shard_auto_takes_k_of_n_from_the_ci_and_fires_half(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.toml(cases(10, scenario=101))
    monkeypatch.setenv("CI_NODE_INDEX", "1")  # GitLab counts from 1
    monkeypatch.setenv("CI_NODE_TOTAL", "2")
    result = suite.run("--cekura-shard=auto", "-rA")
    result.assert_outcomes(passed=5, deselected=5)
    assert suite.sim.entries_fired() == 5
    first = {line.split()[1] for line in result.outlines if line.startswith("PASSED cekura")}
    monkeypatch.setenv("CI_NODE_INDEX", "2")
    listed = suite.run("--cekura-shard=auto", "--collect-only", "-q").outlines
    second = {line for line in listed if line.startswith("cekura.toml::")}
    assert len(first) == len(second) == 5
    assert first | second == {f"cekura.toml::c{i:03d}" for i in range(10)}
    assert suite.sim.entries_fired() == 5  # collecting fired nothing


def test_shard_auto_without_ci_variables_refuses_in_one_line(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CI_NODE_INDEX", "CIRCLE_NODE_INDEX", "BUILDKITE_PARALLEL_JOB"):
        monkeypatch.delenv(name, raising=False)
    suite.toml(cases(4, scenario=101))
    result = suite.run("--cekura-shard=auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if "cekura-shard" in line]
    assert len(lines) == 1 and "no parallel job variables set" in lines[0]
    assert suite.sim.requests == []  # nothing fired


def test_two_shard_reports_merge_into_one_and_an_overlap_is_refused(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "1")
    suite.toml(FOUR_CASES)
    for k in (1, 2):
        suite.run(f"--cekura-shard={k}/2", f"--cekura-report=shard{k}.json")
    suite.run("--cekura-report=whole.json")  # the same cases again, in the same attempt
    root = suite.pytester.path
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    done = run_merge(
        root, "merged.json", "shard1.json", "shard2.json", "--step-summary", "--pr-comment=c.md"
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((root / "merged.json").read_text())
    jsonschema.validate(merged, SCHEMA)
    names = [c["name"] for c in merged["cases"]]
    assert sorted(names) == ["books-a-table", "cancels", "late-booking", "opening-hours"]
    assert merged["totals"]["passed"] == 2 and merged["totals"]["runs"] == 5
    assert merged["provenance"]["commit"] == "abc123"
    assert "**2 passed, 1 failed, 1 error** of 4 case(s)" in step.read_text()
    assert (root / "c.md").read_text().startswith(MARKER)

    overlap = run_merge(root, "again.json", "shard2.json", "whole.json")
    assert overlap.returncode != 0
    (line,) = overlap.stderr.splitlines()
    shard2 = {c["nodeid"] for c in json.loads((root / "shard2.json").read_text())["cases"]}
    assert any(nodeid in line for nodeid in shard2) and "whole.json" in line
    assert not (root / "again.json").exists()


# -- the CI recipes of the README and the docs ------------------------------------------------


def readme_workflows() -> list[object]:
    """Every YAML block of the README and of every page in docs/."""
    yaml = pytest.importorskip("yaml")
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_readme_matrix_recipe_merges_shard_reports_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflows = readme_workflows()
    (matrix,) = [w for w in workflows if isinstance(w, dict) and "merge" in w.get("jobs", {})]
    assert matrix["jobs"]["merge"]["needs"] == "cekura"
    (command,) = [s["run"] for s in matrix["jobs"]["merge"]["steps"] if "merge" in s.get("run", "")]
    shard_run = next(
        s["run"] for s in matrix["jobs"]["cekura"]["steps"] if "--cekura-shard" in s.get("run", "")
    )
    assert "--cekura-report=cekura-report-${{ matrix.shard }}-${{ github.run_attempt }}.json" in (
        shard_run
    )
    for shard, names in ((1, ["a", "b"]), (2, ["c"])):
        cases = tuple(
            CaseRecord(n, f"cekura.toml::{n}", 1, verdict="passed", outcome="passed") for n in names
        )
        doc = Report(
            cases, plugin_version="0", api_url="u", simulated=False, provenance={"attempt": 1}
        ).to_json()
        (tmp_path / f"cekura-report-{shard}-1.json").write_text(json.dumps(doc))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step.md"))
    done = subprocess.run(
        command.replace("python ", f"{sys.executable} ", 1),
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / "cekura-report.json").read_text())
    assert [c["name"] for c in merged["cases"]] == ["a", "b", "c"]
    assert (tmp_path / "cekura-comment.md").read_text().startswith(MARKER)
    assert "**3 passed" in (tmp_path / "step.md").read_text()


def test_readme_pr_comment_recipe_is_fork_safe() -> None:
    workflows = [w for w in readme_workflows() if isinstance(w, dict)]
    (poster,) = [w for w in workflows if "workflow_run" in (w.get(True) or {})]  # YAML 1.1 "on"
    job = poster["jobs"]["comment"]
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    download, script = job["steps"]
    assert download["with"]["name"] == "cekura-comment"
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    code = script["with"]["script"]
    assert f'const marker = "{MARKER}";' in code
    assert "updateComment" in code and "createComment" in code
    (uploader,) = [
        w
        for w in readme_workflows()
        if isinstance(w, list) and any(s.get("with", {}).get("name") == "cekura-comment" for s in w)
    ]
    upload = next(s for s in uploader if s.get("with", {}).get("name") == "cekura-comment")
    run = next(s["run"] for s in uploader if "--cekura-pr-comment" in s.get("run", ""))
    assert f"--cekura-pr-comment={upload['with']['path']}cekura-comment.md" in run
    assert not any("permissions" in s for s in uploader)  # no write token beside the PR's code

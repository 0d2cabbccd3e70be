"""CI-native outputs: GitHub annotations, shard variables, provenance, the PR comment option."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from helpers import FOUR_CASES, Suite

from pytest_cekura_pipecat._config.schema import case_line, case_lines, case_spots
from pytest_cekura_pipecat._config.shard import (
    SHARD_AUTO,
    ShardEnvError,
    resolve_shard,
    shard_from_env,
)
from pytest_cekura_pipecat._report.ci import (
    annotated_elsewhere,
    escape_data,
    escape_property,
    github_annotations,
    provenance,
)
from pytest_cekura_pipecat._report.comment import MARKER
from pytest_cekura_pipecat._report.record import CaseRecord

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'
SCHEMA = json.loads(
    resources.files("pytest_cekura_pipecat").joinpath("report.schema.json").read_text()
)
ERROR_LINE = re.compile(r"^::error file=([^,]+),line=(\d+),title=([^:]+)::(.+)$")


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/bot")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REF_NAME", "main")


def annotation_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("::")]


def test_failed_and_errored_cases_are_annotated(suite: Suite, github: None) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run("--cekura-report=report.json")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    lines = annotation_lines(result.stdout.str())
    assert len(lines) == 2, lines
    parsed = {m.group(3): m for m in map(ERROR_LINE.match, lines) if m}
    assert set(parsed) == {"late-booking (failed)", "cancels (error)"}
    # Each at its own [[case]] line (1-based, as GitHub counts).
    toml = FOUR_CASES.splitlines()
    for title, name in (("late-booking (failed)", "late-booking"), ("cancels (error)", "cancels")):
        assert parsed[title].group(1) == "cekura.toml"
        line = int(parsed[title].group(2))
        assert toml[line - 1] == "[[case]]" and toml[line] == f'name = "{name}"'
    # The reason itself, not the scenario's title before it.
    assert parsed["late-booking (failed)"].group(4).startswith("expected outcome: score 40/100")
    assert parsed["cancels (error)"].group(4) == "Bot did not join the room"
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    assert doc["provenance"] == {
        "ci": "github",
        "commit": "0123456789abcdef",
        "branch": "main",
        "run_url": "https://github.com/acme/bot/actions/runs/42",
        "job": None,
        "attempt": 2,
        "agents": [],
    }


@pytest.mark.parametrize(
    "env",
    [
        {
            "GITLAB_CI": "true",
            "CI_COMMIT_SHA": "abc123",
            "CI_COMMIT_REF_NAME": "feature",
            "CI_JOB_URL": "https://gitlab.example/p/-/jobs/77",
        },
        {
            "BUILDKITE": "true",
            "BUILDKITE_COMMIT": "abc123",
            "BUILDKITE_BRANCH": "feature",
            "BUILDKITE_BUILD_URL": "https://buildkite.com/a/b/builds/5",
            "BUILDKITE_RETRY_COUNT": "2",
        },
    ],
    ids=["gitlab", "buildkite"],
)
def test_the_report_records_provenance_and_the_agents_used(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "BUILDKITE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    suite.toml(
        ROOM + "agent = 12\n"
        '[[case]]\nname = "default-agent"\nscenario = 101\n'
        '[[case]]\nname = "own-agent"\nscenario = 101\nagent = 13\n'
    )
    suite.pytester.makepyfile(
        test_bot="""
        import pytest

        @pytest.mark.cekura(scenario=101, agent=14)
        def test_marked():
            pass
        """
    )
    suite.run("--cekura-report=report.json").assert_outcomes(passed=3)
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    ci = doc["provenance"]
    assert (ci["commit"], ci["branch"]) == ("abc123", "feature")
    assert ci["run_url"] == next(v for k, v in env.items() if k.endswith("_URL"))
    assert ci["attempt"] == (3 if "BUILDKITE" in env else None)  # retries + 1
    assert ci["agents"] == [12, 13, 14]
    assert {c["name"]: c["agent"] for c in doc["cases"]} == {
        "default-agent": 12,
        "own-agent": 13,
        "test_marked": 14,
    }


def test_a_toml_case_is_located_at_its_case_line(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run("-o", "junit_family=xunit1", "--cekura-report=report.json")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    toml = FOUR_CASES.splitlines()
    headers = [i for i, line in enumerate(toml) if line == "[[case]]"]  # 0-based
    names = ["books-a-table", "late-booking", "cancels", "opening-hours"]
    # junit_family=xunit1 writes pytest's 0-based line, as for any test.
    assert [suite.testcase(n).get("line") for n in names] == [str(i) for i in headers]
    assert {suite.testcase(n).get("file") for n in names} == {"cekura.toml"}
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    assert {c["name"]: c["line"] for c in doc["cases"]} == {
        n: i + 1 for n, i in zip(names, headers, strict=True)
    }
    # Items report the same location to editors and other plugins.
    items = (
        suite.pytester.inline_run("-p", "no:cacheprovider", "--collect-only")
        .getcalls("pytest_collection_finish")[0]
        .session.items
    )
    assert [item.location[1] for item in items] == headers


def test_cases_written_without_case_tables_have_no_invented_line(suite: Suite) -> None:
    suite.toml(ROOM + 'case = [{ name = "a", scenario = 101 }, { name = "b", scenario = 101 }]\n')
    result = suite.run("-o", "junit_family=xunit1", "--cekura-report=report.json")
    result.assert_outcomes(passed=2)
    assert suite.testcase("a").get("line") == "0"  # the file, as before
    doc = json.loads((suite.pytester.path / "report.json").read_text())
    assert [c["line"] for c in doc["cases"]] == [1, 1]


def test_case_lines() -> None:
    text = (
        "agent = 1\n\n[[case]]\nname = 'a'\nmarks = ['smoke']\n[case.quarantine]\n"
        "until = 2026-01-01\n\n[[ case ]]\nname = 'b'\n"
    )
    assert case_lines(text, 2) == [3, 9]
    spots = case_spots(text)
    assert case_line(spots, 0, key="marks") == 5
    assert case_line(spots, 1, key="marks") == 9  # no marks key: the header
    assert case_line(spots, 1, key="until") == 9  # a sub-table's key is not the case's
    assert case_line(spots, 2) is None
    assert case_lines(text, 3) == [None] * 3  # fewer headers than cases: no guess
    assert case_lines(text, 1) == [None]  # more headers than cases: no guess
    assert case_lines("case = [{scenario = 1}]", 1) == [None]


def test_a_failing_marked_test_is_annotated_at_its_line(suite: Suite, github: None) -> None:
    suite.pytester.makepyfile(
        test_bot="""
        import pytest

        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_body():
            assert False, "50% off, twice:\\nreally"
        """
    )
    result = suite.run()
    result.assert_outcomes(failed=1)
    (line,) = annotation_lines(result.stdout.str())
    assert line.startswith("::error file=test_bot.py,line=3,title=test_body (failed)::")
    assert "50%25 off, twice:" in line  # data: % escaped, : and , kept


def test_another_annotating_plugin_leaves_each_problem_one_annotation(
    suite: Suite, github: None
) -> None:
    """pytest-github-actions-annotate-failures prints an ``::error`` for every test that
    failed in its call phase: those are left to it; errors in setup (which it does not see)
    keep ours. Three problems, three annotations, one per test."""
    pytest.importorskip("pytest_github_actions_annotate_failures")
    suite.toml(FOUR_CASES)
    suite.pytester.makepyfile(
        test_bot="""
        import pytest

        @pytest.mark.cekura(scenario=101, pipecat_room_url="https://acme.daily.co/r")
        def test_body():
            assert False, "the body failed"
        """
    )
    result = suite.pytester.runpytest("-p", "no:cacheprovider")  # with the other plugin
    result.assert_outcomes(passed=2, failed=2, errors=1)
    lines = annotation_lines("\n".join(result.outlines + result.errlines))
    assert len(lines) == 3, lines
    assert sum("late-booking" in line for line in lines) == 1, lines
    assert sum("test_body" in line for line in lines) == 1, lines
    assert sum("cancels" in line and line.startswith("::error ") for line in lines) == 1, lines


def test_outcomes_annotated_elsewhere_are_not_annotated_twice() -> None:
    cases = [
        CaseRecord(n, n, 1, outcome=o, verdict=o, reason="why")
        for n, o in [("a", "failed"), ("b", "error"), ("c", "failed")]
    ]
    assert len(github_annotations(cases)) == 3
    (line,) = github_annotations(cases, elsewhere={"failed"})
    assert "title=b (error)" in line
    assert github_annotations(cases, limit=1, elsewhere={"failed"}) == [line]  # no notice


class _PluginManager:
    def __init__(self, **plugins: object) -> None:
        self.plugins = plugins

    def get_plugin(self, name: str) -> object | None:
        return self.plugins.get(name)


def test_annotate_failures_is_recognised_by_its_registered_object() -> None:
    theirs = type(
        "_AnnotateErrors", (), {"__module__": "pytest_github_actions_annotate_failures.plugin"}
    )
    other = type("_AnnotateErrors", (), {"__module__": "someone_elses_plugin"})
    assert annotated_elsewhere(_PluginManager(annotate_errors=theirs())) == {"failed"}
    assert annotated_elsewhere(_PluginManager(annotate_errors=other())) == frozenset()
    assert annotated_elsewhere(_PluginManager()) == frozenset()


def test_at_most_ten_errors_then_one_notice(suite: Suite, github: None) -> None:
    suite.toml(ROOM + "".join(f'[[case]]\nname = "c{i:02d}"\nscenario = 102\n' for i in range(30)))
    result = suite.run("-q")
    result.assert_outcomes(failed=30)
    lines = annotation_lines(result.stdout.str())
    assert sum(line.startswith("::error ") for line in lines) == 10
    (notice,) = [line for line in lines if line.startswith("::notice::")]
    assert notice.startswith("::notice::20 more failing Cekura case(s)")
    assert len(lines) == 11


def test_annotations_can_be_turned_off_and_need_github_actions(
    suite: Suite, github: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.toml(FOUR_CASES)
    assert annotation_lines(suite.run("--cekura-no-annotations").stdout.str()) == []
    suite.pytester.makeini(
        (suite.pytester.path / "tox.ini").read_text() + "\ncekura_no_annotations = true\n"
    )
    assert annotation_lines(suite.run().stdout.str()) == []
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    suite.pytester.makeini(
        (suite.pytester.path / "tox.ini")
        .read_text()
        .replace("\ncekura_no_annotations = true\n", "")
    )
    assert annotation_lines(suite.run().stdout.str()) == []


def test_pr_comment_option_and_ini(suite: Suite, tmp_path: Path) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run(f"--cekura-pr-comment={tmp_path / 'c' / 'comment.md'}")
    result.stdout.fnmatch_lines(["cekura: PR comment written to *comment.md"])
    text = (tmp_path / "c" / "comment.md").read_text()
    assert text.startswith(MARKER + "\n")
    assert "<code>late-booking</code>" in text and "<code>cancels</code>" in text
    assert "books-a-table" not in text  # only failing cases are listed
    suite.pytester.makeini(
        (suite.pytester.path / "tox.ini").read_text() + "\ncekura_pr_comment = from-ini.md\n"
    )
    suite.run()
    assert (suite.pytester.path / "from-ini.md").read_text().startswith(MARKER)


# -- pure functions -------------------------------------------------------------------------


def test_escaping_follows_githubs_rules() -> None:
    assert escape_data("100%\r\nok: a,b") == "100%25%0D%0Aok: a,b"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    (line,) = github_annotations(
        [
            CaseRecord(
                "x,y: z",
                "n",
                1,
                path="dir,1/cekura.toml",
                line=3,
                outcome="error",
                verdict="error",
                reason="first\nsecond",
            )
        ]
    )
    assert line == "::error file=dir%2C1/cekura.toml,line=3,title=x%2Cy%3A z (error)::first"


def test_passing_and_skipped_cases_are_not_annotated() -> None:
    cases = [
        CaseRecord(n, n, 1, outcome=o, verdict="passed")
        for n, o in [("a", "passed"), ("b", "skipped"), ("c", "xfailed"), ("d", "xpassed")]
    ]
    assert github_annotations(cases) == []


@pytest.mark.parametrize(
    ("env", "shard"),
    [
        ({"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "3"}, (1, 3)),
        ({"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "3"}, (3, 3)),
        ({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "4"}, (1, 4)),
        ({"CIRCLE_NODE_INDEX": "3", "CIRCLE_NODE_TOTAL": "4"}, (4, 4)),
        ({"BUILDKITE_PARALLEL_JOB": "1", "BUILDKITE_PARALLEL_JOB_COUNT": "2"}, (2, 2)),
        ({"CI_NODE_INDEX": "1"}, None),
        ({}, None),
    ],
)
def test_shard_from_env(env: dict[str, str], shard: tuple[int, int] | None) -> None:
    assert shard_from_env(env) == shard


@pytest.mark.parametrize(
    "env",
    [
        {"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "3"},  # GitLab counts from 1
        {"CIRCLE_NODE_INDEX": "4", "CIRCLE_NODE_TOTAL": "4"},
        {"BUILDKITE_PARALLEL_JOB": "x", "BUILDKITE_PARALLEL_JOB_COUNT": "2"},
    ],
)
def test_nonsense_shard_variables_are_one_line(env: dict[str, str]) -> None:
    with pytest.raises(ShardEnvError) as info:
        shard_from_env(env)
    assert "\n" not in str(info.value) and str(info.value).startswith("--cekura-shard=auto: ")


def test_resolve_shard() -> None:
    assert resolve_shard((2, 3), {}) == (2, 3)
    assert resolve_shard(None, {}) is None
    assert resolve_shard(SHARD_AUTO, {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"}) == (2, 2)
    with pytest.raises(ShardEnvError, match="no parallel job variables"):
        resolve_shard(SHARD_AUTO, {})


def test_shard_option_accepts_auto(pytester: pytest.Pytester) -> None:
    from pytest_cekura_pipecat._config.options import _shard

    assert _shard("auto") == SHARD_AUTO
    assert _shard("2/3") == (2, 3)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "GITLAB_CI": "true",
                "CI_COMMIT_SHA": "abc",
                "CI_COMMIT_REF_NAME": "feature",
                "CI_PIPELINE_URL": "https://gitlab.example/p/-/pipelines/9",
                "CI_JOB_NAME": "evals",
            },
            {
                "ci": "gitlab",
                "commit": "abc",
                "branch": "feature",
                "run_url": "https://gitlab.example/p/-/pipelines/9",
                "job": "evals",
                "attempt": None,
            },
        ),
        (
            {
                "CIRCLECI": "true",
                "CIRCLE_SHA1": "def",
                "CIRCLE_BRANCH": "main",
                "CIRCLE_BUILD_URL": "https://circleci.com/gh/a/b/7",
                "CIRCLE_JOB": "test",
            },
            {
                "ci": "circleci",
                "commit": "def",
                "branch": "main",
                "run_url": "https://circleci.com/gh/a/b/7",
                "job": "test",
                "attempt": None,
            },
        ),
        (
            {
                "BUILDKITE": "true",
                "BUILDKITE_COMMIT": "123",
                "BUILDKITE_BRANCH": "dev",
                "BUILDKITE_BUILD_URL": "https://buildkite.com/a/b/builds/5",
                "BUILDKITE_LABEL": "evals",
                "BUILDKITE_RETRY_COUNT": "1",
            },
            {
                "ci": "buildkite",
                "commit": "123",
                "branch": "dev",
                "run_url": "https://buildkite.com/a/b/builds/5",
                "job": "evals",
                "attempt": 2,
            },
        ),
        (
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_SHA": "f00",
                "GITHUB_HEAD_REF": "pr-branch",
                "GITHUB_REF_NAME": "12/merge",
                "GITHUB_REPOSITORY": "a/b",
                "GITHUB_RUN_ID": "1",
                "GITHUB_JOB": "evals",
            },
            {
                "ci": "github",
                "commit": "f00",
                "branch": "pr-branch",
                "run_url": "https://github.com/a/b/actions/runs/1",
                "job": "evals",
                "attempt": None,
            },
        ),
        ({}, dict.fromkeys(("ci", "commit", "branch", "run_url", "job", "attempt"))),
    ],
)
def test_provenance(env: dict[str, str], expected: dict[str, object]) -> None:
    assert provenance(env) == expected

"""What the plugin writes for CI systems: GitHub annotations, and where a report came from
(commit, branch, run, attempt)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .._text import plain
from .record import CaseRecord
from .summary import BAD, display_reason, first_line

ANNOTATION_LIMIT = 10  # GitHub shows at most 10 error annotations per step
# pytest-github-actions-annotate-failures: the object it registers (on the controller only)
# to print an ``::error`` for every test that failed in its call phase.
_ANNOTATE_FAILURES = ("annotate_errors", "pytest_github_actions_annotate_failures")


def in_github_actions(env: Mapping[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotated_elsewhere(pluginmanager: Any) -> frozenset[str]:
    """The outcomes another active plugin already annotates: pytest-github-actions-annotate-
    failures prints an ``::error`` for every test that failed in its call phase (outcome
    ``failed``), not for errors in setup (``error``)."""
    name, module = _ANNOTATE_FAILURES
    plugin = pluginmanager.get_plugin(name)
    if plugin is not None and type(plugin).__module__.startswith(module):
        return frozenset({"failed"})
    return frozenset()


def github_annotations(
    cases: Sequence[CaseRecord],
    limit: int = ANNOTATION_LIMIT,
    elsewhere: Collection[str] = (),
) -> list[str]:
    """``::error`` workflow commands for failed and errored cases (at most ``limit``), then
    one ``::notice`` counting the rest. Cases whose outcome is in ``elsewhere`` are left to
    the plugin that annotates them already (one problem, one annotation)."""
    bad = [c for c in cases if c.outcome in BAD and c.outcome not in elsewhere]
    lines = []
    for case in bad[:limit]:
        props = []
        if case.path:
            props.append(f"file={escape_property(case.path)}")
            if case.line:
                props.append(f"line={int(case.line)}")
        # Outside text (the reason) is made inert for the terminal before it is escaped as
        # the command's data: the escaping keeps it inside this one command.
        title = plain(f"{case.name} ({case.outcome})", one_line=True)
        props.append(f"title={escape_property(title)}")
        reason = plain(first_line(display_reason(case)), one_line=True)
        reason = reason or f"the case {case.outcome}"
        lines.append(f"::error {','.join(props)}::{escape_data(reason)}")
    if len(bad) > limit:
        rest = len(bad) - limit
        lines.append(
            f"::notice::{rest} more failing Cekura case(s) not annotated; see the job summary "
            "or the JSON report"
        )
    return lines


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def provenance(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where this run happened, for the JSON report: CI system, commit, branch, run URL, job
    and attempt (1-based; None where the CI system has no notion of it)."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo, run = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
        return {
            "ci": "github",
            "commit": env.get("GITHUB_SHA"),
            "branch": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
            "run_url": f"{server}/{repo}/actions/runs/{run}" if repo and run else None,
            "job": env.get("GITHUB_JOB"),
            "attempt": _int(env.get("GITHUB_RUN_ATTEMPT")),
        }
    if env.get("GITLAB_CI") == "true":
        return {
            "ci": "gitlab",
            "commit": env.get("CI_COMMIT_SHA"),
            "branch": env.get("CI_COMMIT_REF_NAME"),
            "run_url": env.get("CI_PIPELINE_URL") or env.get("CI_JOB_URL"),
            "job": env.get("CI_JOB_NAME"),
            "attempt": None,
        }
    if env.get("CIRCLECI") == "true":
        return {
            "ci": "circleci",
            "commit": env.get("CIRCLE_SHA1"),
            "branch": env.get("CIRCLE_BRANCH"),
            "run_url": env.get("CIRCLE_BUILD_URL"),
            "job": env.get("CIRCLE_JOB"),
            "attempt": None,
        }
    if env.get("BUILDKITE") == "true":
        retries = _int(env.get("BUILDKITE_RETRY_COUNT"))
        return {
            "ci": "buildkite",
            "commit": env.get("BUILDKITE_COMMIT"),
            "branch": env.get("BUILDKITE_BRANCH"),
            "run_url": env.get("BUILDKITE_BUILD_URL"),
            "job": env.get("BUILDKITE_LABEL"),
            "attempt": None if retries is None else retries + 1,
        }
    return {
        "ci": None,
        "commit": None,
        "branch": None,
        "run_url": None,
        "job": None,
        "attempt": None,
    }

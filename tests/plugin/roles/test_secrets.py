"""Secrets everywhere, in every process: every process of a session masks every secret any
of them knows, in every output, before any escaping."""

from __future__ import annotations

import html
import json
import os
import random
import string
from pathlib import Path

import pytest
from helpers import API_KEY, Suite, no_traceback

from pytest_cekura_pipecat._redact import MASK, Redactor, mask_tree

# Every secret carries SECRET (upper case, which no test or path name here does): an output
# holding any piece of one, escaped or not, is caught by one search.
USER = "ci-user"  # a name, not a secret (a user alone, https://TOKEN@host, is one)
PASSWORD = "pa%7Css-SECRET-p2"  # percent-encoded: the client sends "pa|ss-SECRET-p2"
TOML_TOKEN = 'tok"en\\pipe|ü-SECRET-t1'  # a quote, a backslash, a pipe, non-ASCII
QUERY_TOKEN = "eyJhbGciOi.SECRET-t2.c2ln"  # a Daily meeting token in the room URL's ?t=
HOOK_TOKEN = 'hook"\\|é-SECRET-t3'  # made by a pytest_cekura_room hook, in one worker
CLOUD_KEY = "pcc-SECRET-k4"

CASES = """
[[case]]
name = "toml-token"
scenario = 103
pipecat_room_url = "https://acme.daily.co/a"
pipecat_token = "${TOML_TOKEN}"

[[case]]
name = "query-token"
scenario = 102
pipecat_room_url = "https://acme.daily.co/b?t=${QUERY_TOKEN}"
"""

MARKED = """
import pytest

@pytest.mark.cekura(scenario=103)
def test_hook_room(cekura_run):
    print("TRANSCRIPT", cekura_run.transcript)
    print("ERROR", cekura_run.error_message)

@pytest.mark.cekura(scenario=101)
def test_hook_room_passes(cekura_run):
    print("TRANSCRIPT", cekura_run.transcript)
"""

# A tuple, whose repr (in --debug's trace of the hook's result) shows the token.
HOOK = f"""
def pytest_cekura_room(case, config):
    return ("https://acme.daily.co/hook", {HOOK_TOKEN!r})
"""


def _outputs(root: Path, result: pytest.RunResult) -> dict[str, str]:
    files = {p.name: p for p in root.iterdir() if p.suffix in (".xml", ".json", ".md", ".log")}
    texts = {
        name: path.read_text(encoding="utf-8", errors="replace") for name, path in files.items()
    }
    texts["stdout"] = "\n".join(result.outlines)
    texts["stderr"] = "\n".join(result.errlines)
    return texts


@pytest.fixture
def secret_suite(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> Suite:
    """The suite with secrets everywhere: an API URL with credentials, tokens that need
    escaping, a room hook, a Pipecat Cloud key; the server echoes rooms and tokens."""
    monkeypatch.setenv("TOML_TOKEN", TOML_TOKEN)
    monkeypatch.setenv("QUERY_TOKEN", QUERY_TOKEN)
    monkeypatch.setenv("PIPECAT_CLOUD_API_KEY", CLOUD_KEY)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(suite.pytester.path / "step-summary.md"))
    url = suite.sim.url.replace("http://", f"http://{USER}:{PASSWORD}@")
    suite.pytester.makeini(
        f"""
        [pytest]
        cekura_api_url = {url}
        cekura_poll_interval = 0.1
        cekura_retry_window = 5
        junit_logging = all
        """
    )
    suite.sim.configure(echo_secrets=True)
    suite.toml(CASES)
    suite.pytester.makeconftest(HOOK)
    suite.pytester.makepyfile(test_marked=MARKED)
    return suite


@pytest.mark.parametrize("workers", [["-n", "2"], []])
def test_no_secret_in_any_output_of_any_process(secret_suite: Suite, workers: list[str]) -> None:
    if workers:
        pytest.importorskip("xdist")
    suite = secret_suite
    result = suite.run(
        *workers,
        "-rA",
        "-s",
        "--cekura-report=report.json",
        "--debug=debug.log",
        "--log-level=DEBUG",
    )
    result.assert_outcomes(passed=1, failed=1, errors=2)
    posts = suite.posts()
    # The secrets did reach the server (so an echo came back)...
    sent = [e.get("pipecat_token") for p in posts for e in p.body["scenarios"]]
    assert TOML_TOKEN in sent and HOOK_TOKEN in sent
    outputs = _outputs(suite.pytester.path, result)
    assert {"junit.xml", "report.json", "step-summary.md", "debug.log"} <= set(outputs)
    assert MASK in outputs["report.json"] and MASK in outputs["stdout"]  # ...masked
    # ...and none of them is in any output, escaped or not.
    for name, text in outputs.items():
        assert "SECRET" not in text, (name, text[text.find("SECRET") - 300 :][:600])
    assert no_traceback(outputs["stdout"])


def test_the_dry_run_masks_every_secret(secret_suite: Suite) -> None:
    result = secret_suite.run("--cekura-dry-run")
    text = "\n".join(result.outlines + result.errlines)
    assert "would be started" in text
    assert "SECRET" not in text, text
    assert secret_suite.posts() == []


def test_masking_happens_before_escaping() -> None:
    redactor = Redactor()
    for secret in (TOML_TOKEN, HOOK_TOKEN):
        redactor.add(secret)
    document = {"cases": [{"message": f"echo {TOML_TOKEN}", HOOK_TOKEN: [HOOK_TOKEN]}]}
    masked = mask_tree(document, redactor)
    for text in (json.dumps(masked), json.dumps(masked, ensure_ascii=False), str(masked)):
        assert "SECRET" not in text
    # Text escaped elsewhere (a repr in a --debug trace, a JSON body in a log) is masked too.
    for escaped in (json.dumps(document), repr(document), html.escape(f"echo {TOML_TOKEN}")):
        assert "SECRET" not in redactor(escaped), escaped


def test_a_secret_one_process_learns_is_masked_by_every_other(tmp_path: Path) -> None:
    shared = tmp_path / "secrets"
    controller, firing, other = Redactor(), Redactor(), Redactor()
    controller.add(API_KEY)
    key = os.urandom(32)
    for redactor in (controller, firing, other):
        redactor.share(shared, key)
    firing.add(HOOK_TOKEN)  # learnt from a room hook, before the start request leaves
    firing.add_url(f"https://{USER}:{PASSWORD}@h/x?t={QUERY_TOKEN}")
    firing.add_url("https://ghp-SECRET-t5@github.com/")  # a token as the user
    for redactor in (controller, other):
        masked = redactor(
            f"{API_KEY} {HOOK_TOKEN} {QUERY_TOKEN} {PASSWORD} pa|ss-SECRET-p2 ghp-SECRET-t5"
        )
        assert "SECRET" not in masked, masked
        assert USER in redactor(USER)
    assert shared.stat().st_mode & 0o777 == 0o600
    data = shared.read_bytes()
    for secret in (API_KEY, HOOK_TOKEN, QUERY_TOKEN, PASSWORD, "SECRET"):
        assert secret.encode() not in data  # sealed with the session's key
    stranger = Redactor()  # another key: learns nothing from the file
    stranger.share(shared, os.urandom(32))
    assert stranger(API_KEY) == API_KEY


def _tokens(count: int, seed: int) -> list[str]:
    """Meeting-token-like secrets: a shared prefix, then a varying body (as Daily's JWTs)."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-_"
    return [
        "eyJhbGciOi." + "".join(rng.choices(alphabet, k=rng.randint(8, 40))) + "-SECRET"
        for _ in range(count)
    ]


@pytest.mark.parametrize("count", [3, 3000])
def test_every_secret_is_masked_with_a_few_secrets_or_thousands(count: int) -> None:
    """Rooms from a provider bring a token per run: the redactor then masks in one pass over
    the text. Either way no secret survives, the longest wins where one contains another, and
    a text without any is given back as it is."""
    tokens = _tokens(count, seed=count)
    redactor = Redactor()
    for token in tokens:
        redactor.add(token)
    redactor.add(tokens[0][:-7])  # a secret inside another: the longer one is masked whole
    rng = random.Random(1)
    for _ in range(200):
        picked = rng.sample(tokens, 3)
        text = f"joined {picked[0]} then{picked[1]}{picked[2]} and {tokens[0]}; eyJhbGciOi. ok"
        masked = redactor(text)
        assert "SECRET" not in masked, masked
        assert masked.endswith(f"and {MASK}; eyJhbGciOi. ok"), masked
    clean = "no secrets here " * 100
    assert redactor(clean) is clean
    assert redactor.tree({"a": [clean]}) == {"a": [clean]}
    assert "SECRET" not in json.dumps(redactor.tree({tokens[-1]: [f"x{tokens[-2]}y"]}))


class _CountedStr(str):
    """A text that counts the searches made in it."""

    searches = 0

    def __contains__(self, other: object) -> bool:
        _CountedStr.searches += 1
        return super().__contains__(other)  # type: ignore[operator]


def test_masking_does_not_search_once_per_secret_when_there_are_thousands() -> None:
    """One search per secret per text would make a suite of N provider rooms cost N x N."""
    redactor = Redactor()
    for token in _tokens(5000, seed=5):
        redactor.add(token)
    _CountedStr.searches = 0
    text = _CountedStr("the run's error message, " * 4)
    assert redactor(text) == text
    assert _CountedStr.searches < 100, _CountedStr.searches

"""The core gate: cekura.toml cases fired once, in batches, judged as pytest items."""

from __future__ import annotations

import pytest
from helpers import API_KEY, FOUR_CASES, ROOM_TOKEN, Suite, no_traceback

ROOM = 'pipecat_room_url = "https://acme.daily.co/r"\n'


def test_four_cases_give_pass_fail_error_and_one_post(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    result = suite.run("-rA")

    result.assert_outcomes(passed=2, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    # The failure names the evaluator's reason and the failed metric, run and result ids.
    result.stdout.fnmatch_lines(
        [
            "expected outcome: score 40/100: The agent booked 23:30*",
            "*scenario 102 'Refuses a late booking' failed its evaluation",
            "*metric 'Respects opening hours' did not pass*",
        ]
    )
    assert "ERROR at setup of cekura case cancels (scenario 103)" in out
    assert "Bot did not join the room" in out
    # All five runs went out in one POST, every request carried the key.
    posts = suite.posts()
    assert len(posts) == 1
    assert [e["scenario"] for e in posts[0].body["scenarios"]] == [101, 102, 103, 104, 104]
    assert all(r.headers.get("x-cekura-api-key") == API_KEY for r in suite.sim.requests)
    assert all(r.path.endswith("/") for r in suite.sim.requests)
    # Secrets reach the server, and nowhere else.
    assert posts[0].body["scenarios"][0]["pipecat_token"] == ROOM_TOKEN
    artifacts = suite.artifacts(result)
    assert API_KEY not in artifacts
    assert ROOM_TOKEN not in artifacts


def test_start_request_body_is_the_contract(suite: Suite) -> None:
    suite.toml(
        """
        agent = 12
        pipecat_room_url = "https://acme.daily.co/room-abc"
        [[case]]
        scenario = 101
        publish_data_message = { locale = "en-US", tags = ["a", 1] }
        [[case]]
        scenario = 104
        pipecat_room_url = "https://acme.daily.co/other"
        """.replace("        ", "")
    )
    suite.run().assert_outcomes(passed=2)
    (post,) = suite.posts()
    assert post.headers["content-type"] == "application/json"
    assert post.body == {
        "agent": 12,
        "scenarios": [
            {
                "scenario": 101,
                "pipecat_room_url": "https://acme.daily.co/room-abc",
                "publish_data_message": {"locale": "en-US", "tags": ["a", 1]},
            },
            {"scenario": 104, "pipecat_room_url": "https://acme.daily.co/other"},
        ],
    }


def test_junit_carries_properties_per_run(suite: Suite) -> None:
    suite.toml(FOUR_CASES.replace('pipecat_token = "${ROOM_TOKEN}"', "project = 7"))
    suite.run()
    props = suite.properties("opening-hours")
    assert [v for k, v in props if k == "cekura_scenario_id"] == ["104", "104"]
    run_ids = [v for k, v in props if k == "cekura_run_id"]
    assert len(set(run_ids)) == 2 and all(v.isdigit() for v in run_ids)
    assert [v for k, v in props if k == "cekura_status"] == ["completed", "completed"]
    (_result_id,) = {v for k, v in props if k == "cekura_result_id"}
    # A simulated result has no page on the real dashboard: no link, even with a project.
    assert not [v for k, v in props if k == "cekura_dashboard_url"]
    failure = suite.testcase("late-booking").find("failure")
    assert failure is not None
    assert "Respects opening hours" in (failure.text or "") + failure.get("message", "")
    assert "dashboard.cekura.ai" not in (failure.text or "") + suite.pytester.path.joinpath(
        "junit.xml"
    ).read_text(encoding="utf-8")
    error = suite.testcase("cancels").find("error")
    assert error is not None and "Bot did not join the room" in (error.text or "")


def test_terminal_summary_lists_cases(suite: Suite) -> None:
    suite.toml(FOUR_CASES.replace('pipecat_token = "${ROOM_TOKEN}"', "project = 7"))
    result = suite.run()
    result.stdout.fnmatch_lines(
        [
            "*= cekura =*",
            "*case*scenario*runs*score*time*first reason",
            "FAILED late-booking*102 Refuses a late booking*0/1*40*",
            "*expected outcome: score 40/100*",
            "ERROR*cancels*103 Cancels a booking*0/1*-*",
            "*Bot did not join the room*",
            "PASSED*books-a-table*1/1*100*",
            "PASSED*opening-hours*2/2*100*",
            "4 case(s), 5 run(s): 2 passed, 1 failed, 1 error · pass rate 50% · about 1.6 credits (estimate)",
        ]
    )


def test_a_large_suite_lists_what_did_not_pass_and_counts_the_rest(suite: Suite) -> None:
    cases = "".join(f'[[case]]\nname = "ok-{i:02d}"\nscenario = 101\n' for i in range(51))
    suite.toml(ROOM + cases + '[[case]]\nname = "late"\nscenario = 102\n')
    result = suite.run("--cekura-poll-interval=0.1")
    lines = result.outlines
    assert not [line for line in lines if line.startswith("PASSED ")]
    result.stdout.fnmatch_lines(
        [
            "*= cekura =*",
            "*case*scenario*runs*score*time*first reason",
            "FAILED late*102 Refuses a late booking*0/1*40*",
            "51 passed case(s) not listed, one row each with -v",
            "52 case(s), 52 run(s): 51 passed, 1 failed, 0 error · pass rate 98% · about 20.8 credits (estimate)",
        ]
    )
    verbose = suite.run("--cekura-poll-interval=0.1", "-v").outlines
    rows = [line for line in verbose if line.startswith("PASSED ok-")]
    assert len(rows) == 51, rows
    assert not [line for line in verbose if "not listed" in line]


@pytest.mark.parametrize(
    ("args", "fired"),
    [
        (["-k", "books or cancels"], [101, 103]),
        (["-m", "smoke"], [104, 104]),
        (["--deselect", "cekura.toml::late-booking"], [101, 103, 104, 104]),
        (["cekura.toml::cancels"], [103]),
    ],
)
def test_selection_fires_only_what_it_selects(
    suite: Suite, args: list[str], fired: list[int]
) -> None:
    suite.toml(FOUR_CASES.replace("repeat = 2", 'repeat = 2\nmarks = ["smoke"]'))
    suite.run(*args)
    assert [e["scenario"] for p in suite.posts() for e in p.body["scenarios"]] == fired


def test_collect_only_fires_nothing_and_needs_no_secrets(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROOM_TOKEN")
    monkeypatch.delenv("CEKURA_API_KEY")
    suite.toml(FOUR_CASES)
    result = suite.run("--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["cekura.toml::books-a-table", "cekura.toml::opening-hours"])
    assert suite.sim.requests == []


def test_last_failed_fires_only_the_failures(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    suite.pytester.runpytest()  # with the cache, to record failures
    suite.sim.reset()
    suite.pytester.runpytest("--lf")
    assert sorted(e["scenario"] for p in suite.posts() for e in p.body["scenarios"]) == [102, 103]


def test_entries_are_batched(suite: Suite) -> None:
    suite.toml(FOUR_CASES)
    suite.run("--cekura-batch-size=2")
    sizes = sorted(len(p.body["scenarios"]) for p in suite.posts())
    assert sizes == [1, 2, 2]
    assert suite.sim.entries_fired() == 5


def test_one_get_per_result_per_interval_serves_every_item(suite: Suite) -> None:
    cases = "\n".join(f'[[case]]\nname = "c{i}"\nscenario = 101\n' for i in range(12))
    suite.toml('pipecat_room_url = "https://acme.daily.co/r"\n' + cases)
    suite.run("--cekura-poll-interval=0.2").assert_outcomes(passed=12)
    gets = suite.gets()
    # The runs take 0.3 s: a handful of ticks, not one GET per run per tick.
    assert 1 <= len(gets) <= 5
    assert len({r.path for r in gets}) == 1


def test_repeat_and_min_passes(suite: Suite) -> None:
    suite.toml(
        """
        pipecat_room_url = "https://acme.daily.co/r"
        [[case]]
        name = "mostly"
        scenario = 104
        repeat = 3
        min_passes = 2
        """.replace("        ", "")
    )
    suite.run().assert_outcomes(passed=1)
    assert suite.sim.entries_fired() == 3


def test_env_expansion_with_default_and_missing_variable(suite: Suite) -> None:
    suite.toml(
        """
        [[case]]
        name = "defaulted"
        scenario = 101
        pipecat_room_url = "${ROOM_URL_UNSET:-https://acme.daily.co/fallback}"
        [[case]]
        name = "missing"
        scenario = 104
        pipecat_room_url = "https://acme.daily.co/r"
        pipecat_token = "${NOT_EXPORTED_TOKEN}"
        """.replace("        ", "")
    )
    result = suite.run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*case missing: environment variable NOT_EXPORTED_TOKEN is not set*"]
    )
    (post,) = suite.posts()
    assert post.body["scenarios"] == [
        {"scenario": 101, "pipecat_room_url": "https://acme.daily.co/fallback"}
    ]


def test_api_url_from_environment(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.pytester.makeini("[pytest]\ncekura_poll_interval = 0.1\ncekura_room_concurrency = 100\n")
    monkeypatch.setenv("CEKURA_API_URL", suite.sim.url)
    suite.toml(FOUR_CASES)
    suite.run().assert_outcomes(passed=2, failed=1, errors=1)
    assert len(suite.posts()) == 1


def test_missing_api_key_errors_every_case_and_fires_nothing(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CEKURA_API_KEY")
    suite.toml(FOUR_CASES)
    result = suite.run()
    result.assert_outcomes(errors=4)
    assert result.stdout.str().count("CEKURA_API_KEY is not set") >= 4
    assert suite.sim.requests == []


def test_wrong_key_is_one_clear_line(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEKURA_API_KEY", "sk-wrong-SECRET-key-000")
    suite.toml(FOUR_CASES)
    result = suite.run()
    result.assert_outcomes(errors=4)
    out = result.stdout.str()
    assert "Cekura rejected the API key (HTTP 401): check CEKURA_API_KEY" in out
    assert no_traceback(out)
    assert "sk-wrong-SECRET-key-000" not in suite.artifacts(result)
    assert len(suite.posts()) == 1  # never re-sent


def test_error_statuses_are_errors_with_the_api_words(suite: Suite) -> None:
    suite.toml(
        """
        pipecat_room_url = "https://acme.daily.co/r"
        [[case]]
        name = "timeout"
        scenario = 106
        [[case]]
        name = "cancelled"
        scenario = 107
        """.replace("        ", "")
    )
    result = suite.run()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*Call exceeded 10 minutes*"])
    result.stdout.fnmatch_lines(["*cancelled*"])


def test_stuck_run_times_out_and_its_call_is_ended(suite: Suite) -> None:
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/r"\n[[case]]\nname = "stuck"\nscenario = 105\n'
    )
    result = suite.run("--cekura-timeout=1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no verdict after 1 s (last status: running)*"])
    ended = [r for r in suite.sim.requests if r.path.endswith("/end_call/")]
    assert len(ended) == 1


def test_simulate_flag_runs_offline_and_says_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CEKURA_API_KEY", raising=False)
    pytester.makefile(
        ".toml", cekura='[[case]]\nscenario = 1\npipecat_room_url = "https://x.daily.co/r"\n'
    )
    result = pytester.runpytest("--cekura-simulate", "--cekura-poll-interval=0.2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cekura: SIMULATED*", "*SIMULATED RUN*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_echoed_tokens_in_room_urls_are_masked_everywhere(
    suite: Suite, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    """Cekura may echo a room's token (``pipecat_token`` or the Daily ``?t=`` in its URL)
    back in an error message or a transcript: no process prints either."""
    monkeypatch.setenv("ROOM_T", "daily-query-SECRET-4242")
    suite.sim.configure(echo_secrets=True)
    suite.toml(
        'pipecat_token = "${ROOM_TOKEN}"\n'
        '[[case]]\nname = "a"\nscenario = 101\npipecat_room_url = "https://acme.daily.co/a"\n'
        '[[case]]\nname = "b"\nscenario = 103\n'
        'pipecat_room_url = "https://acme.daily.co/b?t=${ROOM_T}"\n'
    )
    result = suite.run("--cekura-report=report.json", "-rA", *workers)
    result.assert_outcomes(passed=1, errors=1)
    text = suite.artifacts(result) + (suite.pytester.path / "report.json").read_text()
    assert "***" in text  # the echo arrived, masked
    assert "SECRET" not in text

"""Marked tests, the cekura_run fixture and the public hooks."""

from __future__ import annotations

import pytest
from helpers import START, Suite

ROOM = "https://acme.daily.co/r"


def test_done_when_marked_file(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_bot=f"""
        import pytest

        @pytest.mark.cekura(scenario=101, pipecat_room_url="{ROOM}")
        def test_transcript(cekura_run):
            assert cekura_run.passed and cekura_run.status == "completed"
            assert cekura_run.transcript
            assert cekura_run.run_id and cekura_run.result_id and cekura_run.scenario_id == 101

        @pytest.mark.cekura(scenario=102, pipecat_room_url="{ROOM}")
        def test_empty_body_failing_evaluation():
            pass

        @pytest.mark.parametrize("locale", [
            pytest.param("en", marks=pytest.mark.cekura(scenario=101, publish_data_message={{"l": "en"}})),
            pytest.param("fr", marks=pytest.mark.cekura(scenario=104, publish_data_message={{"l": "fr"}})),
        ])
        @pytest.mark.cekura(pipecat_room_url="{ROOM}")
        def test_locales(locale, cekura_run):
            assert cekura_run.passed
        """
    )
    result = suite.run("-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_empty_body_failing_evaluation*", "*Respects opening hours*"]
    )
    (post,) = suite.posts()
    assert [e["scenario"] for e in post.body["scenarios"]] == [101, 102, 101, 104]
    assert [e.get("publish_data_message") for e in post.body["scenarios"]] == [
        None,
        None,
        {"l": "en"},
        {"l": "fr"},
    ]
    bulk = [r for r in suite.sim.requests if "/runs/bulk/" in r.path]
    assert len(bulk) == 1  # one lazy bulk request served the transcript


@pytest.mark.parametrize(
    ("evaluation", "body", "outcome"),
    [
        (101, "pass", {"passed": 1}),
        (101, "assert False, 'body says no'", {"failed": 1}),
        (102, "pass", {"failed": 1}),
        (102, "assert False, 'body says no'", {"failed": 1}),
        (103, "pass", {"errors": 1}),
    ],
)
def test_verdict_semantics(
    suite: Suite, evaluation: int, body: str, outcome: dict[str, int]
) -> None:
    suite.pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.cekura(scenario={evaluation}, pipecat_room_url="{ROOM}")
        def test_it(cekura_run):
            {body}
        """
    )
    suite.run().assert_outcomes(**outcome)


def test_marker_is_registered(suite: Suite) -> None:
    result = suite.pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.cekura(scenario, *"])


def test_class_and_module_markers_merge_and_toml_defaults_apply(suite: Suite) -> None:
    suite.toml(f'agent = 12\npipecat_room_url = "{ROOM}/from-toml"\n')
    suite.pytester.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.cekura(agent=34)

        @pytest.mark.cekura(repeat=2)
        class TestBot:
            @pytest.mark.cekura(scenario=104)
            def test_a(self):
                pass
        """
    )
    suite.run().assert_outcomes(passed=1)
    (post,) = suite.posts()
    assert post.body["agent"] == 34
    assert [e["pipecat_room_url"] for e in post.body["scenarios"]] == [f"{ROOM}/from-toml"] * 2


def test_ini_defaults_apply_to_marked_tests(suite: Suite) -> None:
    suite.pytester.makeini(
        f"""
        [pytest]
        cekura_api_url = {suite.sim.url}
        cekura_poll_interval = 0.1
        cekura_agent = 9
        cekura_pipecat_room_url = {ROOM}/ini
        cekura_room_concurrency = 100
        """
    )
    suite.pytester.makepyfile(
        "import pytest\n@pytest.mark.cekura(scenario=101)\ndef test_a(): pass\n"
    )
    suite.run().assert_outcomes(passed=1)
    (post,) = suite.posts()
    assert post.body == {
        "agent": 9,
        "scenarios": [{"scenario": 101, "pipecat_room_url": f"{ROOM}/ini"}],
    }


def test_fixture_without_marker_is_a_clear_error(suite: Suite) -> None:
    suite.pytester.makepyfile("def test_a(cekura_run): pass\n")
    result = suite.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs @pytest.mark.cekura(scenario=...)*"])


def test_hooks_room_entry_verdict_and_run_finished(suite: Suite) -> None:
    suite.pytester.makeconftest(
        """
        import threading
        from pytest_cekura_pipecat import Room

        calls = {"room": [], "finished": []}

        def pytest_cekura_room(case, config):
            calls["room"].append((case.name, threading.current_thread().name))
            return Room(f"https://acme.daily.co/{case.scenario}", "hook-token-SECRET-1234")

        def pytest_cekura_entry(case, entry):
            entry["publish_data_message"] = {"sha": "abc123"}

        def pytest_cekura_verdict(case, runs):
            if case.scenario == 102:
                return True   # accept the failing evaluation

        def pytest_cekura_run_finished(case, run):
            calls["finished"].append(run.run_id)

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"rooms={len(calls['room'])} finished={len(calls['finished'])}")
        """
    )
    suite.toml("[[case]]\nscenario = 101\nrepeat = 2\n[[case]]\nscenario = 102\n")
    result = suite.run()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*rooms=3 finished=3*"])
    (post,) = suite.posts()
    assert [e["pipecat_room_url"] for e in post.body["scenarios"]] == [
        "https://acme.daily.co/101",
        "https://acme.daily.co/101",
        "https://acme.daily.co/102",
    ]
    assert all(e["publish_data_message"] == {"sha": "abc123"} for e in post.body["scenarios"])
    assert "hook-token-SECRET-1234" not in suite.artifacts(result)


def test_pipecat_cloud_room_provider(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECAT_CLOUD_API_KEY", "pcc-sim-key")
    suite.toml("[[case]]\nscenario = 101\nrepeat = 2\n")
    result = suite.run(
        "--cekura-pipecat-cloud-agent=my-bot", f"--cekura-pipecat-cloud-url={suite.sim.url}"
    )
    result.assert_outcomes(passed=1)
    starts = [
        r
        for r in suite.sim.requests
        if r.path == "/v1/public/my-bot/start/" or r.path == "/v1/public/my-bot/start"
    ]
    assert len(starts) == 2 and all(r.body["createDailyRoom"] is True for r in starts)
    (post,) = suite.posts()
    urls = [e["pipecat_room_url"] for e in post.body["scenarios"]]
    assert len(set(urls)) == 2 and all(u.startswith("https://sim.daily.co/room-") for u in urls)
    assert all(e["pipecat_token"].startswith("sim-daily-token-") for e in post.body["scenarios"])
    assert "sim-daily-token-" not in suite.artifacts(result)


def test_pipecat_cloud_without_key_is_a_usage_error(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPECAT_CLOUD_API_KEY", raising=False)
    suite.toml("[[case]]\nscenario = 101\n")
    result = suite.run("--cekura-pipecat-cloud-agent=my-bot")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*PIPECAT_CLOUD_API_KEY is not set*"])
    assert not [r for r in suite.sim.requests if r.path == START]

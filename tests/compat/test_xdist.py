"""pytest-xdist: fired once in total, polled once per result per interval, junit intact."""

from __future__ import annotations

import pytest
from helpers import FOUR_CASES, Suite

pytest.importorskip("xdist")

MANY = 'pipecat_room_url = "https://acme.daily.co/r"\n' + "".join(
    f'[[case]]\nname = "c{i:02d}"\nscenario = {101 if i % 3 else 104}\n' for i in range(24)
)


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile", "worksteal", "loadgroup"])
def test_fired_exactly_once_under_n2(suite: Suite, dist: str) -> None:
    suite.toml(MANY)
    result = suite.run("-n", "2", f"--dist={dist}")
    result.assert_outcomes(passed=24)
    assert suite.sim.entries_fired() == 24
    assert len(suite.posts()) == 1
    gets = suite.gets()
    # 0.3 s runs, 0.1 s interval: a few ticks for the single result, shared by both workers.
    assert len(gets) <= 8, [round(r.at - gets[0].at, 2) for r in gets]


def test_four_cases_under_n4_keep_verdicts_properties_and_summary(suite: Suite) -> None:
    suite.toml(FOUR_CASES.replace('pipecat_token = "${ROOM_TOKEN}"', "project = 7"))
    result = suite.run("-n", "4")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    assert suite.sim.entries_fired() == 5 and len(suite.posts()) == 1
    props = suite.properties("opening-hours")
    assert [k for k, _ in props].count("cekura_run_id") == 2
    assert not any(k == "cekura_dashboard_url" for k, _ in props)  # simulated: no link
    assert "dashboard.cekura.ai" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*= cekura =*",
            "4 case(s), 5 run(s): 2 passed, 1 failed, 1 error · pass rate 50% · about 1.6 credits (estimate)",
        ]
    )


def test_deselected_cases_are_not_fired_under_xdist(suite: Suite) -> None:
    suite.toml(MANY)
    suite.run("-n", "2", "-k", "c01 or c02").assert_outcomes(passed=2)
    assert suite.sim.entries_fired() == 2


def test_shards_are_disjoint_complete_balanced_and_fire_only_themselves(suite: Suite) -> None:
    suite.toml(MANY.replace('name = "c05"\n', 'name = "c05"\nrepeat = 3\n'))
    names = [_names(suite, k) for k in (1, 2, 3)]
    flat = [n for shard in names for n in shard]
    assert sorted(flat) == sorted(f"c{i:02d}" for i in range(24))  # complete and disjoint
    loads = [sum(3 if n == "c05" else 1 for n in shard) for shard in names]
    assert max(loads) - min(loads) <= 1  # balanced by run count
    assert suite.sim.requests == []  # --collect-only fired nothing
    suite.run("--cekura-shard=2/3", "-n", "2").assert_outcomes(passed=len(names[1]))
    assert suite.sim.entries_fired() == loads[1]


def _names(suite: Suite, k: int) -> list[str]:
    result = suite.pytester.runpytest(
        "-p", "no:cacheprovider", "--collect-only", "-q", f"--cekura-shard={k}/3"
    )
    return [line.split("::")[1] for line in result.outlines if line.startswith("cekura.toml::")]


def test_remote_workers_fire_nothing_and_say_why(suite: Suite) -> None:
    # Stand in for --tx ssh=...: the worker cannot see the controller's shared directory.
    suite.pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_configure_node(node):
            node.workerinput["cekura_shared_dir"] = "/nonexistent/cekura-shared"
        """
    )
    suite.toml(MANY)
    result = suite.run("-n", "2")
    result.assert_outcomes(errors=24)
    result.stdout.fnmatch_lines(["*needs xdist workers on the controller's machine*"])
    assert suite.sim.requests == []

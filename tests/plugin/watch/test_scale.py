"""At scale: requests stay bounded by results and ticks, whatever splits or spreads the cases."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from helpers import Suite

pytest.importorskip("xdist")

CASES = 24
REPEATED = "c05"  # the one case with repeat = 3
ENTRIES = CASES + 2


def _room(name: str) -> str:
    return f"https://acme.daily.co/{name}"


def many(n: int = CASES, repeated: str | None = REPEATED) -> str:
    """N cases of 0.3 s passing scenarios; each has its own room, so a POST body tells which
    cases it fired."""
    return "".join(
        f'[[case]]\nname = "c{i:02d}"\nscenario = {101 if i % 3 else 104}\n'
        f'pipecat_room_url = "{_room(f"c{i:02d}")}"\n'
        + ("repeat = 3\n" if f"c{i:02d}" == repeated else "")
        for i in range(n)
    )


MANY = many()


def fired(suite: Suite) -> Counter[str]:
    """How many runs each case got, read from the bodies of the start POSTs."""
    rooms = Counter(
        entry["pipecat_room_url"] for post in suite.posts() for entry in post.body["scenarios"]
    )
    return Counter({url.rsplit("/", 1)[1]: n for url, n in rooms.items()})


def expected(names: list[str], repeated: str = REPEATED) -> Counter[str]:
    return Counter({name: 3 if name == repeated else 1 for name in names})


ALL = [f"c{i:02d}" for i in range(CASES)]


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile", "loadgroup", "worksteal"])
def test_n4_fires_each_run_once_in_one_post_and_polls_per_tick(suite: Suite, dist: str) -> None:
    suite.toml(MANY)
    result = suite.run("-n", "4", f"--dist={dist}")
    result.assert_outcomes(passed=CASES)
    assert suite.sim.entries_fired() == ENTRIES
    assert fired(suite) == expected(ALL)
    assert len(suite.posts()) == 1  # 26 entries, batch size 50
    gets = suite.gets()
    # One result; 0.3 s runs polled every 0.1 s (backing off to 0.3 s) by four workers that
    # share one snapshot: a handful of ticks, not one GET per worker or per case.
    assert len(gets) <= 10, [round(r.at - gets[0].at, 2) for r in gets]


def test_n4_with_batch_size_5_posts_ceil_entries_over_5(suite: Suite) -> None:
    suite.toml(MANY)
    result = suite.run("-n", "4", "--cekura-batch-size=5")
    result.assert_outcomes(passed=CASES)
    posts = suite.posts()
    assert len(posts) == math.ceil(ENTRIES / 5)
    assert sorted(len(p.body["scenarios"]) for p in posts) == [1, 5, 5, 5, 5, 5]
    assert fired(suite) == expected(ALL)
    # Six results of one agent: their reads, and (as they share the agent) its results list.
    results = {r.path for r in suite.gets() if r.path.rstrip("/").split("/")[-1].isdigit()}
    assert len(results) == len(posts)
    assert len(suite.gets()) <= 10 * len(results)


def test_pytest_split_group_fires_exactly_the_cases_it_selects(suite: Suite) -> None:
    pytest.importorskip("pytest_split")
    suite.toml(many(repeated="c10"))
    split = ("--splits", "3", "--group", "2")
    listed = suite.pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", *split)
    names = [line.split("::")[1] for line in listed.outlines if line.startswith("cekura.toml::")]
    assert 0 < len(names) < CASES and "c10" in names  # no durations: 8 contiguous cases
    assert suite.sim.requests == []  # --collect-only fires nothing
    result = suite.run(*split)
    result.assert_outcomes(passed=len(names), deselected=CASES - len(names))
    assert fired(suite) == expected(names, repeated="c10")
    assert suite.sim.entries_fired() == len(names) + 2
    assert len(suite.posts()) == 1


def test_terminal_results_never_cause_a_get(suite: Suite) -> None:
    """Six cases on one result, all terminal (0.3 s) long before the second tick (1 s): the
    first case's ticks are the only GETs; the other five read the terminal snapshot."""
    suite.toml(many(6, repeated=None))
    result = suite.run("-p", "no:xdist", "--cekura-poll-interval=1", "--cekura-poll-max-interval=1")
    result.assert_outcomes(passed=6)
    assert suite.sim.entries_fired() == 6 and len(suite.posts()) == 1
    gets = suite.gets()
    assert 1 <= len(gets) <= 2, [round(r.at - gets[0].at, 2) for r in gets]

"""Lanes and waves: no two testers in one static room, and a cap on live runs (issue 13)."""

from __future__ import annotations

import pytest
from helpers import API_KEY, START, Suite

from pytest_cekura_pipecat._fire.waves import Lane, Waves

RUN_SECONDS = 0.3  # scenarios 101 and 104 in helpers.SCRIPTS


def _waves(items: list[str], capacity: dict[str, int], max_live: int | None = None) -> Waves[str]:
    """Items named "<room>:<n>"; each room's capacity from ``capacity``."""
    return Waves(
        items,
        lane=lambda item: Lane(item.split(":")[0], capacity[item.split(":")[0]]),
        key=lambda item: item,
        max_live=max_live,
    )


def test_one_room_releases_one_run_at_a_time() -> None:
    waves = _waves(["a:1", "a:2", "a:3"], {"a": 1})
    assert waves.next() == ["a:1"]
    assert waves.next() == []  # a:1 still live
    waves.done("a:1")
    assert waves.next() == ["a:2"]
    assert waves.waiting() == 1


def test_lanes_take_turns_and_respect_their_capacity() -> None:
    waves = _waves(["a:1", "a:2", "a:3", "b:1", "b:2"], {"a": 2, "b": 1})
    assert waves.next() == ["a:1", "b:1", "a:2"]
    waves.done("b:1")
    assert waves.next() == ["b:2"]
    waves.done("a:1")
    assert waves.next() == ["a:3"]


def test_max_live_caps_every_lane_together() -> None:
    waves = _waves([f"r{i}:1" for i in range(5)], {f"r{i}": 1 for i in range(5)}, max_live=2)
    assert waves.next() == ["r0:1", "r1:1"]
    waves.done("r0:1")
    waves.done("unknown")  # never live: ignored
    assert waves.next() == ["r2:1"]
    assert waves.abandon() == ["r3:1", "r4:1"]
    assert waves.next() == [] and waves.waiting() == 0


def test_occupied_places_count_until_done() -> None:
    """Runs already live (re-attached) take their room's place and count under max_live."""
    waves = _waves(["a:2", "b:1"], {"a": 1, "b": 1, "c": 1}, max_live=2)
    waves.occupy(["a:1", "c:1"])
    assert waves.next() == []  # a is taken; two live already
    waves.done("c:1")
    assert waves.next() == ["b:1"]
    waves.done("a:1")
    assert waves.next() == ["a:2"]


def test_lanes_take_turns_under_max_live() -> None:
    """A freed place goes to the next lane in turn, not always to the first lane."""
    waves = _waves(["a:1", "a:2", "a:3", "b:1", "b:2"], {"a": 9, "b": 9}, max_live=1)
    order = []
    while waves.waiting():
        (item,) = waves.next()
        order.append(item)
        waves.done(item)
    assert order == ["a:1", "b:1", "a:2", "b:2", "a:3"]


class _CountedRoom:
    """A lane key that counts how often the lanes are looked up by it."""

    lookups = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        _CountedRoom.lookups += 1
        return self.n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CountedRoom) and other.n == self.n


def test_a_lane_per_run_under_max_live_costs_the_same_per_run_at_any_size() -> None:
    """A provider gives each run a room of its own: 2,000 lanes under max_live_runs=10,
    runs ending one at a time. Each release and each end looks up a few lanes, never all
    of them (every lane on every release would be millions of lookups here)."""
    rooms = [_CountedRoom(i) for i in range(2000)]
    waves: Waves[int] = Waves(
        list(range(2000)), lane=lambda i: Lane(rooms[i], 1), key=str, max_live=10
    )
    _CountedRoom.lookups = 0
    live = waves.next()
    released = len(live)
    while live:
        waves.done(str(live.pop(0)))
        more = waves.next()
        released += len(more)
        live += more
    assert released == 2000 and waves.waiting() == 0
    assert _CountedRoom.lookups < 20 * 2000, _CountedRoom.lookups


def test_rounds() -> None:
    assert _waves(["a:1", "a:2", "b:1"], {"a": 1, "b": 1}).rounds() == [["a:1", "b:1"], ["a:2"]]
    assert len(_waves([f"r{i}:1" for i in range(5)], {f"r{i}": 1 for i in range(5)}).rounds()) == 1
    many = _waves([f"r{i}:1" for i in range(5)], {f"r{i}": 1 for i in range(5)}, max_live=2)
    assert [len(wave) for wave in many.rounds()] == [2, 2, 1]


def _most_live(suite: Suite) -> int:
    """The most runs live at one time, from when the simulator answered each start request
    (each run lasts RUN_SECONDS; a small margin for the time the request itself took)."""
    starts = [(r.at, len(r.body["scenarios"])) for r in suite.posts() if r.status == 200]
    return max(
        sum(n for at, n in starts if start - RUN_SECONDS * 0.8 < at <= start) for start, _ in starts
    )


SHARED_ROOM = """
pipecat_room_url = "https://acme.daily.co/shared"
pipecat_token = "${ROOM_TOKEN}"
""" + "".join(f'[[case]]\nname = "c{i}"\nscenario = {101 if i % 2 else 104}\n' for i in range(4))


def _ini(suite: Suite, extra: str = "") -> None:
    suite.pytester.makeini(
        f"[pytest]\ncekura_api_url = {suite.sim.url}\ncekura_poll_interval = 0.05\n"
        f"cekura_poll_max_interval = 0.1\ncekura_max_reads_per_minute = 6000\n{extra}"
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_runs_sharing_a_static_room_go_one_after_another(suite: Suite, xdist: list[str]) -> None:
    if xdist:
        pytest.importorskip("xdist")
    suite.sim.configure(room_exclusive=True)  # a second caller in a live room is refused
    _ini(suite)  # room_concurrency: the default, 1
    suite.toml(SHARED_ROOM)
    suite.run(*xdist).assert_outcomes(passed=4)
    posts = suite.posts()
    assert [len(p.body["scenarios"]) for p in posts] == [1, 1, 1, 1]
    assert all(p.status == 200 for p in posts)
    assert _most_live(suite) == 1
    assert suite.sim.entries_fired() == 4


def test_room_concurrency_lets_a_room_take_several_callers(suite: Suite) -> None:
    _ini(suite, "cekura_room_concurrency = 2\n")
    suite.toml(SHARED_ROOM)
    suite.run().assert_outcomes(passed=4)
    assert [len(p.body["scenarios"]) for p in suite.posts()] == [2, 2]


def test_room_concurrency_in_toml_overrides_the_ini(suite: Suite) -> None:
    _ini(suite, "cekura_room_concurrency = 1\n")
    suite.toml("room_concurrency = 4\n" + SHARED_ROOM)
    suite.run().assert_outcomes(passed=4)
    assert [len(p.body["scenarios"]) for p in suite.posts()] == [4]


OWN_ROOMS = "".join(
    f'[[case]]\nname = "c{i}"\nscenario = 101\n'
    f'pipecat_room_url = "https://acme.daily.co/room-{i}"\n'
    for i in range(6)
)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_max_live_runs_fires_in_waves(suite: Suite, xdist: list[str]) -> None:
    if xdist:
        pytest.importorskip("xdist")
    _ini(suite)
    suite.toml(OWN_ROOMS)
    suite.run("--cekura-max-live-runs=2", *xdist).assert_outcomes(passed=6)
    posts = suite.posts()
    assert sum(len(p.body["scenarios"]) for p in posts) == 6
    assert all(len(p.body["scenarios"]) <= 2 for p in posts)
    assert len(posts) >= 3  # batching stays: a wave is one request
    assert _most_live(suite) <= 2


def test_rooms_of_their_own_fire_at_once(suite: Suite) -> None:
    _ini(suite)
    suite.toml(OWN_ROOMS)
    suite.run().assert_outcomes(passed=6)
    assert [len(p.body["scenarios"]) for p in suite.posts()] == [6]


def test_max_live_runs_from_toml_and_a_case_with_a_failed_verdict_frees_its_place(
    suite: Suite,
) -> None:
    _ini(suite)
    suite.toml("max_live_runs = 1\n" + OWN_ROOMS.replace("scenario = 101", "scenario = 102", 1))
    suite.run().assert_outcomes(passed=5, failed=1)
    assert [len(p.body["scenarios"]) for p in suite.posts()] == [1] * 6


def test_dry_run_shows_lanes_and_waves(suite: Suite) -> None:
    _ini(suite, "cekura_max_live_runs = 3\n")
    suite.toml(SHARED_ROOM)
    result = suite.run("--cekura-dry-run")
    out = result.stdout.str()
    assert "room https://acme.daily.co/shared: 4 run(s), 1 at a time (room_concurrency)" in out
    assert "max_live_runs=3: at most 3 run(s) live at once" in out
    assert "4 wave(s)" in out
    # One room: one run a wave, so one request a wave, as a real session sends them
    # (test_runs_sharing_a_static_room_go_one_after_another).
    assert f"POST {START} (request 1 of 4, wave 1 of 4, 1 run(s))" in out
    assert f"POST {START} (request 4 of 4, wave 4 of 4, 1 run(s))" in out
    assert "cekura dry run: 4 run(s) in 4 request(s) would be started" in out
    assert suite.posts() == []
    assert API_KEY not in out


def test_invalid_room_concurrency_is_one_clear_line(suite: Suite) -> None:
    _ini(suite)
    suite.toml("room_concurrency = 0\n" + SHARED_ROOM)
    result = suite.run()
    out = result.stdout.str()
    assert "room_concurrency" in out and "cekura.toml" in out
    assert "Traceback" not in out
    assert suite.posts() == []


def test_a_case_waiting_in_a_lane_is_not_timed_out_early(suite: Suite) -> None:
    """Each run's timeout counts from its own firing: three 0.3 s runs in one room take
    about a second in all, longer than the 0.8 s timeout of each."""
    _ini(suite)
    suite.toml(SHARED_ROOM.replace("[[case]]", "[[case]]\ntimeout = 0.8", 3))
    suite.run().assert_outcomes(passed=4)
    assert len(suite.posts()) == 4


def test_an_adaptive_top_up_waits_for_its_room_like_any_run(suite: Suite) -> None:
    """A top-up (a later firing) queues in the session's lanes: in one shared room it never
    joins a run of another case that is live there."""
    suite.sim.configure(room_exclusive=True)  # a second caller in a live room is refused
    _ini(suite)
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/shared"\n'
        '[[case]]\nname = "flaky"\nscenario = 102\nrepeat = 3\nmin_passes = 1\n'
        "adaptive = true\n"
        + "".join(f'[[case]]\nname = "c{i}"\nscenario = 101\n' for i in range(3))
    )
    suite.run("-p", "no:randomly").assert_outcomes(passed=3, failed=1)
    posts = suite.posts()
    assert all(p.status == 200 for p in posts), [p.status for p in posts]
    assert sum(len(p.body["scenarios"]) for p in posts) == 6  # 3 of flaky (1 + 2 top-ups) + 3
    assert _most_live(suite) == 1


def test_canaries_sharing_a_room_take_turns_in_it(suite: Suite) -> None:
    """Canaries go first, and two of them in one static room one after the other: never two
    callers in the room (the server refuses a second one)."""
    suite.sim.configure(room_exclusive=True)
    _ini(suite)
    suite.toml(
        'pipecat_room_url = "https://acme.daily.co/shared"\n'
        + "".join(f'[[case]]\nname = "k{i}"\nscenario = 101\ncanary = true\n' for i in range(2))
        + '[[case]]\nname = "after"\nscenario = 104\n'
    )
    suite.run().assert_outcomes(passed=3)
    posts = suite.posts()
    assert all(p.status == 200 for p in posts), [p.status for p in posts]
    assert [[e["scenario"] for e in p.body["scenarios"]] for p in posts] == [[101], [101], [104]]
    assert _most_live(suite) == 1

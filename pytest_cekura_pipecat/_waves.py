"""Which runs may be fired now: a lane per room, a cap on live runs (no I/O here).

Runs that would share a static Daily room are fired one after another in that room (at most
``room_concurrency`` live at once, the next when one ends), never all at once: on the real
service every tester would join the same room and the same bot. ``max_live_runs`` caps the
runs in flight across the session (Cekura's concurrency limit, or the bot's capacity); the
rest go in waves as runs end. Rooms from a provider are per run: each is a lane of its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Lane:
    key: Hashable
    capacity: int


class Waves(Generic[T]):
    """Release items in order, per lane and under the session's cap on live items.

    ``lane(item)`` says which room an item runs in (its capacity: how many may be live in
    it), ``key(item)`` names it for :meth:`done`."""

    def __init__(
        self,
        items: Sequence[T],
        *,
        lane: Callable[[T], Lane],
        key: Callable[[T], str],
        max_live: int | None = None,
    ) -> None:
        self._lane = lane
        self._key = key
        self._max_live = max_live
        self._queues: dict[Hashable, deque[T]] = {}
        self._capacity: dict[Hashable, int] = {}
        self._order: list[Hashable] = []
        self._live: dict[str, Hashable] = {}  # key -> lane
        self._per_lane: dict[Hashable, int] = {}
        self.add(items)

    def add(self, items: Sequence[T]) -> None:
        """Queue more items behind those already waiting in their lanes (a later firing of
        the same session: a rerun, an adaptive top-up), so they share the rooms' places."""
        for item in items:
            self._queues[self._enter(item)].append(item)

    def occupy(self, items: Sequence[T]) -> None:
        """Count items already live in their lanes (runs an earlier session fired, now
        re-attached): their places are taken until :meth:`done`."""
        for item in items:
            lane_key = self._enter(item)
            self._live[self._key(item)] = lane_key
            self._per_lane[lane_key] += 1

    def _enter(self, item: T) -> Hashable:
        """The item's lane (made on first use; the smallest capacity asked for holds)."""
        where = self._lane(item)
        if where.key not in self._queues:
            self._queues[where.key] = deque()
            self._capacity[where.key] = where.capacity
            self._per_lane[where.key] = 0
            self._order.append(where.key)
        self._capacity[where.key] = min(self._capacity[where.key], where.capacity)
        return where.key

    def next(self) -> list[T]:
        """Everything that may start now (and is counted live from here on)."""
        released: list[T] = []
        progress = True
        while progress:  # round-robin over lanes, one item each, so no room starves
            progress = False
            for lane_key in self._order:
                if self._max_live is not None and len(self._live) >= self._max_live:
                    return released
                queue = self._queues[lane_key]
                if queue and self._per_lane[lane_key] < self._capacity[lane_key]:
                    item = queue.popleft()
                    self._live[self._key(item)] = lane_key
                    self._per_lane[lane_key] += 1
                    released.append(item)
                    progress = True
        return released

    def done(self, key: str) -> None:
        """The item named ``key`` ended (or never started): its place is free."""
        lane_key = self._live.pop(key, None)
        if lane_key is not None:
            self._per_lane[lane_key] -= 1

    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def abandon(self) -> list[T]:
        """Take every item not yet released (firing stopped)."""
        rest = [item for lane_key in self._order for item in self._queues[lane_key]]
        for queue in self._queues.values():
            queue.clear()
        return rest

    def lanes(self) -> list[tuple[Hashable, int, int]]:
        """(lane, capacity, items) for every lane, in order."""
        return [(k, self._capacity[k], len(self._queues[k])) for k in self._order]

    def count_waves(self) -> int:
        """How many rounds firing takes if every released run ends before the next round
        (the dry run's estimate); consumes this object."""
        rounds = 0
        while True:
            released = self.next()
            if not released:
                return rounds
            rounds += 1
            for item in released:
                self.done(self._key(item))

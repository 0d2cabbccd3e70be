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
    it), ``key(item)`` names it for :meth:`done`. Lanes that could release an item now wait
    their turn in a queue of their own, so releasing and ending cost the same with 10 lanes
    or 20,000 (a lane per run, from a provider, under ``max_live_runs``)."""

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
        self._queues: dict[Hashable, deque[T]] = {}  # lanes with items waiting, only
        self._capacity: dict[Hashable, int] = {}
        self._order: list[Hashable] = []
        self._live: dict[str, Hashable] = {}  # key -> lane
        self._per_lane: dict[Hashable, int] = {}
        self._turns: deque[Hashable] = deque()  # lanes that may release an item, in turn
        self._in_turn: set[Hashable] = set()
        self._waiting = 0
        self.add(items)

    def add(self, items: Sequence[T]) -> None:
        """Queue more items behind those already waiting in their lanes (a later firing of
        the same session: a rerun, an adaptive top-up), so they share the rooms' places."""
        for item in items:
            lane_key = self._enter(item)
            queue = self._queues.get(lane_key)
            if queue is None:
                queue = self._queues[lane_key] = deque()
            queue.append(item)
            self._waiting += 1
            self._take_turn(lane_key)

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
        if where.key not in self._capacity:
            self._capacity[where.key] = where.capacity
            self._per_lane[where.key] = 0
            self._order.append(where.key)
        self._capacity[where.key] = min(self._capacity[where.key], where.capacity)
        return where.key

    def _can_release(self, lane_key: Hashable) -> bool:
        return lane_key in self._queues and self._per_lane[lane_key] < self._capacity[lane_key]

    def _take_turn(self, lane_key: Hashable) -> None:
        if lane_key not in self._in_turn and self._can_release(lane_key):
            self._in_turn.add(lane_key)
            self._turns.append(lane_key)

    def next(self) -> list[T]:
        """Everything that may start now (and is counted live from here on)."""
        released: list[T] = []
        # Round-robin over lanes, one item each, so no room starves.
        while self._turns and (self._max_live is None or len(self._live) < self._max_live):
            lane_key = self._turns.popleft()
            self._in_turn.discard(lane_key)
            if not self._can_release(lane_key):
                continue  # filled up meanwhile (occupy): back in turn when a place frees
            queue = self._queues[lane_key]
            item = queue.popleft()
            if not queue:
                del self._queues[lane_key]
            self._waiting -= 1
            self._live[self._key(item)] = lane_key
            self._per_lane[lane_key] += 1
            released.append(item)
            self._take_turn(lane_key)
        return released

    def done(self, key: str) -> None:
        """The item named ``key`` ended (or never started): its place is free."""
        lane_key = self._live.pop(key, None)
        if lane_key is not None:
            self._per_lane[lane_key] -= 1
            self._take_turn(lane_key)

    def waiting(self) -> int:
        return self._waiting

    def abandon(self) -> list[T]:
        """Take every item not yet released (firing stopped)."""
        rest = [item for lane_key in self._order for item in self._queues.get(lane_key, ())]
        self._queues.clear()
        self._turns.clear()
        self._in_turn.clear()
        self._waiting = 0
        return rest

    def lanes(self) -> list[tuple[Hashable, int, int]]:
        """(lane, capacity, items) for every lane, in order."""
        return [(k, self._capacity[k], len(self._queues.get(k, ()))) for k in self._order]

    def rounds(self) -> list[list[T]]:
        """What firing releases round by round if every released item ends before the next
        round (the dry run's plan); consumes this object."""
        out: list[list[T]] = []
        while released := self.next():
            out.append(released)
            for item in released:
                self.done(self._key(item))
        return out

"""The session's one budget of result reads (``cekura_max_reads_per_minute``).

Cekura asks clients to read a result every 15-30 s and answers bursts with 429s; a team may
share one key across pipelines. Every read of a result or of the results list takes from one
budget: at most ``per_minute`` in any 60 s, at most a sixth of that in any second (a third
for reads the list asked for: no burst of the whole minute at once), and *routine* reads
(those made on the chance that something moved) at an even pace of one each
``60 / per_minute`` seconds, or half that pace while the results list is in use, so that
reads the list asked for (a result it shows ended) always find room. Routine reads also
leave ``reserve`` reads of the minute unspent (one for each open result, at most half the
minute): when every result ends at once, the reads that fetch their verdicts go out at once
instead of waiting for the minute to turn. A pace faster than one a second may send a
second's worth at once (a test's budget of thousands a minute is not cut to one read per
turn of the watcher's loop). The minute is counted as 62 s: a read arrives a little after
it is sent, and a slow one must not make the server see one read too many in its minute.
"""

from __future__ import annotations

import math
from collections import deque

_MINUTE = 62.0  # 60 s, and slack for the time a read takes to arrive


class ReadBudget:
    """When the next read may be made; ``spend`` records one made. Pure: the caller passes
    the time, so a fake clock drives it."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.per_second = max(1, per_minute // 6)
        self.burst = max(1, per_minute // 3)  # in one second, of reads the list asked for
        self.spacing = 60.0 / per_minute
        self._times: deque[float] = deque()  # the reads of the last minute, oldest first
        self._paced = -math.inf  # when the routine reads sent so far are paid for

    def free_at(self, now: float, routine: bool, stretch: float = 1.0, reserve: int = 0) -> float:
        """The earliest time (``now`` or later) a read of this kind fits the budget;
        routine reads are spaced ``stretch`` times the even share and leave ``reserve``
        reads of the minute (at most half of it) to those the list asks for."""
        times = self._times
        while times and times[0] <= now - _MINUTE:
            times.popleft()
        at = now
        cap = self.per_minute
        if routine:
            cap -= min(reserve, self.per_minute // 2)
        if len(times) >= cap:
            at = max(at, times[-cap] + _MINUTE)
        second = self.per_second if routine else self.burst
        if len(times) >= second and times[-second] > now - 1.0:
            at = max(at, times[-second] + 1.0)
        if routine:
            at = max(at, self._paced - max(0.0, 1.0 - self.spacing * stretch))
        return at

    def spend(self, now: float, routine: bool, stretch: float = 1.0) -> None:
        self._times.append(now)
        if routine:
            self._paced = max(self._paced, now) + self.spacing * stretch

"""The start rate limit: a token bucket, and the task that paces starts.

The bucket is kept as the generic cell rate algorithm (GCRA): one number,
the time at which the bucket would be empty again (``empty_at``), instead
of a token count refilled as time passes. A start is allowed when
``now >= empty_at - (burst - 1) * interval``; it moves ``empty_at`` one
interval on. Every comparison is between times computed the same way, so
under `trio.testing.MockClock` starts happen at exactly the instants the
rate allows (to within a nanosecond of float rounding).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.lowlevel import ParkingLot


ROUNDING = 1e-9
"""Seconds of slack in comparing times that float rounding may have moved."""


@final
class StartRate:
    """At most ``rate`` starts per second, with bursts of up to ``burst``."""

    __slots__ = ("burst", "empty_at", "interval", "rate", "tolerance")

    rate: float
    burst: int
    interval: float
    tolerance: float
    empty_at: float

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.interval = 1 / rate
        self.tolerance = (burst - 1) * self.interval
        self.empty_at = -math.inf  # a full bucket

    def next_at(self) -> float:
        """The earliest time the next start is allowed."""
        return self.empty_at - self.tolerance

    def take(self, now: float) -> bool:
        """Spend a token if one is there at ``now``.

        A nanosecond of slack absorbs float rounding (``0.3 + 1.0 - 1.0`` is
        not ``0.3``), so that a burst's starts happen at one instant.
        """
        empty_at = self.empty_at
        if now < empty_at - self.tolerance - ROUNDING:  # (`ready`, inlined)
            return False
        self.empty_at = (now if now > empty_at else empty_at) + self.interval
        return True

    def ready(self, now: float) -> bool:
        """Whether a token is there at ``now`` (`take` would spend it)."""
        return now >= self.empty_at - self.tolerance - ROUNDING

    def give_back(self) -> None:
        """Return the token of a start that did not happen."""
        self.empty_at -= self.interval

    def tokens(self, now: float) -> float:
        """How many starts are allowed at once at ``now`` (0 to ``burst``)."""
        allowed = (now - self.empty_at) * self.rate + self.burst
        return max(0.0, min(float(self.burst), allowed))


async def run_pacer(pace: Callable[[], float | None], lot: ParkingLot) -> None:
    """The task that starts waiting jobs as the rate allows.

    Workers start jobs themselves while tokens last; when a job waits for a
    token with a worker idle, this task sleeps until the token is there and
    hands the job over. It sleeps in a parking lot, so that the core can wake
    it early (a new job, a worker going idle, the pool closing).

    Args:
        pace: the core's pacing step: when to look again (``math.inf``: when
            woken), or None to stop.
        lot: where it sleeps.
    """
    while True:
        when = pace()
        if when is None:  # the pool has stopped: nothing will wait again
            return
        with trio.move_on_at(when):
            await lot.park()

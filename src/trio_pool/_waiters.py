"""Tasks that wait on the pool: submitters blocked for want of room, first
come, first served (`RoomWaiters`), tasks waiting for room without a job
(`RoomWatchers`, `Pool.wait_for_room`), and tasks waiting for it to drain
(`DrainWaiters`).

Each blocked `Pool.submit` (or map feeder) parks here with its job, which
is not accepted yet. The core decides when one is admitted or refused; this
record only keeps them in order and wakes the task it is told to wake.
Registering and parking are one KI-protected step (as trio's
``ParkingLot.park`` and ``MemorySendChannel.send`` are), so a
KeyboardInterrupt never leaves a waiter recorded that is not parked: it is
delivered once the task is parked, and the abort takes the waiter out.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, final

import outcome
from trio.lowlevel import (
    Abort,
    ParkingLot,
    Task,
    current_task,
    enable_ki_protection,
    reschedule,
    wait_task_rescheduled,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._job import Job


@final
class RoomWaiters(OrderedDict[Task, "Job[Any]"]):
    """The blocked submitters' tasks and their jobs, in arrival order.

    An `OrderedDict` itself, so that the core's "does anyone wait?" on its
    hot paths is a plain truth test; only its own methods change it.
    """

    __slots__ = ()

    def first(self) -> Job[Any]:
        """The job of the longest waiting submitter (there must be one)."""
        return next(iter(self.values()))

    def jobs(self) -> list[Job[Any]]:
        """Every waiting job, in order."""
        return list(self.values())

    @enable_ki_protection
    async def wait(self, job: Job[Any]) -> None:
        """Park the calling task with ``job`` until it is admitted or refused.

        Registering and parking are one KI-protected step.
        """
        tasks = self
        task = current_task()
        tasks[task] = job

        def abort(_: object) -> Abort:
            del tasks[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def admit_first(self) -> Job[Any]:
        """Wake the first submitter: its job was accepted."""
        task, job = self.popitem(last=False)
        reschedule(task)
        return job

    def admit(self, job: Job[Any]) -> None:
        """Wake the submitter of ``job`` (not necessarily the first)."""
        for task, waiting in self.items():
            if waiting is job:
                del self[task]
                reschedule(task)
                return
        raise AssertionError("no such waiter")  # pragma: no cover

    def refuse_all(self, error: Callable[[], BaseException]) -> int:
        """Wake every submitter with a new ``error()``; return how many."""
        tasks = self
        count = len(tasks)
        while tasks:
            task, _ = tasks.popitem(last=False)
            reschedule(task, outcome.Error(error()))
        return count


@final
class RoomWatchers(dict[Task, None]):
    """Tasks waiting for room without submitting (`Pool.wait_for_room`).

    A `dict` itself, so that the core's "does anyone watch?" is a plain
    truth test. The core wakes them all when a ``submit_nowait`` would be
    accepted (after the blocked submitters, who go first), or with an
    error when the pool closes. Registering and parking are one
    KI-protected step, as in `RoomWaiters.wait`.
    """

    __slots__ = ()

    @enable_ki_protection
    async def wait(self) -> None:
        """Park the calling task until `wake_all` or `refuse_all`."""
        tasks = self
        task = current_task()
        tasks[task] = None

        def abort(_: object) -> Abort:
            del tasks[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def wake_all(self) -> None:
        """Room appeared: wake every watching task."""
        for task in self:
            reschedule(task)
        self.clear()

    def refuse_all(self, error: Callable[[], BaseException]) -> None:
        """Wake every watching task with a new ``error()``."""
        for task in self:
            reschedule(task, outcome.Error(error()))
        self.clear()


@final
class DrainWaiters:
    """Tasks waiting until no accepted job is left (`Pool.join`, `shutdown`)."""

    __slots__ = ("_lot", "count")

    count: int
    """Tasks waiting (a woken one still counts until it runs)."""

    def __init__(self) -> None:
        self._lot = ParkingLot()
        self.count = 0

    @enable_ki_protection
    async def wait(self) -> None:
        """Count the task as waiting and park it: one KI-protected step."""
        self.count += 1
        try:
            await self._lot.park()
        finally:
            self.count -= 1

    def wake_all(self) -> None:
        """The pool has drained: wake every waiting task."""
        self._lot.unpark_all()

    def parked(self) -> int:
        """Tasks parked now (for the invariant check)."""
        return self._lot.statistics().tasks_waiting

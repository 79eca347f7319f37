"""Submitters blocked for want of room, first come, first served.

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
class RoomWaiters:
    """The blocked submitters and their jobs, in arrival order."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: OrderedDict[Task, Job[Any]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def first(self) -> Job[Any]:
        """The job of the longest waiting submitter (there must be one)."""
        return next(iter(self._tasks.values()))

    def jobs(self) -> list[Job[Any]]:
        """Every waiting job, in order."""
        return list(self._tasks.values())

    async def wait(self, job: Job[Any]) -> None:
        """Park the calling task with ``job`` until it is admitted or refused."""
        await _register_and_park(self._tasks, job)

    def admit_first(self) -> Job[Any]:
        """Wake the first submitter: its job was accepted."""
        task, job = self._tasks.popitem(last=False)
        reschedule(task)
        return job

    def admit(self, job: Job[Any]) -> None:
        """Wake the submitter of ``job`` (not necessarily the first)."""
        for task, waiting in self._tasks.items():
            if waiting is job:
                del self._tasks[task]
                reschedule(task)
                return
        raise AssertionError("no such waiter")  # pragma: no cover

    def refuse_all(self, error: Callable[[], BaseException]) -> int:
        """Wake every submitter with a new ``error()``; return how many."""
        tasks = self._tasks
        count = len(tasks)
        while tasks:
            task, _ = tasks.popitem(last=False)
            reschedule(task, outcome.Error(error()))
        return count


@enable_ki_protection
async def _register_and_park(tasks: OrderedDict[Task, Job[Any]], job: Job[Any]) -> None:
    task = current_task()
    tasks[task] = job

    def abort(_: object) -> Abort:
        del tasks[task]
        return Abort.SUCCEEDED

    await wait_task_rescheduled(abort)

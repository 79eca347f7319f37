"""Priorities: higher first, first in first out within a level.

A pool runs its plain transitions until a submission first gives a priority
other than 0; then it becomes its variant with priorities (`begin_priorities`
in `_variants`), whose queue and per-key books keep their jobs ordered by
priority as they come in: `PriorityJobQueue` and `PriorityKeyBooks` insert
each job after every job of its level or higher, so taking the first job
(the core's hot path, unchanged) takes the highest. The jobs accepted before
have priority 0 and are already in order. Blocked submitters keep their
arrival order: a priority orders accepted jobs, not the wait for room.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from typing import TYPE_CHECKING, Any

from ._core import PoolCore
from ._job import QUEUED
from ._keys import KeyBooks
from ._queue import JobQueue

if TYPE_CHECKING:
    from ._job import Job


def check_priority(priority: object) -> int:
    """Return ``priority`` if it is an int (not a bool).

    Raises:
        TypeError: naming the argument and the value.
    """
    if type(priority) is not int:
        raise TypeError(f"priority must be an int, not {priority!r}")
    return priority


def priority_of(job: Job[Any]) -> int:
    """A job's priority (0 unless given)."""
    return getattr(job, "_priority", 0)


def _rank(job: Job[Any]) -> int:
    """The sort key of a queue ordered highest priority first."""
    return -getattr(job, "_priority", 0)


def insert_in_order(jobs: deque[Job[Any]], job: Job[Any], *, front: bool) -> None:
    """Put ``job`` after every job of a higher priority in ``jobs``, and after
    (or with ``front``, before) those of its own."""
    priority = priority_of(job)
    if not front and (not jobs or priority_of(jobs[-1]) >= priority):
        jobs.insert(len(jobs), job)  # (not `append`: `PriorityJobQueue`'s)
        return
    place = bisect_left if front else bisect_right
    jobs.insert(place(jobs, -priority, key=_rank), job)


class PriorityJobQueue(JobQueue):
    """`JobQueue`, its jobs ordered by priority (the pool's first is the highest)."""

    __slots__ = ()

    def append(self, job: Job[Any]) -> None:
        """Queue ``job`` after every job of its priority or higher (`push`,
        and `Intake.offer`'s inlined push, append)."""
        insert_in_order(self, job, front=False)

    def push_all(self, jobs: list[Job[Any]]) -> None:
        """`push` each of ``jobs``, each in its place."""
        for job in jobs:
            self.push(job)

    def push_front(self, job: Job[Any]) -> None:
        """Put ``job`` back first among the jobs of its priority."""
        job._holder = None
        insert_in_order(self, job, front=True)
        self.live += 1


class PriorityKeyBooks(KeyBooks):
    """`KeyBooks` whose jobs set aside are ordered by priority within a key."""

    __slots__ = ()

    def hold(self, job: Job[Any]) -> None:
        """Set ``job`` aside after its key's jobs of its priority or higher."""
        waiting = self._waiting.get(job._key)
        if waiting is None:
            waiting = self._waiting[job._key] = deque()
        insert_in_order(waiting, job, front=False)

    def waiting_before(self, job: Job[Any]) -> int:
        """Jobs of ``job``'s key set aside now, of its priority or higher."""
        waiting = self._waiting.get(job._key)
        if waiting is None:
            return 0
        priority = priority_of(job)
        return sum(1 for other in waiting if priority_of(other) >= priority)


class PrioritizedCore(PoolCore):
    """A pool whose jobs have priorities (its queue is a `PriorityJobQueue`)."""

    def _jobs_ahead(self, job: Job[Any]) -> int:
        priority = priority_of(job)
        queued = sum(
            1
            for other in self._queue
            if other.state is QUEUED and priority_of(other) >= priority
        )
        blocked = sum(
            1
            for other in self._waiters.jobs()
            if priority_of(other) >= priority and self._may_run(other)
        )
        return queued + self._crew.waking + blocked

    def check_invariants(self) -> None:
        super().check_invariants()
        ranks = [_rank(job) for job in self._queue.jobs()]
        assert ranks == sorted(ranks), "the queue is out of priority order"

    def order_by_priority(self) -> None:
        """Keep the queue and the jobs set aside per key in priority order
        from now on (this pool has just become its variant with priorities)."""
        self._queue = ordered_queue(self._queue)
        if self._keys is not None:
            self._keys = ordered_keys(self._keys)


def ordered_queue(queue: JobQueue) -> PriorityJobQueue:
    """``queue``'s jobs (all of priority 0, in order) in a `PriorityJobQueue`."""
    ordered = PriorityJobQueue()
    ordered.extend(job for job in queue if job.state is QUEUED)
    ordered.live = queue.live
    ordered.held = queue.held
    return ordered


def ordered_keys(keys: KeyBooks) -> PriorityKeyBooks:
    """``keys``'s books, made `PriorityKeyBooks` (the same object and fields:
    the jobs set aside so far, all of priority 0, are in order)."""
    keys.__class__ = PriorityKeyBooks
    assert isinstance(keys, PriorityKeyBooks)
    return keys

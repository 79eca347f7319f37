"""The pool's state and every transition of it: the one owner of the books.

`PoolCore` makes every decision (offer, start, finish, cancel, resize,
close, pace); each concern it decides about is a small object of its own
module that keeps its books and hands results back, never calling into the
core: the queue with its tombstones (`JobQueue`), the workers and the
hand-over (`Crew`), the blocked submitters (`RoomWaiters`), the per-key
counts (`KeyBooks`), the start rate (`StartRate`), the counts (`Counts`),
the failures nobody read (`Unretrieved`), the shed estimate and the
invariant check (`check_books`, over a `Books` snapshot). Every method that
changes the books is synchronous and KI-protected, so a transition is never
split by a schedule point or a KeyboardInterrupt. Each transition first
changes the books, then calls telemetry (which guards itself).

Where an accepted job is, at every instant (see `Job`):

* **queued**: in the queue (a job cancelled there stays as a tombstone; the
  queue's ``live`` counts only live jobs, so a cancelled job frees its room
  at once), or set aside until its key has room;
* **handed over**: an idle worker was woken with it as ``worker.job`` and has
  not run yet;
* **running**: ``worker.job`` of the worker running it;
* **resolved**: in a terminal state, its waiters woken.

A worker takes a job and starts it in one transition (`start_next`, or
`take_handed` right after it wakes), so no ``await`` ever separates taking a
job from recording who holds it.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio
from trio.lowlevel import (
    current_task,
    enable_ki_protection,
)

from ._caller import mark_worker
from ._errors import PoolClosed
from ._job import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    Job,
    JobState,
)
from ._log import DEBUG, INFO, log

if TYPE_CHECKING:
    from collections import deque

    from ._crew import Worker


from ._intake import Intake

YIELD_EVERY = 32
"""The schedule-point interval of pools opened from now on: a task passes a
schedule point at least once every this many pool calls that did not have to
wait, and a worker once every this many jobs. Tests lower it so that rare
interleavings become common."""


def current_yield_every() -> int:
    """`YIELD_EVERY` as it is now (tests change it), for a pool opening."""
    return YIELD_EVERY


class PoolCore(Intake):
    """A pool's core: its books (`CoreState`), the jobs' transitions
    (`Intake`), and the workers' transitions here, with the plain pool's
    batch offer of a map (`offer_all`). A pool with features runs a
    subclass of it (`_variants`)."""

    @enable_ki_protection
    def open(self, nursery: trio.Nursery) -> trio.Event:
        """Start the minimum of workers; return an event set once all have run."""
        self._guard.open()
        self._nursery = nursery
        self._clock = clock = trio.lowlevel.current_clock()
        self._now = clock.current_time
        if self._telemetry is not None:
            self._telemetry.opened()
        for _ in range(self._min_workers):
            self._grow(None)
        return self._crew.watch_start()

    @enable_ki_protection
    def worker_began(self, worker: Worker) -> None:
        """A worker task runs for the first time."""
        self._crew.began(worker, current_task())
        mark_worker(worker)  # for the threads its jobs start (`_caller`)

    @enable_ki_protection
    def start_next(
        self, worker: Worker, scope: trio.CancelScope, handed: Job[Any] | None = None
    ) -> Job[Any] | None:
        """Start ``handed`` in ``worker`` (see `take_handed`), or else take
        the next queued job and start it; return the job started, or None.

        Without ``handed``, a retired worker, or one above ``max_workers``
        (after `resize`), takes nothing. Taking and starting are one step (a
        variant that records starts overrides this method).
        """
        job = handed
        if job is None:
            if worker.retired or len(self._crew.workers) > self._max_workers:
                return None
            queue = self._queue
            while queue:  # (`JobQueue.take_first`, inlined)
                first = queue.popleft()
                if first.state is QUEUED:
                    queue.live -= 1
                    if self._waiters or self._over_capacity_allowed or self._watchers:
                        self._queue_place_freed()
                    job = first
                    break
            if job is None:
                if not self._waiters:  # (`_take_waiter`'s first case, inlined)
                    return None
                job = self._take_waiter()
                if job is None:
                    return None
        job.state = RUNNING
        job._holder = worker
        worker.job = job  # (the crew's record; written here on the hot path)
        self._counts.running += 1
        if job._timeout is not None:
            scope.deadline = trio.current_time() + job._timeout
        if self._queue.live > self._crew.starting and not self._crew.waking:
            self._spread_work()
        return job

    @enable_ki_protection
    def idle_or_stop(self, worker: Worker) -> float | None:
        """Park ``worker`` among the idle ones and return how long it may
        stay idle before it may retire (``math.inf``: while the pool is at
        its minimum), or return None if it must stop.

        It stops when the pool is closed and nothing is queued (waking the
        other idle workers, which stop too), when it is above ``max_workers``,
        or when `resize` retired it.
        """
        if worker.retired:
            return None
        if self._closed and not self._queue.live:
            self._release_idle()
            self._remove(worker)
            return None
        workers = len(self._crew.workers)
        if workers > self._max_workers:
            self._remove(worker)
            return None
        self._crew.rest(worker)
        if self._watchers:
            self._room_appeared()
        return self._idle_timeout if workers > self._min_workers else math.inf

    @enable_ki_protection
    def abort_idle(self, worker: Worker) -> None:
        """A parked idle worker was cancelled or timed out: unpark it."""
        self._crew.unrest(worker)

    @enable_ki_protection
    def retire_idle(self, worker: Worker) -> bool:
        """An idle worker timed out and found no job it could start
        (`take_handed` first: one may have arrived as its timer expired, when
        it was no longer idle to be handed it): retire it if the pool is
        above its minimum.

        Also while jobs wait that it could not start (for a start token, or
        submitters of a saturated key): staying, it would park again with
        the same timer, a busy loop with ``idle_timeout=0``. The pacer, and
        a job of the key as it ends, hand those to idle workers or start one.
        """
        if len(self._crew.workers) > self._min_workers:
            self._remove(worker)
            log(
                DEBUG,
                "pool %r: a worker retired after %ss idle (%d left)",
                self._name,
                self._idle_timeout,
                len(self._crew.workers),
            )
            return True
        return False

    @enable_ki_protection
    def take_handed(self, worker: Worker, scope: trio.CancelScope) -> Job[Any] | None:
        """A woken worker runs: start the job it was handed, if it still has
        one, else the next queued job (`start_next`); None if none starts."""
        job = self._crew.woke(worker)
        if job is None:  # cancelled while handed over, or woken to stop
            return self.start_next(worker, scope)
        if len(self._crew.workers) > self._max_workers:
            # `resize` shrank the pool since the hand-over: the job goes back
            # to the head of the queue and this worker retires.
            self._crew.hold(worker, None)
            self._queue.push_front(job)
            if self._over_capacity():
                self._over_capacity_allowed = True
            self._unstarted_handed()
            self._remove(worker)
            return None
        return self.start_next(worker, scope, job)

    @enable_ki_protection
    def finish(
        self,
        worker: Worker | None,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Record how a job ended, move it to its terminal state and wake
        every task waiting on it (its ``on_done`` first).

        ``worker``: the one that ran it; None for a job that never started
        (cancelled, with ``state`` `CANCELLED`: `_resolve_unstarted`). One
        step, one call (a variant that records endings overrides it).
        """
        counts = self._counts
        if worker is not None:
            worker.job = None  # (the crew's record; written here on the hot path)
            counts.running -= 1
            if job._timeout is not None and worker.scope is not None:
                worker.scope.deadline = math.inf
        if state is SUCCEEDED:
            counts.succeeded += 1
        elif state is FAILED:
            counts.failed += 1
        elif state is TIMED_OUT:
            counts.timed_out += 1
            error = job._timeout_error()
        else:
            counts.cancelled += 1
            error = job._cancelled_error()
        job.state = state
        job._holder = None
        job._value = value
        job._failure = (
            None
            if error is None
            else (
                error,
                error.__traceback__,
                error.__context__,
                error.__cause__,
                error.__suppress_context__,
            )
        )
        job._args = ()  # let the arguments go; the function stays for `name`
        if job._lot is not None:
            job._lot.unpark_all()
        on_done = job._on_done
        if on_done is not None:
            job._on_done = None  # called once; its references go with it
            on_done(job)
        if self._drainers.count and not counts.unfinished():
            self._drainers.wake_all()  # `Pool.join`, `Pool.shutdown`
        if state is FAILED:  # logged while the job's span is still current
            log(DEBUG, "job %r in pool %r failed", job.name, self._name, exc_info=error)
            if isinstance(error, Exception):  # the others leave the pool anyway
                self._unretrieved.add(job, error)

    @enable_ki_protection
    def finish_and_next(
        self, worker: Worker, job: Job[Any], value: object, scope: trio.CancelScope
    ) -> Job[Any] | None:
        """`finish` ``job`` as `SUCCEEDED` with ``value``, then start the
        first queued job in ``worker`` and return it: one transition, the
        worker loop's common step (its scope not cancelled, no schedule
        point due). None: the worker asks `start_next` (it may stop, or
        take a blocked submitter's job).

        The base class runs both bodies here, inlined (no call for either:
        the hot path); a variant that overrides either method overrides
        this one too, calling it through ``super()`` (`TimedCore`,
        `TracedCore`), or else runs its `finish` only (`_finish_then_next`,
        chosen when the class is made), and the worker its `start_next`.
        """
        # `finish`, its success case for a job without a time limit:
        worker.job = None
        counts = self._counts
        counts.succeeded += 1
        job.state = SUCCEEDED
        job._holder = None
        job._value = value
        job._failure = None
        job._args = ()
        if job._lot is not None:
            job._lot.unpark_all()
        on_done = job._on_done
        if on_done is not None:
            job._on_done = None
            on_done(job)
        # `start_next`, its case of a queued job:
        if worker.retired or self._crew.surplus or not self._queue.live:
            counts.running -= 1
            if self._drainers.count and not counts.unfinished():
                self._drainers.wake_all()
            return None  # (the worker asks `start_next`: a blocked submitter's job)
        queue = self._queue
        while True:
            first = queue.popleft()
            if first.state is QUEUED:
                break
        queue.live -= 1
        if self._waiters or self._over_capacity_allowed or self._watchers:
            self._queue_place_freed()
        first.state = RUNNING
        first._holder = worker
        worker.job = first
        if first._timeout is not None:
            scope.deadline = trio.current_time() + first._timeout
        if queue.live > self._crew.starting and not self._crew.waking:
            self._spread_work()
        return first

    @enable_ki_protection
    def offer_all(self, jobs: list[Job[Any]], into: deque[Job[Any]]) -> int:
        """`offer` each of ``jobs`` (without a key) until one is refused,
        appending each accepted one to ``into``; return how many were (a
        map's batch). Jobs that can only be queued (`_queue_fit`) are queued
        together, as the calls one by one would queue them, unless a variant
        has its own `offer` (chosen when the class is made)."""
        if self._closed:
            self.refuse_closed()
        total = len(jobs)
        accepted = 0
        while accepted < total:
            fit = self._queue_fit(total - accepted) if self._bulk_offers else 0
            if fit:
                queued = jobs if fit == total else jobs[accepted : accepted + fit]
                self._queue.push_all(queued)
                into.extend(queued)
                self._counts.submitted += fit  # the accept tail (see `_accepted`)
                accepted += fit
            elif self.offer(jobs[accepted]):
                into.append(jobs[accepted])
                accepted += 1
            else:
                break
        return accepted

    def batch_room(self, most: int) -> int:
        """How many of ``most`` jobs `offer_all` would queue together now,
        or 1: a map pulls no more items than it offers at once."""
        if self._closed or not self._bulk_offers:
            return 1
        return self._queue_fit(most) or 1

    _bulk_offers = True
    """Whether `offer_all` may queue jobs together: the class's `offer` is
    the base one, or a variant's that queues every job `_queue_fit` counts,
    as the base one does (its class sets ``_offer_queues_as_fit``); set for
    each subclass."""

    @enable_ki_protection
    def _finish_then_next(
        self, worker: Worker, job: Job[Any], value: object, scope: trio.CancelScope
    ) -> Job[Any] | None:
        """`finish_and_next` of a variant: its own `finish`; None, so that the
        worker asks its `start_next` (no await between the two)."""
        self.finish(worker, job, SUCCEEDED, value)
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_steps = (cls.finish, cls.start_next)
        if "finish_and_next" not in vars(cls) and own_steps != (
            PoolCore.finish,
            PoolCore.start_next,
        ):
            cls.finish_and_next = cls._finish_then_next  # type: ignore[method-assign]
        offer_owner = next(base for base in cls.__mro__ if "offer" in vars(base))
        cls._bulk_offers = offer_owner is Intake or vars(offer_owner).get(
            "_offer_queues_as_fit", False
        )

    @enable_ki_protection
    def worker_exited(self, worker: Worker) -> None:
        """A worker task ends, however it ends.

        One that ends without the pool's word (a cancellation from outside
        the pool, or an error) was the last: the pool's nursery is being
        cancelled, no worker is left to run the jobs still queued and none
        will start, so they are cancelled now (and the pool closed), not
        when the ``async with`` exits: a shielded `Pool.shutdown`, `Pool.join`
        or `Job.wait` in the body's ``finally`` returns. Either way the
        pool goes down: it starts no more workers (its submitters wait for
        the close that refuses them).
        """
        abandoned = not worker.retired
        if abandoned:  # (a worker's error cancels the nursery too)
            self._growth_limit = 0
        job = self._crew.exited(worker)
        self._removed()
        if job is not None and job.state is QUEUED:  # handed, never started
            self._resolve_unstarted(job)
        if abandoned:
            if not self._crew.workers and not self._crew.starting:
                self.cancel_everything()
            elif self._over_capacity():
                # It was started for a job beyond the capacity, and died
                # first (a Ctrl-C, the pool going down): that job waits,
                # beyond the room, until the pool's end cancels it.
                self._over_capacity_allowed = True
            if self._watchers:  # one fewer worker: room to grow, perhaps
                self._room_appeared()

    def _remove(self, worker: Worker) -> None:
        """``worker`` stops on the pool's word."""
        self._crew.remove(worker)
        self._removed()
        if self._waiters:  # one fewer above the maximum: a starting worker
            self._admit_waiters()  # may now be room for a blocked submitter
        if self._watchers:  # (or room to grow)
            self._room_appeared()

    @enable_ki_protection
    def resize(self, workers: int, max_workers: int) -> None:
        """Change the limits; retire idle surplus, start workers for waiting jobs."""
        if self._nursery is None or self._closed:
            raise PoolClosed(f"pool {self._name!r} is closed and cannot be resized")
        log(
            INFO,
            "pool %r resized: workers %d..%d -> %d..%d",
            self._name,
            self._min_workers,
            self._max_workers,
            workers,
            max_workers,
        )
        lowered = workers < self._min_workers
        self._min_workers = workers
        if self._growth_limit:  # (0: the pool goes down, and grows no more)
            self._growth_limit = max_workers
        self._max_workers = max_workers
        crew = self._crew
        crew.retire_surplus(max_workers)
        if lowered and len(crew) > workers:
            # Idle workers parked while the old minimum kept them have no
            # idle timer: wake as many as may retire now to park again with
            # one. The others stay idle: a woken worker is no room until it
            # parks again, and a pool of idle workers must not refuse a job.
            crew.wake_idle(len(crew) - workers)
        if self._over_capacity():  # accepted before; they stay
            self._over_capacity_allowed = True
        waiting = self._queue.live + self._waiters_who_may_run()
        limit = self._growth_limit
        while len(crew) < min(workers, limit) or (
            waiting > crew.starting and len(crew) < limit
        ):
            self._grow("after a resize")
        if self._waiters:
            self._admit_waiters()
        if self._watchers:
            self._room_appeared()

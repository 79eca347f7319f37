"""The pool: its queue, its workers, submitting, and stopping.

How the pieces fit:

* Accepted jobs wait in a deque (``_queue``) bounded by ``capacity``. Jobs
  cancelled while queued stay in the deque as tombstones and are skipped;
  ``_backlog`` counts only the live ones, so a cancelled job frees its room at
  once.
* Idle workers park in ``_idle``. A submit that finds an idle worker hands the
  job straight to it.
* Submitters waiting for room park in ``_room_waiters`` in arrival order;
  whenever room appears, the first one's job is accepted and it wakes.
* Each worker runs its jobs inside one `trio.CancelScope`, replaced only after
  it has been cancelled (by a time limit, `Job.cancel` or shutdown), so a job
  costs no new cancel scope of its own unless it is cancelled.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, final, overload

import outcome
import trio
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    enable_ki_protection,
    reschedule,
    wait_task_rescheduled,
)

from ._checks import (
    check_async_fn,
    check_bool,
    check_int,
    check_iterable,
    check_name,
    check_seconds,
)
from ._errors import PoolClosed, PoolOverloaded
from ._job import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    Job,
    JobState,
)
from ._map import MapResults
from ._statistics import PoolStatistics
from ._telemetry import JobSpan, PoolTelemetry

if TYPE_CHECKING:
    import sys
    from collections.abc import (
        AsyncGenerator,
        AsyncIterable,
        Awaitable,
        Callable,
        Iterable,
    )
    from contextlib import AbstractAsyncContextManager

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from typing_extensions import TypeVarTuple, Unpack

    if sys.version_info < (3, 11):
        from exceptiongroup import BaseExceptionGroup

    PosArgT = TypeVarTuple("PosArgT")
else:
    import sys

    if sys.version_info < (3, 11):
        from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")
U = TypeVar("U")

logger: Final = logging.getLogger("trio_pool")

YIELD_EVERY: Final = 32
"""A task passes a schedule point at least once every this many pool calls
that did not have to wait (and a worker, every this many jobs)."""


_pool_numbers = itertools.count(1)
_current_pool: contextvars.ContextVar[Pool | None] = contextvars.ContextVar(
    "trio_pool.current_pool", default=None
)


class _UseDefault:
    """The type of `USE_DEFAULT`."""

    def __repr__(self) -> str:
        return "<the pool's job_timeout>"


USE_DEFAULT: Final = _UseDefault()
"""Marks a ``timeout`` argument that was not given: the pool's default applies."""


@final
class _Worker:
    """Bookkeeping for one worker task."""

    __slots__ = ("job", "span", "streak", "task")

    def __init__(self) -> None:
        self.task: Task | None = None
        self.job: Job[Any] | None = None  # the job it was handed, or is running
        self.span: JobSpan | None = None  # the running job's span, if traced
        self.streak = 0  # jobs run since its last schedule point


@final
class Pool:
    """A pool of worker tasks running jobs, at most ``workers`` at a time.

    Create one with `open_pool`. Checkpoints: `submit`, `run`, `shutdown`,
    `Job.result` and `Job.wait` always check for cancellation. They yield to
    the scheduler whenever they wait, and otherwise at least once every
    ``YIELD_EVERY`` (32) calls, so a task that submits in a tight loop cannot
    starve the workers or other tasks. Trio's documentation allows a
    scheduler to skip the switch at some checkpoints; trio_pool skips most of
    them on its fast paths because a switch costs more than a whole job.
    """

    def __init__(
        self,
        *,
        workers: int,
        max_workers: int,
        idle_timeout: float,
        capacity: int,
        job_timeout: float | None,
        submit_timeout: float | None,
        name: str,
        telemetry: bool,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self._name = name
        self._min_workers = workers
        self._max_workers = max_workers
        self._idle_timeout = idle_timeout
        self._capacity = capacity
        self._job_timeout = job_timeout
        self._submit_timeout = submit_timeout

        self._queue: deque[Job[Any]] = deque()
        self._backlog = 0  # live jobs in _queue
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._room_waiters: OrderedDict[Task, Job[Any]] = OrderedDict()
        self._drain_waiters: list[Task] = []
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._since_yield = 0
        # Workers woken with a job that have not run yet. While one is pending,
        # new jobs go to the queue: the woken worker wakes the next idle one
        # if work is still waiting when it starts (a chain, not a stampede).
        self._waking = 0
        self._starting = 0  # workers started that have not run yet
        self._all_started: trio.Event | None = None  # set when none is starting

        self._submitted = 0
        self._running = 0
        self._succeeded = 0
        self._failed = 0
        self._timed_out = 0
        self._cancelled = 0
        self._rejected = 0

        self._telemetry: PoolTelemetry | None = None
        if telemetry:
            recorder = PoolTelemetry(self, tracer_provider, meter_provider)
            if recorder.active:
                self._telemetry = recorder

    def __repr__(self) -> str:
        return f"<trio_pool.Pool {self._name!r} workers={self._max_workers}>"

    @property
    def name(self) -> str:
        """The pool's name, as it appears in logs, spans and metrics."""
        return self._name

    def resize(self, workers: int, max_workers: int | None = None) -> None:
        """Change the pool's size while it runs. Never blocks.

        Growing takes effect at once: new workers start for the jobs already
        waiting. Shrinking retires surplus workers as they become idle; a
        running job is never cancelled for it.

        Args:
            workers: the new minimum (and size, for a fixed-size pool).
            max_workers: the new maximum. ``None`` keeps a fixed-size pool
                fixed and otherwise keeps the current maximum, raised to
                ``workers`` if it is lower.

        Raises:
            TypeError, ValueError: a bad argument (``max_workers < workers``
                included).
            PoolClosed: the pool has stopped.
        """
        check_int("workers", workers, 1)
        if max_workers is None:
            fixed = self._max_workers == self._min_workers
            max_workers = workers if fixed else max(workers, self._max_workers)
        max_workers = check_max_workers(workers, max_workers)
        if self._nursery is None or self._closed:
            raise PoolClosed(f"pool {self._name!r} is closed and cannot be resized")
        logger.info(
            "pool %r resized: workers %d..%d -> %d..%d",
            self._name,
            self._min_workers,
            self._max_workers,
            workers,
            max_workers,
        )
        self._min_workers = workers
        self._max_workers = max_workers
        idle = self._idle
        while len(self._workers) > max_workers and idle:  # retire idle surplus
            worker = idle.pop(0)  # the longest idle
            self._workers.discard(worker)  # it has no job and exits when it runs
            reschedule(worker.task, outcome.Value(None))  # type: ignore[arg-type]
        waiting = self._backlog + len(self._room_waiters)
        while len(self._workers) < workers or (
            waiting > self._starting and len(self._workers) < max_workers
        ):
            self._grow(why="after a resize")
        if self._room_waiters:
            self._admit_waiters()

    # ------------------------------------------------------------------ submit

    async def submit(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | _UseDefault | None = USE_DEFAULT,
    ) -> Job[T]:
        """Queue ``fn(*args)`` and return its `Job`.

        Waits while the queue is full (backpressure). Inside a job of this
        same pool it never waits: a full queue raises `PoolOverloaded` at once,
        because every worker could be such a job waiting for room only a
        worker can make.

        Args:
            fn: an async function; pass keyword arguments with
                `functools.partial`.
            *args: positional arguments for ``fn``.
            name: the job's name in logs and telemetry; ``fn``'s qualified
                name by default.
            timeout: seconds the job may run (queue time does not count);
                ``None`` for no limit; the pool's ``job_timeout`` by default.

        Returns:
            The job's handle.

        Raises:
            PoolOverloaded: no room within the pool's ``submit_timeout``.
            PoolClosed: the pool no longer takes work.
            TypeError, ValueError: a bad argument.
        """
        await checkpoint_if_cancelled()
        job = self._new_job("submit", fn, args, name, timeout)
        if self._offer(job):
            if self._yield_due():
                await cancel_shielded_checkpoint()
            return job
        await self._wait_to_accept(job)
        return job

    async def _wait_to_accept(self, job: Job[Any]) -> None:
        """Wait for room for ``job``, within ``submit_timeout``; the slow path."""
        if _current_pool.get() is self:
            raise self._overloaded("submit() inside one of its own jobs")
        submit_timeout = self._submit_timeout
        if submit_timeout is None:
            await self._wait_for_room(job)
            return
        with trio.move_on_after(submit_timeout):
            await self._wait_for_room(job)
            return
        raise self._overloaded(f"within submit_timeout={submit_timeout!r}s")

    def submit_nowait(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | _UseDefault | None = USE_DEFAULT,
    ) -> Job[T]:
        """Queue ``fn(*args)`` if there is room right now, and return its `Job`.

        Takes the same arguments as `submit`; never blocks.

        Raises:
            PoolOverloaded: no idle worker and the queue is full.
            PoolClosed: the pool no longer takes work.
            TypeError, ValueError: a bad argument.
        """
        job = self._new_job("submit_nowait", fn, args, name, timeout)
        if self._offer(job):
            return job
        raise self._overloaded("right now")

    async def run(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | _UseDefault | None = USE_DEFAULT,
    ) -> T:
        """Submit ``fn(*args)``, wait for it, and return its value.

        Takes the same arguments as `submit`. If the caller is cancelled while
        it waits, the job is cancelled too.

        Raises:
            Exception: whatever the job raised, `JobTimeout`, `JobCancelled`,
                or what `submit` raises.
        """
        job = await self.submit(fn, *args, name=name, timeout=timeout)
        try:
            return await job.result()
        except trio.Cancelled:
            job.cancel()
            raise

    @overload
    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: Literal[False] = False,
        name: str | None = None,
        timeout: float | _UseDefault | None = USE_DEFAULT,
    ) -> MapResults[T]: ...

    @overload
    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: Literal[True],
        name: str | None = None,
        timeout: float | _UseDefault | None = USE_DEFAULT,
    ) -> MapResults[outcome.Outcome[T]]: ...

    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: bool = False,
        name: str | None = None,
        timeout: float | _UseDefault | None = USE_DEFAULT,
    ) -> MapResults[T] | MapResults[outcome.Outcome[T]]:
        """Run ``fn(item)`` for each item, as an async context manager of results.

        ::

            async with pool.map(fetch, urls) as results:
                async for page in results:
                    ...

        ``items`` may be a sync or an async iterable, finite or endless. Items
        are pulled in the consumer's task as it iterates, never more than the
        pool's size (``max_workers + capacity``) ahead of it, so memory stays
        bounded whatever the input. There is no background task: leaving the
        ``async with`` (by ``break``, an exception or cancellation) cancels
        the jobs not delivered yet and waits until they are done.

        Args:
            fn: an async function of one argument.
            items: the inputs.
            ordered: yield results in input order (default), or as jobs finish.
            outcomes: yield an `outcome.Outcome` per item instead of values:
                a failed item does not stop the stream.
            name: each job's name; ``fn``'s qualified name by default.
            timeout: each job's time limit, as in `submit`.

        Returns:
            A `MapResults`. Without ``outcomes``, the first failed job's
            exception is raised at its place in the iteration and the map's
            other jobs are cancelled, as ``Executor.map`` raises on the
            failing item.

        Raises:
            TypeError, ValueError: a bad argument, at once.
        """
        check_async_fn("map", fn)
        check_name("name", name)
        if timeout is not USE_DEFAULT:
            check_seconds("timeout", timeout)
        check_bool("ordered", ordered)
        check_bool("outcomes", outcomes)
        check_iterable("items", items)
        return MapResults(
            self,
            fn,
            items,
            ordered=ordered,
            outcomes=outcomes,
            name=name,
            timeout=timeout,
        )

    def _new_job(
        self,
        method: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | _UseDefault | None,
    ) -> Job[T]:
        check_async_fn(method, fn)
        if name is not None:
            check_name("name", name)
        if timeout is USE_DEFAULT:
            limit = self._job_timeout
        else:
            limit = check_seconds("timeout", timeout)
        if self._closed:
            self._reject("closed")
            raise PoolClosed(f"pool {self._name!r} is closed and takes no more jobs")
        job = Job(self, fn, args, name, limit)
        if self._telemetry is not None:
            self._telemetry.created(job)
        return job

    def _reject(self, reason: str) -> None:
        self._rejected += 1
        if self._telemetry is not None:
            self._telemetry.rejected(reason)

    def _accept(self) -> None:
        self._submitted += 1
        if self._telemetry is not None:
            self._telemetry.accepted()

    def _overloaded(self, when: str) -> PoolOverloaded:
        self._reject("overloaded")
        return PoolOverloaded(
            f"pool {self._name!r} has no room {when}: all {len(self._workers)} "
            f"workers busy and {self._backlog} of capacity={self._capacity} queued",
        )

    @enable_ki_protection
    def _offer(self, job: Job[Any]) -> bool:
        """Accept ``job`` if a worker is idle or the queue has room."""
        idle = self._idle
        if idle and not self._waking:
            self._accept()
            self._hand_over(idle.pop(), job)
            return True
        can_grow = not idle and len(self._workers) < self._max_workers
        if can_grow or self._backlog < self._capacity + self._starting:
            self._accept()
            self._enqueue(job)
            if can_grow and self._backlog > self._starting:
                self._grow()  # the new worker takes the oldest queued job
            return True
        if idle:  # a small or zero capacity: wake a second worker after all
            self._accept()
            self._hand_over(idle.pop(), job)
            return True
        return False

    def _enqueue(self, job: Job[Any]) -> None:
        self._queue.append(job)
        job._in_queue = True
        self._backlog += 1

    def _grow(self, why: str | None = "for a waiting job") -> None:
        """Start one more worker (``why`` goes to the DEBUG log, if any)."""
        assert self._nursery is not None
        self._starting += 1
        worker = _Worker()
        self._workers.add(worker)
        self._nursery.start_soon(
            self._work, worker, name=f"trio_pool worker of {self._name!r}"
        )
        if why is not None:
            logger.debug(
                "pool %r: started a worker %s (%d of at most %d)",
                self._name,
                why,
                len(self._workers),
                self._max_workers,
            )

    def _hand_over(self, worker: _Worker, job: Job[Any]) -> None:
        """Wake an idle worker with ``job`` as its next job."""
        self._waking += 1
        worker.job = job
        reschedule(worker.task, outcome.Value(job))  # type: ignore[arg-type]

    async def _wait_for_room(self, job: Job[Any]) -> None:
        task = current_task()
        waiters = self._room_waiters
        waiters[task] = job

        def abort(_: object) -> Abort:
            del waiters[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    @enable_ki_protection
    def _admit_waiters(self) -> None:
        """Accept waiting submitters' jobs while the queue has room."""
        waiters = self._room_waiters
        while waiters and self._backlog < self._capacity + self._starting:
            task, job = waiters.popitem(last=False)
            self._accept()
            self._enqueue(job)
            reschedule(task)

    def _yield_due(self) -> bool:
        """Count a call that did not wait; True once every `YIELD_EVERY` calls.

        The caller then takes a schedule point (see the class docstring).
        """
        self._since_yield += 1
        if self._since_yield < YIELD_EVERY:
            return False
        self._since_yield = 0
        return True

    # ---------------------------------------------------------------- workers

    @enable_ki_protection
    def _take_job(self) -> Job[Any] | None:
        """Return the next queued job, or None when there is none."""
        queue = self._queue
        while queue:
            job = queue.popleft()
            if job._state is QUEUED:
                self._backlog -= 1
                if self._room_waiters:
                    self._admit_waiters()
                return job
        waiters = self._room_waiters
        if waiters:  # capacity 0: take a waiting submitter's job directly
            task, job = waiters.popitem(last=False)
            self._accept()
            reschedule(task)
            return job
        return None

    @enable_ki_protection
    def _spread_work(self) -> None:
        """Jobs still wait: wake an idle worker, or start one if the pool scales."""
        if self._idle:
            job = self._take_job()
            if job is not None:
                self._hand_over(self._idle.pop(), job)
        elif len(self._workers) < self._max_workers:
            self._grow()

    async def _wait_for_job(self, worker: _Worker) -> Job[Any] | None:
        """Park until a job is handed over; None means the worker should stop.

        A worker above the minimum stops after ``idle_timeout`` without work,
        and any worker above the maximum (after `resize`) stops at once.
        """
        while True:
            if self._closed:
                self._release_idle()  # the queue is empty: the others stop too
                return None
            if len(self._workers) > self._max_workers:
                return None
            idle = self._idle
            idle.append(worker)
            worker.streak = 0

            def abort(_: object) -> Abort:
                idle.remove(worker)  # noqa: B023 - used before the loop goes on
                return Abort.SUCCEEDED

            job: Job[Any] | None = None
            if len(self._workers) <= self._min_workers:
                job = await wait_task_rescheduled(abort)
            else:
                with trio.move_on_after(self._idle_timeout) as idle_scope:
                    job = await wait_task_rescheduled(abort)
                if idle_scope.cancelled_caught:
                    if len(self._workers) > self._min_workers:
                        logger.debug(
                            "pool %r: a worker retired after %ss idle (%d left)",
                            self._name,
                            self._idle_timeout,
                            len(self._workers) - 1,
                        )
                        return None
                    continue  # others retired first: this one stays
            if job is not None:
                self._waking -= 1
            return job

    async def _work(self, worker: _Worker) -> None:
        """A worker task: take jobs and run them until the pool stops."""
        worker.task = current_task()
        self._starting -= 1
        if not self._starting and self._all_started is not None:
            self._all_started.set()  # it parks before the opener resumes
        _current_pool.set(self)
        try:
            while True:
                job: Job[Any] | None = None
                try:
                    with trio.CancelScope() as scope:
                        while True:
                            job = self._take_job()
                            if job is None:
                                job = await self._wait_for_job(worker)
                                if job is None:
                                    return
                                if job._state is not QUEUED:
                                    job = None  # cancelled after the hand-over
                                    continue
                            elif worker.streak >= YIELD_EVERY:
                                worker.streak = 0
                                await checkpoint()
                            worker.streak += 1
                            if self._backlog > self._starting and not self._waking:
                                self._spread_work()
                            self._start(worker, job, scope)
                            try:
                                value = await job._fn(*job._args)
                            except Exception as exc:
                                self._finish(worker, job, FAILED, error=exc)
                            else:
                                self._finish(worker, job, SUCCEEDED, value)
                            # Only Job.cancel (shutdown included) and a time
                            # limit cancel this scope; cancel_called itself
                            # reads the clock, so ask it only for timed jobs.
                            spent = job._cancel_requested or (
                                job._timeout is not None and scope.cancel_called
                            )
                            job = None
                            if spent:
                                break  # a cancelled scope is never reused
                except Exception as exc:
                    # Escaped the job's scope: e.g. an ExceptionGroup from the
                    # job's own nursery, after its Cancelled were taken out.
                    if job is None:
                        raise
                    self._finish(worker, job, FAILED, error=exc)
                except BaseException as exc:
                    if job is not None:
                        self._finish(
                            worker, job, self._outcome_of_escape(exc), error=exc
                        )
                    raise
                else:
                    if job is not None:  # the scope caught the job's Cancelled
                        self._finish(worker, job, self._outcome_of_cancel(job))
        finally:
            self._workers.discard(worker)
            worker.job = None

    def _start(self, worker: _Worker, job: Job[Any], scope: trio.CancelScope) -> None:
        job._state = RUNNING
        job._scope = scope
        worker.job = job
        self._running += 1
        if job._timeout is not None:
            scope.deadline = trio.current_time() + job._timeout
        if self._telemetry is not None:
            worker.span = self._telemetry.started(job)

    def _finish(
        self,
        worker: _Worker,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Record how a running job ended and resolve its handle."""
        worker.job = None
        self._running -= 1
        scope = job._scope
        if job._timeout is not None and scope is not None:
            scope.deadline = math.inf
        if state is SUCCEEDED:
            self._succeeded += 1
        elif state is FAILED:
            self._failed += 1
        elif state is TIMED_OUT:
            self._timed_out += 1
            error = job._timeout_error()
        else:
            self._cancelled += 1
            error = job._cancelled_error()
        job._resolve(state, value, error)
        if state is FAILED:  # logged while the job's span is still current
            logger.warning(
                "job %r in pool %r failed", job.name, self._name, exc_info=error
            )
        if self._telemetry is not None:
            self._telemetry.ended(job, worker.span)
            worker.span = None
        if self._drain_waiters:
            self._wake_if_drained()

    def _outcome_of_cancel(self, job: Job[Any]) -> JobState:
        """The job's own scope caught its cancellation: timed out or cancelled?"""
        return CANCELLED if job._cancel_requested else TIMED_OUT

    @staticmethod
    def _outcome_of_escape(exc: BaseException) -> JobState:
        """A BaseException leaves the worker: cancelled from outside, or failed."""
        if isinstance(exc, trio.Cancelled):
            return CANCELLED
        if isinstance(exc, BaseExceptionGroup):
            only_cancelled = exc.split(trio.Cancelled)[1] is None  # pyright: ignore[reportUnknownMemberType]
            if only_cancelled:
                return CANCELLED
        return FAILED

    # --------------------------------------------------------------- stopping

    @enable_ki_protection
    def _cancel_queued(self, job: Job[Any]) -> None:
        """Cancel a job that has not started (called by `Job.cancel`)."""
        self._resolve_unstarted(job)
        if job._in_queue:
            self._backlog -= 1
            queue = self._queue
            if len(queue) > 2 * self._backlog + 32:  # drop the tombstones
                self._queue = deque(j for j in queue if j._state is QUEUED)
            if self._room_waiters:
                self._admit_waiters()
        if self._drain_waiters:
            self._wake_if_drained()

    def _release_idle(self) -> None:
        """Wake every idle worker with nothing to do, so that it stops."""
        idle = self._idle
        while idle:
            reschedule(idle.pop().task, outcome.Value(None))  # type: ignore[arg-type]

    def _resolve_unstarted(self, job: Job[Any]) -> None:
        self._cancelled += 1
        job._resolve(CANCELLED, error=job._cancelled_error())

    def close(self) -> None:
        """Stop taking work: `submit` raises `PoolClosed` from now on.

        Queued and running jobs still run. Submitters already waiting for room
        get `PoolClosed`. Closing twice does nothing.
        """
        if self._closed:
            return
        self._closed = True
        waiters = self._room_waiters
        while waiters:
            task, _ = waiters.popitem(last=False)
            self._reject("closed")
            error = PoolClosed(f"pool {self._name!r} closed while submit() waited")
            reschedule(task, outcome.Error(error))
        if not self._backlog:
            self._release_idle()
        logger.debug("pool %r closed", self._name)

    def _cancel_everything(self) -> None:
        """Close, cancel every queued job and every running job's scope."""
        self.close()
        queue = self._queue
        while queue:
            job = queue.popleft()
            if job._state is QUEUED:
                self._resolve_unstarted(job)
        self._backlog = 0
        for worker in self._workers:
            current = worker.job
            if current is None:
                continue
            if current._state is QUEUED:  # handed over, not started yet
                self._resolve_unstarted(current)
            elif current._state is RUNNING:
                current.cancel()
        self._release_idle()
        self._wake_if_drained()

    def _finished(self) -> int:
        return self._succeeded + self._failed + self._timed_out + self._cancelled

    def _wake_if_drained(self) -> None:
        if self._finished() == self._submitted:  # every accepted job is done
            waiters = self._drain_waiters
            for task in waiters:
                reschedule(task)
            waiters.clear()

    async def _wait_drained(self) -> None:
        if self._finished() == self._submitted:
            await checkpoint()
            return
        task = current_task()
        waiters = self._drain_waiters
        waiters.append(task)

        def abort(_: object) -> Abort:
            waiters.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Close the pool, let it drain, then cancel whatever is left.

        Waits up to ``grace_period`` seconds (``None``: no limit) for queued
        and running jobs to finish, then cancels the rest (they end
        `JobState.CANCELLED`) and waits for them. When it returns, every job
        is done. This is a checkpoint.

        Raises:
            TypeError, ValueError: a bad ``grace_period``.
        """
        grace = check_seconds("grace_period", grace_period)
        self.close()
        with trio.move_on_after(math.inf if grace is None else grace):
            await self._wait_drained()
            return
        logger.info(
            "pool %r: grace period of %ss over, cancelling %d running and %d "
            "queued jobs",
            self._name,
            grace,
            self._running,
            self._backlog,
        )
        self._cancel_everything()
        await self._wait_drained()

    # ------------------------------------------------------------- statistics

    def statistics(self) -> PoolStatistics:
        """Return a `PoolStatistics` snapshot. Never blocks."""
        finished = self._finished()
        return PoolStatistics(
            name=self._name,
            workers=len(self._workers),
            idle_workers=len(self._idle),
            min_workers=self._min_workers,
            max_workers=self._max_workers,
            capacity=self._capacity,
            queued=self._submitted - self._running - finished,
            running=self._running,
            waiting_submitters=len(self._room_waiters),
            submitted=self._submitted,
            succeeded=self._succeeded,
            failed=self._failed,
            timed_out=self._timed_out,
            cancelled=self._cancelled,
            rejected=self._rejected,
            closed=self._closed,
        )

    # ---------------------------------------------------------------- running

    @asynccontextmanager
    async def _running_in_nursery(self) -> AsyncGenerator[Pool, None]:
        body_error: BaseException | None = None
        worker_errors: list[BaseException] = []
        logger.info(
            "pool %r started: %d workers, capacity %d",
            self._name,
            self._min_workers,
            self._capacity,
        )
        try:
            if self._telemetry is not None:
                self._telemetry.opened()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Start every worker at once and wait until all are idle.
                self._all_started = trio.Event()
                for _ in range(self._min_workers):
                    self._grow(why=None)
                await self._all_started.wait()
                self._all_started = None
                try:
                    yield self
                except BaseException as exc:
                    body_error = exc
                    self._cancel_everything()
                    nursery.cancel_scope.cancel()
                else:
                    self.close()
        except BaseExceptionGroup as group:
            rest = group.split(trio.Cancelled)[1]  # pyright: ignore[reportUnknownMemberType]
            if rest is None and body_error is None:
                raise
            if rest is not None:
                worker_errors = _leaves(rest)
        finally:
            self._nursery = None
            self._cancel_everything()  # resolve anything an outer cancel left
            if self._telemetry is not None:
                self._telemetry.closed()
            logger.info("pool %r stopped: %s", self._name, self.statistics())
        if worker_errors:
            if body_error is not None and not isinstance(body_error, trio.Cancelled):
                worker_errors.insert(0, body_error)
            if len(worker_errors) == 1:
                raise worker_errors[0]
            raise BaseExceptionGroup("errors in trio_pool", worker_errors)
        if body_error is not None:
            raise body_error


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))  # pyright: ignore[reportUnknownArgumentType]
        else:
            leaves.append(exc)
    return leaves


DEFAULT_IDLE_TIMEOUT: Final = 30.0
"""Seconds a worker above the minimum may idle before it retires."""


def check_max_workers(workers: int, max_workers: object) -> int:
    """Return the checked ``max_workers`` (``workers`` when None)."""
    if max_workers is None:
        return workers
    check_int("max_workers", max_workers, 1)
    assert isinstance(max_workers, int)
    if max_workers < workers:
        raise ValueError(
            f"max_workers must be >= workers ({workers}), not {max_workers!r}"
        )
    return max_workers


def default_capacity(workers: int) -> int:
    """The queue capacity used when ``open_pool`` is given none."""
    return max(workers, 64)


def open_pool(
    workers: int,
    *,
    capacity: int | None = None,
    max_workers: int | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    job_timeout: float | None = None,
    submit_timeout: float | None = None,
    name: str | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    telemetry: bool = True,
) -> AbstractAsyncContextManager[Pool]:
    """Open a pool of ``workers`` worker tasks.

    Use it as ``async with trio_pool.open_pool(8) as pool:``. The workers live
    in a nursery inside the ``async with``. When the body ends normally the
    pool stops taking work, runs every queued job and waits for all of them.
    If the body raises, or the surrounding scope is cancelled, every job is
    cancelled and resolves `JobState.CANCELLED`, and the body's exception
    comes out as itself, not wrapped in an `ExceptionGroup`.

    Args:
        workers: how many jobs run at once; an int >= 1.
        capacity: how many accepted jobs may wait for a worker; an int >= 0
            (0: hand-off only). Default: ``max(workers, 64)``.
        max_workers: with a value above ``workers``, the pool scales: it
            starts a worker as soon as a job waits and no worker is idle, up
            to ``max_workers``, and ``workers`` becomes the minimum.
        idle_timeout: seconds a worker above the minimum may stay idle
            before it retires (default 30).
        job_timeout: the default time limit of each job, in seconds of
            running time; ``None`` for no limit.
        submit_timeout: how long `Pool.submit` may wait for room before it
            raises `PoolOverloaded`; ``None`` waits without limit.
        name: the pool's name in logs and telemetry; ``pool-N`` by default.
        tracer_provider: where job spans go; the global provider by default.
        meter_provider: where metrics go; the global provider by default.
            Providers are looked up when the pool opens: one that is still
            the API's no-op default then is skipped at no cost.
        telemetry: ``False`` turns spans and metrics off entirely.

    Raises:
        TypeError, ValueError: a bad argument, at once.
    """
    check_int("workers", workers, 1)
    max_workers = check_max_workers(workers, max_workers)
    if capacity is None:
        capacity = default_capacity(max_workers)
    else:
        check_int("capacity", capacity, 0)
    idle = check_seconds("idle_timeout", idle_timeout)
    pool = Pool(
        workers=workers,
        max_workers=max_workers,
        idle_timeout=math.inf if idle is None else idle,
        capacity=capacity,
        job_timeout=check_seconds("job_timeout", job_timeout),
        submit_timeout=check_seconds("submit_timeout", submit_timeout),
        name=check_name("name", name) or f"pool-{next(_pool_numbers)}",
        telemetry=check_bool("telemetry", telemetry),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    return pool._running_in_nursery()

"""The `Pool` facade and `open_pool`: argument checks, then the core.

Each public method checks its arguments and its caller (thread and Trio run)
before anything changes, then calls one transition of the `PoolCore`, which
owns every piece of state. How the pieces fit:

* ``_controls.py``: `Pool`'s methods that size, stop, wait and read;
* ``_core.py``: the state record and every transition, the invariant check;
* ``_worker.py``: the worker loop;
* ``_job.py``: the job handle and the core's record of a job;
* ``_map.py``: `Pool.map`'s results; ``_feeder.py``: its feeder, on the
  core's methods;
* ``_group.py``: `Pool.group`, on the job handles' listeners;
* ``_priority.py``: the core's variant with priorities (``priority=``);
* ``_opened.py``: the workers' nursery around the ``async with`` body;
* ``_exits.py``: what leaves a block (the pool's, the map's): one policy;
* ``_telemetry.py``: spans and metrics, guarded;
* ``_checks.py``, ``_errors.py``, ``_statistics.py``: the leaves.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Literal, TypeVar, final, overload

from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from ._async_with import AsyncWithOnly
from ._checks import (
    DEFAULT_IDLE_TIMEOUT,
    MAX_BURST,
    MAX_CAPACITY,
    MAX_WORKERS,
    USE_POOL_DEFAULT,
    check_async_fn,
    check_bool,
    check_int,
    check_iterable,
    check_max_workers,
    check_name,
    check_provider,
    check_rate,
    check_seconds,
    default_capacity,
)
from ._controls import PoolControls
from ._feeder import MapRequest
from ._group import open_group
from ._map import MapResults, check_key_function
from ._opened import opened
from ._priority import PrioritizedCore, check_priority
from ._rate import run_pacer
from ._state import YIELD_DUE
from ._variants import begin_priorities, open_core, set_priority
from ._worker import run_worker

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterable,
        Awaitable,
        Callable,
        Hashable,
        Iterable,
    )
    from contextlib import AbstractAsyncContextManager

    import outcome
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from typing_extensions import TypeVarTuple, Unpack

    from ._checks import UsePoolDefault
    from ._core import PoolCore
    from ._group import JobGroup
    from ._job import Job

    PosArgT = TypeVarTuple("PosArgT")

T = TypeVar("T")
U = TypeVar("U")


_pool_numbers = itertools.count(1)


@final
class Pool(PoolControls):
    """A pool of worker tasks running jobs, at most ``workers`` at a time.

    Create one with `open_pool`. Checkpoints: its async methods, `Job`'s and
    the map's ``__anext__`` always check for cancellation and yield to the
    scheduler when they wait; `submit`, `Job.result`, `Job.wait` and
    ``__anext__`` that did not wait yield once in 32 such calls, so they are
    not unconditional checkpoints (a switch costs more than a job: see the
    guide's "Checkpoints" for the figures).

    A pool belongs to the Trio run (and thread) that opened it: every method
    but `statistics` raises `RuntimeError` when called from another thread or
    another run, before anything changes. From a thread, go through
    ``trio.from_thread.run_sync(pool.submit_nowait, fn, ...)``.
    """

    def __init__(self, core: PoolCore) -> None:
        self._core = core
        self._shed = core.shed  # the default of submit(shed=); never changes

    def __repr__(self) -> str:
        core = self._core
        workers = core.min_workers
        if core.max_workers == workers:
            return f"<trio_pool.Pool {core.name!r} workers={workers}>"
        return (
            f"<trio_pool.Pool {core.name!r} workers={workers} "
            f"max_workers={core.max_workers}>"
        )

    # ------------------------------------------------------------------ submit

    async def submit(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Hashable = None,
        shed: bool | None = None,
        priority: int = 0,
    ) -> Job[T]:
        """Queue ``fn(*args)`` and return its `Job`.

        Waits while the queue is full (backpressure). Inside a job of this
        same pool it never waits: a full queue raises `PoolOverloaded` at once,
        because every worker could be such a job waiting for room only a
        worker can make.

        Keyword arguments are the pool's, never ``fn``'s, as in
        ``nursery.start_soon``: ``pool.submit(greet, name="bob")`` names the
        job "bob" and calls ``greet()`` without it (the job then fails with a
        missing argument); the same goes for ``timeout=``, ``key=`` and
        ``shed=``. Bind ``fn``'s keyword arguments with `functools.partial`:
        ``pool.submit(functools.partial(greet, name="bob"))``.

        Args:
            fn: an async function; pass keyword arguments with
                `functools.partial` (see above).
            *args: positional arguments for ``fn``.
            name: the job's name in logs and telemetry; ``fn``'s qualified
                name by default.
            timeout: seconds the job may run (queue time does not count);
                ``None`` for no limit; `USE_POOL_DEFAULT` (the default): the
                pool's ``job_timeout``, also when a wrapper passes it on.
            key: in a pool opened with ``per_key_limit=N``, at most N jobs
                of one key (any hashable, e.g. a host name) are queued or
                running at once; the others wait aside, in order, without
                holding up other keys' jobs, and count against ``capacity``.
                ``None``: no key.
            shed: refuse the job at once with `PoolOverloaded` (``reason``
                ``"deadline"``) when, by the pool's estimate, it would not
                finish before the caller's deadline
                (`trio.current_effective_deadline`), rather than queue work
                bound to be cancelled. ``None``: the pool's ``shed``.
            priority: an int: higher starts first among the waiting jobs,
                in order within a level (see the guide's "Priorities").

        Returns:
            The job's handle.

        Raises:
            PoolOverloaded: no room within the pool's ``submit_timeout``, or
                shed by the caller's deadline.
            PoolClosed: the pool no longer takes work.
            TypeError, ValueError: a bad argument.
            RuntimeError: called from another thread or another Trio run.
        """
        core = self._core
        job = core.new_job("submit", fn, args, name, timeout, key)
        if priority.__class__ is not int or priority:
            set_priority(core, job, priority)
        # (`_group.accept`, inlined: the hot path)
        await checkpoint_if_cancelled()
        if self._shed if shed is None else check_bool("shed", shed):
            core.shed_by_deadline(job)
        accepted = core.offer(job, True) if key is None else core.offer_keyed(job, True)
        if accepted:
            if accepted == YIELD_DUE:
                await cancel_shielded_checkpoint()
        else:
            await core.wait_to_accept(job)
        return job

    def submit_nowait(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Hashable = None,
        shed: bool | None = None,
        priority: int = 0,
    ) -> Job[T]:
        """Queue ``fn(*args)`` if there is room right now, and return its `Job`.

        Takes the same arguments as `submit`; never blocks. As there, ``name=``,
        ``timeout=``, ``key=``, ``shed=`` and ``priority=`` are the pool's,
        never ``fn``'s: bind ``fn``'s keyword arguments with
        `functools.partial`
        (``pool.submit_nowait(functools.partial(greet, name="bob"))``).

        Raises:
            PoolOverloaded: no idle worker and the queue is full, or shed by
                the caller's deadline.
            PoolClosed: the pool no longer takes work.
            TypeError, ValueError: a bad argument.
            RuntimeError: called from another thread or another Trio run.
        """
        core = self._core
        job = core.new_job("submit_nowait", fn, args, name, timeout, key)
        if priority.__class__ is not int or priority:
            set_priority(core, job, priority)
        # (`_group.accept_nowait`, inlined: the hot path)
        if self._shed if shed is None else check_bool("shed", shed):
            core.shed_by_deadline(job)
        if core.offer(job) if key is None else core.offer_keyed(job):
            return job
        raise core.overloaded("right now")

    async def run(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Hashable = None,
        shed: bool | None = None,
        priority: int = 0,
    ) -> T:
        """Submit ``fn(*args)``, wait for it, and return its value.

        Takes the same arguments as `submit`. If the caller is cancelled (or
        interrupted, by Ctrl-C) while it waits, the job is cancelled too. As
        in `submit`, ``name=``, ``timeout=``, ``key=`` and ``shed=`` are the
        pool's, never ``fn``'s: bind ``fn``'s keyword arguments with
        `functools.partial`
        (``await pool.run(functools.partial(greet, name="bob"))``).

        Raises:
            Exception: whatever the job raised, `JobTimeout`, `JobCancelled`,
                or what `submit` raises.
        """
        job = await self.submit(
            fn, *args, name=name, timeout=timeout, key=key, shed=shed, priority=priority
        )
        try:
            return await job.result()
        except BaseException:  # cancelled or interrupted: its job goes too
            job.cancel()
            raise

    def group(
        self, *, fail_fast: bool = True, name: str | None = None
    ) -> AbstractAsyncContextManager[JobGroup]:
        """Open a group of jobs: ``async with pool.group() as group:``.

        The group submits to this pool, shares its workers, queue and limits,
        and its block waits for the group's jobs only; `JobGroup` says what
        ``fail_fast``, errors and cancellation do. Entering and leaving the
        block are checkpoints.

        Args:
            fail_fast: the first failure cancels the group's other jobs and
                its body, and the block raises the failures.
            name: the group's name in its span; ``group-N`` by default.

        Raises:
            TypeError, ValueError: a bad argument, at once.
            RuntimeError: called from another thread or another Trio run.
        """
        check_bool("fail_fast", fail_fast)
        check_name("name", name)
        core = self._core
        core.check_caller("group")
        block = open_group(core, fail_fast=fail_fast, name=name)
        return AsyncWithOnly(block, "pool.group()", "group")

    @overload
    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: Literal[False] = False,
        name: str | None = None,
        timeout: float | UsePoolDefault | None = ...,
        key: Callable[[U], Hashable] | None = None,
        priority: int = 0,
    ) -> AbstractAsyncContextManager[MapResults[T]]: ...

    @overload
    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: Literal[True],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = ...,
        key: Callable[[U], Hashable] | None = None,
        priority: int = 0,
    ) -> AbstractAsyncContextManager[MapResults[outcome.Outcome[T]]]: ...

    @overload
    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: bool,
        name: str | None = None,
        timeout: float | UsePoolDefault | None = ...,
        key: Callable[[U], Hashable] | None = None,
        priority: int = 0,
    ) -> (
        AbstractAsyncContextManager[MapResults[T]]
        | AbstractAsyncContextManager[MapResults[outcome.Outcome[T]]]
    ): ...

    def map(
        self,
        fn: Callable[[U], Awaitable[T]],
        items: Iterable[U] | AsyncIterable[U],
        *,
        ordered: bool = True,
        outcomes: bool = False,
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Callable[[U], Hashable] | None = None,
        priority: int = 0,
    ) -> (
        AbstractAsyncContextManager[MapResults[T]]
        | AbstractAsyncContextManager[MapResults[outcome.Outcome[T]]]
    ):
        """Run ``fn(item)`` for each item, as an async context manager of results.

        ::

            async with pool.map(fetch, urls) as results:
                async for page in results:
                    ...

        ``items`` may be a sync or an async iterable, finite or endless. A
        feeder task, inside the ``async with``, pulls items as the loop takes
        results, never more than twice the pool's size
        (``2 * (max_workers + capacity)``) ahead of it, so memory stays
        bounded whatever the input, and results come also while a live
        source waits for its next item. Leaving the ``async with`` (by
        ``break``, an exception or cancellation) stops the feeder, cancels
        the jobs not delivered yet and waits until they are done.

        Args:
            fn: an async function of one argument, the item. ``name=`` and
                ``timeout=`` are the map's, never ``fn``'s: bind ``fn``'s
                other arguments with `functools.partial`
                (``pool.map(functools.partial(greet, greeting="hi"), names)``).
            items: the inputs.
            ordered: yield results in input order (default), or as jobs finish.
            outcomes: yield an `outcome.Outcome` per item instead of values:
                a failed item does not stop the stream.
            name: each job's name; ``fn``'s qualified name by default.
            timeout: each job's time limit, as in `submit`.
            key: in a pool opened with ``per_key_limit=N``, a function of
                the item giving its job's key (e.g. a URL's host), as
                `submit`'s ``key=``: at most N jobs of one key are queued or
                running at once, and keys take turns. ``None``: no key.
            priority: every job's priority, as in `submit`.

        Entering is not a checkpoint; leaving is one (it waits for the jobs
        it cancels); what leaves it follows :doc:`errors`.

        Returns:
            Only an async context manager (``async for r in pool.map(...)``
            is a type error), whose ``__aenter__`` gives the `MapResults`.
            Without ``outcomes``, the first failed job's exception is raised
            at its place in the iteration and the map's other jobs are
            cancelled, as ``Executor.map`` raises on the failing item.

        Raises:
            TypeError, ValueError: a bad argument, at once.
        """
        fn = check_async_fn("map", fn)
        check_name("name", name)
        core = self._core
        limit = core.time_limit(timeout)
        check_bool("ordered", ordered)
        check_bool("outcomes", outcomes)
        check_iterable("items", items)
        if key is not None:
            check_key_function(core, key)
        check_priority(priority)
        core.check_caller("map")
        if priority and not isinstance(core, PrioritizedCore):
            begin_priorities(core)
        request = MapRequest(fn, items, ordered, name, limit, key, priority)
        results: MapResults[T] = MapResults(core, request, outcomes=outcomes)
        return AsyncWithOnly(results, "pool.map(...)", "results")


def open_pool(
    workers: int,
    *,
    capacity: int | None = None,
    max_workers: int | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    job_timeout: float | None = None,
    submit_timeout: float | None = None,
    name: str | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    telemetry: bool = True,
    timings: bool = False,
    rate: float | None = None,
    burst: int = 1,
    per_key_limit: int | None = None,
    shed: bool = False,
) -> AbstractAsyncContextManager[Pool]:
    """Open a pool of ``workers`` worker tasks.

    Use it as ``async with trio_pool.open_pool(8) as pool:``. The workers live
    in a nursery inside the ``async with``. When the body ends normally the
    pool stops taking work, runs every queued job and waits for all of them.
    If the body raises, or the surrounding scope is cancelled, every job is
    cancelled and resolves `JobState.CANCELLED`, and the body's exception
    comes out as itself, not wrapped in an `ExceptionGroup`. What comes out
    when a job or a worker raised too (a `BaseException` that is not an
    `Exception`) follows one table, in :doc:`errors`.

    Entering the ``async with`` is a checkpoint (it starts the workers and
    waits until each is ready); leaving it is one too (it waits for the
    jobs).

    Args:
        workers: how many jobs run at once; an int from 1 to 1,000,000.
        capacity: how many accepted jobs may wait for a worker; an int >= 0
            (0: hand-off only), at most ``sys.maxsize``. Default:
            ``max(max_workers, 64)``.
        max_workers: with a value above ``workers`` (at most 1,000,000), the
            pool scales: it starts a worker as soon as a job waits and no
            worker is idle, up to ``max_workers``, and ``workers`` becomes the
            minimum.
        idle_timeout: seconds a worker above the minimum may stay idle
            before it retires (default 30); ``None``: never.
        job_timeout: the default time limit of each job, in seconds of
            running time; ``None`` for no limit.
        submit_timeout: how long `Pool.submit` may wait for room before it
            raises `PoolOverloaded`; ``None`` waits without limit.
        name: the pool's name in logs and telemetry (not empty); ``pool-N`` by
            default.
        tracer_provider: where job spans go; the global provider by default.
        meter_provider: where metrics go; the global provider by default.
            Providers are looked up when the pool opens: one that is still
            the API's no-op default then is skipped at no cost.
        telemetry: ``False`` turns spans and metrics off entirely.
        timings: record when each job was submitted, started and finished
            (`Job.submitted_at` and the rest); without it (and without
            ``shed``) they are ``None``, also when telemetry reads the clock
            for its own metrics.
        rate: at most this many job starts per second (a float > 0), by a
            token bucket; ``None`` (the default) for no limit. Jobs wait in
            the queue for their turn, so ``capacity`` and backpressure apply
            as before.
        burst: how many starts may happen at once after a quiet spell (the
            bucket's size); an int from 1 to 1,000,000, default 1. Needs
            ``rate``.
        per_key_limit: with an int >= 1, at most this many jobs of one
            ``key`` (see `Pool.submit`) are queued or running at once; keys
            are served in turn, and a saturated key's jobs wait aside.
            ``None`` (the default): submit takes no key.
        shed: the default of `Pool.submit`'s ``shed``: refuse jobs that, by
            the pool's estimate, could not finish before the caller's
            deadline. The pool then records timings (see ``timings``).

    Raises:
        TypeError, ValueError: a bad argument, at once.
    """
    check_int("workers", workers, 1, MAX_WORKERS)
    max_workers = check_max_workers(workers, max_workers)
    if capacity is None:
        capacity = default_capacity(max_workers)
    else:
        check_int("capacity", capacity, 0, MAX_CAPACITY)
    idle = check_seconds("idle_timeout", idle_timeout)
    job_limit = check_seconds("job_timeout", job_timeout)
    submit_limit = check_seconds("submit_timeout", submit_timeout)
    name = check_name("name", name)
    if name == "":
        raise ValueError("name='' is empty: name the pool, or None for pool-N")
    rate = check_rate("rate", rate)
    check_int("burst", burst, 1, MAX_BURST)
    if per_key_limit is not None:
        check_int("per_key_limit", per_key_limit, 1, MAX_WORKERS)
    if rate is None and burst != 1:
        raise ValueError(f"burst={burst!r} needs a rate (rate=None: no limit)")
    check_provider("tracer_provider", tracer_provider, "get_tracer")
    check_provider("meter_provider", meter_provider, "get_meter")
    if name is None:  # (numbered once every argument passed: a refusal takes none)
        name = f"pool-{next(_pool_numbers)}"
    core = open_core(
        name=name,
        workers=workers,
        max_workers=max_workers,
        capacity=capacity,
        idle_timeout=math.inf if idle is None else idle,
        job_timeout=job_limit,
        submit_timeout=submit_limit,
        telemetry=check_bool("telemetry", telemetry),
        timings=check_bool("timings", timings),
        rate=rate,
        burst=burst,
        per_key_limit=per_key_limit,
        shed=check_bool("shed", shed),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        run_worker=run_worker,
        run_pacer=run_pacer,
    )
    return AsyncWithOnly(opened(Pool(core), core), "trio_pool.open_pool(...)", "pool")

"""The worker loop: take the next job, run it, classify how it ended.

A worker holds nothing while it waits or takes its periodic schedule point:
it takes a job and starts it in one call to the core, runs it, and reports
how it ended in another. Each worker runs its jobs inside one
`trio.CancelScope`, replaced only after it has been cancelled (by a time
limit, `Job.cancel` or shutdown), so a job costs no cancel scope of its own
unless it is cancelled.
"""

# The worker runs the job record the core hands it; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import trio
from trio.lowlevel import (
    Abort,
    checkpoint,
    disable_ki_protection,
    enable_ki_protection,
    wait_task_rescheduled,
)

from ._job import CANCELLED, FAILED, RUNNING, SUCCEEDED, TIMED_OUT, Job, JobState

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._core import PoolCore
    from ._crew import Worker

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


@enable_ki_protection
async def run_worker(core: PoolCore, worker: Worker) -> None:
    """A worker task: take jobs and run them until the pool lets it go.

    It is KI-protected, but the loop that runs the jobs (`_run_jobs`) is
    not: a KeyboardInterrupt at any line of that loop comes out here, where
    none can land, so the job it leaves running is always resolved and the
    worker's books always close.
    """
    core.worker_began(worker)
    try:
        await _run_jobs(core, worker)
    except BaseException as exc:
        # (the core's record, not the loop's local: a KeyboardInterrupt may
        # land after the core started a job, before the local is set)
        job = running_job(worker)
        if job is None:
            raise
        own, escaping = split_escape(exc)
        if own is None:
            core.finish(worker, job, outcome_of_escape(exc), error=exc)
        else:  # the job failed on its own while cancelled from outside
            core.finish(worker, job, FAILED, error=own)
        if escaping is exc:
            raise
        raise escaping from None
    finally:
        core.worker_exited(worker)


@disable_ki_protection
async def _run_jobs(core: PoolCore, worker: Worker) -> None:
    """The worker's loop (not KI-protected: the jobs hear a Ctrl-C)."""
    yield_every = core.yield_every
    streak = 0  # jobs run since the last schedule point
    abort = _idle_abort(core, worker)  # (made once: see `_idle_abort`)
    while True:
        job: Job[Any] | None = None
        try:
            with trio.CancelScope() as scope:
                # (the worker's record, read by `Intake._cancel_running`: no
                # job runs in this scope yet)
                worker.scope = scope
                worker.scope_cancelled = False
                while True:
                    if streak >= yield_every:
                        streak = 0
                        await checkpoint()  # holding no job
                    if job is None:
                        job = core.start_next(worker, scope)
                        if job is None:
                            job = await _wait_for_job(core, worker, scope, abort)
                            if job is None:
                                return
                            streak = 0  # it parked: a schedule point
                    streak += 1
                    try:
                        value = await job._fn(*job._args)
                    except Exception as exc:
                        core.finish(worker, job, FAILED, error=exc)
                    else:
                        if (
                            streak < yield_every
                            and job._timeout is None
                            and not worker.scope_cancelled
                        ):
                            # The common step: finish it and start the next
                            # in one transition; its scope is not spent.
                            job = core.finish_and_next(worker, job, value, scope)
                            value = None  # an idle worker keeps no result alive
                            continue
                        core.finish(worker, job, SUCCEEDED, value)
                        value = None
                    # Only Job.cancel (shutdown included) and a time limit
                    # cancel this scope; cancel_called itself reads the
                    # clock, so ask it only for timed jobs.
                    spent = worker.scope_cancelled or (
                        job._timeout is not None and scope.cancel_called
                    )
                    job = None
                    if spent:
                        break  # a cancelled scope is never reused
        except Exception as exc:
            # Escaped the job's scope: e.g. an ExceptionGroup from the
            # job's own nursery, after its Cancelled were taken out.
            job = running_job(worker)
            if job is None:
                raise
            core.finish(worker, job, FAILED, error=exc)
        else:
            if job is not None:  # the scope caught the job's Cancelled
                core.finish(worker, job, outcome_of_cancel(worker))


def _idle_abort(core: PoolCore, worker: Worker) -> Callable[[object], Abort]:
    """The abort function of ``worker`` parked idle: it unparks it.

    Made once per worker, not at each park: marking a function KI-protected
    registers it with trio (a weak reference and a few calls each time).
    """

    @enable_ki_protection
    def abort(_: object) -> Abort:
        core.abort_idle(worker)
        return Abort.SUCCEEDED

    return abort


@enable_ki_protection
async def _wait_for_job(
    core: PoolCore,
    worker: Worker,
    scope: trio.CancelScope,
    abort: Callable[[object], Abort],
) -> Job[Any] | None:
    """Park until a job is handed over, and start it; None: the worker stops.

    A worker above the minimum stops after ``idle_timeout`` without work.
    Registering as idle, parking and starting the handed job are one
    KI-protected step (as trio's ``ParkingLot.park``): a KeyboardInterrupt
    never leaves an idle worker recorded that is not parked, nor a job
    started that the loop does not know of; it comes when the worker parks,
    or goes to the main task. ``abort``: the worker's (`_idle_abort`).
    """
    while True:
        idle_timeout = core.idle_or_stop(worker)
        if idle_timeout is None:
            return None
        if idle_timeout < math.inf:  # above the minimum: it may retire
            with trio.move_on_after(idle_timeout) as idle_scope:
                await wait_task_rescheduled(abort)
            job = core.take_handed(worker, scope)  # (else the next queued one)
            if job is not None:  # (also one that came as the timer expired)
                return job
            if idle_scope.cancelled_caught and core.retire_idle(worker):
                return None
            # Others retired first: this one stays.
            continue
        await wait_task_rescheduled(abort)
        job = core.take_handed(worker, scope)  # (else the next queued one)
        if job is not None:
            return job


def running_job(worker: Worker) -> Job[Any] | None:
    """The job running in ``worker``, if any (the core's record: a
    KeyboardInterrupt may land after the core started a job, before the
    loop's local is set)."""
    job = worker.job
    return job if job is not None and job.state is RUNNING else None


def outcome_of_cancel(worker: Worker) -> JobState:
    """The scope of ``worker``'s job caught its cancellation: timed out or
    cancelled?"""
    return CANCELLED if worker.scope_cancelled else TIMED_OUT


def split_escape(
    exc: BaseException,
) -> tuple[BaseException | None, BaseException]:
    """Split what left a job's scope into the job's own errors and the rest.

    A group that mixes `trio.Cancelled` (an outside cancellation) with the
    job's own exceptions (raised by its children as they were cancelled):
    the exceptions are the job's failure, and only the rest (the
    cancellation, a KeyboardInterrupt) goes on out of the pool.

    Returns:
        ``(own, escaping)``: ``own`` is None when nothing is the job's own.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return None, exc
    group: BaseExceptionGroup[BaseException] = exc  # pyright: ignore[reportUnknownVariableType]
    own, escaping = group.split(Exception)
    if own is None or escaping is None:
        return None, group
    return own, escaping


def outcome_of_escape(exc: BaseException) -> JobState:
    """A BaseException leaves the worker: cancelled from outside, or failed."""
    if isinstance(exc, trio.Cancelled):
        return CANCELLED
    if isinstance(exc, BaseExceptionGroup):
        only_cancelled = exc.split(trio.Cancelled)[1] is None  # pyright: ignore[reportUnknownMemberType]
        if only_cancelled:
            return CANCELLED
    return FAILED

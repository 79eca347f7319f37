"""The variants that time jobs: `TimedCore` (``timings``, ``shed``) records
when each job was submitted, started and finished, and the mean run;
`TracedCore` (active telemetry) adds its spans and metrics. `_variants`
combines them with the others (see there).
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from trio.lowlevel import enable_ki_protection

from ._core import PoolCore
from ._job import CANCELLED, FeaturedJob, Job, JobState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Iterable

    import trio

    from ._crew import Worker


class TimedCore(PoolCore):
    """A pool that records when each job was submitted, started, finished."""

    _timed = True

    def make_job(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        limit: float | None,
        on_done: Callable[[Job[Any]], None] | None,
        key: Hashable = None,
    ) -> FeaturedJob[Any]:
        made = super().make_job(fn, args, name, limit, on_done, key)
        job = cast("FeaturedJob[Any]", made)  # (`_job_type`)
        job._t_submitted = self._now()
        return job

    def make_jobs(
        self,
        fn: Callable[..., Awaitable[Any]],
        items: Iterable[Any],
        name: str | None,
        limit: float | None,
    ) -> list[Job[Any]]:
        jobs = super().make_jobs(fn, items, name, limit)
        now = self._now()  # (a batch is made at one instant)
        for job in cast("list[FeaturedJob[Any]]", jobs):  # (`_job_type`)
            job._t_submitted = now
        return jobs

    @enable_ki_protection
    def start_next(
        self, worker: Worker, scope: trio.CancelScope, handed: Job[Any] | None = None
    ) -> Job[Any] | None:
        job = super().start_next(worker, scope, handed)
        if job is not None:
            job._t_started = self._now()
        return job

    @enable_ki_protection
    def finish(
        self,
        worker: Worker | None,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        job._t_finished = self._now()  # before its listeners read it
        super().finish(worker, job, state, value, error)
        if state is not CANCELLED:
            self._measured(job)

    @enable_ki_protection
    def finish_and_next(
        self, worker: Worker, job: Job[Any], value: object, scope: trio.CancelScope
    ) -> Job[Any] | None:
        """`PoolCore.finish_and_next`, stamped: the job's end and the next
        one's start are one transition, at one reading of the clock."""
        now = self._now()
        job._t_finished = now  # before its listeners read it
        following = super().finish_and_next(worker, job, value, scope)
        self._measured(job)
        if following is not None:
            following._t_started = now
        return following

    def _measured(self, job: Job[Any]) -> None:
        """Fold a finished job's run into the mean run (a cancelled run says
        nothing of length, and is not passed here)."""
        try:
            run = job._t_finished - job._t_started
        except AttributeError:  # started before shedding began to measure
            return
        mean = self._mean_run
        # the moving average, weight 1/8 (as TCP's smoothed round trip)
        self._mean_run = run if mean is None else mean + (run - mean) / 8


class TracedCore(TimedCore):
    """A pool with active telemetry: spans and metrics (and the times).

    Each transition calls telemetry once the books below it are done; the
    common step (`finish_and_next`) ends one job's span and opens the next's.
    """

    def make_job(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        limit: float | None,
        on_done: Callable[[Job[Any]], None] | None,
        key: Hashable = None,
    ) -> FeaturedJob[Any]:
        job = super().make_job(fn, args, name, limit, on_done, key)
        telemetry = self._telemetry
        assert telemetry is not None
        telemetry.created(job)
        return job

    def make_jobs(
        self,
        fn: Callable[..., Awaitable[Any]],
        items: Iterable[Any],
        name: str | None,
        limit: float | None,
    ) -> list[Job[Any]]:
        jobs = super().make_jobs(fn, items, name, limit)
        telemetry = self._telemetry
        assert telemetry is not None
        telemetry.created_all(cast("list[FeaturedJob[Any]]", jobs))  # (`_job_type`)
        return jobs

    @enable_ki_protection
    def start_next(
        self, worker: Worker, scope: trio.CancelScope, handed: Job[Any] | None = None
    ) -> Job[Any] | None:
        job = super().start_next(worker, scope, handed)
        if job is not None:
            # (the crew's record: the telemetry's note, written on the hot path)
            telemetry = self._telemetry
            assert telemetry is not None
            worker.span = telemetry.started(job)
        return job

    @enable_ki_protection
    def finish(
        self,
        worker: Worker | None,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        if worker is None:  # it never started: no span
            super().finish(worker, job, state, value, error)
            return
        span = worker.span
        worker.span = None
        super().finish(worker, job, state, value, error)
        telemetry = self._telemetry
        assert telemetry is not None
        telemetry.ended(job, span)

    @enable_ki_protection
    def finish_and_next(
        self, worker: Worker, job: Job[Any], value: object, scope: trio.CancelScope
    ) -> Job[Any] | None:
        span = worker.span
        worker.span = None
        following = super().finish_and_next(worker, job, value, scope)
        telemetry = self._telemetry
        assert telemetry is not None
        telemetry.ended(job, span)
        if following is not None:
            worker.span = telemetry.started(following)
        return following

"""The pool's books, and the queries over them: the base of its transitions.

`CoreState` holds every field of a pool's core: its settings, the helpers
that keep each concern's books (the queue, the crew of workers, the blocked
submitters, the per-key counts, the start rate, the counts, the failures
nobody read), and answers the questions the transitions ask: who may call,
whether a job fits (the one room rule, `CoreState._fits`), the statistics.
It changes nothing but the schedule-point count of the caller; the decision
of admission and the books' snapshot are its subclass `Admission`'s, the
transitions its subclasses' (`Intake` for the jobs, `PoolCore` for the
workers), all of them one object: one owner.
"""

from __future__ import annotations

from threading import get_ident
from typing import TYPE_CHECKING, Any

from trio import current_time
from trio.lowlevel import (
    ParkingLot,
)

from ._caller import RunGuard, called_back, runs_inside
from ._checks import USE_DEFAULT, check_seconds
from ._crew import Crew, Worker
from ._failures import Unretrieved
from ._keys import KeyBooks
from ._queue import JobQueue
from ._rate import StartRate
from ._statistics import Counts, PoolStatistics
from ._telemetry import PoolTelemetry
from ._waiters import DrainWaiters, RoomWaiters, RoomWatchers

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import trio
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._checks import UsePoolDefault


ACCEPTED = 1
"""`Intake.offer` accepted the job (it returns 0, false, when it did not)."""
YIELD_DUE = 2
"""`Intake.offer` accepted the job, and the caller takes its periodic
schedule point now (see `CoreState.yield_due`)."""


class CoreState:
    """The fields of a pool's core, and the queries over them (see the module).

    Every field is private; the other modules call the transitions, read
    `statistics`, and the tests read `Admission.books` (a snapshot) and
    call `Admission.check_invariants`.
    """

    _timed = False
    """Whether the pool records each job's times (a class of `_variants`)."""

    def __init__(
        self,
        *,
        name: str,
        workers: int,
        max_workers: int,
        capacity: int,
        idle_timeout: float,
        job_timeout: float | None,
        submit_timeout: float | None,
        telemetry: bool,
        timings: bool,
        rate: float | None,
        burst: int,
        per_key_limit: int | None,
        shed: bool,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        run_worker: Callable[[Any, Worker], Coroutine[Any, Any, None]],
        run_pacer: Callable[
            [Callable[[], float | None], ParkingLot], Coroutine[Any, Any, None]
        ],
        variant: Callable[[str | None], type[CoreState]],
        yield_every: int,
    ) -> None:
        self._name = name
        self._min_workers = workers
        self._max_workers = max_workers
        # The most workers the pool starts: max_workers, or 0 once it goes
        # down (`PoolCore.worker_exited`): it starts no more.
        self._growth_limit = max_workers
        self._capacity = capacity
        self._idle_timeout = idle_timeout
        self._job_timeout = job_timeout
        self._submit_timeout = submit_timeout
        self._telemetry: PoolTelemetry | None = None
        if telemetry:
            recorder = PoolTelemetry(
                name,
                self.statistics,
                lambda: self._counts,
                tracer_provider,
                meter_provider,
                record_waits=timings,
            )
            if recorder.active:
                self._telemetry = recorder
                self._become(variant("traced"))
        self._shed = shed  # the default of submit(shed=)
        # Whether jobs show their times (Job.submitted_at...): asked for, or
        # needed by shedding; never because telemetry reads the clock.
        self._timings_shown = timings or shed
        # This pool's class with a level of timing (see `_variants`).
        self._variant = variant
        self._mean_run: float | None = None  # moving average of running times
        self._rate = None if rate is None else StartRate(rate, burst)
        self._pacer = ParkingLot()  # where the pacer task sleeps (rate limits)
        self._run_pacer = run_pacer
        self._clock: trio.abc.Clock | None = None  # for statistics from threads
        # The run's clock, read directly once the pool is open (the variants
        # that stamp jobs or pace starts read it several times per job).
        self._now: Callable[[], float] = current_time
        self._keys: KeyBooks | None = (
            None if per_key_limit is None else KeyBooks(per_key_limit)
        )
        self._yield_every = yield_every
        self._run_worker = run_worker
        self._guard = RunGuard(name)  # the run and thread the pool belongs to
        self._nursery: trio.Nursery | None = None
        self._queue: JobQueue = JobQueue()
        self._crew = Crew()
        self._waiters = RoomWaiters()
        self._watchers = RoomWatchers()  # `Pool.wait_for_room`
        self._drainers = DrainWaiters()
        self._closed = False
        self._since_yield = 0
        # A resize below the live workers may leave more jobs queued than
        # capacity + starting workers cover; they were accepted before it.
        self._over_capacity_allowed = False
        self._unretrieved = Unretrieved(name)
        self._counts = Counts()

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def min_workers(self) -> int:
        """The fewest workers the pool keeps."""
        return self._min_workers

    @property
    def max_workers(self) -> int:
        """The most workers the pool may run."""
        return self._max_workers

    @property
    def capacity(self) -> int:
        """How many jobs may wait in the queue."""
        return self._capacity

    @property
    def shed(self) -> bool:
        """The default of ``submit(shed=)``."""
        return self._shed

    @property
    def yield_every(self) -> int:
        """A worker passes a schedule point once every this many jobs."""
        return self._yield_every

    @property
    def idle_timeout(self) -> float:
        """Seconds a worker above the minimum may stay idle."""
        return self._idle_timeout

    def check_caller(self, what: str) -> None:
        """Refuse a call from another thread or another Trio run (`RunGuard`).

        Raises:
            RuntimeError: naming the right way to call ``what``.
        """
        self._guard.check(what)

    def yield_due(self) -> bool:
        """Count a call that did not wait; True once every ``yield_every``.

        The caller then takes a schedule point (see `Pool`). (`Intake.offer`
        inlines it for a ``counted`` offer.)
        """
        self._since_yield += 1
        if self._since_yield < self._yield_every:
            return False
        self._since_yield = 0
        return True

    def check_key(self, key: object) -> None:
        """Refuse a ``key`` that is not hashable, or given to a pool without
        ``per_key_limit``."""
        if self._keys is None:
            raise ValueError(
                f"key={key!r} needs a pool opened with per_key_limit=N "
                f"(pool {self._name!r} has none)"
            )
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"key must be hashable, not {key!r}") from None

    def time_limit(self, timeout: float | UsePoolDefault | None) -> float | None:
        """The checked time limit of a job: ``timeout``, or the pool's default."""
        if timeout is USE_DEFAULT:
            return self._job_timeout
        return check_seconds("timeout", timeout)

    def in_own_job(self) -> bool:
        """Whether the caller runs inside one of this pool's jobs (or a task
        one of them started, or a thread one of them waits for called back
        into Trio): waiting there on the pool could wait for itself."""
        workers = self._crew.workers
        if runs_inside(worker.task for worker in workers):
            return True
        marks = called_back(workers, self._guard.home)
        # (a worker busy with a job: the one the thread's job ran in, or,
        # for a thread its job abandoned, a later one)
        return any(worker.job is not None for worker in workers if worker in marks)

    @property
    def telemetry(self) -> PoolTelemetry | None:
        """The pool's telemetry, if active (an SDK is installed)."""
        return self._telemetry

    @property
    def timings_shown(self) -> bool:
        """Whether the pool's jobs show their timings (`Job.submitted_at`...):
        with ``timings=True``, or shedding; whatever telemetry does."""
        return self._timings_shown

    def _begin_timing(self) -> None:
        """Shedding needs timings: record them from now on (see `_variants`)."""
        self._timings_shown = True
        self._become(self._variant("timed"))

    def _refused(self, reason: str, count: int = 1) -> None:
        """Count ``count`` refused submissions (the one refuse tail)."""
        self._counts.rejected += count
        if reason == "closed":
            self._counts.closed_refusals += count
        telemetry = self._telemetry
        if telemetry is not None and telemetry.retired:  # the pool has exited
            telemetry.refused_after_exit(reason, count)

    def _become(self, cls: type[CoreState]) -> None:
        """Run the transitions of ``cls`` (a variant of this pool) from now on."""
        object.__setattr__(self, "__class__", cls)

    def become_variant(self, variant: Callable[[str | None], type[CoreState]]) -> None:
        """Run as ``variant`` (this pool's class with other features, of a
        given level of timing) from now on, at its present level of timing,
        and at a later one as it begins to time its jobs (`_begin_timing`)."""
        timing = "timed" if self._timed else None
        if self._telemetry is not None:
            timing = "traced"
        self._variant = variant
        self._become(variant(timing))

    def _starting_room(self) -> int:
        """Workers being started that will take a job from the queue when
        they run (after a `resize` down, a surplus one takes none; with a
        rate limit, one may find no token)."""
        starting = self._crew.starting
        if not starting:
            return 0
        fits = self._max_workers - len(self._crew.workers) + starting
        return max(0, min(starting, fits))

    def _fits(self, queued: int, aside: int) -> bool:
        """Whether ``queued`` jobs in the queue and ``aside`` set aside for
        their key are within the room: ``capacity``, plus a place for each
        starting worker that will take a job from the queue (never one set
        aside). The one room check: every acceptance keeps it true."""
        return queued + aside <= self._capacity + min(self._starting_room(), queued)

    def _over_capacity(self) -> bool:
        """More jobs wait than the room allows (after a `resize` down)."""
        return not self._fits(self._queue.live, self._queue.held)

    def read_done(self, what: str) -> bool:
        """A done job's outcome is read: `check_caller` and `yield_due`
        (whose result it returns) in one call, both inlined: the common case
        of `Job.result`."""
        guard = self._guard
        if get_ident() != guard.thread:
            guard.check_run(what)
        self._since_yield += 1
        if self._since_yield < self._yield_every:
            return False
        self._since_yield = 0
        return True

    def statistics(self) -> PoolStatistics:
        """A snapshot of the books (read-only: safe from a metric reader's thread)."""
        counts = self._counts
        keys = self._keys
        crew = self._crew
        waiting = counts.unfinished() - counts.running - crew.handed
        # The jobs beyond the capacity are those of workers being started
        # (`_fits`): they count as running, as the jobs handed over do.
        claimed = 0
        if waiting > self._capacity and crew.starting:
            claimed = min(
                waiting - self._capacity, self._starting_room(), self._queue.live
            )
        return PoolStatistics(
            name=self._name,
            workers=len(crew.workers),
            idle_workers=len(crew.idle),
            min_workers=self._min_workers,
            max_workers=self._max_workers,
            capacity=self._capacity,
            queued=waiting - claimed,
            running=counts.running + crew.handed + claimed,
            waiting_submitters=len(self._waiters),
            submitted=counts.submitted,
            succeeded=counts.succeeded,
            failed=counts.failed,
            timed_out=counts.timed_out,
            cancelled=counts.cancelled,
            rejected=counts.rejected,
            closed=self._closed,
            rate_tokens=self._rate_tokens(),
            waiting_for_key=None if keys is None else self._queue.held,
            active_keys=None if keys is None else keys.active_keys(),
            shed=counts.shed,
        )

    def _rate_tokens(self) -> float | None:
        """Starts the rate limit allows now (None: no rate)."""
        return None

    def _pacer_due(self) -> bool:
        """Whether the pacer's wake-up time has come, or it was woken, and it
        has not run yet (room that a token brings is its to announce); never
        without a rate."""
        return False

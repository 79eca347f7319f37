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
from threading import get_ident
from typing import TYPE_CHECKING, Any, NoReturn

import trio
from trio.lowlevel import (
    ParkingLot,
    checkpoint,
    current_task,
    enable_ki_protection,
)

from ._books import Books, check_books, take_books
from ._caller import RunGuard, runs_inside
from ._checks import USE_DEFAULT, check_async_fn, check_name, check_seconds
from ._crew import Crew, Worker
from ._errors import PoolClosed, PoolOverloaded
from ._failures import Unretrieved
from ._job import (
    CANCELLED,
    FAILED,
    NOT_ACCEPTED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    WAITING_FOR_KEY,
    Job,
    JobState,
)
from ._keys import KeyBooks
from ._log import DEBUG, INFO, log
from ._queue import JobQueue
from ._rate import StartRate
from ._shed import shed_refusal
from ._statistics import Counts, PoolStatistics
from ._telemetry import PoolTelemetry
from ._waiters import DrainWaiters, RoomWaiters

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Hashable

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider


YIELD_EVERY = 32
"""The schedule-point interval of pools opened from now on: a task passes a
schedule point at least once every this many pool calls that did not have to
wait, and a worker once every this many jobs. Tests lower it so that rare
interleavings become common."""


class PoolCore:
    """All of one pool's state, and the transitions that change it.

    Every field is private; the other modules call the transitions, read
    `statistics`, and the tests read `books` (a snapshot) and call
    `check_invariants`.
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
        rate: float | None,
        burst: int,
        per_key_limit: int | None,
        shed: bool,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        run_worker: Callable[[PoolCore, Worker], Coroutine[Any, Any, None]],
        run_pacer: Callable[
            [Callable[[], float | None], ParkingLot], Coroutine[Any, Any, None]
        ],
        variant: Callable[[str | None], type[PoolCore]],
    ) -> None:
        self._name = name
        self._min_workers = workers
        self._max_workers = max_workers
        self._capacity = capacity
        self._idle_timeout = idle_timeout
        self._job_timeout = job_timeout
        self._submit_timeout = submit_timeout
        self._telemetry: PoolTelemetry | None = None
        if telemetry:
            recorder = PoolTelemetry(
                name, self.statistics, tracer_provider, meter_provider
            )
            if recorder.active:
                self._telemetry = recorder
                self._become(variant("traced"))
        self._shed = shed  # the default of submit(shed=)
        # This pool's class with a level of timing (see `_variants`).
        self._variant = variant
        self._mean_run: float | None = None  # moving average of running times
        self._rate = None if rate is None else StartRate(rate, burst)
        self._pacer = ParkingLot()  # where the pacer task sleeps (rate limits)
        self._run_pacer = run_pacer
        self._clock: trio.abc.Clock | None = None  # for statistics from threads
        self._keys = None if per_key_limit is None else KeyBooks(per_key_limit)
        self._yield_every = YIELD_EVERY
        self._run_worker = run_worker
        self._guard = RunGuard(name)  # the run and thread the pool belongs to
        self._nursery: trio.Nursery | None = None
        self._queue = JobQueue()
        self._crew = Crew()
        self._waiters = RoomWaiters()
        self._drainers = DrainWaiters()
        self._closed = False
        self._since_yield = 0
        # A resize below the live workers may leave more jobs queued than
        # capacity + starting workers cover; they were accepted before it.
        self._over_capacity_allowed = False
        self._unretrieved = Unretrieved(name)
        self._counts = Counts()

    # ------------------------------------------------------------- reading

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

    # ------------------------------------------------------------ the caller

    def check_caller(self, what: str) -> None:
        """Refuse a call from another thread or another Trio run (`RunGuard`).

        Raises:
            RuntimeError: naming the right way to call ``what``.
        """
        self._guard.check(what)

    def yield_due(self) -> bool:
        """Count a call that did not wait; True once every ``yield_every``.

        The caller then takes a schedule point (see `Pool`).
        """
        self._since_yield += 1
        if self._since_yield < self._yield_every:
            return False
        self._since_yield = 0
        return True

    # ------------------------------------------------------------ submitting

    def new_job(
        self,
        method: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | None,
        key: Hashable = None,
    ) -> Job[Any]:
        """Check a submission's arguments and its caller; make the job's record.

        Nothing changes in the pool: the job is not accepted yet.
        """
        fn = check_async_fn(method, fn)
        if name is not None:
            check_name("name", name)
        limit = (
            self._job_timeout if timeout is USE_DEFAULT else self.time_limit(timeout)
        )
        if key is not None:
            self._check_key(key)
        self._guard.check(method)
        return self.make_job(fn, args, name, limit, None, key)

    def _check_key(self, key: object) -> None:
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

    def time_limit(self, timeout: float | None) -> float | None:
        """The checked time limit of a job: ``timeout``, or the pool's default."""
        if timeout is USE_DEFAULT:
            return self._job_timeout
        return check_seconds("timeout", timeout)

    def make_job(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        limit: float | None,
        on_done: Callable[[Job[Any]], None] | None,
        key: Hashable = None,
    ) -> Job[Any]:
        """Make the record of a job whose arguments were checked."""
        return Job(self, fn, args, name, limit, on_done)

    def in_own_job(self) -> bool:
        """Whether the caller runs inside one of this pool's jobs (or a task
        one of them started): waiting there on the pool could wait for itself."""
        return runs_inside(worker.task for worker in self._crew.workers)

    async def wait_to_accept(self, job: Job[Any]) -> None:
        """Wait for room for ``job``, within ``submit_timeout``; the slow path."""
        if self.in_own_job():
            raise self.overloaded("for submit() inside one of its own jobs")
        submit_timeout = self._submit_timeout
        if submit_timeout is None:
            await self._waiters.wait(job)
            return
        with trio.move_on_after(submit_timeout):
            await self._waiters.wait(job)
            return
        raise self.overloaded(f"within submit_timeout={submit_timeout!r}s")

    @enable_ki_protection
    def shed_by_deadline(self, job: Job[Any]) -> None:
        """Refuse ``job`` if it cannot finish before the caller's deadline.

        Raises:
            PoolOverloaded: with ``reason == "deadline"`` (counted as rejected).
        """
        deadline = trio.current_effective_deadline()
        if deadline == math.inf or self._closed:  # (closed: PoolClosed instead)
            return
        if not self._timed:  # measure from now on; no estimate until then
            self._begin_timing()
            return
        mean = self._mean_run
        if mean is None:
            return
        now = trio.current_time()
        ahead = self._queue.live + self._crew.waking + len(self._waiters)
        message = shed_refusal(
            job.name,
            self._name,
            now,
            mean,
            deadline,
            ahead=ahead,
            width=max(self._max_workers, len(self._crew.workers)),
            floor=self._shed_floor(job, now, mean, ahead),
            held=lambda: [worker.job for worker in self._crew.workers],
        )
        if message is None:
            return
        self._counts.shed += 1
        error = PoolOverloaded(message)
        error.reason = "deadline"
        self._refused("deadline")
        raise error

    def _shed_floor(self, job: Job[Any], now: float, mean: float, ahead: int) -> float:
        """The earliest start of ``job`` that the pool's limits allow, with
        ``ahead`` jobs before it (a pool with a rate or keys adds its own)."""
        return now

    def _begin_timing(self) -> None:
        """Shedding needs timings: record them from now on (see `_variants`)."""
        self._become(self._variant("timed"))

    def _become(self, cls: type[PoolCore]) -> None:
        """Run the transitions of ``cls`` (a variant of this pool) from now on."""
        object.__setattr__(self, "__class__", cls)

    def _refused(self, reason: str, count: int = 1) -> None:
        """Count ``count`` refused submissions (the one refuse tail)."""
        self._counts.rejected += count

    def _accepted(self, count: int = 1) -> None:
        """Count ``count`` accepted jobs (the accept tail; `offer`, the hot
        path, counts its job itself, and telemetry counts it in its `offer`)."""
        self._counts.submitted += count

    @enable_ki_protection
    def refuse_closed(self) -> NoReturn:
        """Count a submission to a closed pool and raise `PoolClosed`."""
        self._refused("closed")
        raise PoolClosed(f"pool {self._name!r} is closed and takes no more jobs")

    @enable_ki_protection
    def overloaded(self, when: str) -> PoolOverloaded:
        """Count a refusal for want of room; return the error to raise."""
        error = PoolOverloaded(
            f"pool {self._name!r} has no room {when}: all {len(self._crew.workers)} "
            f"workers busy and {self._queue.live} of capacity={self._capacity} "
            "queued",
        )
        self._refused("overloaded")
        return error

    @enable_ki_protection
    def offer(self, job: Job[Any]) -> bool:
        """Accept ``job`` if a worker is idle or the queue has room.

        Raises:
            PoolClosed: the pool takes no more work (counted as rejected).
        """
        if self._closed:
            self.refuse_closed()
        crew = self._crew
        idle = crew.idle
        if idle and not crew.waking:
            crew.hand_over(job)
        else:
            queue = self._queue
            can_grow = not idle and len(crew.workers) < self._max_workers
            # (blocked submitters go first, whatever room appeared meanwhile;
            # the room check is `_room_for`'s, its first case inlined)
            if not (self._waiters and self._blocked_ahead()) and (
                can_grow
                or (
                    self._room_for(aside=False)
                    if crew.starting
                    else queue.live + queue.held < self._capacity
                )
            ):
                queue.push(job)  # (`_enqueue_growing`, inlined)
                if can_grow and queue.live > crew.starting:
                    self._grow("for a waiting job")
            elif idle:  # a small or zero capacity: wake a second worker after all
                crew.hand_over(job)
            else:
                return False
        self._counts.submitted += 1  # the accept tail (see `_accepted`)
        return True

    def offer_keyed(self, job: Job[Any]) -> bool:
        """`offer` for a job with a key (only a pool with keys takes one)."""
        return self.offer(job)

    def _blocked_ahead(self) -> bool:
        """Whether a blocked submitter must be served before a new job (first
        come, first served), given that submitters wait."""
        return True

    def _enqueue_growing(self, job: Job[Any], can_grow: bool) -> None:
        """Queue ``job``; start a worker for it if the pool may grow."""
        self._queue.push(job)
        if can_grow and self._queue.live > self._crew.starting:
            self._grow("for a waiting job")

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

    def _room_for(self, aside: bool) -> bool:
        """Whether one more job fits, in the queue or (``aside``, in a pool
        with keys) set aside. (`offer` and `_admit_waiters` inline the case
        of no starting worker.)"""
        queue = self._queue
        if aside:
            return self._fits(queue.live, queue.held + 1)
        if not self._crew.starting:
            return queue.live + queue.held < self._capacity
        return self._fits(queue.live + 1, queue.held)

    def _over_capacity(self) -> bool:
        """More jobs wait than the room allows (after a `resize` down)."""
        return not self._fits(self._queue.live, self._queue.held)

    def _admit_waiters(self) -> None:
        """Accept blocked submitters' jobs while there is room for them."""
        waiters = self._waiters
        queue = self._queue
        capacity = self._capacity
        crew = self._crew
        admitted = 0
        while waiters and (
            self._room_for(aside=False)
            if crew.starting
            else queue.live + queue.held < capacity
        ):
            queue.push(waiters.admit_first())
            admitted += 1
        if admitted:
            self._accepted(admitted)

    def _grow(self, why: str | None) -> None:
        """Start one more worker (``why`` goes to the DEBUG log, if any)."""
        assert self._nursery is not None
        worker = self._crew.add()
        self._nursery.start_soon(
            self._run_worker, self, worker, name=f"trio_pool worker of {self._name!r}"
        )
        if why is not None:
            log(
                DEBUG,
                "pool %r: started a worker %s (%d of at most %d)",
                self._name,
                why,
                len(self._crew.workers),
                self._max_workers,
            )

    # --------------------------------------------------------------- workers

    @enable_ki_protection
    def open(self, nursery: trio.Nursery) -> trio.Event:
        """Start the minimum of workers; return an event set once all have run."""
        self._guard.open()
        self._nursery = nursery
        self._clock = trio.lowlevel.current_clock()
        if self._telemetry is not None:
            self._telemetry.opened()
        for _ in range(self._min_workers):
            self._grow(None)
        return self._crew.watch_start()

    @enable_ki_protection
    def worker_began(self, worker: Worker) -> None:
        """A worker task runs for the first time."""
        self._crew.began(worker, current_task())

    @enable_ki_protection
    def start_next(self, worker: Worker, scope: trio.CancelScope) -> Job[Any] | None:
        """Take the next queued job and start it in ``worker``, or return None.

        A retired worker, or one above ``max_workers`` (after `resize`),
        takes nothing.
        """
        if worker.retired or len(self._crew.workers) > self._max_workers:
            return None
        queue = self._queue
        job = None
        while queue:  # (`_take_queued`, `JobQueue.take_first` inlined: the hot path)
            first = queue.popleft()
            if first.state is QUEUED:
                queue.live -= 1
                if self._waiters or self._over_capacity_allowed:
                    self._queue_place_freed()
                job = first
                break
        if job is None:
            job = self._take_waiter()
            if job is None:
                return None
        self._start(worker, job, scope)
        return job

    def _take_queued(self) -> Job[Any] | None:
        """Take the queue's first live job (`start_next` inlines it)."""
        job = self._queue.take_first()
        if job is not None and (self._waiters or self._over_capacity_allowed):
            self._queue_place_freed()
        return job

    def _queue_place_freed(self) -> None:
        """A job left the queue for a worker: blocked submitters fill its place."""
        if self._over_capacity_allowed:
            self._over_capacity_allowed = self._over_capacity()
        if self._waiters:
            self._admit_waiters()

    def _take_waiter(self) -> Job[Any] | None:
        """With capacity 0: accept and take the first blocked submitter's job
        whose key may run."""
        waiters = self._waiters
        if not waiters:
            return None
        job = waiters.admit_first()
        self._accepted()
        return job

    @enable_ki_protection
    def idle_or_stop(self, worker: Worker) -> bool:
        """Park ``worker`` among the idle ones, or return True if it must stop.

        It stops when the pool is closed and nothing is queued (waking the
        other idle workers, which stop too), when it is above ``max_workers``,
        or when `resize` retired it.
        """
        if worker.retired:
            return True
        if self._closed and not self._queue.live:
            self._release_idle()
            self._remove(worker)
            return True
        if len(self._crew.workers) > self._max_workers:
            self._remove(worker)
            return True
        self._crew.rest(worker)
        return False

    def may_retire(self) -> bool:
        """Whether an idle worker may retire after ``idle_timeout``."""
        return len(self._crew.workers) > self._min_workers

    @enable_ki_protection
    def abort_idle(self, worker: Worker) -> None:
        """A parked idle worker was cancelled or timed out: unpark it."""
        self._crew.unrest(worker)

    @enable_ki_protection
    def retire_idle(self, worker: Worker) -> bool:
        """An idle worker timed out: retire it if the pool is above its minimum.

        Not while jobs are queued, nor while submitters wait (with capacity
        0): one may have arrived as its timer expired, when it was no longer
        idle to be handed the job; and a worker retired while a submitter
        waits would let a later submitter grow the pool and get in first.
        """
        if (
            len(self._crew.workers) > self._min_workers
            and not self._queue.live
            and not self._waiters
        ):
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
        """A woken worker runs: start the job it was handed, if it still has one."""
        job = self._crew.woke(worker)
        if job is None:  # cancelled while handed over, or woken to stop
            return None
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
        self._start(worker, job, scope)
        return job

    def _start(self, worker: Worker, job: Job[Any], scope: trio.CancelScope) -> None:
        job.state = RUNNING
        job._holder = worker
        job._scope = scope
        worker.job = job  # (the crew's record; written here on the hot path)
        self._counts.running += 1
        if job._timeout is not None:
            scope.deadline = trio.current_time() + job._timeout
        if self._queue.live > self._crew.starting and not self._crew.waking:
            self._spread_work()

    def _spread_work(self) -> None:
        """Jobs still wait: wake an idle worker, or start one if the pool scales."""
        if self._crew.idle:
            job = self._take_queued()
            if job is not None:
                self._crew.hand_over(job)
        elif len(self._crew.workers) < self._max_workers:
            self._grow("for a waiting job")

    @enable_ki_protection
    def finish(
        self,
        worker: Worker,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Record how a running job ended and resolve its handle."""
        worker.job = None  # (the crew's record; written here on the hot path)
        worker.span = None
        counts = self._counts
        counts.running -= 1
        if job._timeout is not None and job._scope is not None:
            job._scope.deadline = math.inf
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
        self._resolve(job, state, value, error)
        if state is FAILED:  # logged while the job's span is still current
            log(DEBUG, "job %r in pool %r failed", job.name, self._name, exc_info=error)
            if isinstance(error, Exception):  # the others leave the pool anyway
                self._unretrieved.add(job, error)

    def _resolve(
        self,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Move a job to a terminal state and wake every task waiting on it."""
        job.state = state
        job._holder = None
        job._scope = None
        job._value = value
        job._error = error
        if error is not None:
            job._traceback = error.__traceback__
            job._context = error.__context__
            job._cause = error.__cause__
            job._suppress_context = error.__suppress_context__
        job._args = ()  # let the arguments go; the function stays for `name`
        if job._lot is not None:
            job._lot.unpark_all()
        on_done = job._on_done
        if on_done is not None:
            job._on_done = None  # called once; its references go with it
            on_done(job)
        if self._drainers.count and not self._counts.unfinished():
            self._drainers.wake_all()  # `Pool.join`, `Pool.shutdown`

    def _resolve_unstarted(self, job: Job[Any]) -> None:
        self._counts.cancelled += 1
        self._resolve(job, CANCELLED, error=job._cancelled_error())

    @staticmethod
    def _cancel_running(job: Job[Any]) -> None:
        job._cancel_requested = True
        assert job._scope is not None
        job._scope.cancel()

    @enable_ki_protection
    def worker_exited(self, worker: Worker) -> None:
        """A worker task ends, however it ends.

        One that ends without the pool's word (a cancellation from outside
        the pool, or an error) was the last: the pool's nursery is being
        cancelled, no worker is left to run the jobs still queued and none
        will start, so they are cancelled now (and the pool closed), not
        when the ``async with`` exits: a shielded `Pool.shutdown`, `Pool.join`
        or `Job.wait` in the body's ``finally`` returns.
        """
        abandoned = not worker.retired
        job = self._crew.exited(worker)
        self._removed()
        if job is not None and job.state is QUEUED:  # handed, never started
            self._resolve_unstarted(job)
        if abandoned and not self._crew.workers and not self._crew.starting:
            self.cancel_everything()

    def _remove(self, worker: Worker) -> None:
        self._crew.remove(worker)
        self._removed()

    def _removed(self) -> None:
        """A worker was removed (a pool with a rate wakes its pacer)."""

    def _unstarted_handed(self) -> None:
        """A job handed over will not start (a pool with a rate gives its
        token back)."""

    def _release_idle(self) -> None:
        """Wake every idle worker with nothing to do, so that it stops."""
        self._crew.release_idle()
        self._removed()

    # ----------------------------------------------------------- job handles

    @enable_ki_protection
    def cancel(self, job: Job[Any]) -> None:
        """Cancel a job: resolve it if it has not started, else cancel its scope."""
        self.check_caller("cancel")
        state = job.state
        if state is RUNNING:
            self._cancel_running(job)
            return
        if state is not QUEUED:
            return
        holder = job._holder
        if holder is NOT_ACCEPTED:
            # Its submitter still holds it (a map's feeder waiting for room):
            # the pool has nothing to cancel. The feeder's own cancellation
            # withdraws it.
            return
        if holder is WAITING_FOR_KEY:
            assert self._keys is not None
            self._keys.withdraw(job)
            self._queue.held -= 1
        elif holder is None:  # in the queue
            self._queue.withdraw()
        else:  # handed over: the worker finds nothing when it runs
            assert isinstance(holder, Worker)
            self._crew.unhand(holder)
            self._unstarted_handed()
        self._resolve_unstarted(job)
        if isinstance(holder, Worker):
            return
        if self._waiters:
            self._admit_waiters()
        elif holder is None and self._closed and not self._queue.live:
            # (with a rate, idle workers wait beside queued jobs)
            self._release_idle()

    def read_done(self, what: str) -> bool:
        """A done job's outcome is read: `check_caller` and `yield_due`
        (whose result it returns) in one call, both inlined: the common case
        of `Job.result`."""
        guard = self._guard
        if get_ident() != guard.thread or not guard.live:
            guard.check_run(what)
        self._since_yield += 1
        if self._since_yield < self._yield_every:
            return False
        self._since_yield = 0
        return True

    def retrieved(self, job: Job[Any]) -> None:
        """A failed job's outcome was read: no WARNING for it."""
        self._unretrieved.retrieved(job)

    # -------------------------------------------------------------- resizing

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
        self._max_workers = max_workers
        crew = self._crew
        crew.retire_surplus(max_workers)
        if lowered and len(crew) > workers:
            # Idle workers parked while the old minimum kept them have no
            # idle timer: wake them to park again with one.
            crew.wake_idle()
        if self._over_capacity():  # accepted before; they stay
            self._over_capacity_allowed = True
        waiting = self._queue.live + len(self._waiters)
        while len(crew) < workers or (
            waiting > crew.starting and len(crew) < max_workers
        ):
            self._grow("after a resize")
        if self._waiters:
            self._admit_waiters()

    # -------------------------------------------------------------- stopping

    @enable_ki_protection
    def close(self) -> None:
        """Stop taking work; blocked submitters get `PoolClosed`."""
        if self._closed:
            return
        self._closed = True
        name = self._name
        refused = self._waiters.refuse_all(
            lambda: PoolClosed(f"pool {name!r} closed while submit() waited")
        )
        if not self._queue.live:
            self._release_idle()
        log(DEBUG, "pool %r closed", self._name)
        if refused:
            self._refused("closed", refused)

    @enable_ki_protection
    def cancel_everything(self) -> None:
        """Close, resolve every job not started, cancel every running one."""
        self.close()
        if self._keys is not None:
            # first, so that none takes a freed key's place
            self._queue.held = 0
            for job in self._keys.take_all_held():
                self._resolve_unstarted(job)
        for job in self._queue.take_all():
            self._resolve_unstarted(job)
        for worker in list(self._crew.workers):
            held = worker.job
            if held is None:
                continue
            if held.state is QUEUED:  # handed over, not started yet
                self._crew.unhand(worker)
                self._resolve_unstarted(held)
            else:
                self._cancel_running(held)
        self._release_idle()

    async def wait_drained(self) -> None:
        """Wait until no accepted job is left unfinished; a checkpoint.

        Jobs accepted while it waits are waited for too.
        """
        if not self._counts.unfinished():
            await checkpoint()
            return
        await self._drainers.wait()

    @enable_ki_protection
    def exited(self) -> None:
        """The pool's nursery is gone: warn of the failures nobody retrieved."""
        self._nursery = None
        self._guard.live = False
        self._unretrieved.flush()
        if self._telemetry is not None:
            self._telemetry.closed()

    # ------------------------------------------------------------ the books

    def statistics(self) -> PoolStatistics:
        """A snapshot of the books (read-only: safe from a metric reader's thread)."""
        counts = self._counts
        keys = self._keys
        return PoolStatistics(
            name=self._name,
            workers=len(self._crew.workers),
            idle_workers=len(self._crew.idle),
            min_workers=self._min_workers,
            max_workers=self._max_workers,
            capacity=self._capacity,
            queued=counts.unfinished() - counts.running - self._crew.handed,
            running=counts.running + self._crew.handed,
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

    def books(self) -> Books:
        """A copy of every book, for the tests and `check_invariants`."""
        waiting = self._waiters.jobs()
        return take_books(
            self._queue,
            self._crew,
            waiting,
            self._counts,
            self._keys,
            closed=self._closed,
            opened=self._guard.opened,
            exited=self._guard.opened and not self._guard.live,
            first_waits_for_key=bool(waiting) and not self._blocked_ahead(),
            room=self._capacity + self._starting_room(),
            over_capacity=self._over_capacity(),
            over_capacity_aside=not self._room_for(aside=True),
            over_capacity_allowed=self._over_capacity_allowed,
            capacity=self._capacity,
            min_workers=self._min_workers,
            max_workers=self._max_workers,
            draining=self._drainers.count,
            drain_parked=self._drainers.parked(),
            rate_next_at=None if self._rate is None else self._rate.next_at(),
            since_yield=self._since_yield,
            unretrieved=len(self._unretrieved),
            mean_run=self._mean_run,
            timed=self._timed,
            telemetry=self._telemetry is not None,
        )

    def check_invariants(self) -> None:
        """Assert that the books agree with each other; the tests call this.

        Raises:
            AssertionError: naming the first invariant that does not hold.
        """
        check_books(self.books())

"""The pool's state and every transition of it: the one owner of the books.

`PoolCore` keeps the queue, the idle workers, the blocked submitters, the
drain waiters, the counters and the closed flag. Every method that changes
them is synchronous and KI-protected, so a transition is never split by a
schedule point or a KeyboardInterrupt; the other modules call these methods
and never write the fields. Each transition first changes the books, then
calls telemetry (which guards itself): nothing outside can change an outcome
or a count.

Where an accepted job is, at every instant (see `Job`):

* **queued**: in ``queue`` (a deque; a job cancelled there stays as a
  tombstone and is skipped, while ``backlog`` counts only live jobs, so a
  cancelled job frees its room at once);
* **handed over**: an idle worker was woken with it as ``worker.job`` and has
  not run yet;
* **running**: ``worker.job`` of the worker running it;
* **resolved**: in a terminal state, its waiters woken.

A worker takes a job and starts it in one transition (`start_next`, or
`take_handed` right after it wakes), so no ``await`` ever separates taking a
job from recording who holds it.
"""

from __future__ import annotations

import contextvars
import math
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from threading import get_ident
from typing import TYPE_CHECKING, Any, NoReturn, final

import outcome
import trio
from trio.lowlevel import (
    Abort,
    ParkingLot,
    Task,
    TrioToken,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    current_trio_token,
    enable_ki_protection,
    reschedule,
    wait_task_rescheduled,
)

from ._checks import (
    USE_DEFAULT,
    check_async_fn,
    check_name,
    check_seconds,
)
from ._errors import PoolClosed, PoolOverloaded
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
from ._log import DEBUG, INFO, WARNING, log
from ._rate import StartRate
from ._shed import estimated_start
from ._statistics import PoolStatistics
from ._telemetry import PoolTelemetry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._telemetry import JobSpan


current_core: contextvars.ContextVar[PoolCore | None] = contextvars.ContextVar(
    "trio_pool.current_core", default=None
)
"""The pool whose worker runs the current task (tasks a job starts inherit it)."""

YIELD_EVERY = 32
"""The schedule-point interval of pools opened from now on: a task passes a
schedule point at least once every this many pool calls that did not have to
wait, and a worker once every this many jobs. Tests lower it so that rare
interleavings become common."""


@final
class Worker:
    """The core's record of one worker task."""

    __slots__ = ("job", "retired", "span", "streak", "task", "woken")

    task: Task | None
    job: Job[Any] | None
    span: JobSpan | None
    streak: int
    woken: bool
    retired: bool

    def __init__(self) -> None:
        self.task = None  # set when the task first runs
        self.job = None  # handed over to it, or running in it
        self.span = None  # the running job's span, if traced
        self.streak = 0  # jobs run since its last schedule point
        self.woken = False  # rescheduled with a job, has not run yet
        self.retired = False  # told to stop; no longer in `workers`


@final
class Listeners(list[Callable[[Job[Any]], None]]):
    """Several callbacks of one job, called in order (see `PoolCore.listen`)."""

    def __call__(self, job: Job[Any]) -> None:
        for listener in self:
            listener(job)


@final
class PoolCore:
    """All of one pool's state, and the transitions that change it.

    Field names are public so that `check_invariants` and the tests can read
    them; only this class writes them.
    """

    name: str
    min_workers: int
    max_workers: int
    capacity: int
    idle_timeout: float
    job_timeout: float | None
    submit_timeout: float | None
    telemetry: PoolTelemetry | None
    timed: bool
    mean_run: float | None
    rate: StartRate | None
    pacer: ParkingLot
    clock: trio.abc.Clock | None
    shed: bool
    shed_count: int
    per_key_limit: int | None
    key_active: dict[Hashable, int]
    key_waiting: dict[Hashable, deque[Job[Any]]]
    held: int
    yield_every: int
    token: TrioToken | None
    thread: int
    nursery: trio.Nursery | None
    queue: deque[Job[Any]]
    backlog: int
    idle: list[Worker]
    workers: set[Worker]
    room_waiters: OrderedDict[Task, Job[Any]]
    drain_waiters: ParkingLot
    draining: int
    closed: bool
    since_yield: int
    waking: int
    starting: int
    all_started: trio.Event | None
    over_capacity_allowed: bool
    unretrieved: dict[weakref.ref[Job[Any]], tuple[str, BaseException | None]]
    submitted: int
    running: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    rejected: int

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
        run_worker: Callable[[PoolCore, Worker], Coroutine[Any, Any, None]],
        run_pacer: Callable[[PoolCore], Coroutine[Any, Any, None]],
    ) -> None:
        self.name = name
        self.min_workers = workers
        self.max_workers = max_workers
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self.job_timeout = job_timeout
        self.submit_timeout = submit_timeout
        self.telemetry = None
        if telemetry:
            recorder = PoolTelemetry(
                name, self.statistics, tracer_provider, meter_provider
            )
            if recorder.active:
                self.telemetry = recorder
        # Record each job's times (telemetry and shedding read them too).
        self.shed = shed  # the default of submit(shed=)
        self.shed_count = 0
        self.timed = timings or shed or self.telemetry is not None
        self.mean_run = None  # moving average of running times, once measured
        self.rate = None if rate is None else StartRate(rate, burst)
        self.pacer = ParkingLot()  # where the pacer task sleeps (rate limits)
        self._run_pacer = run_pacer
        self.clock = None  # the run's clock, for statistics from other threads
        self.per_key_limit = per_key_limit
        # Per key: its jobs queued, handed over or running (at most the
        # limit), and its jobs set aside until one of those ends. A key with
        # neither has no entry.
        self.key_active = {}
        self.key_waiting = {}
        self.held = 0  # jobs in key_waiting
        self.yield_every = YIELD_EVERY
        self._run_worker = run_worker

        self.token = None  # the run that opened the pool
        self.thread = -1  # the thread it runs in
        self.nursery = None
        self.queue = deque()
        self.backlog = 0  # live (QUEUED) jobs in queue
        self.idle = []
        self.workers = set()
        self.room_waiters = OrderedDict()
        self.drain_waiters = ParkingLot()
        self.draining = 0  # tasks parked in drain_waiters
        self.closed = False
        self.since_yield = 0
        # Workers woken with a job that have not run yet. While one is pending,
        # new jobs go to the queue: the woken worker wakes the next idle one
        # if work is still waiting when it runs (a chain, not a stampede).
        self.waking = 0
        self.starting = 0  # workers started that have not run yet
        self.all_started = None  # set when none is starting
        # A resize below the live workers may leave more jobs queued than
        # capacity + starting workers cover; they were accepted before it.
        self.over_capacity_allowed = False

        # Failed jobs whose outcome nobody has read yet: a WARNING goes out
        # when such a handle is dropped, or when the pool stops.
        self.unretrieved = {}

        self.submitted = 0
        self.running = 0
        self.succeeded = 0
        self.failed = 0
        self.timed_out = 0
        self.cancelled = 0
        self.rejected = 0

    # ------------------------------------------------------------ the caller

    def check_caller(self, what: str) -> None:
        """Refuse a call from another thread or another Trio run.

        While the pool is open, the only Trio run in its thread is its own
        (runs do not nest), so a thread check suffices; once it has exited,
        the run is checked too.

        Raises:
            RuntimeError: naming the right way to call ``what``.
        """
        if get_ident() != self.thread or self.nursery is None:
            self._check_run(what)

    def _check_run(self, what: str) -> None:
        try:
            token = current_trio_token()
        except RuntimeError:
            token = None
        if token is None or token is not self.token:
            raise RuntimeError(
                f"{what}() of pool {self.name!r} was called from "
                f"{'outside any Trio run' if token is None else 'another Trio run'}"
                "; a pool belongs to the Trio run that opened it. From another "
                "thread, call it through that run, e.g. "
                "trio.from_thread.run_sync(pool.submit_nowait, fn, ...) or "
                "trio.from_thread.run(pool.submit, fn, ...)"
            )

    def yield_due(self) -> bool:
        """Count a call that did not wait; True once every ``yield_every``.

        The caller then takes a schedule point (see `Pool`).
        """
        self.since_yield += 1
        if self.since_yield < self.yield_every:
            return False
        self.since_yield = 0
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
        limit = self.job_timeout if timeout is USE_DEFAULT else self.time_limit(timeout)
        if key is not None:
            self.check_key(key)
        self.check_caller(method)
        return self.make_job(fn, args, name, limit, None, key)

    def check_key(self, key: object) -> None:
        """Refuse a ``key`` that is not hashable, or given to a pool without
        ``per_key_limit``."""
        if self.per_key_limit is None:
            raise ValueError(
                f"key={key!r} needs a pool opened with per_key_limit=N "
                f"(pool {self.name!r} has none)"
            )
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"key must be hashable, not {key!r}") from None

    def time_limit(self, timeout: float | None) -> float | None:
        """The checked time limit of a job: ``timeout``, or the pool's default."""
        if timeout is USE_DEFAULT:
            return self.job_timeout
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
        job = Job(self, fn, args, name, limit, on_done)
        if self.per_key_limit is not None:
            job.key = key
        if self.timed:
            job.t_submitted = trio.current_time()
            if self.telemetry is not None:
                self.telemetry.created(job)
        return job

    def in_own_job(self) -> bool:
        """Whether the caller runs inside one of this pool's jobs (or a task
        one of them started): waiting there on the pool could wait for itself."""
        return current_core.get() is self

    async def wait_to_accept(self, job: Job[Any]) -> None:
        """Wait for room for ``job``, within ``submit_timeout``; the slow path."""
        if self.in_own_job():
            raise self.overloaded("for submit() inside one of its own jobs")
        submit_timeout = self.submit_timeout
        if submit_timeout is None:
            await self.wait_for_room(job)
            return
        with trio.move_on_after(submit_timeout):
            await self.wait_for_room(job)
            return
        raise self.overloaded(f"within submit_timeout={submit_timeout!r}s")

    @enable_ki_protection
    def shed_by_deadline(self, job: Job[Any]) -> None:
        """Refuse ``job`` if it cannot finish before the caller's deadline.

        Raises:
            PoolOverloaded: with ``reason == "deadline"`` (counted as rejected).
        """
        deadline = trio.current_effective_deadline()
        if deadline == math.inf or self.closed:  # (closed: PoolClosed instead)
            return
        if not self.timed:  # measure from now on; no estimate until then
            self.timed = True
            return
        mean = self.mean_run
        if mean is None:
            return
        now = trio.current_time()
        start = estimated_start(self, job, now, mean, deadline)
        if start + mean < deadline:  # (at the deadline itself it is cancelled)
            return
        self.rejected += 1
        self.shed_count += 1
        what = "start" if start > deadline else "finish"
        error = PoolOverloaded(
            f"pool {self.name!r} sheds job {job.name!r}: it would {what} at about "
            f"{start - now if what == 'start' else start + mean - now:.3g}s from "
            f"now, after the caller's deadline in {deadline - now:.3g}s "
            f"(estimated from a mean running time of {mean:.3g}s)"
        )
        error.reason = "deadline"
        if self.telemetry is not None:
            self.telemetry.rejected("deadline")
        raise error

    @enable_ki_protection
    def refuse_closed(self) -> NoReturn:
        """Count a submission to a closed pool and raise `PoolClosed`."""
        self.rejected += 1
        if self.telemetry is not None:
            self.telemetry.rejected("closed")
        raise PoolClosed(f"pool {self.name!r} is closed and takes no more jobs")

    @enable_ki_protection
    def overloaded(self, when: str) -> PoolOverloaded:
        """Count a refusal for want of room; return the error to raise."""
        self.rejected += 1
        error = PoolOverloaded(
            f"pool {self.name!r} has no room {when}: all {len(self.workers)} "
            f"workers busy and {self.backlog} of capacity={self.capacity} queued",
        )
        if self.telemetry is not None:
            self.telemetry.rejected("overloaded")
        return error

    @enable_ki_protection
    def offer(self, job: Job[Any]) -> bool:
        """Accept ``job`` if a worker is idle or the queue has room.

        Raises:
            PoolClosed: the pool takes no more work (counted as rejected).
        """
        if self.closed:
            self.refuse_closed()
        idle = self.idle
        if idle and not self.waking and (self.rate is None or self._paced_start()):
            self._hand_over(idle.pop(), job)
        else:
            can_grow = not idle and len(self.workers) < self.max_workers
            room = self.room() if self.starting else self.capacity
            # (with a rate, a new worker may have no token to start a job;
            # blocked submitters go first, whatever room appeared meanwhile)
            if not (self.room_waiters and self._blocked_ahead()) and (
                (can_grow and self.rate is None) or self.backlog + self.held < room
            ):
                self._enqueue(job)
                if can_grow and self.backlog > self.starting:
                    self._grow("for a waiting job")
            elif idle and (self.rate is None or self._paced_start()):
                # a small or zero capacity: wake a second worker after all
                self._hand_over(idle.pop(), job)
            else:
                return False
        self.submitted += 1
        if self.telemetry is not None:
            self.telemetry.accepted()
        return True

    @enable_ki_protection
    def offer_keyed(self, job: Job[Any]) -> bool:
        """`offer` for a job with a key: one of a saturated key is set aside.

        Raises:
            PoolClosed: the pool takes no more work (counted as rejected).
        """
        if self.closed:
            self.refuse_closed()
        key = job.key
        active = self.key_active.get(key, 0)
        if active < self.per_key_limit:  # type: ignore[operator]
            if not self.offer(job):
                return False
            self.key_active[key] = active + 1
            return True
        if (self.room_waiters and self._blocked_ahead()) or not self._room_aside():
            return False
        self._hold(job)
        self.submitted += 1
        if self.telemetry is not None:
            self.telemetry.accepted()
        return True

    def _room_aside(self) -> bool:
        """Whether the queue has room for a job set aside for its key (a place
        that a worker being started will not empty)."""
        return not self._over_capacity(1)

    def _hold(self, job: Job[Any]) -> None:
        """Set a job of a saturated key aside until one of its key's ends."""
        job.holder = WAITING_FOR_KEY
        waiting = self.key_waiting.get(job.key)
        if waiting is None:
            waiting = self.key_waiting[job.key] = deque()
        waiting.append(job)
        self.held += 1

    def _saturated(self, job: Job[Any]) -> bool:
        """Whether ``job`` has a key at its limit (in a pool with keys)."""
        key = job.key
        return key is not None and self.key_active.get(key, 0) >= self.per_key_limit  # type: ignore[operator]

    def _place(self, job: Job[Any]) -> None:
        """In a pool with keys: put an accepted job in the queue, or aside if
        its key is saturated."""
        if self._saturated(job):
            self._hold(job)
            return
        key = job.key
        if key is not None:
            self.key_active[key] = self.key_active.get(key, 0) + 1
        self._enqueue(job)

    def _key_done(self, key: Hashable) -> None:
        """A job of ``key`` left the queue, a worker's hands or a worker: its
        key's next job set aside takes its place at the back of the queue."""
        waiting = self.key_waiting.get(key)
        if waiting is not None:
            job = waiting.popleft()
            if not waiting:
                del self.key_waiting[key]
            self.held -= 1
            self._enqueue(job)  # the key's count stays: one out, one in
            if self.idle and not self.waking:
                self._spread_work()
            return
        active = self.key_active[key] - 1
        if active:
            self.key_active[key] = active
        else:
            del self.key_active[key]  # an idle key leaves nothing behind

    async def wait_for_room(self, job: Job[Any]) -> None:
        """Park until ``job`` is accepted (or `PoolClosed` is delivered)."""
        task = current_task()
        waiters = self.room_waiters
        waiters[task] = job

        def abort(_: object) -> Abort:
            del waiters[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def room(self) -> int:
        """How many jobs the queue may hold now.

        ``capacity``, plus one for each worker being started that will take
        a job when it runs (after a `resize` down, a surplus one takes none;
        with a rate limit, one may find no token).
        """
        starting = self.starting
        if self.rate is not None:  # a new worker may find no token
            return self.capacity
        if starting:
            fits = self.max_workers - len(self.workers) + starting
            starting = max(0, min(starting, fits))
        return self.capacity + starting

    def _over_capacity(self, more_aside: int = 0) -> bool:
        """More jobs wait than the queue may hold (after a `resize` down).

        Workers being started (the room beyond ``capacity``) take jobs from
        the queue, never those set aside for their key.
        """
        queued = self.backlog
        starting_room = min(self.room() - self.capacity, queued)
        return queued + self.held + more_aside > self.capacity + starting_room

    def _enqueue(self, job: Job[Any]) -> None:
        job.holder = None
        self.queue.append(job)
        self.backlog += 1

    def _hand_over(self, worker: Worker, job: Job[Any]) -> None:
        """Wake an idle worker with ``job`` as its next job."""
        self.waking += 1
        worker.woken = True
        worker.job = job
        job.holder = worker
        reschedule(worker.task)  # type: ignore[arg-type]

    def _admit_waiters(self) -> None:
        """Accept blocked submitters' jobs while the queue has room."""
        waiters = self.room_waiters
        admitted = 0
        while waiters and self.backlog + self.held < (
            self.room() if self.starting else self.capacity
        ):
            if self.per_key_limit is None:
                task, job = waiters.popitem(last=False)
                self._enqueue(job)
            else:
                job = next(iter(waiters.values()))
                if self._saturated(job) and not self._room_aside():
                    break  # its place aside must wait for the queue to empty
                task, job = waiters.popitem(last=False)
                self._place(job)
            self.submitted += 1
            admitted += 1
            reschedule(task)
        if admitted and self.telemetry is not None:
            self.telemetry.accepted(admitted)

    def _grow(self, why: str | None) -> None:
        """Start one more worker (``why`` goes to the DEBUG log, if any)."""
        assert self.nursery is not None
        self.starting += 1
        worker = Worker()
        self.workers.add(worker)
        self.nursery.start_soon(
            self._run_worker, self, worker, name=f"trio_pool worker of {self.name!r}"
        )
        if why is not None:
            log(
                DEBUG,
                "pool %r: started a worker %s (%d of at most %d)",
                self.name,
                why,
                len(self.workers),
                self.max_workers,
            )

    # --------------------------------------------------------------- workers

    @enable_ki_protection
    def open(self, nursery: trio.Nursery) -> trio.Event:
        """Start the minimum of workers; return an event set once all have run."""
        self.token = current_trio_token()
        self.thread = get_ident()
        self.nursery = nursery
        self.clock = trio.lowlevel.current_clock()
        self.all_started = trio.Event()
        for _ in range(self.min_workers):
            self._grow(None)
        if self.rate is not None:
            nursery.start_soon(
                self._run_pacer, self, name=f"trio_pool pacer of {self.name!r}"
            )
        return self.all_started

    @enable_ki_protection
    def worker_began(self, worker: Worker) -> None:
        """A worker task runs for the first time."""
        worker.task = current_task()
        self.starting -= 1
        if not self.starting and self.all_started is not None:
            self.all_started.set()
            self.all_started = None

    @enable_ki_protection
    def start_next(self, worker: Worker, scope: trio.CancelScope) -> Job[Any] | None:
        """Take the next queued job and start it in ``worker``, or return None.

        A retired worker, or one above ``max_workers`` (after `resize`),
        takes nothing.
        """
        if worker.retired or len(self.workers) > self.max_workers:
            return None
        if (
            self.rate is not None
            and (self.backlog or self.room_waiters)
            and not self._take_token()
        ):
            return None
        queue = self.queue
        while queue:  # (`_take_queued`, inlined: this is the hot path)
            job = queue.popleft()
            if job.state is QUEUED:
                self.backlog -= 1
                if self.over_capacity_allowed:
                    self.over_capacity_allowed = self._over_capacity()
                if self.room_waiters:
                    self._admit_waiters()
                break
        else:
            waiter = self._take_waiter()
            if waiter is None:
                if self.rate is not None and self.room_waiters:
                    self.rate.give_back()  # only submitters of saturated keys wait
                return None
            job = waiter
        self._start(worker, job, scope)
        return job

    def _take_waiting(self) -> Job[Any] | None:
        """Take the next job waiting to start: the queue's first, or (with
        capacity 0) a blocked submitter's, which is accepted as it is taken."""
        return self._take_queued() or self._take_waiter()

    def _take_queued(self) -> Job[Any] | None:
        queue = self.queue
        while queue:
            job = queue.popleft()
            if job.state is QUEUED:
                self.backlog -= 1
                if self.over_capacity_allowed:
                    self.over_capacity_allowed = self._over_capacity()
                if self.room_waiters:
                    self._admit_waiters()
                return job
        return None

    def _take_waiter(self) -> Job[Any] | None:
        """With capacity 0: accept and take a blocked submitter's job."""
        waiters = self.room_waiters
        if not waiters:
            return None
        if self.per_key_limit is None:
            task, job = waiters.popitem(last=False)
        else:  # the first whose key may run
            for task, job in waiters.items():  # noqa: B007 (task: used below)
                key = job.key
                if key is None or self.key_active.get(key, 0) < self.per_key_limit:
                    break
            else:
                return None
            del waiters[task]
            if key is not None:
                self.key_active[key] = self.key_active.get(key, 0) + 1
        self.submitted += 1
        reschedule(task)
        if self.telemetry is not None:
            self.telemetry.accepted()
        return job

    def _paced_start(self) -> bool:
        """With a rate limit, may a new job go straight to an idle worker?
        Not before the jobs that already wait for a token."""
        if self.backlog or (self.room_waiters and self._blocked_ahead()):
            return False
        return self._take_token()

    def _blocked_ahead(self) -> bool:
        """Whether a blocked submitter must be served before a new job (first
        come, first served), given that submitters wait. One whose key is
        saturated waits for a place aside, and lets others by."""
        if self.per_key_limit is None:
            return True
        first = next(iter(self.room_waiters.values()))
        return not self._saturated(first)

    def _take_token(self) -> bool:
        """Spend a start token of the rate limit; if there is none, make sure
        the pacer wakes when the next one is due."""
        assert self.rate is not None
        if self.rate.take(trio.current_time()):
            return True
        self._wake_pacer()
        return False

    def _wake_pacer(self) -> None:
        if self.pacer:
            self.pacer.unpark_all()

    @enable_ki_protection
    def pace(self) -> float | None:
        """The pacer's step: hand waiting jobs to idle workers as tokens allow.

        Returns:
            When to look again (``math.inf``: when woken), or None once the
            pool is closed and its last worker has stopped (workers stop only
            when nothing is left to start): the pacer stops too.
        """
        rate = self.rate
        assert rate is not None
        if self.closed and not self.workers:
            return None
        idle = self.idle
        while self.backlog or self.room_waiters:
            if not idle:  # busy workers take jobs as they finish, or a new one
                if len(self.workers) < self.max_workers and not self.starting:
                    self._grow("for a waiting job")
                return math.inf
            if not rate.take(trio.current_time()):
                return rate.next_at()
            job = self._take_waiting()
            if job is None:  # only submitters whose keys are saturated wait
                rate.give_back()
                break
            self._hand_over(idle.pop(), job)
        return math.inf

    @enable_ki_protection
    def idle_or_stop(self, worker: Worker) -> bool:
        """Park ``worker`` among the idle ones, or return True if it must stop.

        It stops when the pool is closed and nothing is queued (waking the
        other idle workers, which stop too), when it is above ``max_workers``,
        or when `resize` retired it.
        """
        if worker.retired:
            return True
        if self.closed and not self.backlog:
            self._release_idle()
            self._remove(worker)
            return True
        if len(self.workers) > self.max_workers:
            self._remove(worker)
            return True
        worker.streak = 0
        self.idle.append(worker)
        return False

    def may_retire(self) -> bool:
        """Whether an idle worker may retire after ``idle_timeout``."""
        return len(self.workers) > self.min_workers

    @enable_ki_protection
    def abort_idle(self, worker: Worker) -> None:
        """A parked idle worker was cancelled or timed out: unpark it."""
        self.idle.remove(worker)

    @enable_ki_protection
    def retire_idle(self, worker: Worker) -> bool:
        """An idle worker timed out: retire it if the pool is above its minimum.

        Not while jobs are queued, nor while submitters wait (with capacity
        0): one may have arrived as its timer expired, when it was no longer
        idle to be handed the job; and a worker retired while a submitter
        waits would let a later submitter grow the pool and get in first.
        """
        if (
            len(self.workers) > self.min_workers
            and not self.backlog
            and not self.room_waiters
        ):
            self._remove(worker)
            log(
                DEBUG,
                "pool %r: a worker retired after %ss idle (%d left)",
                self.name,
                self.idle_timeout,
                len(self.workers),
            )
            return True
        return False

    @enable_ki_protection
    def take_handed(self, worker: Worker, scope: trio.CancelScope) -> Job[Any] | None:
        """A woken worker runs: start the job it was handed, if it still has one."""
        if worker.woken:
            worker.woken = False
            self.waking -= 1
        job = worker.job
        if job is None:  # cancelled while handed over, or woken to stop
            return None
        if len(self.workers) > self.max_workers:
            # `resize` shrank the pool since the hand-over: the job goes back
            # to the head of the queue and this worker retires.
            worker.job = None
            job.holder = None
            self.queue.appendleft(job)
            self.backlog += 1
            if self._over_capacity():
                self.over_capacity_allowed = True
            if self.rate is not None:
                self.rate.give_back()  # it did not start
            self._remove(worker)
            return None
        self._start(worker, job, scope)
        return job

    def _start(self, worker: Worker, job: Job[Any], scope: trio.CancelScope) -> None:
        job.state = RUNNING
        job.holder = worker
        job.scope = scope
        worker.job = job
        worker.streak += 1
        self.running += 1
        if job.timeout is not None:
            scope.deadline = trio.current_time() + job.timeout
        if self.backlog > self.starting and not self.waking:
            self._spread_work()
        if self.timed:
            job.t_started = trio.current_time()
            if self.telemetry is not None:
                worker.span = self.telemetry.started(job)

    def _spread_work(self) -> None:
        """Jobs still wait: wake an idle worker, or start one if the pool scales."""
        idle = self.idle
        if idle:
            if self.rate is not None and not self._take_token():
                return
            queue = self.queue
            while queue:
                job = queue.popleft()
                if job.state is QUEUED:
                    self.backlog -= 1
                    self._hand_over(idle.pop(), job)
                    if self.room_waiters:
                        self._admit_waiters()
                    return
        elif len(self.workers) < self.max_workers:
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
        worker.job = None
        self.running -= 1
        if job.timeout is not None and job.scope is not None:
            job.scope.deadline = math.inf
        if state is SUCCEEDED:
            self.succeeded += 1
        elif state is FAILED:
            self.failed += 1
        elif state is TIMED_OUT:
            self.timed_out += 1
            error = job.timeout_error()
        else:
            self.cancelled += 1
            error = job.cancelled_error()
        self._resolve(job, state, value, error)
        if state is FAILED:  # logged while the job's span is still current
            log(DEBUG, "job %r in pool %r failed", job.name, self.name, exc_info=error)
            if isinstance(error, Exception):  # the others leave the pool anyway
                self.unretrieved[weakref.ref(job, self._dropped)] = (job.name, error)
        if self.timed:
            if state is not CANCELLED:  # a cancelled run says nothing of length
                try:
                    run = job.t_finished - job.t_started
                except AttributeError:  # started before shedding began to measure
                    pass
                else:
                    self._measured(run)
            if self.telemetry is not None:
                span = worker.span
                worker.span = None
                self.telemetry.ended(job, span)

    def _measured(self, run: float) -> None:
        """Fold one job's running time into the moving average (weight 1/8,
        as TCP's smoothed round-trip time)."""
        mean = self.mean_run
        self.mean_run = run if mean is None else mean + (run - mean) / 8

    def _resolve(
        self,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Move a job to a terminal state and wake every task waiting on it."""
        freed_key = None  # a key whose count this job held
        if self.per_key_limit is not None and job.holder is not WAITING_FOR_KEY:
            freed_key = job.key
        job.state = state
        job.holder = None
        job.scope = None
        if self.timed:
            job.t_finished = trio.current_time()
        job.value = value
        job.error = error
        if error is not None:
            job.traceback = error.__traceback__
            job.context = error.__context__
            job.cause = error.__cause__
            job.suppress_context = error.__suppress_context__
        job.args = ()  # let the arguments go; the function stays for `name`
        if job.lot is not None:
            job.lot.unpark_all()
        on_done = job.on_done
        if on_done is not None:
            job.on_done = None  # called once; its references go with it
            on_done(job)
        if freed_key is not None:  # once the job is done: its next may start
            self._key_done(freed_key)
        if self.draining and self.submitted == self.finished():
            self.drain_waiters.unpark_all()  # `Pool.join`, `Pool.shutdown`

    def _resolve_unstarted(self, job: Job[Any]) -> None:
        self.cancelled += 1
        self._resolve(job, CANCELLED, error=job.cancelled_error())

    @staticmethod
    def _cancel_running(job: Job[Any]) -> None:
        job.cancel_requested = True
        assert job.scope is not None
        job.scope.cancel()

    @enable_ki_protection
    def listen(self, job: Job[Any], listener: Callable[[Job[Any]], None]) -> None:
        """Call ``listener(job)`` as ``job`` resolves (it must not be done)."""
        current = job.on_done
        if current is None:
            job.on_done = listener
        elif isinstance(current, Listeners):
            current.append(listener)
        else:
            job.on_done = Listeners((current, listener))

    @enable_ki_protection
    def unlisten(self, job: Job[Any], listener: Callable[[Job[Any]], None]) -> None:
        """Undo one `listen` (nothing if ``job`` is done: it has been called)."""
        current = job.on_done
        if current == listener:  # == : bound methods are made anew each time
            job.on_done = None
        elif isinstance(current, Listeners) and listener in current:
            current.remove(listener)
            if len(current) < 2:  # back to what one listener, or none, looks like
                job.on_done = current[0] if current else None

    @enable_ki_protection
    def worker_exited(self, worker: Worker) -> None:
        """A worker task ends, however it ends."""
        self._remove(worker)
        if worker in self.idle:
            self.idle.remove(worker)
        if worker.woken:
            worker.woken = False
            self.waking -= 1
        job = worker.job
        if job is not None and job.state is QUEUED:  # handed, never started
            worker.job = None
            self._resolve_unstarted(job)

    def _remove(self, worker: Worker) -> None:
        self.workers.discard(worker)
        worker.retired = True
        if self.closed and not self.workers:
            self._wake_pacer()  # to stop as well

    def _release_idle(self) -> None:
        """Wake every idle worker with nothing to do, so that it stops."""
        idle = self.idle
        while idle:
            worker = idle.pop()
            self._remove(worker)
            reschedule(worker.task)  # type: ignore[arg-type]

    @staticmethod
    def outcome_of_cancel(job: Job[Any]) -> JobState:
        """The job's own scope caught its cancellation: timed out or cancelled?"""
        return CANCELLED if job.cancel_requested else TIMED_OUT

    # ----------------------------------------------------------- job handles

    @enable_ki_protection
    def cancel(self, job: Job[Any]) -> None:
        """Cancel a job: resolve it if it has not started, else cancel its scope."""
        self.check_caller("cancel")
        state = job.state
        if state is QUEUED:
            holder = job.holder
            if holder is NOT_ACCEPTED:
                # Its submitter still holds it (a map's feeder waiting for
                # room): the pool has nothing to cancel. The feeder's own
                # cancellation withdraws it.
                return
            if holder is WAITING_FOR_KEY:
                waiting = self.key_waiting[job.key]
                waiting.remove(job)
                if not waiting:
                    del self.key_waiting[job.key]
                self.held -= 1
                self._resolve_unstarted(job)
                if self.room_waiters:
                    self._admit_waiters()
                return
            if holder is None:  # in the queue
                self.backlog -= 1
                queue = self.queue
                if len(queue) > 2 * self.backlog + 32:  # drop the tombstones
                    self.queue = deque(e for e in queue if e.state is QUEUED)
            else:  # handed over: the worker finds nothing when it runs
                assert isinstance(holder, Worker)
                holder.job = None
                if self.rate is not None:
                    self.rate.give_back()  # it will not start
            self._resolve_unstarted(job)
            if holder is None:
                if self.room_waiters:
                    self._admit_waiters()
                elif self.closed and not self.backlog:
                    # (with a rate, idle workers wait beside queued jobs)
                    self._release_idle()
        elif state is RUNNING:
            self._cancel_running(job)

    async def wait_done(self, job: Job[Any]) -> None:
        """Wait until ``job`` is resolved; a checkpoint. (`Job` inlines this.)"""
        await checkpoint_if_cancelled()
        if not job.done:
            await self.park_until_done(job)
        elif self.yield_due():  # done: a schedule point now and then
            await cancel_shielded_checkpoint()

    async def park_until_done(self, job: Job[Any], what: str = "wait") -> None:
        """Park until ``job`` is resolved; the slow path of `wait_done`."""
        self.check_caller(what)
        lot = job.lot
        if lot is None:
            lot = job.lot = ParkingLot()
        await lot.park()

    # -------------------------------------------------------------- resizing

    @enable_ki_protection
    def resize(self, workers: int, max_workers: int) -> None:
        """Change the limits; retire idle surplus, start workers for waiting jobs."""
        if self.nursery is None or self.closed:
            raise PoolClosed(f"pool {self.name!r} is closed and cannot be resized")
        log(
            INFO,
            "pool %r resized: workers %d..%d -> %d..%d",
            self.name,
            self.min_workers,
            self.max_workers,
            workers,
            max_workers,
        )
        lowered = workers < self.min_workers
        self.min_workers = workers
        self.max_workers = max_workers
        idle = self.idle
        while len(self.workers) > max_workers and idle:  # retire idle surplus
            worker = idle.pop(0)  # the longest idle
            self._remove(worker)
            reschedule(worker.task)  # type: ignore[arg-type]
        if lowered and len(self.workers) > workers:
            # Idle workers parked while the old minimum kept them have no
            # idle timer: wake them to park again with one.
            while idle:
                reschedule(idle.pop().task)  # type: ignore[arg-type]
        if self._over_capacity():  # accepted before; they stay
            self.over_capacity_allowed = True
        waiting = self.backlog + len(self.room_waiters)
        while len(self.workers) < workers or (
            waiting > self.starting and len(self.workers) < max_workers
        ):
            self._grow("after a resize")
        if self.room_waiters:
            self._admit_waiters()

    # -------------------------------------------------------------- stopping

    @enable_ki_protection
    def close(self) -> None:
        """Stop taking work; blocked submitters get `PoolClosed`."""
        if self.closed:
            return
        self.closed = True
        waiters = self.room_waiters
        rejected = len(waiters)
        while waiters:
            task, _ = waiters.popitem(last=False)
            self.rejected += 1
            error = PoolClosed(f"pool {self.name!r} closed while submit() waited")
            reschedule(task, outcome.Error(error))
        if not self.backlog:
            self._release_idle()
        log(DEBUG, "pool %r closed", self.name)
        if self.telemetry is not None:
            for _ in range(rejected):
                self.telemetry.rejected("closed")

    @enable_ki_protection
    def cancel_everything(self) -> None:
        """Close, resolve every job not started, cancel every running one."""
        self.close()
        set_aside = [job for waiting in self.key_waiting.values() for job in waiting]
        self.key_waiting.clear()
        self.held = 0
        for job in set_aside:  # first, so that none takes a freed key's place
            self._resolve_unstarted(job)
        queue = self.queue
        while queue:
            job = queue.popleft()
            if job.state is QUEUED:
                self.backlog -= 1
                self._resolve_unstarted(job)
        for worker in self.workers:
            held = worker.job
            if held is None:
                continue
            if held.state is QUEUED:  # handed over, not started yet
                worker.job = None
                self._resolve_unstarted(held)
            else:
                self._cancel_running(held)
        self._release_idle()

    def finished(self) -> int:
        """Jobs in a terminal state."""
        return self.succeeded + self.failed + self.timed_out + self.cancelled

    async def wait_drained(self) -> None:
        """Wait until no accepted job is left unfinished; a checkpoint.

        Jobs accepted while it waits are waited for too.
        """
        if self.finished() == self.submitted:
            await checkpoint()
            return
        self.draining += 1
        try:
            await self.drain_waiters.park()
        finally:
            self.draining -= 1

    @enable_ki_protection
    def exited(self) -> None:
        """The pool's nursery is gone: warn of the failures nobody retrieved."""
        self.nursery = None
        unretrieved = list(self.unretrieved.values())
        self.unretrieved.clear()
        for name, error in unretrieved:
            self._warn_unretrieved(name, error, "the pool stopped")

    # ------------------------------------------------- failures nobody read

    def retrieved(self, job: Job[Any]) -> None:
        """A failed job's outcome was read: no WARNING for it."""
        self.unretrieved.pop(weakref.ref(job), None)

    def _dropped(self, ref: weakref.ref[Job[Any]]) -> None:
        """A failed job's handle was dropped (a weakref callback)."""
        found = self.unretrieved.pop(ref, None)
        if found is not None:
            self._warn_unretrieved(*found, "its handle was dropped")

    def _warn_unretrieved(
        self, name: str, error: BaseException | None, when: str
    ) -> None:
        log(
            WARNING,
            "job %r in pool %r failed, and nobody retrieved its outcome before %s",
            name,
            self.name,
            when,
            exc_info=error,
        )

    def _check_keys(self, live: list[Job[Any]], handed_jobs: list[Job[Any]]) -> None:
        """The per-key books agree with the jobs (part of `check_invariants`)."""
        limit = self.per_key_limit
        if limit is None:
            assert not self.key_active, self.key_active
            assert not self.key_waiting, self.key_waiting
            assert not self.held, self.held
            return
        counts: dict[Hashable, int] = {}
        for job in (*live, *handed_jobs):
            if job.key is not None:
                counts[job.key] = counts.get(job.key, 0) + 1
        assert counts == self.key_active, (counts, self.key_active)
        assert all(0 < n <= limit for n in counts.values()), counts
        held = 0
        for key, waiting in self.key_waiting.items():
            assert waiting, f"an empty list of jobs waiting for key {key!r}"
            assert self.key_active.get(key) == limit, f"key {key!r} is not saturated"
            for job in waiting:
                assert job.state is QUEUED, job.state
                assert job.holder is WAITING_FOR_KEY, job.holder
                assert job.key == key, (job.key, key)
            held += len(waiting)
        assert held == self.held, (held, self.held)

    def statistics(self) -> PoolStatistics:
        """A snapshot of the books (read-only: safe from a metric reader's thread)."""
        finished = self.finished()
        return PoolStatistics(
            name=self.name,
            workers=len(self.workers),
            idle_workers=len(self.idle),
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            capacity=self.capacity,
            queued=self.submitted - self.running - finished,
            running=self.running,
            waiting_submitters=len(self.room_waiters),
            submitted=self.submitted,
            succeeded=self.succeeded,
            failed=self.failed,
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            rejected=self.rejected,
            closed=self.closed,
            rate_tokens=self._rate_tokens(),
            waiting_for_key=None if self.per_key_limit is None else self.held,
            active_keys=None if self.per_key_limit is None else len(self.key_active),
            shed=self.shed_count,
        )

    def _rate_tokens(self) -> float | None:
        rate = self.rate
        if rate is None:
            return None
        clock = self.clock
        if clock is None:  # not opened yet: a full bucket
            return float(rate.burst)
        return rate.tokens(clock.current_time())

    # ---------------------------------------------------------- the invariant

    def check_invariants(self) -> None:
        """Assert that the books agree with each other; the tests call this.

        Raises:
            AssertionError: naming the first invariant that does not hold.
        """
        live = [e for e in self.queue if e.state is QUEUED]
        assert len(live) == self.backlog, (len(live), self.backlog)
        assert all(e.holder is None for e in live), "a queued job has a holder"
        assert len(set(map(id, live))) == len(live), "a job is queued twice"
        assert set(self.idle) <= self.workers, "an idle worker is not a worker"
        assert len(set(self.idle)) == len(self.idle), "a worker is idle twice"
        handed = running = woken = 0
        for worker in self.workers:
            job = worker.job
            woken += worker.woken
            assert not worker.retired, "a retired worker is still counted"
            if job is None:
                continue
            assert worker not in self.idle, "an idle worker holds a job"
            assert job.holder is worker, "a worker's job names another holder"
            if job.state is QUEUED:
                handed += 1
                assert worker.woken, "a job handed to a worker that was not woken"
            else:
                assert job.state is RUNNING, job.state
                running += 1
        assert woken == self.waking, (woken, self.waking)
        self._check_keys(
            live, handed_jobs=[w.job for w in self.workers if w.job is not None]
        )
        assert running == self.running, (running, self.running)
        for task, job in self.room_waiters.items():
            assert job.state is QUEUED, (task, job.state)
            assert job.holder is NOT_ACCEPTED, (task, job.holder)
        counts = (
            self.submitted,
            self.running,
            self.succeeded,
            self.failed,
            self.timed_out,
            self.cancelled,
            self.rejected,
            self.backlog,
            self.waking,
            self.starting,
        )
        assert min(counts) >= 0, f"a negative count: {counts}"
        queued = self.submitted - self.running - self.finished()
        assert queued == self.backlog + handed + self.held, (
            queued,
            self.backlog,
            handed,
            self.held,
        )
        if not self.over_capacity_allowed:
            assert not self._over_capacity(), (
                f"{self.backlog} queued and {self.held} waiting for their key > "
                f"capacity {self.capacity} + {self.starting} starting"
            )
        assert self.min_workers <= self.max_workers
        parked = self.drain_waiters.statistics().tasks_waiting
        # (a woken drain waiter still counts until it runs)
        assert self.draining >= parked, (self.draining, parked)
        if self.closed:
            assert not self.room_waiters, "a submitter waits on a closed pool"
        if self.nursery is None and self.token is not None:  # exited
            assert not self.workers, "workers outlived the pool"
            assert not self.idle, "idle workers outlived the pool"
            assert (self.backlog, self.running, self.waking, self.starting) == (
                0,
                0,
                0,
                0,
            )
            assert queued == 0

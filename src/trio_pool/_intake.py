"""The transitions of jobs: accept, refuse, cancel, resolve; close and stop.

`Intake` is the half of the core's transitions that the submitters and the
job handles drive (`PoolCore` adds the workers' half): it offers a job to an
idle worker or the queue as its base `Admission` decides (which admits
blocked submitters as room appears), cancels, resolves a job that never
started, closes the pool and cancels everything (shedding by the caller's
deadline is a base's, `ShedByDeadline` in `_shed`; `PoolCore.finish`
resolves the others). Every method that changes the books is synchronous
and KI-protected.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from inspect import CO_COROUTINE
from threading import get_ident
from types import FunctionType
from typing import TYPE_CHECKING, Any, NoReturn

import trio
from trio.lowlevel import (
    checkpoint,
    enable_ki_protection,
)

from ._admission import Admission
from ._checks import USE_DEFAULT, check_async_fn, check_name
from ._crew import Worker
from ._errors import PoolClosed, PoolOverloaded, SubmitTimeout
from ._job import (
    CANCELLED,
    NOT_ACCEPTED,
    QUEUED,
    RUNNING,
    WAITING_FOR_KEY,
    FeaturedJob,
    Job,
    JobState,
    init_record,
    new_record,
)
from ._log import DEBUG, log
from ._state import ACCEPTED, YIELD_DUE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Iterable

    from ._checks import UsePoolDefault
    from ._errors import OverloadReason


class Intake(Admission):
    """The jobs' transitions (see the module); `PoolCore` is the class pools run."""

    plain_jobs: bool = True
    """Whether this class's `make_job` is the base one (its jobs carry no
    feature's fields), so the hot paths make the record themselves; set for
    each subclass, from whether it overrides `make_job`."""
    _job_type: type[Job[Any]] = Job
    """The record the base `make_job` makes: `Job`, or, for a class whose
    `make_job` adds a feature's fields, `FeaturedJob`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "make_job" in vars(cls) and "make_jobs" not in vars(cls):
            raise TypeError(f"{cls.__name__} overrides make_job, not make_jobs")
        cls.plain_jobs = cls.make_job is Intake.make_job
        cls._job_type = Job if cls.plain_jobs else FeaturedJob

    def new_job(
        self,
        method: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | UsePoolDefault | None,
        key: Hashable = None,
    ) -> Job[Any]:
        """Check a submission's arguments and its caller; make the job's record.

        Nothing changes in the pool: the job is not accepted yet.
        """
        if type(fn) is not FunctionType or not fn.__code__.co_flags & CO_COROUTINE:
            fn = check_async_fn(method, fn)  # (its first case inlined above)
        if name is not None:
            check_name("name", name)
        limit = (
            self._job_timeout if timeout is USE_DEFAULT else self.time_limit(timeout)
        )
        if key is not None:
            self.check_key(key)
        guard = self._guard  # (`RunGuard.check`, inlined: the hot path)
        if get_ident() != guard.thread:
            guard.check_run(method)
        if self.plain_jobs:  # (`make_job` and `Job.__init__`, inlined: the hot path)
            job: Job[Any] = new_record(Job)
            job._core = self
            job._fn = fn
            job._args = args
            job._label = name
            job._timeout = limit
            job._on_done = None
            job.state = QUEUED
            job._holder = NOT_ACCEPTED
            job._lot = None
            return job
        return self.make_job(fn, args, name, limit, None, key)

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
        return self._job_type(self, fn, args, name, limit, on_done)

    def make_jobs(
        self,
        fn: Callable[..., Awaitable[Any]],
        items: Iterable[Any],
        name: str | None,
        limit: float | None,
    ) -> list[Job[Any]]:
        """Make the records of a map's batch, one job per item, as `make_job`
        makes each (no listener, no key); a variant that overrides
        `make_job` overrides this too (each feature's fields set once per
        batch, not once per job)."""
        job_type = self._job_type
        jobs: list[Job[Any]] = []
        for item in items:
            job = new_record(job_type)
            init_record(job, self, fn, (item,), name, limit, None)
            jobs.append(job)
        return jobs

    async def wait_to_accept(self, job: Job[Any]) -> None:
        """Wait for room for ``job``, within ``submit_timeout``; the slow path."""
        if self.in_own_job():
            raise self.overloaded("for submit() inside one of its own jobs", "own_job")
        submit_timeout = self._submit_timeout
        if submit_timeout is None:
            await self._waiters.wait(job)
            return
        with trio.move_on_after(submit_timeout):
            await self._waiters.wait(job)
            return
        raise self.overloaded(
            f"within submit_timeout={submit_timeout!r}s", "submit_timeout"
        )

    async def wait_for_room(self) -> None:
        """Wait until `offer` would accept a job without a key; a checkpoint.

        Returns at once (after the checkpoint) if it would now; else parks
        until a transition that frees room finds that it would (blocked
        submitters are admitted first), or the pool closes.

        Raises:
            PoolClosed: the pool is closed, or closes while it waits.
        """
        await checkpoint()
        if self._closed:
            raise PoolClosed(f"pool {self._name!r} is closed and has no room")
        if self._room_now():
            return
        self._watching()
        await self._watchers.wait()

    def _watching(self) -> None:
        """A task begins to wait for room (a pool with a rate wakes its pacer,
        which watches for the token an idle worker needs)."""

    def _room_appeared(self) -> None:
        """Room may have appeared, and tasks watch for it: wake them if a
        job without a key would be accepted now."""
        if self._room_now():
            self._watchers.wake_all()

    @enable_ki_protection
    def refuse_closed(self) -> NoReturn:
        """Count a submission to a closed pool and raise `PoolClosed`."""
        self._refused("closed")
        raise PoolClosed(f"pool {self._name!r} is closed and takes no more jobs")

    @enable_ki_protection
    def overloaded(
        self, when: str, reason: OverloadReason = "no_room"
    ) -> PoolOverloaded:
        """Count a refusal for want of room; return the error to raise (a
        `SubmitTimeout` for ``reason`` ``"submit_timeout"``)."""
        kind = SubmitTimeout if reason == "submit_timeout" else PoolOverloaded
        queue = self._queue  # (the jobs set aside for their key count too)
        error = kind(
            f"pool {self._name!r} has no room {when}: {_busy(len(self._crew.workers))}"
            f" and {queue.live + queue.held} of capacity={self._capacity} queued",
            reason,
        )
        self._refused("overloaded")
        return error

    @enable_ki_protection
    def offer(self, job: Job[Any], counted: bool = False) -> int:
        """Accept ``job`` as `_decide` says (an idle worker takes it, or it is
        queued, maybe with a worker started for it), or refuse it.

        Returns:
            0 (false) if it did not; else `ACCEPTED`, or, for a ``counted``
            call (`Pool.submit`: see `yield_due`), `YIELD_DUE` once every
            ``yield_every``.

        Raises:
            PoolClosed: the pool takes no more work (counted as rejected).
        """
        if self._closed:
            self.refuse_closed()
        crew = self._crew
        idle = crew.idle
        if idle and not crew.waking:  # `HAND` (`_decide`'s first case, inlined)
            crew.hand_over(job)
        elif self._waiters or crew.starting:
            return self._offer_decided(job, counted)
        else:  # `_decide`'s common case, inlined (the hot path)
            can_grow = not idle and len(crew.workers) < self._growth_limit
            queue = self._queue
            if can_grow or queue.live + queue.held < self._capacity:  # `GROW`, `QUEUE`
                job._holder = None  # (`_carry_out`, `JobQueue.push` inlined)
                queue.append(job)
                queue.live += 1
                if can_grow:  # (no worker starting: the queued jobs outnumber them)
                    self._grow("for a waiting job")
            elif idle:  # `WAKE`: a small or zero capacity, a second worker woken
                self._hand_over_first(job)
            else:
                return 0
        self._counts.submitted += 1  # the accept tail (see `_accepted`)
        if counted:  # (`yield_due`, inlined)
            self._since_yield += 1
            if self._since_yield >= self._yield_every:
                self._since_yield = 0
                return YIELD_DUE
        return ACCEPTED

    def _offer_decided(
        self, job: Job[Any], counted: bool, runnable: bool = True
    ) -> int:
        """`offer` of an open pool, decided in full: carry out `_decide` for
        ``job`` (``runnable``: its key is not saturated), behind a blocked
        submitter whose key may run; return as `offer` does."""
        decision = self._decide(runnable, bool(self._waiters) and self._blocked_ahead())
        if not decision:
            return 0
        self._carry_out(job, decision)
        self._counts.submitted += 1  # the accept tail (see `_accepted`)
        return YIELD_DUE if counted and self.yield_due() else ACCEPTED

    def offer_keyed(self, job: Job[Any], counted: bool = False) -> int:
        """`offer` for a job with a key (only a pool with keys takes one)."""
        return self.offer(job, counted)

    def _hand_over_next(self) -> bool:
        """Hand the first job in line to an idle worker: the first queued
        (then blocked submitters fill its place: `_queue_place_freed`, once
        it is handed over, for they may take an idle worker too), else a
        blocked submitter's whose key may run; False if there is none."""
        queue = self._queue
        job = queue.take_first()  # (`start_next` inlines it)
        if job is None:
            job = self._take_waiter()
            if job is None:
                return False
            self._crew.hand_over(job)
            return True
        self._crew.hand_over(job)
        if self._waiters or self._over_capacity_allowed or self._watchers:
            self._queue_place_freed()
        return True

    def _spread_work(self) -> None:
        """Jobs still wait: wake an idle worker, or start one if the pool scales.

        A worker started is room for one more job (`_fits`): a blocked
        submitter may get in now."""
        if self._crew.idle:
            self._hand_over_next()
        elif len(self._crew.workers) < self._growth_limit:
            self._grow("for a waiting job")
            if self._waiters:
                self._admit_waiters()
            if self._watchers:
                self._room_appeared()

    def _queue_place_freed(self) -> None:
        """A job left the queue for a worker: blocked submitters fill its
        place, then room watchers are told of any room left."""
        if self._over_capacity_allowed:
            self._over_capacity_allowed = self._over_capacity()
        if self._waiters:
            self._admit_waiters()
        if self._watchers:
            self._room_appeared()

    def _resolve_unstarted(self, job: Job[Any]) -> None:
        """Cancel a job that never started (see `PoolCore.finish`)."""
        self.finish(None, job, CANCELLED)

    if TYPE_CHECKING:  # (the workers' half, `PoolCore`, ends jobs)

        def finish(
            self,
            worker: Worker | None,
            job: Job[Any],
            state: JobState,
            value: object = None,
            error: BaseException | None = None,
        ) -> None: ...

    @staticmethod
    def _cancel_running(job: Job[Any]) -> None:
        worker = job._holder
        assert isinstance(worker, Worker)
        assert worker.scope is not None
        worker.scope_cancelled = True
        worker.scope.cancel()

    def _removed(self) -> None:
        """A worker was removed (a pool with a rate wakes its pacer)."""

    def _unstarted_handed(self) -> None:
        """A job handed over will not start (a pool with a rate gives its
        token back)."""

    def _release_idle(self) -> None:
        """Wake every idle worker with nothing to do, so that it stops."""
        self._crew.release_idle()
        self._removed()

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
        # (a handed job's place is free too: its woken worker counts as one
        # being started until it runs, so a blocked submitter gets in now)
        if self._waiters:
            self._admit_waiters()
        elif holder is None and self._closed and not self._queue.live:
            # (with a rate, idle workers wait beside queued jobs)
            self._release_idle()
        if self._watchers:
            self._room_appeared()

    def retrieved(self, job: Job[Any]) -> None:
        """A failed job's outcome was read: no WARNING for it."""
        self._unretrieved.retrieved(job)

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
        if self._watchers:
            self._watchers.refuse_all(
                lambda: PoolClosed(f"pool {name!r} closed while wait_for_room() waited")
            )

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
        self._guard.exited()
        self._unretrieved.flush()
        if self._telemetry is not None:
            self._telemetry.closed()


def _busy(workers: int) -> str:
    """How many workers are busy, said as a sentence says it."""
    if workers == 1:
        return "its one worker busy"
    return f"all {workers} workers busy" if workers else "no worker running"

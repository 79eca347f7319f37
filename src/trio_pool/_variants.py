"""The transitions a pool runs, chosen when it opens: features cost only when used.

`PoolCore` runs a plain pool: no rate, no keys, no timings, no telemetry,
and none of their branches in its transitions. Each feature is a subclass
that overrides the few transitions it changes, calling the plain one
through ``super()``:

* `KeyedCore` (``per_key_limit``): counts each key's jobs, sets aside those
  of a saturated key, serves them as their key frees a place;
* `PacedCore` (``rate``): a start token for each start, and the pacer task;
* `TimedCore` (``timings``, ``shed``): each job's times and the mean run,
  and `TracedCore` (active telemetry): spans and metrics, on top of the
  times (both in ``_timed``);
* `PrioritizedCore` (``_priority``; a priority other than 0 seen): its queue
  and keys' jobs set aside ordered by priority.

`core_class` combines them (cooperatively, through the method resolution
order) into one class per combination, made once. A pool that begins to
shed without timings becomes its timed variant (see `PoolCore`), and one
that sees its first priority other than 0 its variant with priorities
(`set_priority`).
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, cast

from trio.lowlevel import enable_ki_protection

from ._admission import ASIDE, GROW, HAND, QUEUE, REFUSE
from ._core import PoolCore, current_yield_every
from ._job import WAITING_FOR_KEY, FeaturedJob, Job, JobState
from ._priority import PrioritizedCore, check_priority
from ._rate import ROUNDING
from ._shed import key_floor
from ._state import ACCEPTED, YIELD_DUE
from ._timed import TimedCore, TracedCore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Iterable

    import trio

    from ._crew import Worker
    from ._keys import KeyBooks
    from ._rate import StartRate


class KeyedCore(PoolCore):
    """A pool with ``per_key_limit``."""

    def _key_books(self) -> KeyBooks:
        keys = self._keys
        assert keys is not None
        return keys

    def make_job(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        limit: float | None,
        on_done: Callable[[Job[Any]], None] | None,
        key: Hashable = None,
    ) -> Job[Any]:
        made = super().make_job(fn, args, name, limit, on_done, key)
        job = cast("FeaturedJob[Any]", made)  # (`_job_type`)
        job._key = key
        return job

    def make_jobs(
        self,
        fn: Callable[..., Awaitable[Any]],
        items: Iterable[Any],
        name: str | None,
        limit: float | None,
    ) -> list[Job[Any]]:
        jobs = super().make_jobs(fn, items, name, limit)
        for job in cast("list[FeaturedJob[Any]]", jobs):  # (`_job_type`)
            job._key = None
        return jobs

    @enable_ki_protection
    def offer_keyed(self, job: Job[Any], counted: bool = False) -> int:
        """`offer` for a job with a key: one of a saturated key is set aside.

        Raises:
            PoolClosed: the pool takes no more work (counted as rejected).
        """
        if self._closed:
            self.refuse_closed()
        keys = self._key_books()
        if keys.saturated(job._key):
            return self._offer_decided(job, counted, runnable=False)
        accepted = self.offer(job, counted)  # (`_decide`, as for a job without a key)
        if accepted:
            keys.claim(job._key)
        return accepted

    def _carry_out(self, job: Job[Any], decision: int) -> None:
        """Set a job of a saturated key aside (`ASIDE`); the caller claimed
        the key's place of any other (`offer_keyed`, `_admit_waiters`)."""
        if decision == ASIDE:
            job._holder = WAITING_FOR_KEY
            self._key_books().hold(job)
            self._queue.held += 1
            return
        super()._carry_out(job, decision)

    def _admit_waiters(self) -> None:
        """Admit blocked submitters in turn, each as `offer` would accept its
        job now (`_decide`): one whose key is saturated and finds no place
        aside lets those behind it by; one whose key may run and would not
        be accepted stops the turn (nothing behind it would be)."""
        keys = self._key_books()
        waiters = self._waiters
        admitted = 0
        for job in waiters.jobs():
            runnable = not keys.saturated(job._key)
            decision = self._decide(runnable)
            if decision:
                waiters.admit(job)
                if runnable:
                    keys.claim(job._key)
                self._carry_out(job, decision)
                admitted += 1
            elif runnable:
                break
        if admitted:
            self._accepted(admitted)

    def _waiter_admissible(self) -> bool:
        keys = self._key_books()
        return any(
            self._decide(not keys.saturated(job._key)) for job in self._waiters.jobs()
        )

    def _key_done(self, key: Hashable, *, worker_goes_on: bool = False) -> None:
        """A job of ``key`` left the queue, a worker's hands or a worker: its
        key's next job set aside takes its place at the back of the queue.

        Either way room may appear: a job set aside that moves to the queue
        may use a starting worker's room, which no job aside may; and a key
        with a free place lets its blocked submitter, who needed a place
        aside, in as `offer` would let a new job in (`_admit_waiters`: an
        idle worker takes it, even while another is being woken, or a worker
        is started for it if the pool may grow). Queued jobs no idle or
        starting worker will take get one (`_spread_work`).
        ``worker_goes_on``: the worker whose job freed the key takes the
        next job itself, right after (a worker is started then if more wait:
        `PoolCore.start_next`), so none is started for it now."""
        job = self._key_books().release(key)
        if job is not None:
            self._queue.held -= 1
            self._queue.push(job)  # the key's count stays: one out, one in
        if self._waiters:
            self._admit_waiters()
        crew = self._crew
        if crew.idle:
            if self._queue.live and not crew.waking:
                self._spread_work()
        elif not worker_goes_on and self._queue.live > crew.starting:
            self._spread_work()  # a worker started for it, if the pool may grow
        if self._watchers:
            self._room_appeared()

    def _may_run(self, job: Job[Any]) -> bool:
        return not self._key_books().saturated(job._key)

    def _waiters_who_may_run(self) -> int:
        return sum(1 for job in self._waiters.jobs() if self._may_run(job))

    def _take_waiter(self) -> Job[Any] | None:
        waiters = self._waiters
        keys = self._key_books()
        for job in waiters.jobs():  # the first whose key may run
            if keys.claim(job._key):
                waiters.admit(job)
                self._accepted()
                return job
        return None

    def _blocked_ahead(self) -> bool:
        """Any blocked submitter whose key may run goes first, not only the
        first one: one whose key is saturated waits for a place aside, and
        lets others by (with a rate, the one behind it waits for a token
        beside an idle worker, and a new job must not take it)."""
        return any(map(self._may_run, self._waiters.values()))

    @enable_ki_protection
    def finish(
        self,
        worker: Worker | None,
        job: Job[Any],
        state: JobState,
        value: object = None,
        error: BaseException | None = None,
    ) -> None:
        freed_key = None if job._holder is WAITING_FOR_KEY else job._key
        super().finish(worker, job, state, value, error)
        if freed_key is not None:  # once the job is done: its next may start
            # (its worker looks for its next job now, or the pool goes down)
            self._key_done(freed_key, worker_goes_on=worker is not None)

    def _shed_floor(self, job: Job[Any], now: float, mean: float, ahead: int) -> float:
        floor = super()._shed_floor(job, now, mean, ahead)
        keys = self._key_books()
        if keys.saturated(job._key):
            waiting = self._waiters.jobs()  # (it would wait behind its key's)
            before = keys.waiting_before(job) + [w._key for w in waiting].count(
                job._key
            )
            floor = max(floor, key_floor(now, mean, before, keys.limit))
        return floor


class PacedCore(PoolCore):
    """A pool with a ``rate``: every start spends a token."""

    _pacer_next = math.inf
    """When the pacer looks again (what its last step returned)."""

    _offer_queues_as_fit = True
    """Its `offer` queues, as the base one does, every job `_queue_fit`
    counts (a worker idles only while another is being woken, so none takes
    a job, and no token is asked for), so `offer_all` may queue them
    together (`PoolCore._bulk_offers`)."""

    def _start_rate(self) -> StartRate:
        rate = self._rate
        assert rate is not None
        return rate

    @enable_ki_protection
    def open(self, nursery: trio.Nursery) -> trio.Event:
        started = super().open(nursery)
        nursery.start_soon(
            self._run_pacer,
            self.pace,
            self._pacer,
            name=f"trio_pool pacer of {self._name!r}",
        )
        return started

    @enable_ki_protection
    def offer(self, job: Job[Any], counted: bool = False) -> int:
        """`PoolCore.offer` with a rate: `_decide`'s common case inlined (no
        submitter blocked, no worker being started: an idle worker, none
        being woken, takes the job with a token if none is queued before it;
        else the job is queued if the queue has room), as `Intake.offer`
        inlines a plain pool's; anything else is decided in full
        (`_offer_in_full`)."""
        if self._closed:
            self.refuse_closed()
        crew = self._crew
        if self._waiters or crew.starting:
            return self._offer_in_full(job, counted)
        idle = crew.idle
        free = idle and not crew.waking  # an idle worker, none being woken
        queue = self._queue
        if free and not queue.live and self._start_rate().take(self._now()):
            crew.hand_over(job)  # `HAND` (`_carry_out` spent the token so)
        elif queue.live + queue.held < self._capacity:  # `QUEUE`, `GROW`
            if free and not self._start_rate().ready(self._now()):
                self._wake_pacer()  # (`_carry_out`'s: `pace` hands it over)
            job._holder = None  # (`JobQueue.push` inlined)
            queue.append(job)
            queue.live += 1
            if not idle and len(crew.workers) < self._growth_limit:
                self._grow("for a waiting job")  # `GROW`: no worker starting
        else:
            return self._offer_in_full(job, counted)
        self._counts.submitted += 1  # the accept tail (see `_accepted`)
        if counted:  # (`yield_due`, inlined)
            self._since_yield += 1
            if self._since_yield >= self._yield_every:
                self._since_yield = 0
                return YIELD_DUE
        return ACCEPTED

    def _offer_in_full(self, job: Job[Any], counted: bool) -> int:
        """`offer` of an open pool decided in full (`_offer_decided`); a job
        refused while a worker idles or the pool may grow wakes the pacer."""
        accepted = self._offer_decided(job, counted)
        if not accepted and (
            self._crew.idle or len(self._crew.workers) < self._growth_limit
        ):
            # Its submitter may block: `pace` hands it a worker when the
            # token comes, or starts one for it.
            self._wake_pacer()
        return accepted

    def _decide(self, runnable: bool = True, behind: bool = False) -> int:
        """`Admission._decide` with a rate: a job goes to an idle worker only
        with a token and no job queued before it, and a new worker (which
        may find no token) is no room: the job is queued only if the queue
        has room (and a worker started for it if the pool may grow)."""
        if not runnable:
            return super()._decide(runnable, behind)
        crew = self._crew
        idle = crew.idle
        rate = self._rate
        assert rate is not None
        first = (
            bool(idle)
            and not behind
            and not self._queue.live
            and rate.ready(self._now())
        )
        if first and not crew.waking:
            return HAND
        if not behind and self._room_for(aside=False):
            if not idle and len(crew.workers) < self._growth_limit:
                return GROW
            return QUEUE
        return HAND if first else REFUSE

    def _carry_out(self, job: Job[Any], decision: int) -> None:
        """Spend the start token of a job handed over (`_decide` saw it); for
        a job queued beside an idle worker, none woken, without a token, wake
        the pacer (`pace` hands it over when the token comes)."""
        rate = self._rate
        assert rate is not None
        if decision == HAND:
            taken = rate.take(self._now())
            assert taken, "a job handed over without a token"
        elif self._crew.idle and not self._crew.waking and not rate.ready(self._now()):
            self._wake_pacer()
        super()._carry_out(job, decision)

    def _starting_room(self) -> int:
        return 0  # a new worker may find no token

    def _watching(self) -> None:
        self._wake_pacer()  # to look at the tokens for the watcher (`pace`)

    def _room_appeared(self) -> None:
        if self._room_now():
            self._watchers.wake_all()
        elif self._crew.idle:
            self._wake_pacer()  # an idle worker waits for a token: `pace`

    @enable_ki_protection
    def start_next(
        self, worker: Worker, scope: trio.CancelScope, handed: Job[Any] | None = None
    ) -> Job[Any] | None:
        if handed is not None:  # its token was spent as it was handed over
            return super().start_next(worker, scope, handed)
        if worker.retired or len(self._crew.workers) > self._max_workers:
            return None
        wanted = self._queue.live or self._waiters
        if wanted:  # (`_take_token`, inlined: once per job)
            rate = self._rate
            assert rate is not None
            if not rate.take(self._now()):
                self._wake_pacer()
                return None
        job = super().start_next(worker, scope)
        if job is None and wanted:
            self._start_rate().give_back()  # only submitters of saturated keys wait
        elif self._waiters and len(self._crew.workers) < self._growth_limit:
            self._wake_pacer()  # more wait: `pace` starts a worker at the next token
        return job

    def _spread_work(self) -> None:
        crew = self._crew
        if not crew.idle:
            super()._spread_work()
        elif self._take_token():
            waking = crew.waking
            super()._spread_work()
            if crew.waking == waking:  # nothing to hand over: not spent
                self._start_rate().give_back()

    def _take_token(self) -> bool:
        """Spend a start token; if there is none, make sure the pacer wakes
        when the next one is due."""
        if self._start_rate().take(self._now()):
            return True
        self._wake_pacer()
        return False

    def _wake_pacer(self) -> None:
        if self._pacer:
            self._pacer.unpark_all()
            self._pacer_next = -math.inf  # it looks again as soon as it runs

    def _removed(self) -> None:
        if self._closed and not self._crew.workers:
            self._wake_pacer()  # to stop as well

    def _unstarted_handed(self) -> None:
        self._start_rate().give_back()

    @enable_ki_protection
    def pace(self) -> float | None:
        """The pacer's step: hand waiting jobs to idle workers as tokens allow.

        Returns:
            When to look again (``math.inf``: when woken), or None once the
            pool is closed and its last worker has stopped (workers stop only
            when nothing is left to start): the pacer stops too.
        """
        wake_at = self._pace()
        self._pacer_next = math.inf if wake_at is None else wake_at
        return wake_at

    def _pacer_due(self) -> bool:
        """Whether the pacer's wake-up time has come, or it was woken (it
        runs next); with `StartRate.ready`'s slack for float rounding, so
        that a token it sees there counts as its wake-up's (a sleep to 2.8
        ends at 2.7999999999999994; the token, and the pacer, were due at
        2.8000000000000003)."""
        return self._pacer_next - ROUNDING <= self._now()

    def _pace(self) -> float | None:
        rate = self._start_rate()
        crew = self._crew
        if self._closed and not crew.workers:
            return None
        while self._queue.live or self._waiters:
            if not crew.idle:  # busy workers take jobs as they finish, or a new one
                if (
                    len(crew.workers) < self._growth_limit
                    and not crew.starting
                    and (self._queue.live or self._waiters_who_may_run())
                ):
                    if not rate.ready(self._now()):
                        return rate.next_at()  # (a new one would find no token)
                    self._grow("for a waiting job")
                return math.inf
            if not rate.take(self._now()):
                return rate.next_at()
            if not self._hand_over_next():  # only submitters of saturated keys wait
                rate.give_back()
                break
        if self._watchers and crew.idle:  # `wait_for_room`: room is a token
            if self._room_now():
                self._watchers.wake_all()
            elif not rate.ready(self._now()):
                return rate.next_at()
        return math.inf

    def _rate_tokens(self) -> float | None:
        rate = self._start_rate()
        clock = self._clock
        if clock is None:  # not opened yet: a full bucket
            return float(rate.burst)
        return rate.tokens(clock.current_time())

    def _shed_floor(self, job: Job[Any], now: float, mean: float, ahead: int) -> float:
        floor = super()._shed_floor(job, now, mean, ahead)
        rate = self._start_rate()
        return max(floor, rate.next_at() + ahead * rate.interval)


TIMING = {None: (), "timed": (TimedCore,), "traced": (TracedCore,)}
"""The classes of each level of timing."""


@functools.cache
def core_class(
    keyed: bool, paced: bool, timing: str | None, prioritized: bool = False
) -> type[PoolCore]:
    """The core class of a pool with these features (made once each)."""
    bases: tuple[type[PoolCore], ...] = TIMING[timing]
    if prioritized:
        bases = (PrioritizedCore, *bases)
    if keyed:
        bases += (KeyedCore,)
    if paced:
        bases += (PacedCore,)
    if not bases:
        return PoolCore
    if len(bases) == 1:
        return bases[0]
    name = "".join(base.__name__.removesuffix("Core") for base in bases) + "Core"
    return cast("type[PoolCore]", type(name, bases, {"__module__": __name__}))


@enable_ki_protection
def set_priority(core: PoolCore, job: Job[Any], priority: object) -> None:
    """Give ``job`` (not accepted yet) its ``priority``; a pool's first
    priority other than 0 makes it its variant with priorities.

    Raises:
        TypeError: ``priority`` is not an int.
    """
    if not check_priority(priority):
        return
    job._priority = priority  # type: ignore[assignment]
    if not isinstance(core, PrioritizedCore):
        begin_priorities(core)


def begin_priorities(core: PoolCore) -> None:
    """Run ``core`` as its variant with priorities from now on (its jobs so
    far have priority 0: the queue's order stands)."""
    keyed, paced = isinstance(core, KeyedCore), isinstance(core, PacedCore)
    core.become_variant(functools.partial(core_class, keyed, paced, prioritized=True))
    assert isinstance(core, PrioritizedCore)
    core.order_by_priority()


def open_core(**options: Any) -> PoolCore:
    """Make the core of a pool: the class of its features, then its state."""
    keyed = options["per_key_limit"] is not None
    paced = options["rate"] is not None
    variant = functools.partial(core_class, keyed, paced)
    timed = options["timings"] or options["shed"]
    cls = variant("timed" if timed else None)
    return cls(variant=variant, yield_every=current_yield_every(), **options)

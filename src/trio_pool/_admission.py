"""Admission: what the pool does with a job offered now, decided in one place.

`Admission._decide` is the one rule of admission. For a job, new or a
blocked submitter's, it says what the pool would do with it now: hand it
to an idle worker, queue it (and start a worker for it if the pool may
grow), wake a second idle worker with the first job in line, set it aside
for its key, or nothing. `Intake.offer` (and ``offer_keyed``) carry it out
for a new job; `Admission._admit_waiters` carries it out for the blocked
submitters, so that a blocked submitter is admitted exactly when a new job
in its place would be accepted (a new job waits behind a blocked submitter
whose key may run: first come, first served); `Pool.wait_for_room` waits
for it (`Admission._room_now`); and the invariant check asserts that no
submitter stays blocked while it would admit one (`Admission.books`).

`Admission` is a part of the core (`Intake` and `PoolCore` build on it), one
object with it: the one owner of the books. It adds the room queries over
the room rule (`CoreState._fits`), the blocked submitters' admission, and
the snapshot of the books.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._books import Books, check_books, take_books
from ._log import DEBUG, log
from ._shed import ShedByDeadline

if TYPE_CHECKING:
    from ._job import Job


REFUSE = 0
"""`Admission._decide`: nothing now (the job is refused, or its submitter
waits)."""
HAND = 1
"""An idle worker, none being woken, takes the job."""
QUEUE = 2
"""The job is queued (the queue has room)."""
GROW = 3
"""The job is queued, and a worker started for it (the pool may grow and no
worker is idle); none if workers being started outnumber the queued jobs."""
WAKE = 4
"""Another idle worker (one is being woken already) is woken with the first
job in line, the job or a queued one (the queue is full)."""
ASIDE = 5
"""The job (of a saturated key) is set aside until its key has room."""


class Admission(ShedByDeadline):
    """The admission of jobs (see the module); the base of `Intake`."""

    def _decide(self, runnable: bool = True, behind: bool = False) -> int:
        """What the pool would do now with a job offered (`REFUSE`, `HAND`,
        `QUEUE`, `GROW`, `WAKE` or `ASIDE`).

        Args:
            runnable: the job's key is not saturated (always, without keys);
                else it can only be set aside.
            behind: a blocked submitter goes first (`_blocked_ahead`): the
                job gets only an idle worker (a blocked submitter's own job,
                being admitted, is behind nobody).

        `offer` inlines its common case (no submitter blocked, no worker
        being started); a pool with a rate has its own (`PacedCore`).
        """
        crew = self._crew
        idle = crew.idle
        if not runnable:
            return ASIDE if not behind and self._room_for(aside=True) else REFUSE
        if idle and not crew.waking:
            return HAND
        if not behind:
            if not idle and len(crew.workers) < self._growth_limit:
                return GROW
            if self._room_for(aside=False):
                return QUEUE
        return WAKE if idle else REFUSE

    def _carry_out(self, job: Job[Any], decision: int) -> None:
        """Do with ``job`` (accepted now) what `_decide` said (not `REFUSE`).

        A pool with keys claims the job's place of its key first, or sets it
        aside (`ASIDE`); one with a rate spends a token to hand it over.
        """
        if decision == QUEUE:
            self._queue.push(job)
        elif decision == GROW:
            queue = self._queue
            queue.push(job)
            if queue.live > self._crew.starting:
                self._grow("for a waiting job")
        elif decision == HAND:
            self._crew.hand_over(job)
        else:
            assert decision == WAKE, decision
            self._hand_over_first(job)

    def _hand_over_first(self, job: Job[Any]) -> None:
        """Wake an idle worker with the first job in line, ``job`` or a queued
        one before it (``job`` then takes its place in the queue): the queue
        is full, and a job beyond it never starts before the queued ones."""
        queue = self._queue
        if queue.live:
            queue.push(job)
            first = queue.take_first()
            assert first is not None
            job = first
        self._crew.hand_over(job)

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

    def _accepted(self, count: int = 1) -> None:
        """Count ``count`` accepted jobs (the accept tail; `offer`, the hot
        path, counts its job itself, and telemetry counts it in its `offer`)."""
        self._counts.submitted += count

    def _admit_waiters(self) -> None:
        """Admit blocked submitters, first come first served, each as `offer`
        would accept its job now (`_decide`), until one would not be."""
        waiters = self._waiters
        admitted = 0
        while waiters:
            decision = self._decide()
            if not decision:
                break
            self._carry_out(waiters.admit_first(), decision)
            admitted += 1
        self._counts.submitted += admitted  # the accept tail (see `_accepted`)

    def _waiter_admissible(self) -> bool:
        """Whether `_admit_waiters` would admit a blocked submitter now (for
        the invariant check: it never stays blocked so)."""
        return bool(self._decide())

    def _take_waiter(self) -> Job[Any] | None:
        """A worker found the queue empty: accept and take the first blocked
        submitter's job whose key may run (with capacity 0, or while the
        pool waits for a start token)."""
        waiters = self._waiters
        if not waiters:
            return None
        job = waiters.admit_first()
        self._accepted()
        return job

    def _blocked_ahead(self) -> bool:
        """Whether a blocked submitter must be served before a new job (first
        come, first served), given that submitters wait."""
        return True

    def _room_for(self, aside: bool) -> bool:
        """Whether one more job fits, in the queue or (``aside``, in a pool
        with keys) set aside (`_fits`; `offer` inlines the case of no
        starting worker)."""
        queue = self._queue
        if aside:
            return self._fits(queue.live, queue.held + 1)
        if not self._crew.starting:
            return queue.live + queue.held < self._capacity
        return self._fits(queue.live + 1, queue.held)

    def _room_now(self) -> bool:
        """Whether `offer` would accept a job without a key now (what
        `Pool.wait_for_room` waits for)."""
        return bool(self._decide(True, bool(self._waiters) and self._blocked_ahead()))

    def _queue_fit(self, most: int) -> int:
        """How many of ``most`` jobs offered now one after the other would
        each be queued by `_decide`'s common case (no idle worker takes one,
        no submitter is blocked, no worker starting, no room to grow); 0 if
        the first would not be (`PoolCore.offer_all`)."""
        crew = self._crew
        if (
            self._waiters
            or crew.starting
            or (
                not crew.waking if crew.idle else len(crew.workers) < self._growth_limit
            )
        ):
            return 0
        queue = self._queue
        return max(0, min(self._capacity - queue.live - queue.held, most))

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
            grows_to=self._growth_limit,
            draining=self._drainers.count,
            drain_parked=self._drainers.parked(),
            watching=len(self._watchers),
            waiter_admissible=bool(waiting)
            and self._waiter_admissible()
            and not self._pacer_due(),
            watched_room=bool(self._watchers)
            and self._room_now()
            and not self._pacer_due(),
            rate_next_at=None if self._rate is None else self._rate.next_at(),
            since_yield=self._since_yield,
            unretrieved=len(self._unretrieved),
            mean_run=self._mean_run,
            timed=self._timed,
            telemetry=self._telemetry is not None,
            statistics=self.statistics(),
        )

    def check_invariants(self) -> None:
        """Assert that the books agree with each other; the tests call this.

        Raises:
            AssertionError: naming the first invariant that does not hold.
        """
        check_books(self.books())

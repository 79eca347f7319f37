"""A snapshot of every book the core keeps, and the invariant check over it.

`Books` is plain values (copies), made by `PoolCore.books` for the tests and
for `check_books`, which asserts that the books agree with each other. The
tests run it after every step of the stateful test; it reads nothing but
the snapshot, so it cannot change the pool.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._job import NOT_ACCEPTED, QUEUED, RUNNING, WAITING_FOR_KEY

if TYPE_CHECKING:
    from collections.abc import Hashable

    from ._crew import Crew, Worker
    from ._job import Job
    from ._keys import KeyBooks
    from ._queue import JobQueue
    from ._statistics import Counts, PoolStatistics


@attrs.frozen
class Books:
    """Everything the core keeps, copied at one instant (a test helper)."""

    queued_jobs: list[Job[Any]]
    """The live jobs in the queue, in order."""
    queue_length: int
    """Entries in the queue, tombstones of cancelled jobs included."""
    backlog: int
    """The queue's count of live jobs."""
    workers: list[Worker]
    idle: list[Worker]
    waking: int
    starting: int
    handed: int
    """Jobs handed to a woken worker that has not run yet."""
    surplus: bool
    """The crew's flag: there may be more workers than the maximum."""
    submitted: int
    running: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    rejected: int
    shed: int
    waiting_jobs: list[Job[Any]]
    """The jobs of blocked submitters, in order."""
    closed: bool
    opened: bool
    exited: bool
    per_key_limit: int | None
    key_active: dict[Hashable, int]
    key_waiting: dict[Hashable, list[Job[Any]]]
    held: int
    first_waits_for_key: bool
    """Submitters are blocked, and every one's key is saturated (they let
    others by)."""
    room: int
    """How many jobs the queue may hold now (capacity and starting workers)."""
    over_capacity: bool
    over_capacity_aside: bool
    """One more job set aside would be over capacity."""
    over_capacity_allowed: bool
    capacity: int
    min_workers: int
    max_workers: int
    grows_to: int
    """The most workers the pool may start now: ``max_workers``, or 0 once
    it goes down (a worker ended without its word): it starts no more."""
    draining: int
    drain_parked: int
    watching: int
    """Tasks parked in `Pool.wait_for_room`."""
    waiter_admissible: bool
    """A submitter is blocked while `offer` would accept its job, in its
    place, now (`Admission._decide`, the rule of `_admit_waiters`)."""
    watched_room: bool
    """Tasks are parked in `Pool.wait_for_room` while there is room."""
    rate_next_at: float | None
    since_yield: int
    unretrieved: int
    mean_run: float | None
    timed: bool
    telemetry: bool
    statistics: PoolStatistics
    """What `Pool.statistics` reports at the same instant."""


def take_books(
    queue: JobQueue,
    crew: Crew,
    waiting: list[Job[Any]],
    counts: Counts,
    keys: KeyBooks | None,
    **scalars: Any,
) -> Books:
    """Copy the books of the core's helpers; the core gives its own as
    ``scalars`` (the other fields of `Books`)."""
    key_active, key_waiting = ({}, {}) if keys is None else keys.snapshot()
    return Books(
        queued_jobs=queue.jobs(),
        queue_length=len(queue),
        backlog=queue.live,
        held=queue.held,
        workers=list(crew.workers),
        idle=list(crew.idle),
        waking=crew.waking,
        starting=crew.starting,
        handed=crew.handed,
        surplus=crew.surplus,
        submitted=counts.submitted,
        running=counts.running,
        succeeded=counts.succeeded,
        failed=counts.failed,
        timed_out=counts.timed_out,
        cancelled=counts.cancelled,
        rejected=counts.rejected,
        shed=counts.shed,
        waiting_jobs=waiting,
        per_key_limit=None if keys is None else keys.limit,
        key_active=key_active,
        key_waiting=key_waiting,
        **scalars,
    )


def check_books(books: Books) -> None:
    """Assert that the books agree with each other.

    Raises:
        AssertionError: naming the first invariant that does not hold.
    """
    b = books
    live = b.queued_jobs
    assert len(live) == b.backlog, (len(live), b.backlog)
    assert all(e._holder is None for e in live), "a queued job has a holder"
    assert len(set(map(id, live))) == len(live), "a job is queued twice"
    workers = set(b.workers)
    assert set(b.idle) <= workers, "an idle worker is not a worker"
    assert len(set(b.idle)) == len(b.idle), "a worker is idle twice"
    handed = running = woken = 0
    for worker in b.workers:
        job = worker.job
        woken += worker.woken
        assert not worker.retired, "a retired worker is still counted"
        if job is None:
            continue
        assert worker not in b.idle, "an idle worker holds a job"
        assert job._holder is worker, "a worker's job names another holder"
        if job.state is QUEUED:
            handed += 1
            assert worker.woken, "a job handed to a worker that was not woken"
        else:
            assert job.state is RUNNING, job.state
            running += 1
    assert woken == b.waking, (woken, b.waking)
    assert handed == b.handed, (handed, b.handed)
    _check_keys(b, [*live, *(w.job for w in b.workers if w.job is not None)])
    assert running == b.running, (running, b.running)
    for job in b.waiting_jobs:
        assert job.state is QUEUED, job.state
        assert job._holder is NOT_ACCEPTED, job._holder
    counts = (
        *(b.submitted, b.running, b.succeeded, b.failed, b.timed_out),
        *(b.cancelled, b.rejected, b.backlog, b.waking, b.starting),
    )
    assert min(counts) >= 0, f"a negative count: {counts}"
    finished = b.succeeded + b.failed + b.timed_out + b.cancelled
    queued = b.submitted - b.running - finished
    assert queued == b.backlog + handed + b.held, (queued, b.backlog, handed, b.held)
    if not b.over_capacity_allowed:
        assert not b.over_capacity, (
            f"{b.backlog} queued and {b.held} waiting for their key > "
            f"capacity {b.capacity} + {b.starting} starting"
        )
        # DESIGN.md: the statistics' ``queued`` never exceeds the capacity
        # (a job waiting for a worker being started counts as running).
        assert b.statistics.queued <= b.capacity, (b.statistics, b.starting)
    assert b.statistics.queued + b.statistics.running == queued + b.running, (
        b.statistics
    )
    assert b.min_workers <= b.max_workers
    assert b.surplus or len(b.workers) <= b.max_workers, "an unflagged surplus"
    # (a woken drain waiter still counts until it runs)
    assert b.draining >= b.drain_parked, (b.draining, b.drain_parked)
    assert not b.waiter_admissible, (
        "a submitter is blocked while a new job in its place would be accepted"
    )
    if b.waiting_jobs and b.rate_next_at is None:
        # Read from the books, not from the core's decision: a submitter
        # whose key may run waits only while no worker idles (even beside
        # one being woken: `offer` wakes a second) and the pool may start
        # none for it (at ``max_workers``, or going down). With a rate,
        # idle workers wait for the pacer's tokens, and the queue's room
        # alone admits.
        limit = b.per_key_limit
        may_run = [
            job
            for job in b.waiting_jobs
            if limit is None or b.key_active.get(job._key, 0) < limit
        ]
        if may_run:
            assert not b.idle, "a submitter is blocked while a worker idles"
            assert len(b.workers) >= b.grows_to, (
                "a submitter is blocked while the pool may start a worker: "
                f"{len(b.workers)} of {b.grows_to}"
            )
    if b.backlog and b.idle and b.rate_next_at is None:
        # A woken worker spreads the queued jobs as it runs, and a worker
        # being started takes one (``room`` counts those that will); with a
        # rate, idle workers wait for the pacer's tokens.
        assert b.waking or b.backlog <= b.room - b.capacity, (
            "jobs wait in the queue while a worker idles, unwoken"
        )
    assert not b.watched_room, "a task waits for room while there is room"
    if b.closed:
        assert not b.waiting_jobs, "a submitter waits on a closed pool"
        assert not b.watching, "a task waits for room in a closed pool"
    if b.exited:
        assert not b.workers, "workers outlived the pool"
        assert not b.idle, "idle workers outlived the pool"
        left = (b.backlog, b.running, b.waking, b.starting)
        assert left == (0, 0, 0, 0), left
        assert queued == 0


def _check_keys(b: Books, placed: list[Job[Any]]) -> None:
    """The per-key books agree with the jobs queued, handed over or running."""
    limit = b.per_key_limit
    if limit is None:
        assert not b.key_active, b.key_active
        assert not b.key_waiting, b.key_waiting
        assert not b.held, b.held
        return
    counts: dict[Hashable, int] = {}
    for job in placed:
        if job._key is not None:
            counts[job._key] = counts.get(job._key, 0) + 1
    assert counts == b.key_active, (counts, b.key_active)
    assert all(0 < n <= limit for n in counts.values()), counts
    held = 0
    for key, waiting in b.key_waiting.items():
        assert waiting, f"an empty list of jobs waiting for key {key!r}"
        assert b.key_active.get(key) == limit, f"key {key!r} is not saturated"
        for job in waiting:
            assert job.state is QUEUED, job.state
            assert job._holder is WAITING_FOR_KEY, job._holder
            assert job._key == key, (job._key, key)
        held += len(waiting)
    assert held == b.held, (held, b.held)

"""`Pool.map`: stream an iterable through a pool with bounded memory.

A feeder task, in a nursery the ``async with`` block owns, pulls items from
the source and submits them; the consumer's ``async for`` takes results as
they are ready. So results stream while a live source waits for its next
item, and the source's pace never holds back a finished result. A list,
tuple or range is read in batches of as many items as the pool queues at
once (up to the feeder's next schedule point), each offered in one call
(`_offer_all`); so every item pulled is offered at once, as before. Other
sources (a generator may use the pool as it is pulled) and other maps pull
one by one (`_feed_each`).

* Ordered: the feeder appends each accepted job to ``ready`` in input order;
  the consumer waits for the oldest one (listening to it only while it
  waits: no callback per job).
* Unordered: each job appends itself to ``ready`` as it resolves (the
  callback is part of the job before the pool accepts it, so no completion
  can be missed).

Never more than twice the pool's size (``2 * (max_workers + capacity)``)
items are pulled and not yet delivered (``free`` counts the rest of that
window): as many as the pool holds running or queued, and as many again
finished and waiting for the loop. With one pool's size only, the queue ran
dry at every refill while finished results waited for the consumer's turn,
and the workers went idle (one extra task switch per job, measured with
jobs that pass a checkpoint). The feeder, once out of room, is woken when
half the window is free again, so feeder and consumer do not switch for
every item. Leaving the ``async with``
(by ``break``, an exception or cancellation) stops the feeder, cancels the
jobs not delivered yet and waits until they are done.
"""

# The map delivers its jobs' outcomes from the job record, without a call per result.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import sys
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    enable_ki_protection,
)

from ._exits import exit_error, reraise, wait_through_interrupts
from ._job import QUEUED, RUNNING, Job, init_record, new_record

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Iterator
    from types import TracebackType

    from typing_extensions import Self

    from ._core import PoolCore

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

R = TypeVar("R")

_QUIET_ITERATORS: frozenset[type] = frozenset(
    {type(iter([])), type(iter(())), type(iter(range(0))), type(iter(range(1 << 64)))}
)
"""The iterators a plain map pulls in batches: those of a list, a tuple or a
range, whose pulls run no code of the user's. A generator (or any other
source) may use the pool as it is pulled (submit to it, close it): pulled
one by one, each item is offered before the source runs again, so it is
never overtaken nor refused by what the source did after it."""

_PENDING = (QUEUED, RUNNING)
"""The states that are not terminal (`Job.done` inlined: no call per result)."""


def check_key_function(core: PoolCore, key: object) -> None:
    """Refuse a ``map(key=)`` that is no function, or given to a pool without
    ``per_key_limit``."""
    if not callable(key):
        raise TypeError(
            f"key must be a function of the item giving its key (or None), not {key!r}"
        )
    core.check_key(key)  # a pool without per_key_limit: ValueError


@final
class MapResults(AsyncIterator[R]):
    """The results of `Pool.map`: what ``async with pool.map(...) as
    results`` gives.

    Iterate it with ``async for``, from one task at a time (a second task
    gets `trio.BusyResourceError`). Each ``__anext__`` is a checkpoint (see
    `Pool` for when it yields to the scheduler).
    """

    def __init__(
        self,
        core: PoolCore,
        fn: Callable[[Any], Awaitable[Any]],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool,
        outcomes: bool,
        name: str | None,
        limit: float | None,
        key: Callable[[Any], Hashable] | None = None,
        priority: int = 0,
    ) -> None:
        self._core = core
        self._key = key
        self._priority = priority
        self._plain = ordered and key is None and not priority  # (`_offer_all`)
        self._fn = fn
        self._items = items
        self._async_source = isinstance(items, AsyncIterable)
        self._ordered = ordered
        self._outcomes = outcomes
        self._name = name
        self._limit = limit
        # Feeder and consumer: a schedule point every ``yield_every`` calls (`Pool`)
        self._yield_every = core.yield_every
        self._fed_streak = 0
        self._taken_streak = 0
        self._window = 2 * max(1, core.max_workers + core.capacity)
        self._free = self._window  # items that may still be pulled
        self._ready: deque[Job[Any]] = deque()  # see the module docstring
        self._in_flight: set[Job[Any]] = set()  # unordered: accepted, not done
        self._stop: BaseException | None = None  # why the feeder stopped early
        self._fed = False  # the feeder is done
        self._feeder_lot = ParkingLot()  # the feeder, waiting for room
        self._consumer_lot = ParkingLot()  # the consumer, waiting for a result
        self._consumer_parked = False
        self._feeder_parked = False
        self._feeder_done = trio.Event()
        # The feeder's own scope: the nursery's scope also covers the body,
        # which stopping the feeder must never cancel.
        self._feeder_scope = trio.CancelScope()
        self._nursery_manager: Any = None
        self._entered = False
        self._closed = False
        self._busy = False

    @enable_ki_protection  # as trio's nursery manager: the nursery never leaks
    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a pool.map() result can be entered only once")
        self._core.check_caller("map")
        self._entered = True
        self._nursery_manager = trio.open_nursery()
        nursery: trio.Nursery = await self._nursery_manager.__aenter__()
        nursery.start_soon(
            self._feed, name=f"trio_pool map feeder of {self._core.name!r}"
        )
        return self

    @enable_ki_protection
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        interrupts = await self._close()  # (the nursery is exited whatever comes)
        others: tuple[BaseException, ...] = ()
        try:
            await self._nursery_manager.__aexit__(exc_type, exc_value, traceback)
        except BaseExceptionGroup as group:
            others = group.exceptions  # the body's own among them
        error = exit_error(
            exc_value,
            (*interrupts, *others),
            block=f"pool.map() of {self._core.name!r}",
        )
        if error is not None and error is not exc_value:
            reraise(error)

    def __aiter__(self) -> Self:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "fed" if self._fed else "feeding"
        return (
            f"<trio_pool.MapResults of pool {self._core.name!r} {state}, "
            f"{self.pulled_ahead} pulled ahead>"
        )

    @property
    def pulled_ahead(self) -> int:
        """Items taken from the source and not yet delivered."""
        return self._window - self._free

    # ---------------------------------------------------------------- feeder

    async def _feed(self) -> None:
        """Pull items and submit them until the source ends or something fails."""
        try:
            with self._feeder_scope:
                items = self._items
                if isinstance(items, AsyncIterable):
                    await self._feed_each(aiter(items))
                else:  # (a plain map's list, tuple or range in batches)
                    iterator = iter(items)
                    batched = self._plain and type(iterator) in _QUIET_ITERATORS
                    feed = self._feed_batches if batched else self._feed_each
                    await feed(iterator)
        except Exception as exc:
            self._stop = exc
        finally:
            self._fed = True
            self._feeder_done.set()
            self._wake_consumer()

    async def _feed_batches(self, items: Iterator[Any]) -> None:
        """Pull a plain map's items in batches the pool queues at once."""
        core = self._core
        batch: list[Any] = []
        while True:
            if not self._free:
                await self._wait_for_room()
            most = min(self._free, self._yield_every - self._fed_streak)
            wanted = core.batch_room(most) if core.plain_jobs else 1
            error: Exception | None = None
            try:
                if wanted == 1:
                    batch.append(next(items))
                else:
                    batch.extend(islice(items, wanted))
            except StopIteration:  # (ends the loop below)
                pass
            except Exception as exc:  # offer the items before it first
                error = exc
            pulled = len(batch)
            self._free -= pulled
            while batch:
                job = self._offer_all(batch)
                if job is not None:
                    await self._wait_to_accept(job)
            if error is not None:
                raise error
            if pulled < wanted:  # the source is exhausted
                return
            if self._fed_streak >= self._yield_every:
                self._fed_streak = 0
                await cancel_shielded_checkpoint()

    async def _feed_each(self, items: Any) -> None:
        """Pull items one by one (an iterator, or an async one) and offer each."""
        while True:
            if not self._free:
                await self._wait_for_room()
            self._free -= 1
            try:
                item = await anext(items) if self._async_source else next(items)
            except (StopIteration, StopAsyncIteration):
                self._free += 1
                return
            job = self._offer(item)
            if job is not None:
                await self._wait_to_accept(job)
            elif self._fed_streak >= self._yield_every:
                self._fed_streak = 0
                await cancel_shielded_checkpoint()

    async def _wait_for_room(self) -> None:
        while not self._free:
            self._feeder_parked = True
            try:
                await self._feeder_lot.park()
            finally:
                self._feeder_parked = False

    @enable_ki_protection
    def _offer_all(self, items: list[Any]) -> Job[Any] | None:
        """Offer ``items``' jobs in turn (`_offer`; a plain map's in one step),
        taking each from the list, until the pool refuses one: return it."""
        core = self._core
        if not (core.plain_jobs and self._plain):
            while items:
                waiting = self._offer(items.pop(0))
                if waiting is not None:
                    return waiting
            return None
        fn, name, limit = self._fn, self._name, self._limit
        jobs: list[Job[Any]] = []
        for item in items:
            job: Job[Any] = new_record(Job)
            init_record(job, core, fn, (item,), name, limit, None)
            jobs.append(job)
        accepted = core.offer_all(jobs, self._ready)
        self._fed_streak += accepted
        if accepted and self._consumer_parked:
            self._wake_consumer()
        if accepted == len(jobs):
            items.clear()
            return None
        del items[: accepted + 1]
        return jobs[accepted]  # refused: the items after it are offered anew

    @enable_ki_protection
    def _offer(self, item: Any) -> Job[Any] | None:
        """Make ``item``'s job and offer it (a plain call, no coroutine): None
        if it was accepted, else the job, to wait for room with."""
        core = self._core
        key = None if self._key is None else self._item_key(item)
        fn, name, limit = self._fn, self._name, self._limit
        done = None if self._ordered else self._done  # (see `_wait_for_result`)
        if core.plain_jobs:  # (`make_job`, inlined: the hot path)
            job: Job[Any] = new_record(Job)
            init_record(job, core, fn, (item,), name, limit, done)
        else:
            job = core.make_job(fn, (item,), name, limit, done, key)
        if self._priority:
            job._priority = self._priority
        if not self._ordered:
            self._in_flight.add(job)  # before it is accepted: it may end at once
        try:
            # (core.accept(), inlined)
            accepted = core.offer(job) if key is None else core.offer_keyed(job)
        except BaseException:
            self._in_flight.discard(job)
            raise
        if not accepted:
            return job
        self._fed_streak += 1
        if self._ordered:  # (delivered in turn)
            self._ready.append(job)
            if self._consumer_parked:
                self._wake_consumer()
        return None

    async def _wait_to_accept(self, job: Job[Any]) -> None:
        """Wait for room for ``job`` (the slow path of `_offer`)."""
        try:
            await self._core.wait_to_accept(job)
        except BaseException:
            self._in_flight.discard(job)
            raise
        self._fed_streak = 0  # it waited: a schedule point
        if self._ordered:  # accepted: an ordered map delivers it in turn
            self._ready.append(job)
            self._wake_consumer()

    def _item_key(self, item: Any) -> Hashable:
        """The key of ``item``'s job, checked as `Pool.submit` checks ``key=``
        (what the key function raises stops the map, as the source's would)."""
        assert self._key is not None
        key = self._key(item)
        if key is not None:
            self._core.check_key(key)
        return key

    def _done(self, job: Job[Any]) -> None:
        """One of the map's jobs resolved (ordered: the oldest, waited for)."""
        if self._ordered:
            # (only a parked consumer waits for the oldest job: asked first)
            if self._consumer_parked and self._ready and self._ready[0] is job:
                self._wake_consumer()
        elif job in self._in_flight:
            self._in_flight.remove(job)
            self._ready.append(job)
            self._wake_consumer()

    def _wake_consumer(self) -> None:
        if self._consumer_parked:
            self._consumer_parked = False
            self._consumer_lot.unpark()

    # -------------------------------------------------------------- consumer

    async def __anext__(self) -> R:
        await checkpoint_if_cancelled()
        if self._busy:
            raise trio.BusyResourceError(
                "another task is already iterating this pool.map() result"
            )
        if self._closed or not self._entered:
            raise StopAsyncIteration
        ready = self._ready
        if ready and ready[0].state not in _PENDING:  # the common case: no waiting
            job = ready.popleft()
            self._taken_streak += 1
            if self._taken_streak >= self._yield_every:
                self._taken_streak = 0
                self._busy = True
                try:
                    await cancel_shielded_checkpoint()
                finally:
                    self._busy = False
        else:
            self._busy = True
            try:
                job = await self._wait_for_result()
            finally:
                self._busy = False
            self._taken_streak = 0  # it waited: a schedule point
        self._free += 1
        if self._feeder_parked and self._free * 2 >= self._window:
            self._feeder_lot.unpark()
        if not self._outcomes and job._failure is None:  # (`_deliver`'s common case)
            return job._value  # type: ignore[return-value]
        return self._deliver(job)

    async def _wait_for_result(self) -> Job[Any]:
        """Park until the next result is ready, and take it (`__anext__`)."""
        ready = self._ready
        while True:
            if self._closed:  # by `aclose` in another task (which woke it)
                raise StopAsyncIteration
            if ready and ready[0].state not in _PENDING:
                return ready.popleft()
            if not ready and not self._in_flight:  # every accepted job delivered
                if self._stop is not None:
                    self._end()
                    raise self._stop
                if self._fed:
                    raise StopAsyncIteration
            if self._feeder_parked:  # never park while the feeder waits for room
                self._feeder_lot.unpark()
            # Ordered: only the oldest job's end concerns the consumer, so it
            # listens to that one only while it waits (a listener left by an
            # interrupt before it parks only calls `_wake_consumer`, harmless).
            oldest = ready[0] if ready and self._ordered else None
            if oldest is not None:
                oldest._listen(self._done)
            self._consumer_parked = True
            try:
                await self._consumer_lot.park()
            finally:
                self._consumer_parked = False
                if oldest is not None:
                    oldest._unlisten(self._done)

    def _deliver(self, job: Job[Any]) -> R:
        if self._outcomes:
            return job._outcome()  # type: ignore[return-value]
        error = job._error
        if error is None:
            return job._value  # type: ignore[return-value]
        self._end()  # as Executor.map: the first failure ends it
        result = job._outcome()
        if isinstance(error, (StopIteration, StopAsyncIteration)):
            raise RuntimeError(  # as PEP 479 does: never a quiet end of the loop
                f"job {job.name!r} raised {type(error).__name__}"
            ) from error
        return result.unwrap()  # type: ignore[no-any-return]

    def _end(self) -> None:
        """Stop: no more items, the jobs not delivered cancelled; a consumer
        waiting in another task stops too (none of those jobs wakes it now)."""
        self._closed = True
        self._feeder_scope.cancel()
        for job in self._owned():
            job.cancel()
        self._wake_consumer()

    def _owned(self) -> list[Job[Any]]:
        """The jobs accepted and not delivered."""
        return [*self._ready, *self._in_flight]

    async def aclose(self) -> None:
        """Cancel the jobs not delivered yet and wait until they are done.

        Called by ``async with`` on the way out; safe to call twice. A
        Ctrl-C while it waits does not end the wait: it is raised once the
        jobs are done.
        """
        interrupts = await self._close()
        if interrupts:
            raise interrupts[0]

    async def _close(self) -> list[BaseException]:
        """`aclose`; return the interrupts that came while it waited."""
        self._end()
        interrupts: list[BaseException] = []
        with trio.CancelScope(shield=True):
            if self._nursery_manager is not None:
                # it accepts no job after this
                await wait_through_interrupts(self._feeder_done.wait, interrupts)
            owned = self._owned()
            self._ready.clear()
            self._in_flight.clear()
            for job in owned:
                job.cancel()
            for job in owned:
                await wait_through_interrupts(job._wait_done, interrupts)
        return interrupts

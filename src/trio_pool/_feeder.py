"""The feeder of `Pool.map`: pull the source's items and offer their jobs.

`MapResults` (``_map.py``) makes one `Feeder` and runs its `Feeder.feed` as
a task in the nursery its ``async with`` owns; the results object delivers,
the feeder pulls. A list, tuple or range is read in batches of as many items
as the pool queues at once (up to the feeder's next schedule point), each
offered in one call (`Feeder._offer_all`); so every item pulled is offered
at once. Other sources (a generator may use the pool as it is pulled) and
other maps pull one by one (`Feeder._feed_each`).

What the two objects share has one owner each, and neither reads the
other's fields (the owner passes what is needed):

* ``ready`` (the accepted jobs not delivered; ordered: in input order) and
  ``in_flight`` (unordered: accepted and not done) are the results
  object's; the feeder only adds the jobs it offers (and takes back one the
  pool never accepted). The results object delivers from them and clears
  them when it closes.
* The window of items pulled and not delivered is split in two counts,
  each written by one side only: the feeder owns the room it holds
  (``Feeder._room``: items it may pull before it asks for more); the results
  object owns the room its consumer gave back since, and the parking lot
  the feeder waits in for it (its ``take_room`` and ``wait_for_room``,
  given to the feeder). So neither side calls the other for each item.
* The consumer's parking lot is the results object's; the feeder wakes the
  consumer with the ``wake_consumer`` it was given.

The job the pool refused, that the feeder waits for room with, is recorded
as it is refused (``Feeder._waiting``), and put where the results object
finds it in the same step as it is accepted: a Ctrl-C between two lines of
the feeder leaves no job behind, neither one accepted that the results
object does not know of (it would run on after the ``async with``) nor one
never accepted that it waits for (the ``async with`` would never end).
"""

# The feeder reads the job record's holder: was the job it waited with accepted?
# pyright: reportPrivateUsage=false

from __future__ import annotations

from collections.abc import AsyncIterable
from itertools import islice
from typing import TYPE_CHECKING, Any, final

import attrs
import trio
from trio.lowlevel import (
    Task,
    cancel_shielded_checkpoint,
    current_task,
    enable_ki_protection,
)

from ._job import NOT_ACCEPTED, Job, init_record, new_record
from ._variants import set_priority

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator

    from ._core import PoolCore

_QUIET_ITERATORS: frozenset[type] = frozenset(
    {type(iter([])), type(iter(())), type(iter(range(0))), type(iter(range(1 << 64)))}
)
"""The iterators a plain map pulls in batches: those of a list, a tuple or a
range, whose pulls run no code of the user's (and never raise). A generator
(or any other source) may use the pool as it is pulled (submit to it, close
it): pulled one by one, each item is offered before the source runs again,
so it is never overtaken nor refused by what the source did after it."""


@attrs.frozen
class MapRequest:
    """What `Pool.map` was asked (its arguments, checked): the feeder's
    work; the results object reads ``ordered`` only."""

    fn: Callable[[Any], Awaitable[Any]]
    """The function each item's job calls with the item."""
    items: Iterable[Any] | AsyncIterable[Any]
    """The source."""
    ordered: bool
    """Whether results come in input order (else as jobs end)."""
    name: str | None
    """Each job's name."""
    limit: float | None
    """Each job's time limit."""
    key: Callable[[Any], Hashable] | None = None
    """The function giving an item's key, if any."""
    priority: int = 0
    """Each job's priority."""


@final
class Feeder:
    """Pulls a map's items from its source and offers their jobs to the pool.

    It owns the source, the room it holds in the window (see the module
    docstring), its streak of offers since its last schedule point, its
    cancel scope and whether it is done (and why it stopped early). What it
    shares with the results object (``ready``, ``in_flight``, the room given
    back, the consumer's parking lot) is the results object's, passed in.
    """

    def __init__(
        self,
        core: PoolCore,
        request: MapRequest,
        *,
        room: int,
        ready: deque[Job[Any]],
        in_flight: set[Job[Any]],
        on_done: Callable[[Job[Any]], None],
        wake_consumer: Callable[[], None],
        take_room: Callable[[], int],
        wait_for_room: Callable[[], Awaitable[int]],
    ) -> None:
        self._core = core
        # (the request's fields copied: one attribute read each on the hot path)
        self._fn = request.fn
        self._items = request.items
        self._async_source = isinstance(request.items, AsyncIterable)
        self._ordered = ordered = request.ordered
        self._name = request.name
        self._limit = request.limit
        self._key = key = request.key
        self._priority = priority = request.priority
        self._plain = ordered and key is None and not priority  # (batches)
        # A schedule point every ``yield_every`` offers (see `Pool`)
        self._yield_every = core.yield_every
        self._fed_streak = 0
        self._room = room  # items it may still pull (the rest is given back)
        self._ready = ready  # the results object's: see the module docstring
        self._in_flight = in_flight  # the results object's
        self._on_done = on_done  # an unordered map's jobs' listener
        self._wake_consumer = wake_consumer
        self._take_room = take_room
        self._wait_for_room = wait_for_room
        self._error: Exception | None = None
        self._waiting: Job[Any] | None = None  # refused: it waits for room with it
        self._task: Task | None = None  # its task, once it runs
        self._finished = trio.Event()
        # The feeder's own scope: the nursery's scope also covers the
        # ``async with`` body, which stopping the feeder must never cancel.
        self._scope = trio.CancelScope()

    @property
    def room(self) -> int:
        """Items it may still pull before it asks for the room given back."""
        return self._room

    @property
    def finished(self) -> bool:
        """Whether it has stopped: the source ended, or something failed."""
        return self._finished.is_set()

    @property
    def error(self) -> Exception | None:
        """What stopped it early (the source's, the key function's or the
        pool's error), if anything did."""
        return self._error

    @property
    def task(self) -> Task | None:
        """Its task, once it runs (the source is pulled in it)."""
        return self._task

    def stop(self) -> None:
        """Pull no more items (its task ends at its next checkpoint)."""
        self._scope.cancel()

    async def wait_finished(self) -> None:
        """Wait until its task has ended (it accepts no job after that)."""
        await self._finished.wait()

    async def feed(self) -> None:
        """Pull items and offer them until the source ends or something fails."""
        self._task = current_task()
        try:
            with self._scope:
                items = self._items
                if isinstance(items, AsyncIterable):
                    await self._feed_each(aiter(items))
                else:  # (a plain map's list, tuple or range in batches)
                    iterator = iter(items)
                    batched = self._plain and type(iterator) in _QUIET_ITERATORS
                    feed = self._feed_batches if batched else self._feed_each
                    await feed(iterator)
        except Exception as exc:
            self._error = exc
        finally:
            self._end()

    @enable_ki_protection
    def _end(self) -> None:
        """The task ends: leave the job it waited with where the results
        object finds it (if accepted) or nowhere (if not), then say so."""
        job = self._waiting
        if job is not None:  # (it stopped while it waited for room)
            self._waiting = None
            if job._holder is NOT_ACCEPTED:
                self._in_flight.discard(job)
            elif self._ordered:  # accepted as it stopped: cancelled, waited for
                self._ready.append(job)
        self._finished.set()
        self._wake_consumer()

    async def _feed_batches(self, items: Iterator[Any]) -> None:
        """Pull a plain map's items in batches the pool queues at once."""
        core = self._core
        batch: list[Any] = []
        while True:
            most = self._yield_every - self._fed_streak
            if self._room < most:  # what was given back may make up the rest
                self._room += self._take_room()
                if not self._room:
                    self._room = await self._wait_for_room()
                most = min(self._room, most)
            wanted = core.batch_room(most)
            try:
                if wanted == 1:
                    batch.append(next(items))
                else:
                    batch.extend(islice(items, wanted))
            except StopIteration:  # (ends the loop below)
                pass
            pulled = len(batch)
            self._room -= pulled
            while batch:
                job = self._offer_all(batch)
                if job is not None:
                    await self._wait_to_accept(job)
            if pulled < wanted:  # the source is exhausted
                return
            if self._fed_streak >= self._yield_every:
                self._fed_streak = 0
                await cancel_shielded_checkpoint()

    async def _feed_each(self, items: Any) -> None:
        """Pull items one by one (an iterator, or an async one) and offer each."""
        while True:
            if not self._room:
                self._room = await self._wait_for_room()
            try:
                item = await anext(items) if self._async_source else next(items)
            except (StopIteration, StopAsyncIteration):
                return
            self._room -= 1  # (taken: not while the source makes it, nor if it raises)
            job = self._offer(item)
            if job is not None:
                await self._wait_to_accept(job)
            elif self._fed_streak >= self._yield_every:
                self._fed_streak = 0
                await cancel_shielded_checkpoint()

    @enable_ki_protection
    def _offer_all(self, items: list[Any]) -> Job[Any] | None:
        """Offer ``items``' jobs in one step (made together: `make_jobs`),
        until the pool refuses one: return it; the items after it stay in the
        list. Only a plain map's batches come here."""
        core = self._core
        jobs = core.make_jobs(self._fn, items, self._name, self._limit)
        accepted = core.offer_all(jobs, self._ready)
        self._fed_streak += accepted
        if accepted:
            self._wake_consumer()  # (if it waits)
        if accepted == len(jobs):
            items.clear()
            return None
        del items[: accepted + 1]
        self._waiting = refused = jobs[accepted]  # the items after it: anew
        return refused

    @enable_ki_protection
    def _offer(self, item: Any) -> Job[Any] | None:
        """Make ``item``'s job and offer it (a plain call, no coroutine): None
        if it was accepted, else the job, to wait for room with."""
        core = self._core
        key = None if self._key is None else self._item_key(item)
        fn, name, limit = self._fn, self._name, self._limit
        done = None if self._ordered else self._on_done
        if core.plain_jobs:  # (`make_job`, inlined: the hot path)
            job: Job[Any] = new_record(Job)
            init_record(job, core, fn, (item,), name, limit, done)
        else:
            job = core.make_job(fn, (item,), name, limit, done, key)
        if self._priority:  # (a map with priorities only)
            set_priority(core, job, self._priority)
        if not self._ordered:
            self._in_flight.add(job)  # before it is accepted: it may end at once
        try:
            # (core.accept(), inlined)
            accepted = core.offer(job) if key is None else core.offer_keyed(job)
        except BaseException:
            self._in_flight.discard(job)
            raise
        if not accepted:
            self._waiting = job
            return job
        self._fed_streak += 1
        if self._ordered:  # (delivered in turn)
            if not self._ready:  # else a waiting consumer waits for the oldest
                self._wake_consumer()  # (if it waits: it runs after this)
            self._ready.append(job)
        return None

    async def _wait_to_accept(self, job: Job[Any]) -> None:
        """Wait for room for ``job`` (the slow path of `_offer`; if it
        fails, `_end` forgets the job)."""
        await self._core.wait_to_accept(job)
        self._accepted_after_wait(job)

    @enable_ki_protection
    def _accepted_after_wait(self, job: Job[Any]) -> None:
        """``job``, waited with, was accepted: an ordered map delivers it in turn."""
        self._waiting = None
        self._fed_streak = 0  # it waited: a schedule point
        if self._ordered:
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

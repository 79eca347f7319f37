"""`Pool.map`: stream an iterable through a pool with bounded memory.

A feeder task (`Feeder`, ``_feeder.py``), in a nursery the ``async with``
block owns, pulls items from the source and submits them; the consumer's
``async for`` takes results from `MapResults` as they are ready. So results
stream while a live source waits for its next item, and the source's pace
never holds back a finished result.

* Ordered: the feeder appends each accepted job to ``ready`` in input order;
  the consumer waits for the oldest one (listening to it only while it
  waits: no callback per job).
* Unordered: each job appends itself to ``ready`` as it resolves (the
  callback is part of the job before the pool accepts it, so no completion
  can be missed).

`MapResults` owns what both sides touch: ``ready``, ``in_flight``, the
consumer's parking lot, the room given back and the lot the feeder waits
for it in; it passes them to its `Feeder` (which owns the room it holds,
see ``_feeder.py``). Never more than twice the pool's size
(``2 * (max_workers + capacity)``) items are pulled and not yet delivered
(the room the feeder holds and the room given back count the rest of that
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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    enable_ki_protection,
)

from ._caller import runs_inside
from ._crew import Worker
from ._exits import exit_error, reraise, wait_through_interrupts
from ._feeder import Feeder
from ._job import QUEUED, RUNNING, Job

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._core import PoolCore
    from ._feeder import MapRequest

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

R = TypeVar("R")

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
        request: MapRequest,
        *,
        outcomes: bool,
    ) -> None:
        self._core = core
        self._ordered = request.ordered
        self._outcomes = outcomes
        # The consumer: a schedule point every ``yield_every`` results (`Pool`)
        self._yield_every = core.yield_every
        self._taken_streak = 0
        self._window = 2 * max(1, core.max_workers + core.capacity)
        self._given_back = 0  # room freed since the feeder last took it
        self._ready: deque[Job[Any]] = deque()  # see the module docstring
        self._in_flight: set[Job[Any]] = set()  # unordered: accepted, not done
        self._feeder_lot = ParkingLot()  # the feeder, waiting for room
        self._consumer_lot = ParkingLot()  # the consumer, waiting for a result
        self._consumer_parked = False
        self._feeder_parked = False
        self._feeder = Feeder(
            core,
            request,
            room=self._window,
            ready=self._ready,
            in_flight=self._in_flight,
            on_done=self._done,
            wake_consumer=self._wake_consumer,
            take_room=self._take_room,
            wait_for_room=self._wait_for_room,
        )
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
            self._feeder.feed, name=f"trio_pool map feeder of {self._core.name!r}"
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
        fed = self._feeder.finished
        state = "closed" if self._closed else "fed" if fed else "feeding"
        return (
            f"<trio_pool.MapResults of pool {self._core.name!r} {state}, "
            f"{self.pulled_ahead} pulled ahead>"
        )

    @property
    def pulled_ahead(self) -> int:
        """Items taken from the source and not yet delivered."""
        return self._window - self._feeder.room - self._given_back

    # ------------------------------------------------- the feeder's room

    def _take_room(self) -> int:
        """Take the room given back (the feeder's, from now on)."""
        given_back = self._given_back
        self._given_back = 0
        return given_back

    async def _wait_for_room(self) -> int:
        """Park the feeder (out of room) until room is given back; take it."""
        while not self._given_back:
            self._feeder_parked = True
            try:
                await self._feeder_lot.park()
            finally:
                self._feeder_parked = False
        return self._take_room()

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
        self._given_back += 1  # (the feeder, parked, holds no room)
        if self._feeder_parked and self._given_back * 2 >= self._window:
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
                error = self._feeder.error
                if error is not None:
                    self._end()
                    raise error
                if self._feeder.finished:
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
        self._feeder.stop()
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

        Raises:
            RuntimeError: called by the map's source (as it is pulled) or
                by one of the jobs it waits for: it would wait for itself.
        """
        self._refuse_waiting_for_itself()
        interrupts = await self._close()
        if interrupts:
            raise interrupts[0]

    def _refuse_waiting_for_itself(self) -> None:
        """`aclose` waits for the feeder and the jobs: never inside one of
        them (nor in a task one of them started)."""
        tasks = [self._feeder.task]
        for job in self._owned():
            holder = job._holder
            if isinstance(holder, Worker):  # (running, or handed over)
                tasks.append(holder.task)
        if not runs_inside(tasks):
            return
        raise RuntimeError(
            f"aclose() of a pool.map() result of pool {self._core.name!r} was "
            "called by its source or one of its jobs, and would wait for "
            "itself; raise an exception there to end the map"
        )

    async def _close(self) -> list[BaseException]:
        """`aclose`; return the interrupts that came while it waited."""
        self._end()
        interrupts: list[BaseException] = []
        with trio.CancelScope(shield=True):
            if self._nursery_manager is not None:
                # it accepts no job after this
                await wait_through_interrupts(self._feeder.wait_finished, interrupts)
            owned = self._owned()
            self._ready.clear()
            self._in_flight.clear()
            for job in owned:
                job.cancel()
            for job in owned:
                await wait_through_interrupts(job._wait_done, interrupts)
        return interrupts

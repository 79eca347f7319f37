"""`Pool.map`: stream an iterable through a pool with bounded memory.

A feeder task, in a nursery the ``async with`` block owns, pulls items from
the source and submits them; the consumer's ``async for`` takes results from
a memory channel. So results stream while a live source waits for its next
item, and the source's pace never holds back a finished result.

* Ordered: the feeder sends each accepted job to the channel in input order;
  the consumer waits for the oldest one.
* Unordered: each job sends itself to the channel as it resolves (the
  callback is part of its record before the pool accepts it, so no
  completion can be missed).

Never more than the pool's size (``max_workers + capacity``) items are
pulled and not yet delivered. Leaving the ``async with`` (by ``break``, an
exception or cancellation) stops the feeder, cancels the jobs not delivered
yet and waits until they are done.
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, final

import attrs
import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from ._errors import leaves

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from typing_extensions import Self

    from ._checks import UseDefault
    from ._core import PoolCore
    from ._job import Job

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

R = TypeVar("R")


@attrs.frozen
class _Stop:
    """Sent by the feeder when it cannot go on: the source or a submit raised."""

    error: BaseException


@final
class MapResults(AsyncIterator[R]):
    """The results of `Pool.map`; use it as ``async with ... as results``.

    Iterate it with ``async for``, from one task at a time (a second task
    gets `trio.BusyResourceError`). Each ``__anext__`` is a checkpoint.
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
        timeout: float | UseDefault | None,
    ) -> None:
        self._core = core
        self._fn = fn
        self._items = items
        self._ordered = ordered
        self._outcomes = outcomes
        self._name = name
        self._timeout = timeout
        self._window = max(1, core.max_workers + core.capacity)
        self._room = trio.Semaphore(self._window)  # items not delivered yet
        self._send, self._receive = trio.open_memory_channel[Any](math.inf)
        self._owned: set[Job[Any]] = set()  # accepted, not delivered
        self._pending = 0  # submitted, not yet sent to the channel
        self._fed = False  # the feeder is done (unordered: it sent its last)
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None
        self._entered = False
        self._closed = False
        self._busy = False
        self._feeder_done = trio.Event()
        # The feeder's own scope: the nursery's scope also covers the body,
        # which stopping the feeder must never cancel.
        self._feeder_scope = trio.CancelScope()

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a pool.map() result can be entered only once")
        self._core.check_caller("map")
        self._entered = True
        self._nursery_manager = trio.open_nursery()
        self._nursery = nursery = await self._nursery_manager.__aenter__()
        nursery.start_soon(
            self._feed, name=f"trio_pool map feeder of {self._core.name!r}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
        try:
            await self._nursery_manager.__aexit__(exc_type, exc_value, traceback)
        except BaseExceptionGroup as group:
            found = leaves(group)
            if exc_value is not None and all(leaf is exc_value for leaf in found):
                return  # the body's own exception goes on as itself
            if len(found) == 1:
                raise found[0] from None
            raise

    def __aiter__(self) -> Self:
        if not self._entered:
            raise RuntimeError(
                "use 'async with pool.map(...) as results:' and iterate over "
                "results, so that the jobs cannot outlive the loop"
            )
        return self

    @property
    def pulled_ahead(self) -> int:
        """Items taken from the source and not yet delivered."""
        return self._window - self._room.value

    # ---------------------------------------------------------------- feeder

    async def _feed(self) -> None:
        """Pull items and submit them until the source ends or something fails."""
        core = self._core
        room = self._room
        try:
            with self._feeder_scope:
                await self._feed_from_source(core, room)
        except Exception as exc:
            self._send.send_nowait(_Stop(exc))
        finally:
            self._feeder_done.set()
        self._fed_all()

    async def _feed_from_source(self, core: PoolCore, room: trio.Semaphore) -> None:
        """Take room for an item before pulling it, so the window bounds memory."""
        if isinstance(self._items, AsyncIterable):
            source = aiter(self._items)
            while True:
                await self._acquire_room(room)
                try:
                    item = await anext(source)
                except StopAsyncIteration:
                    room.release()
                    break
                await self._submit(core, item)
        else:
            items = iter(self._items)
            while True:
                await self._acquire_room(room)  # before the item is pulled
                try:
                    item = next(items)
                except StopIteration:
                    room.release()
                    break
                await self._submit(core, item)

    @staticmethod
    async def _acquire_room(room: trio.Semaphore) -> None:
        try:
            room.acquire_nowait()
        except trio.WouldBlock:
            await room.acquire()

    async def _submit(self, core: PoolCore, item: Any) -> None:
        on_done = None if self._ordered else self._job_done
        job = core.new_job("map", self._fn, (item,), self._name, self._timeout, on_done)
        self._pending += 1
        try:
            await core.accept(job)
        except BaseException:
            self._pending -= 1
            raise
        if not job.done:  # unordered: it may have been delivered already
            self._owned.add(job)
        if self._ordered:
            self._pending -= 1
            self._send.send_nowait(job)

    def _job_done(self, job: Job[Any]) -> None:
        """Unordered mode: called by the core as the job resolves."""
        self._pending -= 1
        if not self._closed:
            self._send.send_nowait(job)
        if self._fed and not self._pending:
            self._send.close()

    def _fed_all(self) -> None:
        self._fed = True
        if self._ordered or not self._pending:
            self._send.close()

    # -------------------------------------------------------------- consumer

    async def __anext__(self) -> R:
        await checkpoint_if_cancelled()
        if self._busy:
            raise trio.BusyResourceError(
                "another task is already iterating this pool.map() result"
            )
        if self._closed or not self._entered:
            raise StopAsyncIteration
        self._busy = True
        try:
            return await self._next()
        finally:
            self._busy = False

    async def _next(self) -> R:
        core = self._core
        try:
            got = self._receive.receive_nowait()
        except trio.WouldBlock:
            try:
                got = await self._receive.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        else:
            if core.yield_due():
                await cancel_shielded_checkpoint()
        if isinstance(got, _Stop):
            self._end()
            raise got.error
        job: Job[Any] = got
        if not job.done:  # ordered: it stays owned (cancellable) while we wait
            await core.wait_done(job)
        self._owned.discard(job)
        self._room.release()
        return self._deliver(job)

    def _deliver(self, job: Job[Any]) -> R:
        result = job.outcome()
        if self._outcomes:
            return result  # type: ignore[return-value]
        error = job.error
        if error is None:
            return job.value  # type: ignore[return-value]
        self._end()  # as Executor.map: the first failure ends it
        if isinstance(error, (StopIteration, StopAsyncIteration)):
            raise RuntimeError(
                f"job {job.name!r} raised {type(error).__name__}"
            ) from error  # as PEP 479 does: never a quiet end of the loop
        return result.unwrap()  # type: ignore[no-any-return]

    def _end(self) -> None:
        """Stop: no more items, the jobs not delivered cancelled."""
        self._closed = True
        self._feeder_scope.cancel()
        for job in list(self._owned):
            self._core.cancel(job)

    async def aclose(self) -> None:
        """Cancel the jobs not delivered yet and wait until they are done.

        Called by ``async with`` on the way out; safe to call twice.
        """
        self._end()
        with trio.CancelScope(shield=True):
            if self._nursery is not None:
                await self._feeder_done.wait()  # it accepts no job after this
            owned = list(self._owned)
            self._owned.clear()
            for job in owned:
                self._core.cancel(job)
            for job in owned:
                await self._core.wait_done(job)

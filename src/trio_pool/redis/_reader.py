"""The reader: takes entries (new ones with ``XREADGROUP``, and every
``idle_time / 2`` those idle for ``idle_time`` with ``XAUTOCLAIM``) as long as
the pool has room, and runs each as a job that hands its entry to the settler.
Each read of new entries first acknowledges the entries whose jobs succeeded
meanwhile, in the same round trip (a pipeline: ``XACK``, then a non-blocking
``XREADGROUP``); only when it finds nothing new does it block, in a plain
``XREADGROUP``.

With no room, it waits on the pool's notification (`Pool.wait_for_room`),
whoever fills the pool: nothing is polled.

Its blocking reads last at most `READ_SLICE_MS` and a stop waits for the read
on its way (up to `STOP_WAIT`) rather than cancel it: coredis 6.9 loses a
connection-pool slot per cancelled command, and a client whose consumers were
stopped some 60 times would hang.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

import trio

import trio_pool

from .._log import DEBUG, INFO, log
from ._delivery import Delivery
from ._ledger import ConsumerState, Held, Verdict, describe
from ._redis_calls import FIRST_ID, run_script, waited_for_a_connection
from ._scripts import parse_claim

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from coredis.response.types import StreamEntry

_T = TypeVar("_T")
_Reply = dict[Any, tuple["StreamEntry", ...]]


class _BytesEntry(Protocol):
    """A `StreamEntry` read with the client's decoding off."""

    @property
    def identifier(self) -> bytes: ...
    @property
    def field_values(self) -> dict[bytes, bytes]: ...


_BytesReply = dict[bytes, tuple[_BytesEntry, ...]]

READ_SLICE_MS: Final = 500
"""The longest blocking read, in milliseconds: a stop waits for it to end."""
MIN_CAPACITY_TO_PAUSE: Final = 2
"""The smallest pool capacity for which the reader submits a batch in parts
of ``capacity + 1`` jobs (`_let_workers_take`); below it, a pause saves no
worker wake-up."""
STOP_WAIT: Final = READ_SLICE_MS / 1000 + 1.0
"""Seconds a stop waits for the reader's Redis call on its way before it
cancels it (Redis slow or hung; the client then loses a connection slot)."""


class ReaderMixin(ConsumerState):
    """The reader task and the jobs it submits."""

    def start(self) -> None:
        """Mark the consumer reading (its tasks start right after)."""
        self._reading = True

    def stop(self) -> None:
        """Stop the reader (twice does nothing): at once if it waits for room,
        else once its Redis call on its way returns (within `STOP_WAIT`)."""
        self._stopping = True
        if self._reader_in_redis:
            scope = self._reader_scope
            scope.deadline = min(scope.deadline, trio.current_time() + STOP_WAIT)
        else:
            self._reader_scope.cancel()

    async def _reader_call(self, command: Callable[[], Awaitable[_T]]) -> _T:
        """A Redis call of the reader (retried while Redis is away), which a
        stop lets end rather than cancel."""
        self._reader_in_redis = True
        try:
            return await self._redis.call(command)
        finally:
            self._reader_in_redis = False

    async def run_reader(self) -> None:
        """The reader task: take entries while there is room, until stopped."""
        with self._client.decoding(False):  # fields as the bytes they are
            next_scan = trio.current_time()
            cursor = FIRST_ID
            try:
                with self._reader_scope:
                    while not self._stopping:
                        self._acks_ride = True
                        room = await self._wait_for_room()
                        now = trio.current_time()
                        if room is None:
                            pool_open = False
                        elif now >= next_scan:
                            scanned = await self._reclaim(cursor, room)
                            pool_open = scanned is not None
                            cursor = scanned or FIRST_ID
                            if cursor == FIRST_ID:  # the scan went round
                                next_scan = now + self._idle_time / 2
                        else:
                            block = max(1, math.ceil((next_scan - now) * 1000))
                            block = min(block, self._longest_block_ms, READ_SLICE_MS)
                            pool_open = await self._read_new(room, block)
                        if not pool_open:
                            log(
                                INFO,
                                "stream consumer %r: the pool closed; it stops reading",
                                self._name,
                            )
                            return
            finally:
                self._reading = False
                self._no_acks_ride()
                self._release_unsubmitted()
                self._stopped.set()

    def _room_now(self) -> int:
        stats = self._pool.statistics()
        self._pool_capacity = stats.capacity
        if stats.closed:
            return -1
        accepted = stats.queued + stats.running + stats.waiting_submitters
        return max(0, stats.max_workers + stats.capacity - accepted)

    async def _wait_for_room(self) -> int | None:
        """The room in the pool, once there is some; None once it has closed."""
        while True:
            room = self._room_now()
            if room < 0:
                return None
            if room > 0:
                return room
            try:  # ours or others' jobs fill the pool: it says when room appears
                await self._pool.wait_for_room()
            except trio_pool.PoolClosed:
                return None

    def _no_acks_ride(self) -> None:
        """The reader will not read soon: the settler acknowledges."""
        self._acks_ride = False
        if self._to_settle:
            self._settle_wanted.unpark_all()

    def _take_acks(self) -> list[Held]:
        """The acknowledgements queued, if nothing else is (else the settler
        settles them all, in order)."""
        queued = self._to_settle
        if not queued or any(held.verdict is not Verdict.ACK for held in queued):
            return []
        acks = list(queued)
        queued.clear()
        return acks

    async def _read_new(self, room: int, block_ms: int) -> bool:
        """Acknowledge what succeeded and read new entries in one round trip;
        block in a plain read only if there were none."""
        acks = self._take_acks()
        ids = [held.id for held in acks]
        stream, group = self._stream, self._group

        async def ack_and_read() -> tuple[bool, _Reply | None]:
            """(whether Redis answered, the entries read)."""
            try:
                async with self._client.pipeline(transaction=False) as pipeline:
                    if ids:
                        pipeline.xack(stream, group, ids)
                    read = pipeline.xreadgroup(
                        group, self._name, {stream: ">"}, count=room
                    )
                    # Fields as the bytes they are: the client's decoding(False)
                    # does not reach a pipeline's commands.
                    read.decode = False
                return True, await read
            except TimeoutError as error:  # the acknowledgements go to the settler
                self._read_timed_out(error)
                return False, None

        try:
            answered, reply = await self._reader_call(ack_and_read)
        except BaseException:
            self._give_back(acks)
            raise
        if not answered:
            self._give_back(acks)
            return True
        self._reads_with_acks += 1  # (the settler waits for such reads)
        # The new entries are recorded before the acknowledged ones are
        # forgotten: the books never look empty in between (`_forget` wakes
        # `StreamConsumer.join` only when nothing is held).
        taken = self._hold_read(reply) if reply else []
        if acks:
            self._acked += len(acks)
            self._forget(acks)
        if taken:
            return await self._submit_taken(taken)
        if self._stopping:
            return True
        self._no_acks_ride()
        return await self._read_blocking(room, block_ms)

    async def _read_blocking(self, room: int, block_ms: int) -> bool:
        """Wait up to ``block_ms`` for new entries (the settler acknowledges
        meanwhile)."""

        async def read() -> _Reply | None:
            try:
                return await self._client.xreadgroup(
                    self._group,
                    self._name,
                    {self._stream: ">"},
                    count=room,
                    block=block_ms,
                )
            except TimeoutError as error:
                self._read_timed_out(error)
                return None

        reply = await self._reader_call(read)
        if not reply:
            return True
        return await self._submit_taken(self._hold_read(reply))

    def _hold_read(self, reply: _Reply) -> list[Held]:
        """Record the entries of an ``XREADGROUP`` reply (bytes) as held;
        return them, for `_submit_taken`."""
        taken: list[Held] = []
        # Bytes: the client does not decode replies here.
        for entries in cast("_BytesReply", reply).values():
            for entry in entries:
                named = entry.field_values
                # (an id is ASCII: the milliseconds, a dash, the sequence)
                identifier = entry.identifier.decode("ascii")
                taken.append(Held(identifier, named.items(), 1, named))
        self._read += len(taken)
        self._hold(taken)
        return taken

    def _hold(self, taken: list[Held]) -> None:
        """Record the entries taken as held (in hand)."""
        held_by_id = self._held
        for held in taken:
            held_by_id[held.id] = held
        self._in_hand += len(taken)
        self._changes += 1

    def _read_timed_out(self, error: TimeoutError) -> None:
        """A read timed out in the client. If no slot of the client's pool
        came free in time, re-raise ``error``: retried, and counted as an
        outage. Else the client's stream_timeout ran out first (Redis slow to
        answer): an empty read; what Redis delivered to it, if anything,
        stays pending and is reclaimed after the idle time."""
        if waited_for_a_connection(error):
            raise error
        log(
            DEBUG,
            "stream consumer %r: a read timed out in the client; read again",
            self._name,
        )

    async def _reclaim(self, cursor: str, room: int) -> str | None:
        arguments: list[str | bytes | int] = [
            self._group, self._name, self._idle_ms, cursor, room,
        ]  # fmt: skip
        settled_meanwhile: dict[str, int] = {}
        self._settled_during_claim = settled_meanwhile
        try:
            reply = await self._reader_call(
                lambda: run_script(self._claim, [self._stream], arguments)
            )
        finally:
            self._settled_during_claim = None
        cursor, claimed = parse_claim(reply)
        taken: list[Held] = []
        own: list[tuple[str, int]] = []  # (id, its delivery count before the claim)
        for entry in claimed:
            held = self._held.get(entry.id)
            if held is not None:  # ours already: we were too slow to renew
                own.append((entry.id, held.deliveries))
            elif entry.id in settled_meanwhile:  # settled while the claim ran
                own.append((entry.id, settled_meanwhile[entry.id]))
            else:
                taken.append(Held(entry.id, entry.fields, entry.deliveries))
        if own:
            log(
                DEBUG,
                "stream consumer %r: the claim took %d entries of its own back",
                self._name,
                len(own),
            )
            await self._reader_call(lambda: self._restore_counts(own))
        if taken:
            self._reclaimed += len(taken)
            log(
                DEBUG,
                "stream consumer %r: reclaimed %d entries idle for %ss",
                self._name,
                len(taken),
                self._idle_time,
            )
            self._hold(taken)
            if not await self._submit_taken(taken):
                return None
        return cursor

    async def _restore_counts(self, entries: list[tuple[str, int]]) -> None:
        """Set back the delivery count of entries a claim of this consumer's
        took from itself (it counted a delivery that never happened), if they
        are still pending with it (their idle time restarts too)."""
        arguments: list[str | bytes | int] = [self._group, self._name]
        for identifier, deliveries in entries:
            arguments += [identifier, deliveries]
        await run_script(self._renew, [self._stream], arguments)

    async def _submit_taken(self, taken: list[Held]) -> bool:
        """Submit the job of each entry just recorded as held (or judge it at
        once: over the delivery limit, or undecodable).

        Returns False if the pool closed (the entries not submitted stay in
        hand, and are released as the reader stops).
        """
        if self._stopping:  # a read that returned after stop(): leave them pending
            for held in taken:
                self._judge(held, Verdict.RELEASE, "", "")
            return True
        submit_nowait = self._pool.submit_nowait
        job_name = self._job_name
        capacity = self._pool_capacity
        per_wake = capacity + 1 if capacity >= MIN_CAPACITY_TO_PAUSE else 0
        since_pause = 0
        paused = False
        last_job: trio_pool.Job[object] | None = None  # the last submitted
        for held in taken:
            if since_pause == per_wake:
                since_pause = 0
                paused = True
                await _let_workers_take(last_job)
            if held.deliveries > self._max_deliveries:
                self._judge(
                    held,
                    Verdict.DEAD,
                    "delivery_limit",
                    f"delivered {held.deliveries} times without an acknowledgement "
                    f"(max_deliveries={self._max_deliveries})",
                )
                continue
            if held.payload_error is not None:
                self._judge(held, Verdict.DEAD, "PayloadError", held.payload_error)
                continue
            since_pause += 1
            try:  # the common case, with no coroutine per entry
                held.job = last_job = submit_nowait(_run_job, self, held, name=job_name)
            except trio_pool.PoolOverloaded:  # others took the room meanwhile
                if not await self._submit(held):
                    return False
                last_job = held.job
            except trio_pool.PoolClosed:
                return False
        if paused:  # and once the last part is taken, the reader looks for room
            await _let_workers_take(last_job)
        return True

    async def _submit(self, held: Held) -> bool:
        """Submit ``held``'s job, waiting for room; False if the pool closed."""
        try:
            held.job = await self._pool.submit(
                _run_job, self, held, name=self._job_name
            )
        except trio_pool.PoolClosed:
            return False
        return True

    def _release_unsubmitted(self) -> None:
        for held in list(self._held.values()):
            if held.verdict is None and held.job is None:
                self._judge(held, Verdict.RELEASE, "", "")

    async def run_job(self, held: Held) -> object:
        """The job: the handler, then hand the entry to the settler."""
        delivery = Delivery(held.payload, held.id, self._stream, held.deliveries)
        try:
            result = await self._handler(delivery)
        except BaseException as exc:
            self._job_ended(held, exc)
            raise
        if held.verdict is None:  # (`_job_ended` of a success, inlined)
            self._judge(held, Verdict.ACK, "", "")
        return result

    def _job_ended(
        self, held: Held, error: BaseException | None, *, ran: bool = True
    ) -> None:
        if held.verdict is not None:
            return
        if not ran:
            self._judge(held, Verdict.RELEASE, "", "")
        elif error is None:
            self._judge(held, Verdict.ACK, "", "")
        elif isinstance(error, Exception):
            error_type, message = describe(error)
            last = held.deliveries >= self._max_deliveries
            self._judge(
                held, Verdict.DEAD if last else Verdict.RETRY, error_type, message
            )
        else:
            # Cancelled: a time limit, our shutdown, or the pool's. The
            # settler asks the job which, once it has ended.
            self._judge(held, Verdict.RETRY, "cancelled", "cancelled")


async def _let_workers_take(last_job: trio_pool.Job[object] | None) -> None:
    """Let the worker woken for the jobs just submitted take the queued ones,
    until ``last_job``, the last submitted, has left the queue (first in,
    first out): a schedule point, a second one if the worker had not run yet.

    The reader submits a batch larger than the queue in parts of
    ``capacity + 1`` jobs, with this between them: beyond a full queue, the
    pool hands each job to one more idle worker, a task step each (15 per
    batch of 32 into 16 workers and capacity 16, against about 3). And after
    the last part: the next read waits for the room the whole batch frees,
    not half of it. Not a cancel point: a stop() leaves the batch submitted,
    as when no pause is needed.
    """
    for _ in range(2):
        await trio.lowlevel.cancel_shielded_checkpoint()
        if last_job is None or last_job.state is not trio_pool.JobState.QUEUED:
            return


_run_job: Final = ReaderMixin.run_job
"""The job, a plain function of (consumer, entry): the pool checks a function
at once, a bound method (made anew at each access) at some cost."""

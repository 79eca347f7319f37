"""The reader: takes entries (new ones with ``XREADGROUP``, and every
``idle_time / 2`` those idle for ``idle_time`` with ``XAUTOCLAIM``) as long as
the pool has room, and runs each as a job that hands its entry to the settler.

With no room, it waits on the pool's notification (`Pool.wait_for_room`),
whoever fills the pool: nothing is polled.
"""

from __future__ import annotations

import math

import trio

import trio_pool

from .._log import DEBUG, INFO, log
from ._delivery import Delivery
from ._ledger import ConsumerState, Held, Verdict, describe
from ._payload import PayloadError, decode_job, raw, text
from ._redis_calls import FIRST_ID, run_script
from ._scripts import parse_claim


class ReaderMixin(ConsumerState):
    """The reader task and the jobs it submits."""

    def start(self) -> None:
        """Mark the consumer reading (its tasks start right after)."""
        self._reading = True

    async def run_reader(self) -> None:
        """The reader task: take entries while there is room, until stopped."""
        with self._client.decoding(False):  # fields as the bytes they are
            next_scan = trio.current_time()
            cursor = FIRST_ID
            try:
                with self._reader_scope:
                    while True:
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
                            block = min(block, self._longest_block_ms)
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
                self._release_unsubmitted()
                self._stopped.set()

    def _room_now(self) -> int:
        stats = self._pool.statistics()
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

    async def _read_new(self, room: int, block_ms: int) -> bool:
        try:
            reply = await self._client.xreadgroup(
                self._group,
                self._name,
                {self._stream: ">"},
                count=room,
                block=block_ms,
            )
        except TimeoutError:
            # The client's stream_timeout ran out first (Redis slow to
            # answer): an empty read. What Redis delivered to it, if
            # anything, stays pending and is reclaimed after the idle time.
            log(
                DEBUG,
                "stream consumer %r: a read timed out in the client; read again",
                self._name,
            )
            return True
        if not reply:
            return True
        taken: list[Held] = []
        for entries in reply.values():
            for entry in entries:
                fields = tuple(
                    (raw(key), raw(value)) for key, value in entry.field_values.items()
                )
                taken.append(Held(text(entry.identifier), fields, 1))
        self._read += len(taken)
        return await self._take(taken)

    async def _reclaim(self, cursor: str, room: int) -> str | None:
        reply = await run_script(
            self._claim,
            [self._stream],
            [self._group, self._name, self._idle_ms, cursor, room],
        )
        cursor, claimed = parse_claim(reply)
        taken: list[Held] = []
        for entry in claimed:
            if entry.id in self._held:  # ours already: we were too slow to renew
                log(
                    DEBUG,
                    "stream consumer %r: reclaimed its own entry %s",
                    self._name,
                    entry.id,
                )
                continue
            taken.append(Held(entry.id, entry.fields, entry.deliveries))
        if taken:
            self._reclaimed += len(taken)
            log(
                DEBUG,
                "stream consumer %r: reclaimed %d entries idle for %ss",
                self._name,
                len(taken),
                self._idle_time,
            )
            if not await self._take(taken):
                return None
        return cursor

    async def _take(self, taken: list[Held]) -> bool:
        """Record the entries taken, then submit each (or judge it at once).

        Returns False if the pool closed (the entries not submitted stay in
        hand, and are released as the reader stops).
        """
        for held in taken:
            self._held[held.id] = held
            self._in_hand += 1
        self._changes += 1
        for held in taken:
            if held.deliveries > self._max_deliveries:
                self._judge(
                    held,
                    Verdict.DEAD,
                    "delivery_limit",
                    f"delivered {held.deliveries} times without an acknowledgement "
                    f"(max_deliveries={self._max_deliveries})",
                )
                continue
            try:
                held.payload = decode_job(held.fields)
            except PayloadError as exc:
                self._judge(held, Verdict.DEAD, "PayloadError", str(exc))
                continue
            if not await self._submit(held):
                return False
        return True

    async def _submit(self, held: Held) -> bool:
        pool = self._pool
        try:
            try:
                job = pool.submit_nowait(self._run_job, held, name=self._job_name)
            except trio_pool.PoolOverloaded:  # others took the room meanwhile
                job = await pool.submit(self._run_job, held, name=self._job_name)
        except trio_pool.PoolClosed:
            return False
        held.job = job
        self._job_ids[job] = held.id
        return True

    def _release_unsubmitted(self) -> None:
        for held in list(self._held.values()):
            if held.verdict is None and held.job is None:
                self._judge(held, Verdict.RELEASE, "", "")

    async def _run_job(self, held: Held) -> object:
        """The job: the handler, then hand the entry to the settler."""
        delivery = Delivery(
            payload=held.payload,
            id=held.id,
            stream=self._stream,
            deliveries=held.deliveries,
        )
        try:
            result = await self._handler(delivery)
        except BaseException as exc:
            self._job_ended(held, exc)
            raise
        self._job_ended(held, None)
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

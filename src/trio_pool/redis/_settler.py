"""The settler: acknowledges the entries whose job succeeded (in batches: all
that ended while the previous ``XACK`` was on its way) unless the reader takes
them with its next read (`ACK_RIDE_LIMIT`), dead-letters those whose last
allowed delivery failed, and leaves the other failures pending."""

from __future__ import annotations

import math
from typing import Final

import trio

import trio_pool

from .._log import DEBUG, WARNING, log
from ._delivery import dead_letter_fields
from ._ledger import ConsumerState, Held, Verdict
from ._redis_calls import run_script

ACK_RIDE_LIMIT: Final = 0.05
"""Seconds the settler leaves acknowledgements to the reader's next read
(one round trip for both) before it sends them itself (the
reader waits for room that others' jobs took): an acknowledgement waits for
the reader at most twice this (the reader read during the first period, just
before it was queued)."""
LOST_REPLY_MARGIN_MS: Final = 60_000
"""How much further back than its first call a retried dead letter looks for
its own work (a call whose reply was lost): the clocks of Redis and of the
consumer may drift apart during an outage."""


class SettlerMixin(ConsumerState):
    """The settler task."""

    async def run_settler(self) -> None:
        """The settler task: acknowledge, dead-letter, or leave pending."""
        with self._client.decoding(False):  # fields as the bytes they are
            self._settler_running = True
            try:
                with self._settler_scope:  # cancelled by a shutdown out of time
                    while True:
                        await self._wait_for_work()
                        if not self._to_settle:  # closed
                            return
                        await self._settle_some()
            finally:
                self._settler_running = False
                self._settled.unpark_all()

    async def _wait_for_work(self) -> None:
        """Wait until there is something to settle (or nothing, closed) that
        the reader does not take with its next read in time."""
        while not self._to_settle or self._acks_wait_for_reader():
            if not self._to_settle:
                if self._settle_closed:
                    return
                await self._settle_wanted.park()
                continue
            # Not woken by each acknowledgement meanwhile (`_judge`): one
            # wake-up per time limit, not per batch of jobs.
            reads = self._reads_with_acks
            self._settler_riding = True
            try:
                with trio.move_on_after(ACK_RIDE_LIMIT) as ride:
                    await self._settle_wanted.park()
            finally:
                self._settler_riding = False
            if ride.cancelled_caught and reads == self._reads_with_acks:
                return  # the reader did not read in time

    async def _settle_some(self) -> None:
        """Settle every entry queued now; put back those it could not."""
        batch = list(self._to_settle)
        self._to_settle.clear()
        try:
            await self._settle(batch)
        except BaseException:
            held = self._held
            self._to_settle.extendleft(reversed([h for h in batch if h.id in held]))
            raise

    async def _settle(self, batch: list[Held]) -> None:
        acks = [held for held in batch if held.verdict is Verdict.ACK]
        if acks:
            ids = [held.id for held in acks]
            await self._redis.call(
                lambda: self._client.xack(self._stream, self._group, ids)
            )
            self._acked += len(acks)
            self._forget(acks)
        for held in batch:
            if held.verdict is Verdict.ACK:
                continue
            if held.job is not None:
                await self._retrieve(held)
            if held.verdict is Verdict.DEAD:
                await self._move_to_dead_letters(held)
            elif held.verdict is Verdict.RETRY:
                self._count_failure(held)
                log(
                    DEBUG,
                    "stream consumer %r: entry %s failed (%s: %s) on delivery %d "
                    "of %d; left pending for a retry",
                    self._name,
                    held.id,
                    held.error_type,
                    held.error,
                    held.deliveries,
                    self._max_deliveries,
                )
            else:
                self._released += 1
            self._forget([held])

    async def _retrieve(self, held: Held) -> None:
        """Take a job's failure (the pool does not warn about it then) and,
        for a cancelled one, tell a time-out (a failure) from a cancellation."""
        job = held.job
        assert job is not None
        await job.wait()
        if held.error_type != "cancelled":
            return
        if job.state is trio_pool.JobState.TIMED_OUT:
            held.error_type = "timeout"
            held.error = f"job {job.name!r} ran past its time limit"
            if held.deliveries >= self._max_deliveries:
                held.verdict = Verdict.DEAD
        else:
            held.verdict = Verdict.RELEASE

    async def _move_to_dead_letters(self, held: Held) -> None:
        meta = dead_letter_fields(
            source=self._stream,
            source_id=held.id,
            group=self._group,
            consumer=self._name,
            deliveries=held.deliveries,
            error_type=held.error_type,
            error=held.error,
        )
        fields = [part for pair in held.fields for part in pair]
        keys = [self._stream, self._dead_letter_stream]
        first_call: float | None = None

        async def move() -> object:
            """One call of the script; a retry looks back for its own work
            (its reply lost with the connection) since the first call."""
            nonlocal first_call
            lookback = 0
            if first_call is None:
                first_call = trio.current_time()
            else:
                elapsed = trio.current_time() - first_call
                lookback = LOST_REPLY_MARGIN_MS + math.ceil(elapsed * 1000)
            arguments: list[str | bytes | int] = [
                self._group, self._name, held.id, lookback, len(meta), *meta, *fields
            ]  # fmt: skip
            return await run_script(self._dead_letter, keys, arguments)

        moved = await self._redis.call(move)
        if moved:
            self._dead_lettered += 1
            log(
                WARNING,
                "stream consumer %r: entry %s moved to %r after %d deliveries: %s: %s",
                self._name,
                held.id,
                self._dead_letter_stream,
                held.deliveries,
                held.error_type,
                held.error,
            )
        else:  # another consumer took it over meanwhile: its call
            self._count_failure(held)

    def _count_failure(self, held: Held) -> None:
        """Count an entry whose job failed, left pending: a time-out apart,
        as the pool counts them."""
        if held.job is not None and held.job.state is trio_pool.JobState.TIMED_OUT:
            self._timed_out += 1
        else:
            self._failed += 1

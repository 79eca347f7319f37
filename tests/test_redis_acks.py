"""Where the stream consumer's acknowledgements go (a real redis-server).

The reader acknowledges the entries whose jobs succeeded with its next read,
in one round trip (a pipeline: ``XACK``, then ``XREADGROUP``); the settler
sends them itself when the reader cannot read soon (others took the pool's
room). Real network IO needs the real clock: the tests wait on events or on
Redis, under `trio.fail_after` (a safety net), and assert only what holds on
a busy machine.
"""

from __future__ import annotations

import collections

import coredis
import pytest
import trio
import trio.testing

import trio_pool
from trio_pool.redis import Delivery, add_jobs

from .redis_server import open_test_consumer

LIMIT = 60
"""Seconds any one wait may take before the test fails (a safety net)."""


async def test_acknowledgements_ride_with_the_reads(
    client: coredis.Redis[str], stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    acked_apart: list[int] = []  # entries per XACK the settler sent
    xack = client.xack

    async def counted_xack(key: str, group: str, ids: list[str]) -> int:
        acked_apart.append(len(ids))
        return await xack(key, group, ids)

    monkeypatch.setattr(client, "xack", counted_xack)
    seen: collections.Counter[int] = collections.Counter()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        seen[delivery.payload] += 1

    await add_jobs(client, stream, range(300))
    async with (
        trio_pool.open_pool(4, capacity=4) as pool,
        open_test_consumer(
            pool, client, handler, stream=stream, idle_time=60
        ) as consumer,
    ):
        with trio.fail_after(LIMIT):
            await consumer.join()
    assert seen == collections.Counter(range(300))
    assert consumer.statistics().acked == 300
    # The reads carried the acknowledgements (all of them, unless this
    # machine paused the reader past ACK_RIDE_LIMIT now and then).
    assert sum(acked_apart) < 300, acked_apart
    summary = await client.xpending(stream, "group")
    assert summary.pending == 0  # type: ignore[union-attr]


async def test_the_settler_acknowledges_when_others_take_the_room(
    client: coredis.Redis[str], stream: str
) -> None:
    handler_runs = trio.Event()
    submitter_waits = trio.Event()
    release = trio.Event()

    async def handler(delivery: Delivery) -> None:
        handler_runs.set()
        await submitter_waits.wait()

    await add_jobs(client, stream, [1])
    async with (
        trio_pool.open_pool(1, capacity=0) as pool,
        open_test_consumer(
            pool, client, handler, stream=stream, idle_time=60
        ) as consumer,
        trio.open_nursery() as nursery,
    ):
        with trio.fail_after(LIMIT):
            await handler_runs.wait()
            # Another task waits to submit: it takes the room the job frees,
            # so the reader, waiting for room, cannot read (nor carry the
            # acknowledgement) until that job ends.
            nursery.start_soon(pool.submit, release.wait)
            while pool.statistics().waiting_submitters != 1:
                await trio.testing.wait_all_tasks_blocked(0.01)
            submitter_waits.set()
            await consumer.join()  # the entry is acknowledged
        assert consumer.statistics().acked == 1
        assert pool.statistics().running == 1  # the other job still holds it
        summary = await client.xpending(stream, "group")
        assert summary.pending == 0  # type: ignore[union-attr]
        release.set()

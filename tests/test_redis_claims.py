"""The consumer's reads and claims racing its own settling and stopping,
against the session's redis-server: a stop costs the client no connection,
and a claim that takes back the consumer's own entry neither runs it again
nor counts a delivery. The races are made certain by holding the claim's
reply (the script object wrapped), not by timing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import coredis
import pytest
import trio

import trio_pool
from trio_pool.redis import Delivery, add_jobs, open_stream_consumer

from .redis_server import RedisServer, consumer_until_drained

LIMIT = 30
"""Seconds any one wait may take before the test fails (a loaded machine)."""
IDLE = 2.0
"""The idle time: a scan for idle entries every second, renewals every 2/3 s."""


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[Any]]:
    async with coredis.Redis(host=redis_server.host, port=redis_server.port) as client:
        yield client


async def test_stopping_consumers_costs_the_client_no_connection(
    redis_server: RedisServer, stream: str
) -> None:
    """coredis 6.9 loses a pool slot per cancelled blocking read: a stop that
    cancelled the consumer's XREADGROUP BLOCK hung a 2-slot client at once."""

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    async with (
        coredis.Redis(
            host=redis_server.host, port=redis_server.port, max_connections=2
        ) as client,
        trio_pool.open_pool(2) as pool,
    ):
        for restart in range(4):
            with trio.fail_after(LIMIT):
                async with open_stream_consumer(
                    pool,
                    client,
                    handler,
                    stream=stream,
                    group="group",
                    name=f"c{restart}",
                    create_group="start",
                ):
                    await trio.sleep(0.1)  # its blocking read is on its way
                assert await client.ping() == b"PONG"


async def test_what_a_read_brings_after_a_stop_is_left_pending(
    client: coredis.Redis[Any], stream: str
) -> None:
    """The read on its way when the consumer stops is let end: what it brings
    is not run, and stays pending for the group."""
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        handled.append(delivery.id)

    async with consumer_until_drained(
        client, handler, stream=stream, join_within=None, idle_time=IDLE
    ) as consumer:
        await trio.sleep(0.1)  # its blocking read is on its way
        consumer.close()
        await add_jobs(client, stream, [1])  # delivered to that read
        with trio.fail_after(LIMIT):
            await consumer.shutdown()
    stats = consumer.statistics()
    assert handled == []
    assert (stats.released, stats.acked) == (stats.read, 0)
    assert stats.pending == stats.read  # 1 unless the stop came between reads


ClaimScript = Callable[[list[str], list[Any]], Awaitable[Any]]
OnClaim = Callable[[ClaimScript, list[str], list[Any]], Awaitable[Any]]


def hold_claims(consumer: object, on_claim: OnClaim) -> None:
    """Route the consumer's claim script through ``on_claim(script, keys, args)``."""
    core: Any = vars(consumer)["_core"]
    script = cast("ClaimScript", core._claim)

    async def claim(keys: list[str], args: list[Any]) -> Any:
        return await on_claim(script, keys, args)

    core._claim = claim


async def look_idle(client: coredis.Redis[Any], stream: str, identifier: str) -> None:
    """Make ``identifier``, held by ``c1`` of ``group``, look idle for an
    hour (claimed back to ``c1`` itself), so that a claim takes it."""
    await client.xclaim(
        stream, "group", "c1", 0, [identifier], idle=3_600_000, justid=True
    )


def claimed_ids(reply: Any) -> list[str]:
    return [entry[0].decode() for entry in reply[1]]


async def test_an_entry_settled_while_a_claim_takes_it_is_not_run_again(
    client: coredis.Redis[Any], stream: str
) -> None:
    runs: list[str] = []
    release = trio.Event()

    async def handler(delivery: Delivery) -> None:
        runs.append(delivery.id)
        await release.wait()

    (identifier,) = await add_jobs(client, stream, ["x"])
    async with consumer_until_drained(
        client, handler, stream=stream, idle_time=IDLE
    ) as consumer:
        claimed_and_settled = trio.Event()

        async def on_claim(
            script: ClaimScript, keys: list[str], args: list[Any]
        ) -> Any:
            if runs and not release.is_set():  # make the running entry look idle
                await look_idle(client, stream, identifier)
            reply = await script(keys, args)
            if identifier in claimed_ids(reply) and not release.is_set():
                release.set()  # its job ends, and the entry is acknowledged
                await consumer.join()  # acknowledged, before the reply
                claimed_and_settled.set()
            return reply

        hold_claims(consumer, on_claim)
        with trio.fail_after(LIMIT):
            await claimed_and_settled.wait()
    assert runs == [identifier]
    stats = consumer.statistics()
    assert (stats.acked, stats.reclaimed) == (1, 0)


async def test_a_claim_of_an_entry_in_hand_counts_no_delivery(
    client: coredis.Redis[Any], stream: str
) -> None:
    deliveries: list[int] = []
    claimed = trio.Event()

    async def handler(delivery: Delivery) -> None:
        deliveries.append(delivery.deliveries)
        if len(deliveries) == 1:
            await claimed.wait()
            raise ValueError("the first delivery fails")

    (identifier,) = await add_jobs(client, stream, ["x"])
    async with consumer_until_drained(
        client, handler, stream=stream, idle_time=IDLE
    ) as consumer:

        async def on_claim(
            script: ClaimScript, keys: list[str], args: list[Any]
        ) -> Any:
            if deliveries and not claimed.is_set():  # make it look idle
                await look_idle(client, stream, identifier)
            reply = await script(keys, args)
            if identifier in claimed_ids(reply) and not claimed.is_set():
                claimed.set()  # the job fails once the reply is handled
            return reply

        hold_claims(consumer, on_claim)
    assert deliveries == [1, 2]  # the retry is the second delivery, not the third
    stats = consumer.statistics()
    assert (stats.failed, stats.acked, stats.reclaimed) == (1, 1, 1)

"""Redis failing under a running stream consumer: each test starts its own
redis-server (tests/redis_server.py), kills or pauses it, and asserts only
what holds on a loaded machine (generous limits, no exact timing)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import coredis
import pytest
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import RedisError
from coredis.response.types import StreamPending

import trio_pool
from trio_pool.redis import ConsumerError, Delivery, add_jobs
from trio_pool.redis._lifecycle import SETTLE_LIMIT

from .redis_server import (
    RedisServer,
    consumer_until_drained,
    open_test_consumer,
    redis_server,
)

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

LIMIT = 30
"""Seconds any one wait may take before the test fails (a loaded machine)."""


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill or pause."""
    with redis_server() as own:
        try:
            yield own
        finally:
            if own.process.poll() is None:
                own.process.send_signal(signal.SIGCONT)  # if a test paused it


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[coredis.Redis[Any]]:
    async with coredis.Redis(host=server.host, port=server.port) as client:
        yield client


async def test_a_redis_that_stays_away_ends_the_consumer_after_reconnect_timeout(
    server: RedisServer,
    client: coredis.Redis[Any],
    stream: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = trio.Event()
    give_up_after = 0.5

    async def handler(delivery: Delivery) -> None:
        started.set()
        await trio.lowlevel.checkpoint()

    await add_jobs(client, stream, [1])
    killed = trio.current_time()
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(RedisError) as caught:
            async with open_test_consumer(
                pool,
                client,
                handler,
                stream=stream,
                idle_time=0.3,
                reconnect_timeout=give_up_after,
            ):
                with trio.fail_after(LIMIT):
                    await started.wait()
                    server.kill()
                    killed = trio.current_time()
                    await trio.sleep_forever()
        gave_up = trio.current_time() - killed
    assert type(caught.value) is ConsumerError
    assert isinstance(caught.value, trio_pool.PoolCrashed)  # issue 20's policy
    cause = caught.value.__cause__
    assert isinstance(cause, ExceptionGroup)  # always a group
    assert cause.subgroup(RedisConnectionError) is not None  # pyright: ignore[reportUnknownMemberType]
    assert "stream consumer 'c1'" in str(caught.value)
    assert gave_up >= give_up_after  # it retried (no upper bound: a busy machine)
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries
    assert {r.levelno for r in retries} == {logging.WARNING}


async def test_a_redis_killed_and_started_again_loses_nothing(stream: str) -> None:
    """Redis (append-only, fsynced) killed while 4 jobs run, started again 0.5 s
    later: the consumer keeps its jobs, reconnects, and every entry is
    handled, twice at most for the 4 that were in flight."""
    total, workers = 200, 4
    handled: list[int] = []
    blocked: set[int] = set()
    gate_closed = False
    gate = trio.Event()
    all_blocked = trio.Event()
    a_quarter_handled = trio.Event()

    async def handler(delivery: Delivery) -> None:
        payload: int = delivery.payload
        if gate_closed and not gate.is_set():
            blocked.add(payload)
            if len(blocked) == workers:
                all_blocked.set()
            await gate.wait()
        else:
            await trio.lowlevel.checkpoint()
        handled.append(payload)
        if len(handled) >= total // 4:
            a_quarter_handled.set()

    with redis_server(append_only=True) as server:
        async with coredis.Redis(host=server.host, port=server.port) as client:
            await add_jobs(client, stream, range(total))
            async with consumer_until_drained(
                client,
                handler,
                stream=stream,
                workers=workers,
                capacity=0,
                join_within=LIMIT * 2,  # Redis restarted
                idle_time=1,
                reconnect_timeout=LIMIT,
            ) as consumer:
                with trio.fail_after(LIMIT):
                    await a_quarter_handled.wait()
                    gate_closed = True
                    await all_blocked.wait()  # in flight: exactly the blocked ones
                    while consumer.statistics().settling:  # noqa: ASYNC110 (no event)
                        await trio.sleep(0.01)
                server.kill()
                gate.set()  # the jobs end while Redis is away
                await trio.sleep(0.5)
                server.start_again()
    assert set(handled) == set(range(total))  # nothing lost
    duplicates = {payload for payload in handled if handled.count(payload) > 1}
    assert duplicates <= blocked  # twice only what was in flight
    assert consumer.statistics().acked >= total


async def test_a_handler_failing_with_a_redis_error_is_not_the_consumers(
    client: coredis.Redis[Any], stream: str
) -> None:
    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        if delivery.payload == 0:
            raise RedisConnectionError("the handler's own Redis")

    await add_jobs(client, stream, range(3))
    async with consumer_until_drained(
        client, handler, stream=stream, idle_time=5, max_deliveries=1
    ) as consumer:
        pass  # it drains the stream as the block ends
    stats = consumer.statistics()
    assert (stats.acked, stats.dead_lettered) == (2, 1)


async def test_a_dead_letter_whose_reply_was_lost_counts_as_dead_lettered(
    client: coredis.Redis[Any], stream: str
) -> None:
    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError(f"poison {delivery.payload}")

    await add_jobs(client, stream, range(2))
    async with consumer_until_drained(
        client, handler, stream=stream, idle_time=5, max_deliveries=1
    ) as consumer:
        core: Any = vars(consumer)["_core"]
        script = core._dead_letter
        calls: list[object] = []

        async def lose_first_reply(keys: list[str], args: list[Any]) -> Any:
            reply = await script(keys, args)
            calls.append(reply)
            if len(calls) == 1:  # the script ran; its reply never came
                raise RedisConnectionError("connection lost before the reply")
            return reply

        core._dead_letter = lose_first_reply
    assert calls == [1, 1, 1]  # the retry found its own dead letter
    stats = consumer.statistics()
    assert (stats.dead_lettered, stats.failed, stats.acked) == (2, 0, 0)
    assert await client.xlen(consumer.dead_letter_stream) == 2
    summary = await client.xpending(stream, "group")
    assert isinstance(summary, StreamPending)
    assert summary.pending == 0


async def test_shutdown_returns_in_bounded_time_while_redis_hangs(
    server: RedisServer,
    client: coredis.Redis[Any],
    stream: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    total = 6
    started = 0
    all_started = trio.Event()
    finish = trio.Event()

    async def handler(delivery: Delivery) -> None:
        nonlocal started
        started += 1
        if started == total:
            all_started.set()
        await finish.wait()

    await add_jobs(client, stream, range(total))
    grace = 1.0
    try:
        async with trio_pool.open_pool(total) as pool:
            async with open_test_consumer(
                pool,
                client,
                handler,
                stream=stream,
                idle_time=10,
            ) as consumer:
                with trio.fail_after(LIMIT):
                    await all_started.wait()
                server.hang()  # Redis hangs (and is stopped before the jobs end)
                finish.set()  # the jobs end: their acks cannot go out
                before = trio.current_time()
                # Far less than forever; generous for a loaded machine.
                with trio.fail_after(grace + SETTLE_LIMIT + LIMIT):
                    await consumer.shutdown(grace_period=grace)
                assert trio.current_time() - before >= SETTLE_LIMIT * 0.9
    finally:
        server.resume()
    stats = consumer.statistics()
    assert (stats.read, stats.released, stats.acked) == (total, total, 0)
    assert (stats.in_hand, stats.settling) == (0, 0)
    assert "Redis did not settle 6 entries" in caplog.text
    assert "6 of them succeeded but are not acknowledged" in caplog.text
    with trio.fail_after(LIMIT):
        summary = await client.xpending(stream, "group")
    assert isinstance(summary, StreamPending)
    assert summary.pending == total  # nothing lost: all for the next consumer


async def test_a_client_timeout_shorter_than_the_blocking_read_is_no_failure(
    server: RedisServer, stream: str
) -> None:
    handled = trio.Event()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        handled.set()

    async with (
        coredis.Redis(host=server.host, port=server.port, stream_timeout=0.3) as quick,
        consumer_until_drained(
            quick, handler, stream=stream, idle_time=4
        ) as consumer,  # reads block for up to 2 s: far past 0.3 s
    ):
        await trio.sleep(1.5)  # a quiet stream, for several client timeouts
        await add_jobs(quick, stream, [1])
        with trio.fail_after(LIMIT):
            await handled.wait()
    assert consumer.statistics().acked == 1


async def test_an_entry_that_vanishes_while_in_hand_is_logged_once_with_why(
    client: coredis.Redis[Any], stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    started: set[int] = set()
    both_started = trio.Event()
    finish = trio.Event()

    async def handler(delivery: Delivery) -> None:
        started.add(delivery.payload)
        if len(started) == 2:
            both_started.set()
        await finish.wait()

    deleted, taken = await add_jobs(client, stream, ["deleted", "taken"])
    caplog.set_level(logging.INFO, logger="trio_pool")
    async with trio_pool.open_pool(2) as pool:
        async with open_test_consumer(
            pool,
            client,
            handler,
            stream=stream,
            idle_time=0.3,
        ) as consumer:  # renewals every 0.1 s
            with trio.fail_after(LIMIT):
                await both_started.wait()
            await client.xdel(stream, [deleted])
            await client.xclaim(stream, "group", "other", 0, [taken], justid=True)
            await trio.sleep(2)  # many renewals, on any machine
            finish.set()
            with trio.fail_after(LIMIT):
                await consumer.shutdown()
    about_deleted = [r for r in caplog.records if deleted in r.getMessage()]
    assert [r.levelno for r in about_deleted] == [logging.INFO]
    assert "deleted from the stream" in about_deleted[0].getMessage()
    about_taken = [r for r in caplog.records if taken in r.getMessage()]
    assert [r.levelno for r in about_taken] == [logging.WARNING]
    assert "taken over by consumer 'other'" in about_taken[0].getMessage()


@pytest.mark.parametrize("when", ["before", "after"])
async def test_the_body_failing_as_a_consumer_task_fails_gives_consumer_error_with_both(
    monkeypatch: pytest.MonkeyPatch,
    client: coredis.Redis[Any],
    stream: str,
    when: str,
) -> None:
    # Issue 20's one exit policy, at the consumer's exit: the body's exception
    # and a task's failure together are one ConsumerError (a PoolCrashed), the
    # body's first in the group; before, the task's failure was only logged.
    from trio_pool.redis._lifecycle import ConsumerCore

    failed = trio.Event()
    task_error = RedisConnectionError("the renewer's")
    body_error = LookupError("the body's")

    async def failing_renewer(self: ConsumerCore) -> None:
        failed.set()
        raise task_error

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    monkeypatch.setattr(ConsumerCore, "run_renewer", failing_renewer)
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(ConsumerError) as caught:
            async with open_test_consumer(
                pool,
                client,
                handler,
                stream=stream,
            ):
                if when == "before":  # the body raises before a checkpoint
                    with trio.CancelScope(shield=True):
                        await failed.wait()
                    raise body_error
                try:  # the body is cancelled by the failure, raises from there
                    await trio.sleep_forever()
                except trio.Cancelled:
                    raise body_error from None
    cause = caught.value.__cause__
    assert isinstance(cause, ExceptionGroup)
    assert list(cause.exceptions) == [body_error, task_error]  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


async def test_without_reconnect_timeout_it_retries_until_redis_is_back(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    handled = trio.Event()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        handled.set()

    with redis_server(append_only=True) as server:
        async with (
            coredis.Redis(host=server.host, port=server.port) as client,
            consumer_until_drained(
                client, handler, stream=stream, idle_time=5, reconnect_timeout=None
            ),
        ):
            server.kill()
            with trio.fail_after(LIMIT):
                while "retrying in" not in caplog.text:  # noqa: ASYNC110 (a log)
                    await trio.sleep(0.01)
            server.start_again()
            await add_jobs(client, stream, [1])
            with trio.fail_after(LIMIT):
                await handled.wait()
    assert "it never gives up" in caplog.text
    assert "Redis answers again after" in caplog.text


async def test_a_client_out_of_pool_slots_ends_the_consumer_after_reconnect_timeout(
    server: RedisServer, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """coredis 6.9 loses a pool slot per command on its way when Redis drops a
    connection; here the test's own blocking commands, on the consumer's
    client, hold every slot: the reader's reads time out waiting for one,
    an outage (not an empty read): the consumer gives up."""
    slots, give_up_after = 2, 0.5
    let_go = trio.Event()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    async def fill_the_pool() -> None:
        await let_go.wait()

    async def hold_a_slot(client: coredis.Redis[Any], key: str, seconds: float) -> None:
        while True:  # a key nobody pushes to (0: for ever)
            try:
                await client.blpop([key], seconds)
            except TimeoutError:  # (the reader got the slot first)
                continue
            return

    async with (
        coredis.Redis(
            host=server.host, port=server.port, max_connections=slots, pool_timeout=2
        ) as client,
        trio.open_nursery() as holders,
    ):
        in_use = client.connection_pool.statistics  # live counters
        # Open every connection now: coredis opens one within the pool
        # timeout, and loses the slot if that times out (a loaded machine:
        # hence a pool timeout of 2 s, and holders that wait again).
        async with trio.open_nursery() as warm_up:
            for slot in range(slots):
                warm_up.start_soon(hold_a_slot, client, f"nothing-{slot}", 0.1)
        await add_jobs(client, stream, [1])
        held = trio.current_time()
        with pytest.raises(RedisError) as caught:
            async with (
                trio_pool.open_pool(1, capacity=0) as pool,
                open_test_consumer(
                    pool,
                    client,
                    handler,
                    stream=stream,
                    idle_time=300,  # no reclaim nor renewal call within LIMIT
                    reconnect_timeout=give_up_after,
                ) as consumer,
            ):
                with trio.fail_after(LIMIT):
                    # Started: its first claim, read, renewal and ack are done.
                    while (stats := consumer.statistics()).acked < 1 or (  # noqa: ASYNC110
                        stats.pending is None
                    ):
                        await trio.sleep(0.01)
                    # The reader retakes a slot it gives back before a
                    # waiting holder gets it: take them while it waits for
                    # room in the pool, then make room.
                    await pool.submit(fill_the_pool)
                    while in_use.in_use_connections:  # noqa: ASYNC110 (no event)
                        await trio.sleep(0.01)  # its last read is on its way
                    for slot in range(slots):
                        holders.start_soon(hold_a_slot, client, f"nothing-{slot}", 0)
                    while in_use.in_use_connections < slots:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                    held = trio.current_time()
                    let_go.set()  # the reader reads again: no slot for it
                    await trio.sleep_forever()  # it stalled silently before
        gave_up = trio.current_time() - held
        holders.cancel_scope.cancel()
    assert type(caught.value) is ConsumerError
    cause = caught.value.__cause__
    assert isinstance(cause, ExceptionGroup)
    assert cause.subgroup(TimeoutError) is not None  # pyright: ignore[reportUnknownMemberType]
    assert gave_up >= give_up_after  # it retried first (no upper bound: busy)
    waits = "(TimeoutError: no free connection in the client's pool in time)"
    retries = [r for r in caplog.records if waits in r.getMessage()]
    assert retries
    assert {r.levelno for r in retries} == {logging.WARNING}


async def test_a_quiet_stream_on_a_client_with_few_slots_is_no_outage(
    server: RedisServer, stream: str
) -> None:
    """Blocking reads that return empty, on a client with 2 slots, a short
    pool timeout and a short ``stream_timeout``: the consumer lives on past
    ``reconnect_timeout`` many times over."""
    handled = trio.Event()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        handled.set()

    async with (
        coredis.Redis(
            host=server.host,
            port=server.port,
            max_connections=2,
            pool_timeout=1,
            stream_timeout=0.4,
        ) as client,
        consumer_until_drained(
            client,
            handler,
            stream=stream,
            idle_time=1,  # renewals and reclaims too, every fraction of a second
            reconnect_timeout=0.3,
        ) as consumer,
    ):
        await trio.sleep(2)  # a quiet stream, for many reads (0.2 s each)
        await add_jobs(client, stream, [1])
        with trio.fail_after(LIMIT):
            await handled.wait()
    assert consumer.statistics().acked == 1

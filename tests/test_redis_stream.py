"""The Redis stream consumer against a real redis-server (the session's own).

Real network IO needs the real clock; nothing here waits for time to pass to
synchronise: the tests wait on events, on Redis (``BLPOP``), or on
`StreamConsumer.join`, each under `trio.fail_after` (a safety net,
not a speed test). What they assert holds on a busy machine too:

* the tests that expect no reclaim use an idle time (`STEADY`) longer than
  any pause, so each entry is delivered exactly once;
* the tests of reclaims and retries use tens of milliseconds (`IDLE`), so
  these come quickly. A consumer paused that long (a busy machine) may also
  reclaim an entry it failed to renew in time, or one whose acknowledgement
  was on its way. Delivery is at least once, so these tests assert that no
  entry is lost, and allow an entry to run again only if it was reclaimed.
"""

from __future__ import annotations

import collections
import functools
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio
import trio.testing
from coredis.exceptions import RedisError
from coredis.response.types import StreamPending

import trio_pool
from trio_pool.redis import (
    DeadLetter,
    Delivery,
    PayloadError,
    StreamConsumer,
    add_jobs,
    decode_dead_letter,
    open_stream_consumer,
)

from .helpers import books
from .redis_server import RedisServer

IDLE = 0.05
"""The idle time of the tests of reclaims and retries (seconds)."""
STEADY = 60.0
"""The idle time of the tests that expect no reclaim (seconds)."""
LIMIT = 60
"""Seconds any one wait may take before the test fails (a safety net)."""
GRACE = 2.0
"""The grace period of a graceful stop (seconds): a job that ends at once ends
within it, with a wide margin on a busy machine; a stuck one is cancelled."""
ROOT = Path(__file__).parent.parent
WORKER = ROOT / "tests" / "stream_worker.py"


def consume(
    pool: trio_pool.Pool,
    client: coredis.Redis[str],
    stream: str,
    handler: Callable[[Delivery], Awaitable[object]],
    name: str = "c1",
    **kwargs: Any,
) -> AbstractAsyncContextManager[StreamConsumer]:
    kwargs.setdefault("idle_time", STEADY)
    kwargs.setdefault("create_group", "start")
    return open_stream_consumer(
        pool, client, handler, stream=stream, group="group", name=name, **kwargs
    )


def assert_balanced(consumer: StreamConsumer) -> None:
    s = consumer.statistics()
    assert s.read + s.reclaimed == (
        s.in_hand
        + s.settling
        + s.acked
        + s.failed
        + s.timed_out
        + s.dead_lettered
        + s.released
    ), s


def assert_at_least_once(
    consumer: StreamConsumer, runs: collections.Counter[Any], entries: set[Any]
) -> None:
    """No entry lost, and each run of an entry after its first came with a
    reclaim (a retry, or a reclaim of a busy consumer's own entry)."""
    assert set(runs) == entries, runs
    assert runs.total() - len(runs) <= consumer.statistics().reclaimed, (
        runs,
        consumer.statistics(),
    )


def assert_dead_lettered_at_the_limit(
    letter: DeadLetter, attempts: list[int], max_deliveries: int, error_type: str
) -> None:
    """The entry failed on each delivery it ran on (``attempts``), and went
    to the dead letters with the error of its last allowed delivery.

    Or over the limit, unrun: a consumer that reclaims an entry of its own
    (too slow, on a busy machine, to renew it in time) skips it, but
    ``XAUTOCLAIM`` has counted a delivery.
    """
    assert attempts[0] == 1, attempts  # read: its first delivery
    assert attempts == sorted(set(attempts)), attempts
    assert attempts[-1] <= max_deliveries, attempts  # never run past the limit
    if letter.error_type == "delivery_limit":
        assert letter.deliveries > max_deliveries, letter
        assert f"max_deliveries={max_deliveries}" in letter.error, letter
    else:
        assert letter.error_type == error_type, letter
        assert letter.deliveries == attempts[-1] == max_deliveries, (letter, attempts)


async def pending_summary(client: coredis.Redis[str], stream: str) -> StreamPending:
    summary = await client.xpending(stream, "group")
    assert isinstance(summary, StreamPending)
    return summary


async def group_pending(client: coredis.Redis[str], stream: str) -> int:
    return (await pending_summary(client, stream)).pending


async def test_every_entry_is_processed_and_acknowledged(
    client: coredis.Redis[str], stream: str
) -> None:
    seen: collections.Counter[int] = collections.Counter()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        seen[delivery.payload["n"]] += 1
        assert delivery.deliveries == 1
        assert delivery.stream == stream

    ids = await add_jobs(client, stream, ({"n": n} for n in range(300)))
    async with trio_pool.open_pool(4, capacity=4) as pool:
        async with consume(pool, client, stream, handler) as consumer:
            with trio.fail_after(LIMIT):
                await consumer.join()
            assert_balanced(consumer)
    assert seen == collections.Counter(range(300))  # each exactly once here
    stats = consumer.statistics()
    assert (stats.read, stats.acked, stats.in_hand, stats.settling) == (300, 300, 0, 0)
    assert (stats.failed, stats.dead_lettered, stats.released) == (0, 0, 0)
    assert stats.closed
    assert await group_pending(client, stream) == 0
    assert len(ids) == len(set(ids)) == 300
    assert pool.statistics().succeeded == 300


async def test_backpressure_never_more_in_hand_than_the_pool_has_room_for(
    client: coredis.Redis[str], stream: str
) -> None:
    workers, capacity = 2, 1
    room = workers + capacity
    gates = {n: trio.Event() for n in range(12)}
    started_send, started = trio.open_memory_channel[int](100)
    consumers: list[StreamConsumer] = []

    def check(pool: trio_pool.Pool) -> None:
        s = consumers[0].statistics()
        p = pool.statistics()
        assert s.in_hand <= room, s
        assert s.in_hand == p.queued + p.running, (s, p)  # the only submitter
        assert s.read - s.acked - s.settling <= room, s

    async def handler(delivery: Delivery) -> None:
        n = delivery.payload
        check(pool)
        started_send.send_nowait(n)
        await gates[n].wait()

    await add_jobs(client, stream, range(12))
    async with trio_pool.open_pool(workers, capacity=capacity) as pool:
        async with consume(pool, client, stream, handler) as consumer:
            consumers.append(consumer)
            for step in range(12):
                with trio.fail_after(LIMIT):
                    n = await started.receive()
                    await trio.testing.wait_all_tasks_blocked()
                check(pool)
                stats = consumer.statistics()
                # Entries read: at most the room, plus one per job ended.
                assert stats.read <= step + room, stats
                summary = await pending_summary(client, stream)
                # Redis agrees: delivered and not acknowledged, at most the
                # room plus the acknowledgements on their way.
                assert summary.pending <= room + stats.settling + 1
                gates[n].set()
            with trio.fail_after(LIMIT):
                await consumer.join()
    assert consumer.statistics().acked == 12


async def test_a_batch_larger_than_the_queue_wakes_few_workers(
    client: coredis.Redis[str], stream: str
) -> None:
    # The reader submits a batch of 32 to 16 workers and capacity 16 in
    # parts of 17, letting the woken worker take the queued jobs between
    # them: the pool does not wake one more idle worker per job beyond its
    # queue (16 worker steps per batch then, about 4 now).
    entries = 960  # 30 batches
    worker_steps = 0

    class CountWorkerSteps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal worker_steps
            if task.name.startswith("trio_pool worker"):
                worker_steps += 1

    seen: collections.Counter[int] = collections.Counter()

    async def handler(delivery: Delivery) -> None:
        seen[delivery.payload] += 1

    await add_jobs(client, stream, range(entries))
    instrument = CountWorkerSteps()
    async with trio_pool.open_pool(16, capacity=16) as pool:
        trio.lowlevel.add_instrument(instrument)
        try:
            async with consume(pool, client, stream, handler) as consumer:
                with trio.fail_after(LIMIT):
                    await consumer.join()
        finally:
            trio.lowlevel.remove_instrument(instrument)
    assert set(seen) == set(range(entries))  # (at least once)
    assert consumer.statistics().acked == entries
    # Starting and stopping the 16 workers take about 50 steps.
    assert worker_steps < entries / 4, worker_steps


async def test_a_pool_full_of_other_jobs_gets_no_entries(
    client: coredis.Redis[str], stream: str
) -> None:
    release = trio.Event()
    done: list[int] = []

    async def handler(delivery: Delivery) -> None:
        done.append(delivery.payload)
        await trio.lowlevel.checkpoint()

    await add_jobs(client, stream, range(5))
    async with trio_pool.open_pool(2, capacity=1) as pool:
        for _ in range(3):
            pool.submit_nowait(release.wait)
        async with consume(pool, client, stream, handler) as consumer:
            # The reader waits on the pool's notification, not by polling.
            with trio.fail_after(LIMIT):
                while books(pool).watching != 1:
                    await trio.testing.wait_all_tasks_blocked(0.01)
            await trio.sleep(0.2)  # nothing happens meanwhile
            assert books(pool).watching == 1
            assert consumer.statistics().read == 0
            release.set()
            with trio.fail_after(LIMIT):
                await consumer.join()
    assert sorted(done) == list(range(5))


async def test_dead_letter_after_max_deliveries_failures(
    client: coredis.Redis[str], stream: str
) -> None:
    attempts: list[int] = []
    runs: collections.Counter[str] = collections.Counter()

    async def handler(delivery: Delivery) -> str:
        await trio.lowlevel.checkpoint()
        runs[delivery.payload] += 1
        if delivery.payload == "poison":
            attempts.append(delivery.deliveries)
            raise ValueError(f"cannot digest {delivery.payload}")
        return "ok"

    ids = await add_jobs(client, stream, ["fine", "poison", "fine too"])
    async with trio_pool.open_pool(2) as pool:
        async with consume(
            pool, client, stream, handler, idle_time=IDLE, max_deliveries=3
        ) as c:
            with trio.fail_after(LIMIT):
                await c.join()
            assert_balanced(c)
    assert_at_least_once(c, runs, {"fine", "poison", "fine too"})
    dead = await client.xrange(f"{stream}:dead", "-", "+")
    assert len(dead) == 1
    letter = decode_dead_letter(dead[0].identifier, dead[0].field_values)
    assert (letter.source, letter.source_id, letter.group) == (stream, ids[1], "group")
    assert letter.consumer == "c1"
    # Retried after the idle time, then given up.
    assert_dead_lettered_at_the_limit(letter, attempts, 3, "ValueError")
    stats = c.statistics()
    assert stats.acked == runs["fine"] + runs["fine too"]
    assert stats.dead_lettered == 1
    unrun = letter.error_type == "delivery_limit"
    assert stats.failed + stats.dead_lettered == len(attempts) + unrun
    assert (stats.in_hand, stats.settling, stats.released) == (0, 0, 0)
    assert await group_pending(client, stream) == 0
    if letter.error_type == "ValueError":
        assert letter.error == "cannot digest poison"
    assert letter.payload == "poison"
    assert dict(letter.fields) == {"v": "1", "job": '"poison"'}
    assert pool.statistics().failed == len(attempts)
    assert pool.statistics().succeeded == stats.acked


async def test_undecodable_entries_are_dead_lettered_at_once(
    client: coredis.Redis[str], stream: str
) -> None:
    called: list[Any] = []

    async def handler(delivery: Delivery) -> None:
        called.append(delivery.payload)
        await trio.lowlevel.checkpoint()

    await client.xadd(stream, {"foo": "bar"})
    await client.xadd(stream, {"v": "2", "job": "{}"})
    await client.xadd(stream, {"v": "1", "job": "{not json"})
    await add_jobs(client, stream, [1])
    async with trio_pool.open_pool(2) as pool:
        async with consume(pool, client, stream, handler) as consumer:
            with trio.fail_after(LIMIT):
                await consumer.join()
    assert called == [1]
    assert consumer.statistics().dead_lettered == 3
    dead = await client.xrange(f"{stream}:dead", "-", "+")
    letters = [decode_dead_letter(e.identifier, e.field_values) for e in dead]
    assert {letter.error_type for letter in letters} == {"PayloadError"}
    assert [letter.deliveries for letter in letters] == [1, 1, 1]
    assert "has no 'v' field" in letters[0].error
    assert "version '2' is not supported" in letters[1].error
    assert "is not JSON" in letters[2].error
    assert dict(letters[0].fields) == {"foo": "bar"}
    with pytest.raises(PayloadError):
        letters[0].payload  # noqa: B018


async def test_an_entry_delivered_too_often_elsewhere_is_dead_lettered_unrun(
    client: coredis.Redis[str], stream: str
) -> None:
    """Consumers that crash on an entry never run it again past the limit."""
    called: list[Any] = []

    async def handler(delivery: Delivery) -> None:
        called.append(delivery.payload)
        await trio.lowlevel.checkpoint()

    (identifier,) = await add_jobs(client, stream, ["crashes everyone"])
    await client.xgroup_create(stream, "group", "0")
    await client.xreadgroup("group", "ghost", {stream: ">"})
    await client.xclaim(stream, "group", "ghost", 0, [identifier])  # delivery 2
    async with trio_pool.open_pool(1) as pool:
        async with consume(
            pool, client, stream, handler, idle_time=IDLE, max_deliveries=2
        ) as c:
            with trio.fail_after(LIMIT):
                await c.join()
            assert_balanced(c)
    assert called == []
    dead = await client.xrange(f"{stream}:dead", "-", "+")
    assert len(dead) == 1
    letter = decode_dead_letter(dead[0].identifier, dead[0].field_values)
    assert (letter.error_type, letter.deliveries) == ("delivery_limit", 3)
    assert "max_deliveries=2" in letter.error
    stats = c.statistics()
    assert (stats.read, stats.dead_lettered, stats.acked) == (0, 1, 0)
    assert stats.reclaimed >= 1  # more if it took the entry again as it settled
    assert await group_pending(client, stream) == 0


async def test_a_job_that_times_out_fails_and_is_dead_lettered_at_the_limit(
    client: coredis.Redis[str], stream: str
) -> None:
    attempts: list[int] = []

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        await trio.sleep_forever()

    await add_jobs(client, stream, ["slow"])
    async with trio_pool.open_pool(1, job_timeout=IDLE / 5) as pool:
        async with consume(
            pool, client, stream, handler, idle_time=IDLE, max_deliveries=2
        ) as c:
            with trio.fail_after(LIMIT):
                await c.join()
            assert_balanced(c)
    dead = await client.xrange(f"{stream}:dead", "-", "+")
    assert len(dead) == 1
    letter = decode_dead_letter(dead[0].identifier, dead[0].field_values)
    assert_dead_lettered_at_the_limit(letter, attempts, 2, "timeout")
    stats = c.statistics()
    unrun = letter.error_type == "delivery_limit"
    assert (stats.dead_lettered, stats.released) == (1, 0)
    # A time-out is counted apart from failures, as the pool counts it.
    assert stats.failed == 0
    assert stats.timed_out + stats.dead_lettered == len(attempts) + unrun
    assert pool.statistics().timed_out == len(attempts)


async def test_a_long_job_keeps_its_entry_from_a_live_peer(
    client: coredis.Redis[str], stream: str
) -> None:
    """The lease is renewed while the job runs for several idle times."""
    runs: list[str] = []

    idle = 1.0  # longer than the pauses of a busy machine, as it must be

    async def handler(delivery: Delivery) -> None:
        runs.append(delivery.id)
        await trio.sleep(idle * 3)  # the job's own work, longer than idle_time

    await add_jobs(client, stream, ["long"])
    async with trio_pool.open_pool(1) as pool:
        async with consume(
            pool, client, stream, handler, name="a", idle_time=idle
        ) as a:
            async with consume(
                pool, client, stream, handler, name="b", idle_time=idle
            ) as b:
                with trio.fail_after(LIMIT):
                    await a.join()
    assert len(runs) == 1
    assert a.statistics().reclaimed + b.statistics().reclaimed == 0


async def test_graceful_stop_loses_nothing(
    client: coredis.Redis[str], stream: str
) -> None:
    """Stop with jobs in hand: the quick ones finish, the stuck ones stay
    pending, and the unread ones stay in the stream; a later consumer
    handles all of them."""
    first_started_send, first_started = trio.open_memory_channel[int](100)
    finish = trio.Event()
    first: list[int] = []

    async def first_handler(delivery: Delivery) -> None:
        n = delivery.payload
        first_started_send.send_nowait(n)
        if n % 2:
            await trio.sleep_forever()  # stuck: cancelled after the grace period
        await finish.wait()
        first.append(n)

    await add_jobs(client, stream, range(20))
    async with trio_pool.open_pool(4, capacity=0) as pool:
        async with consume(pool, client, stream, first_handler, name="first") as c:
            with trio.fail_after(LIMIT):
                for _ in range(4):
                    await first_started.receive()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(c.shutdown, GRACE)
                await trio.testing.wait_all_tasks_blocked()
                assert c.statistics().closed
                finish.set()  # the quick jobs finish within the grace period
        stats = c.statistics()
        assert_balanced(c)
        assert (stats.read, stats.acked, stats.released) == (4, 2, 2)
        assert (stats.in_hand, stats.settling, stats.failed) == (0, 0, 0)
        assert await group_pending(client, stream) == 2
        assert pool.statistics().cancelled == 2

        second: collections.Counter[int] = collections.Counter()

        async def second_handler(delivery: Delivery) -> None:
            await trio.lowlevel.checkpoint()
            second[delivery.payload] += 1

        async with consume(
            pool, client, stream, second_handler, name="second", idle_time=IDLE
        ) as d:
            with trio.fail_after(LIMIT):
                await d.join()
    assert sorted(first) == [0, 2]
    assert_at_least_once(d, second, set(range(20)) - set(first))
    assert d.statistics().reclaimed >= 2  # the two the first one left pending
    assert await group_pending(client, stream) == 0


async def test_the_body_raising_cancels_the_jobs_and_acks_the_finished(
    client: coredis.Redis[str], stream: str
) -> None:
    started_send, started = trio.open_memory_channel[int](100)

    async def handler(delivery: Delivery) -> None:
        started_send.send_nowait(delivery.payload)
        if delivery.payload:
            await trio.sleep_forever()

    await add_jobs(client, stream, range(3))
    consumers: list[StreamConsumer] = []
    async with trio_pool.open_pool(3, capacity=0) as pool:
        with pytest.raises(KeyError, match="body"):
            async with consume(pool, client, stream, handler) as consumer:
                consumers.append(consumer)
                with trio.fail_after(LIMIT):
                    for _ in range(3):
                        await started.receive()
                    while consumer.statistics().in_hand > 2:
                        await trio.testing.wait_all_tasks_blocked()
                raise KeyError("body")
    stats = consumers[0].statistics()
    assert (stats.acked, stats.released, stats.in_hand) == (1, 2, 0)
    assert await group_pending(client, stream) == 2


async def test_the_consumer_stops_reading_when_the_pool_closes(
    client: coredis.Redis[str], stream: str
) -> None:
    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    async with trio_pool.open_pool(1) as pool:
        async with consume(pool, client, stream, handler) as consumer:
            pool.close()
            await add_jobs(client, stream, [1])
            with trio.fail_after(LIMIT):
                await consumer.shutdown()
    stats = consumer.statistics()
    # Read just before it saw the pool closed, or not at all: never run.
    assert stats.read == stats.released <= 1
    assert (stats.acked, stats.closed) == (0, True)
    assert await group_pending(client, stream) == stats.released


async def test_a_redis_error_while_running_comes_out_as_itself(
    client: coredis.Redis[str], stream: str
) -> None:
    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(RedisError, match="consumer group"):
            async with consume(pool, client, stream, handler, name="x"):
                await client.xgroup_destroy(stream, "group")
                with trio.fail_after(LIMIT):
                    await trio.sleep_forever()


# ------------------------------------------------------------ processes


async def start_worker(
    nursery: trio.Nursery, url: str, stream: str, name: str, *args: str
) -> trio.Process:
    command = [sys.executable, str(WORKER), url, stream, "group", name, *args]
    run = functools.partial(trio.run_process, command, cwd=ROOT, check=False)
    process: trio.Process = await nursery.start(run)
    return process


async def test_a_killed_consumer_process_entries_are_reclaimed(
    client: coredis.Redis[str], stream: str, redis_server: RedisServer
) -> None:
    """SIGKILL a consumer process in the middle of its jobs; a live consumer
    takes its entries over after the idle time and processes every entry."""
    await add_jobs(client, stream, ({"n": n} for n in range(30)))
    async with trio.open_nursery() as nursery:
        process = await start_worker(
            nursery,
            redis_server.url,
            stream,
            "doomed",
            "--workers=2",
            "--capacity=2",
            "--hang-from=10",
        )
        with trio.fail_after(LIMIT):
            for _ in range(2):  # two jobs running, stuck
                assert await client.blpop([f"{stream}:started"], timeout=LIMIT)
        process.send_signal(signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    summary = await pending_summary(client, stream)
    held_by_the_dead = summary.consumers.get("doomed", 0)
    assert held_by_the_dead >= 2  # at least the two stuck ones

    seen: collections.Counter[int] = collections.Counter()

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        seen[delivery.payload["n"]] += 1

    async with trio_pool.open_pool(4) as pool:
        async with consume(
            pool, client, stream, handler, name="survivor", idle_time=IDLE
        ) as c:
            with trio.fail_after(LIMIT):
                await c.join()
    done_by_the_dead = {int(n) for n in await client.lrange(f"{stream}:done", 0, -1)}
    assert set(seen) | done_by_the_dead == set(range(30))
    assert set(range(10, 30)) <= set(seen)  # it never finished those
    assert_at_least_once(c, seen, set(seen))
    assert c.statistics().reclaimed >= held_by_the_dead
    assert await group_pending(client, stream) == 0


async def test_two_consumer_processes_share_one_stream(
    client: coredis.Redis[str], stream: str, redis_server: RedisServer
) -> None:
    """Two processes, one group: no entry lost, and an entry ran twice only
    if it was reclaimed (a busy process may pause past the idle time)."""
    total = 400
    names = ("p1", "p2")
    await add_jobs(client, stream, ({"n": n} for n in range(total)))
    await client.xgroup_create(stream, "group", "0")
    processes: list[trio.Process] = []
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            for name, peer in (names, names[::-1]):
                processes.append(
                    await start_worker(
                        nursery,
                        redis_server.url,
                        stream,
                        name,
                        f"--meet={peer}",  # both take entries, whatever the load
                        "--work=0.002",
                    )
                )
    assert [p.returncode for p in processes] == [0, 0]
    stats = {
        name: json.loads(await client.get(f"{stream}:stats:{name}") or "")
        for name in names
    }
    runs: dict[str, collections.Counter[int]] = {}
    for name in names:
        counts = await client.hgetall(f"{stream}:runs:{name}")
        runs[name] = collections.Counter({int(n): int(c) for n, c in counts.items()})
    every_run = runs["p1"] + runs["p2"]
    # Reclaimed too often, an entry goes to the dead letters unrun.
    dead = await client.xrange(f"{stream}:dead", "-", "+")
    dead_letters = [decode_dead_letter(e.identifier, e.field_values) for e in dead]
    assert {letter.error_type for letter in dead_letters} <= {"delivery_limit"}
    unrun = {letter.payload["n"] for letter in dead_letters}
    assert set(every_run) | unrun == set(range(total))  # no entry lost
    reclaimed = sum(s["reclaimed"] for s in stats.values())
    assert every_run.total() - len(every_run) <= reclaimed, (stats, every_run)
    assert sum(s["read"] for s in stats.values()) == total  # each read once
    assert sum(s["dead_lettered"] for s in stats.values()) == len(dead_letters)
    for name, s in stats.items():
        assert runs[name], stats  # both took entries
        # Each acknowledged what it ran, and holds nothing.
        assert s["acked"] == runs[name].total(), (name, s)
        assert s["read"] + s["reclaimed"] == (
            s["acked"] + s["failed"] + s["dead_lettered"]
        ), (name, s)
        assert (s["in_hand"], s["settling"], s["released"]) == (0, 0, 0), (name, s)
    assert await group_pending(client, stream) == 0


async def test_the_final_statistics_count_the_pending_entries_left_behind(
    client: coredis.Redis[str], stream: str
) -> None:
    """The group's pending count is read once more as a shutdown ends: it was
    the value of the last renewal (here, of the start: 0)."""
    started = trio.Event()

    async def handler(delivery: Delivery) -> None:
        started.set()
        await trio.sleep_forever()  # cancelled by the shutdown: left pending

    await add_jobs(client, stream, [1])
    async with trio_pool.open_pool(2) as pool:
        async with consume(pool, client, stream, handler, idle_time=30) as consumer:
            with trio.fail_after(LIMIT):
                await started.wait()
                await consumer.shutdown(grace_period=0)
    stats = consumer.statistics()
    assert (stats.released, stats.pending) == (1, 1)


async def test_wait_drained_when_redis_cannot_tell_the_groups_lag(
    client: coredis.Redis[str], stream: str
) -> None:
    """After a deletion in the stream Redis reports no lag: the consumer then
    compares the newest entry with the group's last delivered one."""
    ids = await add_jobs(client, stream, range(3))
    await client.xgroup_create(stream, "group", "0")
    await client.xdel(stream, [ids[1]])
    assert (await client.xinfo_groups(stream))[0]["lag"] is None

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    async with trio_pool.open_pool(2) as pool:
        async with consume(pool, client, stream, handler) as consumer:
            consumer.close()  # before it reads anything
            with trio.move_on_after(0.3) as waited:
                await consumer.join()
    assert waited.cancelled_caught  # two entries were never delivered
    assert consumer.statistics().read == 0

"""trio_pool.redis: the public surface, the payload format, the producer,
argument checks and the metrics (against the session's redis-server)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest
import trio
from coredis.exceptions import RedisError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import trio_pool
import trio_pool.redis
from trio_pool.redis import (
    ConsumerError,
    Delivery,
    PayloadError,
    add_job,
    add_jobs,
    decode_dead_letter,
    open_stream_consumer,
)

from .redis_server import RedisServer, consumer_until_drained

DOCUMENTED = {
    "ConsumerError",
    "ConsumerStatistics",
    "DeadLetter",
    "Delivery",
    "PayloadError",
    "StreamConsumer",
    "add_job",
    "add_jobs",
    "decode_dead_letter",
    "open_stream_consumer",
}


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    # A client that does not decode replies: the consumer copes with bytes.
    async with coredis.Redis(host=redis_server.host, port=redis_server.port) as client:
        yield client


async def nothing(delivery: Delivery) -> None:
    await trio.lowlevel.checkpoint()


def test_all_matches_the_documented_api() -> None:
    assert set(trio_pool.redis.__all__) == DOCUMENTED
    assert len(trio_pool.redis.__all__) == len(DOCUMENTED)
    for name in trio_pool.redis.__all__:
        assert getattr(trio_pool.redis, name).__module__ == "trio_pool.redis", name


def test_the_errors_are_pool_errors() -> None:
    # Issue 20: every error trio_pool raises is a PoolError.
    assert issubclass(PayloadError, trio_pool.PoolError)
    assert issubclass(PayloadError, ValueError)
    assert issubclass(ConsumerError, trio_pool.PoolCrashed)
    assert issubclass(ConsumerError, RedisError)


def test_the_core_package_does_not_import_coredis() -> None:
    code = "import sys, trio_pool; assert 'coredis' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_add_job_writes_the_documented_format(
    client: coredis.Redis[bytes], stream: str
) -> None:
    identifier = await add_job(client, stream, {"to": "ada", "n": [1, 2.5, None]})
    ids = await add_jobs(client, stream, ["é", 3])
    assert await add_jobs(client, stream, []) == ()
    entries = await client.xrange(stream, "-", "+")
    assert [str(e.identifier, "utf-8") for e in entries] == [identifier, *ids]  # type: ignore[arg-type]
    assert dict(entries[0].field_values) == {
        b"v": b"1",
        b"job": b'{"to":"ada","n":[1,2.5,null]}',
    }
    assert dict(entries[1].field_values) == {b"v": b"1", b"job": '"é"'.encode()}


@pytest.mark.parametrize("payload", [math.nan, object(), {1j: 2}])
async def test_a_payload_that_is_not_json_sends_nothing(
    client: coredis.Redis[bytes], stream: str, payload: Any
) -> None:
    with pytest.raises((TypeError, ValueError)):
        await add_job(client, stream, payload)
    with pytest.raises((TypeError, ValueError)):
        await add_jobs(client, stream, [1, payload])
    assert await client.xlen(stream) == 0


def test_decode_dead_letter_refuses_other_entries() -> None:
    with pytest.raises(PayloadError, match="not a dead letter"):
        decode_dead_letter("1-0", {"v": "1", "job": "1"})
    with pytest.raises(PayloadError, match="not a dead letter"):
        decode_dead_letter(b"1-0", {b"dead_letter.deliveries": b"x"})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pool": "pool"}, TypeError, "pool must be a trio_pool.Pool"),
        ({"stream": ""}, TypeError, "stream must be a non-empty str, not ''"),
        ({"group": 3}, TypeError, "group must be a non-empty str, not 3"),
        ({"name": None}, TypeError, "name must be a non-empty str"),
        ({"handler": print}, TypeError, "handler must be an async function"),
        ({"handler": 3}, TypeError, "handler must be an async function, not 3"),
        ({"idle_time": 0}, ValueError, "idle_time must be > 0 and finite, not 0"),
        ({"idle_time": math.inf}, ValueError, "idle_time must be > 0 and finite"),
        ({"idle_time": "1"}, TypeError, "idle_time must be a number of seconds"),
        ({"max_deliveries": 0}, ValueError, "max_deliveries must be >= 1, not 0"),
        ({"max_deliveries": 2.0}, TypeError, "max_deliveries must be an int"),
        ({"dead_letter_stream": "s"}, ValueError, "must not be the stream itself"),
        ({"grace_period": -1}, ValueError, "grace_period must be >= 0, not -1"),
        ({"grace_period": "1"}, TypeError, "grace_period must be a number"),
        ({"reconnect_timeout": -1}, ValueError, "reconnect_timeout must be >= 0"),
        ({"reconnect_timeout": "1"}, TypeError, "reconnect_timeout must be a number"),
        ({"telemetry": 1}, TypeError, "telemetry must be True or False"),
        ({"create_group": True}, ValueError, "create_group must be None, 'new' or"),
        ({"create_group": "$"}, ValueError, "or 'start', not '$'"),
    ],
)
async def test_bad_arguments_fail_at_once(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    async with trio_pool.open_pool(1) as pool:
        arguments: dict[str, Any] = {
            "pool": pool,
            "client": None,
            "stream": "s",
            "group": "g",
            "name": "c",
            "handler": nothing,
            **kwargs,
        }
        with pytest.raises(error) as info:
            open_stream_consumer(**arguments)  # not even entered
        assert message in str(info.value)


async def test_shutdown_checks_its_grace_period(
    client: coredis.Redis[bytes], stream: str
) -> None:
    async with consumer_until_drained(
        client,
        nothing,
        stream=stream,
        workers=1,
        join_within=None,
        group="g",
        name="c",
        idle_time=0.05,
    ) as consumer:
        with pytest.raises(ValueError, match="grace_period must be >= 0"):
            await consumer.shutdown(-1)
        assert not consumer.statistics().closed
        assert repr(consumer) == (
            f"<trio_pool.redis.StreamConsumer 'c' stream={stream!r} group='g'>"
        )
        assert (consumer.name, consumer.stream, consumer.group) == (
            "c",
            stream,
            "g",
        )
        assert consumer.dead_letter_stream == f"{stream}:dead"
        await consumer.shutdown(1)
        await consumer.shutdown()  # twice is fine
        assert consumer.statistics().closed


@pytest.mark.parametrize("stream_exists", [True, False])
async def test_without_create_group_a_missing_group_is_an_error(
    client: coredis.Redis[bytes], stream: str, stream_exists: bool
) -> None:
    if stream_exists:
        await add_job(client, stream, 1)
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(
            LookupError,
            match=f"stream {stream!r} has no consumer group 'g'; pass create_group=",
        ):
            async with open_stream_consumer(
                pool, client, nothing, stream=stream, group="g", name="c"
            ):
                raise AssertionError("not reached")  # pragma: no cover
        assert await client.exists([stream]) == stream_exists  # nothing created


@pytest.mark.parametrize(("create_group", "handled"), [("new", [2]), ("start", [1, 2])])
async def test_create_group_says_from_where(
    client: coredis.Redis[bytes], stream: str, create_group: str, handled: list[int]
) -> None:
    await add_job(client, stream, 1)  # before the group exists
    seen: list[int] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.payload)

    async with consumer_until_drained(
        client, handler, stream=stream, workers=1, create_group=create_group
    ):
        await add_job(client, stream, 2)
    assert seen == handled
    # An existing group is used as it is, whatever create_group says.
    async with consumer_until_drained(
        client, handler, stream=stream, workers=1, create_group=None
    ):
        pass  # it drains the stream as the block ends
    assert seen == handled


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name.startswith("trio_pool.stream."):
                    assert metric.unit == "{entry}"
                    found[metric.name] = [
                        (dict(p.attributes or {}), getattr(p, "value", None))
                        for p in metric.data.data_points
                    ]
    return found


async def test_metrics_report_the_statistics(
    client: coredis.Redis[bytes], stream: str
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    release = trio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.payload == "fail":
            raise RuntimeError("no")
        if delivery.payload == "wait":
            await release.wait()

    await add_jobs(client, stream, ["ok", "fail", "wait"])
    async with trio_pool.open_pool(3, name="mail", meter_provider=meters) as pool:
        async with open_stream_consumer(
            pool,
            client,
            handler,
            stream=stream,
            group="g",
            name="c",
            create_group="start",
            idle_time=0.05,
            max_deliveries=1,
            meter_provider=meters,
        ) as consumer:
            with trio.fail_after(10):
                while consumer.statistics().dead_lettered < 1 or (
                    consumer.statistics().lag != 0
                ):
                    await trio.testing.wait_all_tasks_blocked()
            seen = points(reader)
            attributes = {
                "trio_pool.name": "mail",
                "trio_pool.stream.name": stream,
                "trio_pool.stream.group": "g",
                "trio_pool.stream.consumer": "c",
            }
            assert seen["trio_pool.stream.read_entries"] == [(attributes, 3)]
            assert seen["trio_pool.stream.dead_lettered_entries"] == [(attributes, 1)]
            assert seen["trio_pool.stream.in_hand"] == [(attributes, 1)]
            assert seen["trio_pool.stream.lag"] == [(attributes, 0)]
            assert set(seen) == {
                "trio_pool.stream.read_entries",
                "trio_pool.stream.reclaimed_entries",
                "trio_pool.stream.acked_entries",
                "trio_pool.stream.failed_entries",
                "trio_pool.stream.timed_out_entries",
                "trio_pool.stream.dead_lettered_entries",
                "trio_pool.stream.released_entries",
                "trio_pool.stream.in_hand",
                "trio_pool.stream.pending",
                "trio_pool.stream.lag",
            }
            release.set()
            await consumer.join()
    # A stopped consumer leaves the collection.
    assert points(reader).get("trio_pool.stream.in_hand", []) == []


class BrokenMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("meter provider down")


async def test_a_raising_meter_provider_changes_nothing(
    client: coredis.Redis[bytes], stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    await add_jobs(client, stream, range(5))
    async with trio_pool.open_pool(2, telemetry=False) as pool:
        choices: list[tuple[str, dict[str, Any]]] = [
            ("broken", {"meter_provider": BrokenMeterProvider()}),
            ("off", {"telemetry": False}),
        ]
        for name, options in choices:
            async with open_stream_consumer(
                pool,
                client,
                nothing,
                stream=stream,
                group="g",
                name=name,
                create_group="start",
                idle_time=60,
                **options,
            ) as consumer:
                with trio.fail_after(10):
                    await consumer.join()
    assert "an OpenTelemetry provider raised" in caplog.text
    assert pool.statistics().succeeded == 5

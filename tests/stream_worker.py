"""A consumer process for the Redis stream tests (run by them, not by pytest).

``python tests/stream_worker.py URL STREAM GROUP CONSUMER [options]`` opens a
pool and a stream consumer whose handler records every job it runs in Redis
(``HINCRBY {stream}:runs:CONSUMER <payload n> 1`` and ``RPUSH {stream}:done
<n>``). With ``--hang-from N`` a job whose payload is N or more pushes ``n``
onto ``{stream}:started`` and then never ends (the test kills the process
there). With ``--meet PEER`` no job runs before the consumer named PEER has
started one too (each says ``RPUSH {stream}:arrived:PEER CONSUMER`` and waits
for ``{stream}:arrived:CONSUMER``): both consumers take entries, however late
one of them starts. It stops when the group is drained and leaves its
statistics, as JSON, in ``{stream}:stats:CONSUMER``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs
import coredis
import trio

import trio_pool
from trio_pool.redis import Delivery, open_stream_consumer


async def main(args: argparse.Namespace) -> None:
    stream: str = args.stream
    consumer_name: str = args.consumer
    async with coredis.Redis.from_url(args.url, decode_responses=True) as client:
        met = trio.Event()
        meeting = trio.Lock()

        async def meet(peer: str) -> None:
            """Wait until ``peer`` has started a job (the first job asks)."""
            async with meeting:
                if not met.is_set():
                    await client.rpush(f"{stream}:arrived:{peer}", [consumer_name])
                    await client.blpop([f"{stream}:arrived:{consumer_name}"], timeout=0)
                    met.set()

        async def handler(delivery: Delivery) -> None:
            n: int = delivery.payload["n"]
            if args.meet is not None:
                await meet(args.meet)
            if args.hang_from is not None and n >= args.hang_from:
                await client.rpush(f"{stream}:started", [str(n)])
                await trio.sleep_forever()
            await trio.sleep(args.work)  # stands for real work
            await client.hincrby(f"{stream}:runs:{consumer_name}", str(n), 1)
            await client.rpush(f"{stream}:done", [str(n)])

        async with (
            trio_pool.open_pool(args.workers, capacity=args.capacity) as pool,
            open_stream_consumer(
                pool,
                client,
                handler,
                stream=stream,
                group=args.group,
                name=consumer_name,
                create_group="start",
                idle_time=args.idle_time,
            ) as consumer,
        ):
            await consumer.join()
        stats: dict[str, Any] = attrs.asdict(consumer.statistics())
        await client.set(f"{stream}:stats:{consumer_name}", json.dumps(stats))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("group")
    parser.add_argument("consumer")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=0)
    parser.add_argument("--idle-time", type=float, default=0.05)
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--hang-from", type=int, default=None)
    parser.add_argument("--meet", default=None, metavar="PEER")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse())

"""A consumer process for the Redis stream tests (run by them, not by pytest).

``python tests/stream_worker.py URL STREAM GROUP CONSUMER [options]`` opens a
pool and a stream consumer whose handler records every job it runs in Redis
(``HINCRBY {stream}:runs <payload n> 1`` and ``RPUSH {stream}:done <n>``).
With ``--hang-from N`` a job whose payload is N or more pushes ``n`` onto
``{stream}:started`` and then never ends (the test kills the process there).
With ``--go`` it says ``RPUSH {stream}:ready CONSUMER`` and waits for
``{stream}:go:CONSUMER`` before it reads. It stops when the group is drained
and leaves its statistics, as JSON, in ``{stream}:stats:CONSUMER``.
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
    async with coredis.Redis.from_url(args.url, decode_responses=True) as client:

        async def handler(delivery: Delivery) -> None:
            n: int = delivery.payload["n"]
            if args.hang_from is not None and n >= args.hang_from:
                await client.rpush(f"{stream}:started", [str(n)])
                await trio.sleep_forever()
            await trio.sleep(args.work)  # stands for real work
            await client.hincrby(f"{stream}:runs", str(n), 1)
            await client.rpush(f"{stream}:done", [str(n)])

        if args.go:
            await client.rpush(f"{stream}:ready", [args.consumer])
            await client.blpop([f"{stream}:go:{args.consumer}"], timeout=30)
        async with (
            trio_pool.open_pool(args.workers, capacity=args.capacity) as pool,
            open_stream_consumer(
                pool,
                client,
                stream,
                args.group,
                args.consumer,
                handler,
                idle_time=args.idle_time,
            ) as consumer,
        ):
            await consumer.wait_drained()
        stats: dict[str, Any] = attrs.asdict(consumer.statistics())
        await client.set(f"{stream}:stats:{args.consumer}", json.dumps(stats))


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
    parser.add_argument("--go", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse())

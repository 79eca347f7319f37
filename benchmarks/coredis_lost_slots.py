"""Reproducer for coredis 6.9: a connection-pool slot is lost for each
blocking command on its way when its connection dies (Redis dropped it, or
the reply outlasted ``stream_timeout``). Not a benchmark, not run in CI: for
an upstream report (docs/howto/redis-stream.rst says what the lost slots do
to a stream consumer).

Needs only coredis and a redis-server on PATH (it starts a throwaway one on a
free port). ``python benchmarks/coredis_lost_slots.py [asyncio|trio]``.

With ``max_connections=2`` and a pool ``timeout`` of 1 s, each case loses
one slot per round; after two rounds a plain ``PING`` on an idle client
fails with ``TimeoutError`` (no free slot), for ever:

* ``CLIENT KILL`` of the connection of a ``BLPOP`` on its way (what a Redis
  restart does to a blocking read): coredis retries the ``BLPOP`` on a new
  connection (default retry policy) and it returns normally; the killed
  connection's slot is not given back;
* a ``BLPOP`` blocking for 1 s on a client with ``stream_timeout=0.2``:
  ``TimeoutError`` (expected); the timed-out connection's slot is not given
  back.

The cause: ``ConnectionPool.release`` puts a connection back only if it is
still usable, and puts nothing in its place otherwise; the connection's own
task (``__wrap_connection``) gives a slot back only for a connection idle in
the pool. With ``release`` putting ``None`` back for an unusable connection
(``else: self._available_connections.put_nowait(None)``) both cases keep
2/2 free slots and every ``PING`` answers (checked by patching it in).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import anyio
import coredis

SLOTS = 2
POOL_TIMEOUT = 1.0


def free_slots(client: coredis.Redis[Any]) -> int:
    """Slots the pool can still hand out (a private queue: for the report)."""
    pool: Any = client.connection_pool
    return len(pool._available_connections)


async def ping(client: coredis.Redis[Any]) -> str:
    try:
        with anyio.fail_after(POOL_TIMEOUT * 5):  # the client's own retries
            await client.ping()
    except TimeoutError:
        return "PING: TimeoutError (no free slot)"
    return "PING: ok"


async def kill_its_blocking_command(port: int) -> None:
    """Round of case 1: BLPOP on its way, its connection killed by Redis."""
    async with coredis.Redis(
        port=port, max_connections=SLOTS, pool_timeout=POOL_TIMEOUT
    ) as client:
        async with coredis.Redis(port=port) as admin:
            outcome = ""

            async def blpop() -> None:
                nonlocal outcome
                try:
                    await client.blpop(["nothing"], 1)
                    outcome = "returned (retried on a new connection)"
                except TimeoutError:
                    outcome = "TimeoutError (its retry found no free slot)"

            for round_number in range(1, SLOTS + 1):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(blpop)
                    while True:  # until the BLPOP is blocked in Redis
                        listing = await admin.client_list()
                        blocked = [c for c in listing if c["cmd"] == "blpop"]
                        if blocked:
                            break
                        await anyio.sleep(0.01)
                    await admin.client_kill(identifier=int(blocked[0]["id"]))
                print(
                    f"  round {round_number}: BLPOP's connection killed, {outcome}; "
                    f"free slots {free_slots(client)}/{SLOTS}; {await ping(client)}"
                )


async def time_out_its_blocking_command(port: int) -> None:
    """Round of case 2: BLPOP blocking past the client's stream_timeout."""
    async with coredis.Redis(
        port=port,
        max_connections=SLOTS,
        pool_timeout=POOL_TIMEOUT,
        stream_timeout=0.2,
        retry_policy=coredis.retry.NoRetryPolicy(),
    ) as client:
        for round_number in range(1, SLOTS + 1):
            try:
                await client.blpop(["nothing"], 1)
                outcome = "returned"
            except TimeoutError:
                outcome = "TimeoutError (stream_timeout)"
            print(
                f"  round {round_number}: BLPOP {outcome}; "
                f"free slots {free_slots(client)}/{SLOTS}; {await ping(client)}"
            )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)  # a throwaway server starting
            print(f"coredis {coredis.__version__}, anyio backend {backend}")
            print("1. a blocking command's connection killed by Redis:")
            anyio.run(kill_its_blocking_command, port, backend=backend)
            print("2. a blocking command timed out in the client:")
            anyio.run(time_out_its_blocking_command, port, backend=backend)
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()

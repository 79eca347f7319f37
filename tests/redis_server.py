"""Start a throwaway redis-server on 127.0.0.1 (the tests and the benchmark),
and run a stream consumer in a pool of its own (`consumer_until_drained`, the
tests' usual opening).

The server listens on a free port, keeps its files in a temporary folder,
saves nothing (or, with ``append_only``, every write, fsynced: it can be
killed and started again with its data), and is stopped (and its folder
removed) on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import coredis
import trio

import trio_pool
from trio_pool.redis import Delivery, StreamConsumer, open_stream_consumer

MISSING = (
    "redis-server is missing: the Redis stream tests start their own. "
    "Install Debian's 'redis-server' package (apt-get install -y redis-server); "
    "`python3 -m nox -s tests` installs it when run as root."
)


@attrs.define
class RedisServer:
    """A running redis-server."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    arguments: tuple[str, ...]
    """The command line that started it."""

    def kill(self) -> None:
        """Kill the server (SIGKILL) and wait for it to exit."""
        self.process.kill()
        self.process.wait()

    def hang(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGSTOP) and wait until the kernel says it is
        stopped: on a loaded machine the signal may take effect late, and a
        test that then sends it commands expects none to be read."""
        self.process.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + timeout
        # (the state is the field after the command's name in parentheses)
        while stat.read_text().rpartition(")")[2].split()[0] not in ("T", "t"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not stop in {timeout} s")
            time.sleep(0.001)

    def resume(self) -> None:
        """Let a stopped server run again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def start_again(self, timeout: float = 10.0) -> None:
        """Start the killed server again, same port, same folder and options."""
        self.process = _start(list(self.arguments), self.port, timeout)

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(
    process: subprocess.Popen[bytes], port: int, timeout: float
) -> None:
    """Connect until the server answers, is ``process``, and has loaded its
    data (a start-up wait, not a sleep: a server started again reads its
    append-only file, and answers every command but INFO with ``LOADING``
    meanwhile). Another test run's server may have taken the port between
    `_free_port` and the start: then this one exits, and the one answering
    is not ours (its ``process_id`` differs): `RuntimeError`, try another."""
    deadline = time.monotonic() + timeout
    ours = f"process_id:{process.pid}\r\n"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited at start ({process.returncode})")
        try:
            info = _info(port)
            if ours in info and "loading:0\r\n" in info:
                return
            if "process_id:" in info and ours not in info:
                raise RuntimeError(f"another redis-server answers on port {port}")
        except OSError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} is still loading")
        time.sleep(0.01)  # the process is starting: poll its socket


def _info(port: int) -> str:
    """The server's reply to ``INFO`` (its default sections), or what came
    of it before the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(b"INFO\r\n")
        reply = b""
        while b"\r\n" not in reply:  # the bulk reply's header: $<length>
            chunk = conn.recv(4096)
            if not chunk:
                return reply.decode(errors="replace")
            reply += chunk
        header, _, body = reply.partition(b"\r\n")
        length = int(header[1:]) if header.startswith(b"$") else 0
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return body.decode(errors="replace")


def _start(arguments: list[str], port: int, timeout: float) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_listening(process, port, timeout)
    except (OSError, RuntimeError):
        process.kill()
        process.wait()
        raise
    return process


@contextlib.contextmanager
def redis_server(
    timeout: float = 10.0, *, append_only: bool = False
) -> Generator[RedisServer, None, None]:
    """Run a redis-server for the duration of the ``with``.

    With ``append_only`` it logs every write to its append-only file, fsynced
    before it answers, so `RedisServer.start_again` loses nothing.

    Raises:
        RuntimeError: redis-server is not installed (with how to get it), or
            did not start.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError(MISSING)
    with tempfile.TemporaryDirectory(prefix="trio-pool-redis-") as folder:
        for _attempt in range(5):  # another process may take the port first
            port = _free_port()
            arguments = [
                executable,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--dir", folder,
                "--save", "",
                "--appendonly", "yes" if append_only else "no",
                "--appendfsync", "always",
                "--daemonize", "no",
                "--logfile", str(Path(folder) / "redis.log"),
            ]  # fmt: skip
            try:
                process = _start(arguments, port, timeout)
            except (OSError, RuntimeError):
                continue
            break
        else:
            raise RuntimeError("redis-server did not start; see its log")
        server = RedisServer("127.0.0.1", port, process, tuple(arguments))
        try:
            yield server
        finally:
            server.process.terminate()
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


JOIN_LIMIT = 30.0
"""Seconds `consumer_until_drained` lets the consumer take to drain (a loaded
machine)."""


def open_test_consumer(
    pool: trio_pool.Pool,
    client: coredis.Redis[Any],
    handler: Callable[[Delivery], Awaitable[object]],
    *,
    stream: str,
    **options: Any,
) -> AbstractAsyncContextManager[StreamConsumer]:
    """`open_stream_consumer` of ``stream`` as ``"c1"`` of ``"group"``
    (created at the stream's start) unless ``options`` (more of its
    arguments) say otherwise."""
    options = {"group": "group", "name": "c1", "create_group": "start"} | options
    return open_stream_consumer(pool, client, handler, stream=stream, **options)


@contextlib.asynccontextmanager
async def consumer_until_drained(
    client: coredis.Redis[Any],
    handler: Callable[[Delivery], Awaitable[object]],
    *,
    stream: str,
    workers: int = 2,
    capacity: int | None = None,
    join_within: float | None = JOIN_LIMIT,
    **options: Any,
) -> AsyncGenerator[StreamConsumer, None]:
    """A consumer of ``stream`` in a pool of ``workers`` (and ``capacity``),
    as ``"c1"`` of ``"group"`` (created at the stream's start) unless
    ``options`` (more arguments of `open_stream_consumer`) say otherwise.

    After the body, unless it raised, waits for the consumer to drain
    (`StreamConsumer.join`), failing the test after ``join_within`` seconds
    (None: no wait).
    """
    async with (
        trio_pool.open_pool(workers, capacity=capacity) as pool,
        open_test_consumer(pool, client, handler, stream=stream, **options) as consumer,
    ):
        yield consumer
        if join_within is not None:
            with trio.fail_after(join_within):
                await consumer.join()

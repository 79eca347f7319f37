"""Start a throwaway redis-server on 127.0.0.1 (the tests and the benchmark).

The server listens on a free port, keeps its files in a temporary folder,
saves nothing, and is stopped (and its folder removed) on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import attrs

MISSING = (
    "redis-server is missing: the Redis stream tests start their own. "
    "Install Debian's 'redis-server' package (apt-get install -y redis-server); "
    "`python3 -m nox -s tests` installs it when run as root."
)


@attrs.frozen
class RedisServer:
    """A running redis-server."""

    host: str
    port: int
    process: subprocess.Popen[bytes]

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
    """Connect until the server answers PING (a start-up wait, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited at start ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.01)  # the process is starting: poll its socket


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Generator[RedisServer, None, None]:
    """Run a redis-server for the duration of the ``with``.

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
            process = subprocess.Popen(
                [
                    executable,
                    "--bind", "127.0.0.1",
                    "--port", str(port),
                    "--dir", folder,
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                    "--logfile", str(Path(folder) / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                _wait_until_listening(process, port, timeout)
            except (OSError, RuntimeError):
                process.kill()
                process.wait()
                continue
            break
        else:
            raise RuntimeError("redis-server did not start; see its log")
        try:
            yield RedisServer("127.0.0.1", port, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

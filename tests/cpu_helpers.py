"""Functions that the CPU-bound tests run in trio-parallel's worker processes.

Workers start with spawn and import a function by its module's name, so these
live in a module of their own, with nothing but the standard library to
import (a worker imports ``tests.cpu_helpers`` and nothing else of the tests).
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn


def check_in(address: str, token: int) -> socket.socket:
    """Tell the test at the Unix socket ``address`` that this call is running.

    Sends ``token`` and this process's id (4 bytes each, big-endian) and
    returns the connection, which the test sees close when the process dies.
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(address)
    conn.sendall(token.to_bytes(4, "big") + os.getpid().to_bytes(4, "big"))
    return conn


def hold(address: str, token: int) -> tuple[int, int]:
    """Check in at ``address``, then wait until the test sends a byte.

    Returns:
        ``token`` and the worker process's id.
    """
    with check_in(address, token) as conn:
        conn.recv(1)
    return token, os.getpid()


def spin_forever(address: str) -> NoReturn:
    """Check in at ``address``, then burn CPU until the process is killed."""
    with check_in(address, 0):
        while True:
            pass

"""Run every Python example in README.md and docs/ as a test (Sybil).

Examples call ``trio.run(main)`` like real programs. While they run,
``trio.run`` gets a `trio.testing.MockClock` that jumps ahead whenever every
task is blocked, so an example that sleeps for an hour takes milliseconds.

The Redis stream page (``docs/howto/redis-stream.rst``) talks to a real
redis-server over the network, so it runs on the real clock: the
session's ``redis_server`` (a throwaway server on 127.0.0.1, started by the
test suite) is its ``REDIS_URL``.
"""

from __future__ import annotations

import functools
import shutil
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from sybil import Sybil
from sybil.parsers import markdown, rest
from sybil.sybil import SybilCollection
from tests.redis_server import MISSING, RedisServer
from tests.redis_server import redis_server as start_redis_server

if TYPE_CHECKING:
    from collections.abc import Iterator

_real_run = trio.run
REDIS_PAGES = ["howto/redis-stream.rst"]


def _run_with_mock_clock(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("clock", trio.testing.MockClock(autojump_threshold=0))
    return _real_run(*args, **kwargs)


def _setup(namespace: dict[str, Any]) -> None:
    namespace["_monkeypatch"] = monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(trio, "run", functools.wraps(_real_run)(_run_with_mock_clock))


def _teardown(namespace: dict[str, Any]) -> None:
    namespace["_monkeypatch"].undo()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on 127.0.0.1 for the whole session; fails if missing."""
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING, pytrace=False)
    with start_redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``REDIS_URL`` names the session's redis-server (for the docs' examples)."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server.url


pytest_collect_file = SybilCollection(
    [
        Sybil(
            parsers=[markdown.PythonCodeBlockParser(), markdown.SkipParser()],
            patterns=["README.md"],
            setup=_setup,
            teardown=_teardown,
        ),
        Sybil(
            parsers=[rest.PythonCodeBlockParser(), rest.SkipParser()],
            patterns=["*.rst"],
            excludes=REDIS_PAGES,
            path="docs",
            setup=_setup,
            teardown=_teardown,
        ),
        Sybil(
            parsers=[rest.PythonCodeBlockParser(), rest.SkipParser()],
            patterns=REDIS_PAGES,
            path="docs",
            fixtures=["redis_url"],
            name="redis",
        ),
    ]
).pytest()

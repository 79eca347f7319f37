"""Run every Python example in README.md and docs/ as a test (Sybil).

Each code block runs as a reader would run it, copied alone into a file and
started with ``python file.py``: in a fresh namespace of its own, named
``__main__``, with nothing added, no set-up and no patching. An example that
needs Trio's mock clock says so in its own code
(``trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))``);
the others run on the real clock and assert only what holds on a busy
machine. Only visible ``code-block:: python`` directives (and ```` ```python ````
fences in README.md) are collected: no invisible set-up blocks, no skips.
``python docs/run_examples.py`` runs the same blocks in separate processes.

The Redis stream page (``docs/howto/redis-stream.rst``) needs a redis-server:
its examples read ``REDIS_URL`` from the environment, as the page tells its
readers to set it; here it names the session's throwaway server on
127.0.0.1, started by the test suite.
"""

from __future__ import annotations

import shutil
import uuid
from typing import TYPE_CHECKING

import coredis
import pytest
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.abstract import AbstractCodeBlockParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer
from sybil.parsers.rest.lexers import DirectiveLexer
from sybil.sybil import SybilCollection
from tests.redis_server import MISSING, RedisServer
from tests.redis_server import redis_server as start_redis_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

REDIS_PAGES = ["howto/redis-stream.rst"]


def run_as_a_script(example: Example) -> None:
    """Run one block as ``python file.py`` would: alone, as ``__main__``."""
    __tracebackhide__ = True
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    code = compile(source, example.path, "exec", dont_inherit=True)
    exec(code, {"__name__": "__main__"})  # a fresh namespace, nothing shared


def rest_blocks() -> AbstractCodeBlockParser:
    """``.. code-block:: python`` directives (not invisible ones)."""
    return AbstractCodeBlockParser(
        [DirectiveLexer(directive=r"(sourcecode|code-block|code)")],
        language="python",
        evaluator=run_as_a_script,
    )


def markdown_blocks() -> AbstractCodeBlockParser:
    """```` ```python ```` fences (not invisible ones)."""
    return AbstractCodeBlockParser(
        [
            FencedCodeBlockLexer(
                language=r".+", mapping={"language": "arguments", "source": "source"}
            )
        ],
        language="python",
        evaluator=run_as_a_script,
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on 127.0.0.1 for the whole session; fails if missing."""
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING, pytrace=False)
    with start_redis_server() as server:
        yield server


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[str]]:
    """A client of the session's redis-server that decodes replies to text
    (a test module that needs another client defines its own ``client``)."""
    async with coredis.Redis(
        host=redis_server.host, port=redis_server.port, decode_responses=True
    ) as client:
        yield client


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> str:
    """A stream of its own for each test, named after the test's module
    (``tests.test_redis_claims``: ``claims-…``)."""
    prefix = request.module.__name__.rsplit("_", 1)[-1]
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``REDIS_URL`` names the session's redis-server (for the docs' examples)."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server.url


pytest_collect_file = SybilCollection(
    [
        Sybil(parsers=[markdown_blocks()], patterns=["README.md"]),
        Sybil(
            parsers=[rest_blocks()],
            patterns=["*.rst"],
            excludes=REDIS_PAGES,
            path="docs",
        ),
        Sybil(
            parsers=[rest_blocks()],
            patterns=REDIS_PAGES,
            path="docs",
            fixtures=["redis_url"],
            name="redis",
        ),
    ]
).pytest()

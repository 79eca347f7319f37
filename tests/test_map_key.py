"""`Pool.map(..., key=fn)`: per-key limits for a map's items."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_pool

from .helpers import assert_no_bookkeeping


async def test_keys_limit_a_maps_jobs_and_take_turns(
    autojump_clock: trio.abc.Clock,
) -> None:
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    started: list[tuple[float, str]] = []

    async def fetch(url: str) -> str:
        host = url.split("/")[0]
        running[host] = running.get(host, 0) + 1
        most[host] = max(most.get(host, 0), running[host])
        started.append((trio.current_time(), host))
        await trio.sleep(1)
        running[host] -= 1
        return url

    urls = [f"a/{i}" for i in range(6)] + [f"b/{i}" for i in range(2)]
    async with trio_pool.open_pool(8, per_key_limit=2) as pool:
        async with pool.map(fetch, urls, key=lambda url: url.split("/")[0]) as pages:
            assert [page async for page in pages] == urls
        assert most == {"a": 2, "b": 2}
        # b's jobs do not wait behind a's: they start at once
        assert [t for t, host in started if host == "b"] == [0, 0]
        assert [t for t, host in started if host == "a"] == [0, 0, 1, 1, 2, 2]
    assert_no_bookkeeping(pool)


async def test_a_key_of_none_is_no_key(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(4, per_key_limit=1, timings=True) as pool:
        async with pool.map(trio.sleep, [1, 1, 1], key=lambda _: None) as results:
            assert [r async for r in results] == [None, None, None]
        assert trio.current_time() == 1  # no limit: all at once


async def test_a_key_functions_failure_ends_the_map(
    autojump_clock: trio.abc.Clock,
) -> None:
    def host(item: int) -> Any:
        if item == 2:
            return ["unhashable"]
        return "h"

    async with trio_pool.open_pool(2, per_key_limit=1) as pool:
        seen: list[int] = []
        with pytest.raises(TypeError, match="key must be hashable"):
            async with pool.map(trio.sleep, [0, 0, 2, 0], key=host) as results:
                async for _ in results:
                    seen.append(0)
        assert seen == [0, 0]


async def test_map_key_refused_at_once() -> None:
    async def job(item: int) -> int:
        return item

    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(ValueError, match=r"key=.* needs a pool opened with"):
            pool.map(job, [1], key=str)
    async with trio_pool.open_pool(1, per_key_limit=1) as pool:
        with pytest.raises(TypeError, match="key must be a function of the item"):
            pool.map(job, [1], key="host")  # type: ignore[call-overload]

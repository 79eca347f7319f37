"""The public surface: names, errors, and clear errors for bad input."""

from __future__ import annotations

import inspect
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_pool

from .helpers import sleep_and_return

DOCUMENTED = {
    "AsCompleted",
    "as_completed",
    "Job",
    "JobCancelled",
    "JobGroup",
    "JobState",
    "JobTimeout",
    "MapResults",
    "Pool",
    "PoolClosed",
    "PoolCrashed",
    "PoolError",
    "PoolOverloaded",
    "PoolStatistics",
    "SubmitTimeout",
    "USE_POOL_DEFAULT",
    "UsePoolDefault",
    "open_pool",
}


def test_all_matches_the_documented_api() -> None:
    assert set(trio_pool.__all__) == DOCUMENTED
    assert len(trio_pool.__all__) == len(DOCUMENTED)
    for name in trio_pool.__all__:
        assert getattr(trio_pool, name).__module__ == "trio_pool", name


def test_the_timeout_default_is_public_and_forwarded() -> None:
    # Issue 20: a wrapper can take and pass on "the pool's default".
    assert trio_pool.USE_POOL_DEFAULT is trio_pool.UsePoolDefault.USE_POOL_DEFAULT
    assert repr(trio_pool.USE_POOL_DEFAULT) == "trio_pool.USE_POOL_DEFAULT"
    for fn in (trio_pool.Pool.submit, trio_pool.Pool.submit_nowait, trio_pool.Pool.run):
        default = inspect.signature(fn).parameters["timeout"].default
        assert default is trio_pool.USE_POOL_DEFAULT


PUBLIC_CALLABLES: list[Callable[..., Any]] = [
    trio_pool.open_pool,
    trio_pool.Pool.submit,
    trio_pool.Pool.submit_nowait,
    trio_pool.Pool.run,
    trio_pool.Pool.map,
    trio_pool.Pool.group,
    trio_pool.JobGroup.submit,
    trio_pool.JobGroup.submit_nowait,
    trio_pool.JobGroup.run,
    trio_pool.Pool.resize,
    trio_pool.Pool.shutdown,
    trio_pool.Job.result,  # pyright: ignore[reportUnknownMemberType]
    trio_pool.Job.wait,  # pyright: ignore[reportUnknownMemberType]
]


@pytest.mark.parametrize("fn", PUBLIC_CALLABLES, ids=lambda fn: fn.__qualname__)
def test_public_signatures_name_no_private_types(fn: Any) -> None:
    """What the reference and an IDE show: no private names, no core."""
    signature = str(inspect.signature(fn))
    for private in ("UseDefault", "_checks", "PoolCore", "core"):
        assert private not in signature, signature


@pytest.mark.parametrize(
    ("error", "trio_base"),
    [
        (trio_pool.PoolClosed, trio.ClosedResourceError),
        (trio_pool.PoolOverloaded, trio.WouldBlock),
        (trio_pool.SubmitTimeout, trio.WouldBlock),
        (trio_pool.SubmitTimeout, trio.TooSlowError),
        (trio_pool.PoolCrashed, Exception),
        (trio_pool.JobTimeout, trio.TooSlowError),
        (trio_pool.JobCancelled, Exception),
    ],
)
def test_errors_subclass_pool_error_and_the_trio_error(
    error: type[Exception], trio_base: type[Exception]
) -> None:
    assert issubclass(error, trio_pool.PoolError)
    assert issubclass(error, trio_base)


def test_job_states() -> None:
    assert [state.value for state in trio_pool.JobState] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0,), {}, ValueError, "workers must be >= 1, not 0"),
        ((-3,), {}, ValueError, "workers must be >= 1, not -3"),
        (("4",), {}, TypeError, "workers must be an int, not '4'"),
        ((2.0,), {}, TypeError, "workers must be an int, not 2.0"),
        ((True,), {}, TypeError, "workers must be an int, not True"),
        ((2,), {"capacity": -1}, ValueError, "capacity must be >= 0, not -1"),
        ((2,), {"capacity": 1.5}, TypeError, "capacity must be an int, not 1.5"),
        ((2,), {"capacity": "8"}, TypeError, "capacity must be an int, not '8'"),
        ((2,), {"job_timeout": -1}, ValueError, "job_timeout must be >= 0, not -1"),
        (
            (2,),
            {"job_timeout": math.nan},
            ValueError,
            "job_timeout must be >= 0, not nan",
        ),
        ((2,), {"job_timeout": "5"}, TypeError, "job_timeout must be a number"),
        ((2,), {"submit_timeout": -0.5}, ValueError, "submit_timeout must be >= 0"),
        ((2,), {"submit_timeout": [1]}, TypeError, "submit_timeout must be a number"),
        ((2,), {"name": 3}, TypeError, "name must be a str or None, not 3"),
        ((2,), {"telemetry": "yes"}, TypeError, "telemetry must be True or False"),
    ],
)
def test_bad_open_pool_arguments_fail_at_once(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        trio_pool.open_pool(*args, **kwargs)  # not even entered
    assert message in str(info.value)


async def test_bad_submit_arguments_fail_at_once_and_lose_nothing() -> None:
    async with trio_pool.open_pool(1) as pool:
        accepted = await pool.submit(sleep_and_return, 0, "kept")
        coroutine = sleep_and_return(1)
        with pytest.raises(TypeError, match="got a coroutine object") as info:
            await pool.submit(coroutine)  # type: ignore[arg-type]
        assert "pool.submit(sleep_and_return, ...)  # correct!" in str(info.value)
        with pytest.raises(TypeError, match="is a sync builtin"):
            pool.submit_nowait(len, [])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected an async function, not 3"):
            pool.submit_nowait(3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected an async function"):
            await pool.run(print)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be >= 0, not -2"):
            await pool.submit(sleep_and_return, 1, timeout=-2)
        with pytest.raises(TypeError, match="name must be a str or None, not 5"):
            await pool.submit(sleep_and_return, 1, name=5)  # type: ignore[arg-type]
        assert await accepted.result() == "kept"
        stats = pool.statistics()
        assert (stats.submitted, stats.rejected) == (1, 0)


async def test_open_pool_without_async_with_shows_the_right_form() -> None:
    opener = trio_pool.open_pool(2)
    with pytest.raises(AttributeError) as info:
        opener.submit_nowait  # type: ignore[attr-defined]  # noqa: B018
    assert str(info.value) == (
        "trio_pool.open_pool(...) returns an async context manager, not the "
        "pool itself: write 'async with trio_pool.open_pool(...) as pool:', "
        "then use pool.submit_nowait inside the block"
    )
    with pytest.raises(TypeError, match=r"cannot be awaited: write 'async with"):
        await opener  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"not 'with trio_pool\.open_pool\(\.\.\.\)'"):
        with opener:  # type: ignore[attr-defined]
            pass  # pragma: no cover
    async with opener as pool:  # still usable the right way
        assert await pool.run(sleep_and_return, 0, 4) == 4


async def test_a_wrapper_forwarding_the_default_gets_the_pool_s_job_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def run_slowly(
        pool: trio_pool.Pool,
        timeout: float | trio_pool.UsePoolDefault | None = trio_pool.USE_POOL_DEFAULT,
    ) -> object:
        return await pool.run(sleep_and_return, 5, timeout=timeout)

    async with trio_pool.open_pool(1, job_timeout=1) as pool:
        with pytest.raises(trio_pool.JobTimeout):
            await run_slowly(pool)
        assert await run_slowly(pool, None) is None


@pytest.mark.parametrize(
    "error",
    [
        trio_pool.PoolOverloaded("no room", "deadline"),
        trio_pool.SubmitTimeout("too slow"),
    ],
)
def test_overloaded_errors_keep_their_reason_through_pickle(
    error: trio_pool.PoolOverloaded,
) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.reason) == (
        type(error),
        str(error),
        error.reason,
    )

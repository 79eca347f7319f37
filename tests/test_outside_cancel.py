"""Outside cancellation with jobs queued (issue 17, finding 7).

When a scope around the pool is cancelled, its workers end; the jobs still
queued resolve CANCELLED as soon as no worker is left to run them, so the
usual cleanup (a shielded ``await pool.shutdown()`` in the body's
``finally``) returns at once instead of waiting for the ``async with`` to
exit, which it never would.
"""

from __future__ import annotations

import pytest
import trio

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping


async def test_a_shielded_shutdown_after_an_outside_cancel_returns_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    opened: list[trio_pool.Pool] = []
    with trio.move_on_after(1) as outside:
        async with trio_pool.open_pool(1, capacity=10) as pool:
            opened.append(pool)
            jobs = [pool.submit_nowait(trio.sleep, 5) for _ in range(4)]
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True), trio.fail_after(100):
                    await pool.shutdown(grace_period=50)
                    assert trio.current_time() == 1  # not after the grace period
                    assert [job.state for job in jobs] == [
                        trio_pool.JobState.CANCELLED
                    ] * 4
                    assert_balanced(pool)
    assert outside.cancelled_caught
    assert_no_bookkeeping(*opened)


@pytest.mark.parametrize("wait", ["join", "job.wait", "job.result"])
async def test_join_and_wait_after_an_outside_cancel_return(
    autojump_clock: trio.abc.Clock, wait: str
) -> None:
    opened: list[trio_pool.Pool] = []
    with trio.move_on_after(1):
        async with trio_pool.open_pool(2, capacity=10) as pool:
            opened.append(pool)
            jobs = [pool.submit_nowait(trio.sleep, 5) for _ in range(6)]
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True), trio.fail_after(100):
                    if wait == "join":
                        await pool.join()
                    elif wait == "job.wait":
                        waited = await jobs[-1].wait()
                        with pytest.raises(trio_pool.JobCancelled):
                            waited.unwrap()
                    else:
                        with pytest.raises(trio_pool.JobCancelled):
                            await jobs[-1].result()
                    assert trio.current_time() == 1
                    stats = pool.statistics()
                    assert (stats.queued, stats.cancelled, stats.closed) == (0, 6, True)
                    with pytest.raises(trio_pool.PoolClosed):
                        pool.submit_nowait(trio.sleep, 1)
    assert_no_bookkeeping(*opened)

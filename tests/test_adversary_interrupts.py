"""Issue 17, adversary: a Ctrl-C that reaches a caller parked on the pool.

A SIGINT that arrives while Trio runs its own (KI-protected) code is
delivered to the main task as it parks: the task's wait raises
`KeyboardInterrupt`. The caller that owns jobs must not leave them behind:
`Pool.run` and `JobGroup.run` cancel their job, and a group's block cancels
its jobs and waits for them, whatever ended the wait.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def interrupt_main_task_at(seconds: float) -> None:
    """Raise SIGINT from Trio's own code (a ``run_sync_soon`` callback) at
    ``seconds``: Trio delivers it to the main task where it is parked."""

    async def later() -> None:
        await trio.sleep(seconds)
        token = trio.lowlevel.current_trio_token()
        token.run_sync_soon(signal.raise_signal, signal.SIGINT)

    trio.lowlevel.spawn_system_task(later)


def run_with_sigint(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` under a MockClock with Python's own SIGINT handler (which
    Trio needs to turn SIGINT into KeyboardInterrupt)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_a_group_block_waits_cancels_the_groups_jobs() -> None:
    """No job of a group outlives its block, even when a Ctrl-C ends the
    wait at its exit (the pool goes on: the caller caught it)."""
    jobs: list[trio_pool.Job[Any]] = []
    groups: list[trio_pool.JobGroup] = []

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            other = pool.submit_nowait(trio.sleep, 50)  # not the group's
            interrupt_main_task_at(1)
            with pytest.raises(KeyboardInterrupt):
                async with pool.group() as group:
                    jobs.append(group.submit_nowait(trio.sleep, 50))
                    groups.append(group)
            assert trio.current_time() == 1
            assert [job.state for job in jobs] == [trio_pool.JobState.CANCELLED]
            with pytest.raises(RuntimeError, match="has ended"):
                groups[0].submit_nowait(trio.sleep, 1)
            assert not other.done
            assert_balanced(pool)
            other.cancel()
        assert_no_bookkeeping(pool)

    run_with_sigint(main)


@pytest.mark.parametrize("in_group", [False, True])
def test_ctrl_c_while_run_waits_cancels_its_job(in_group: bool) -> None:
    """`run`'s job is the caller's alone: an interrupt ends both."""

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            interrupt_main_task_at(1)
            with pytest.raises(KeyboardInterrupt):
                if in_group:
                    async with pool.group() as group:
                        await group.run(trio.sleep, 50)
                else:
                    await pool.run(trio.sleep, 50)
            await trio.testing.wait_all_tasks_blocked()
            stats = pool.statistics()
            assert (stats.running, stats.cancelled) == (0, 1), stats
        assert trio.current_time() == 1
        assert_no_bookkeeping(pool)

    run_with_sigint(main)


async def ignore_cancellation_for(seconds: float) -> None:
    """A job that takes ``seconds`` to honour a cancellation (a cleanup)."""
    with trio.CancelScope(shield=True):
        await trio.sleep(seconds)


@pytest.mark.parametrize("how", ["the body raised", "cancelled from outside"])
def test_ctrl_c_while_a_group_waits_for_its_cancelled_jobs(how: str) -> None:
    """As a Trio nursery does, the block goes on waiting for the jobs it
    cancelled, then the interrupt comes out as itself."""
    jobs: list[trio_pool.Job[Any]] = []

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            interrupt_main_task_at(1)
            with pytest.raises(KeyboardInterrupt), trio.CancelScope() as outside:
                async with pool.group() as group:
                    jobs.append(group.submit_nowait(ignore_cancellation_for, 5))
                    await trio.sleep(0.5)
                    if how == "the body raised":
                        raise ValueError("the body")
                    outside.cancel()
                    await trio.sleep(10)
            assert trio.current_time() == 5
            assert [job.state for job in jobs] == [trio_pool.JobState.SUCCEEDED]
            assert_balanced(pool)
        assert_no_bookkeeping(pool)

    run_with_sigint(main)


@pytest.mark.parametrize(
    "how", ["the body raised", "cancelled from outside", "left before the results"]
)
def test_ctrl_c_while_a_map_waits_for_its_cancelled_jobs(how: str) -> None:
    """The map's exit goes on waiting for the jobs it cancelled, then exits
    its nursery (before: the interrupt left the nursery open and Trio's
    cancel scope stack corrupted), and the interrupt comes out as itself."""
    pools: list[trio_pool.Pool] = []

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            pools.append(pool)
            interrupt_main_task_at(1)
            with pytest.raises(KeyboardInterrupt), trio.CancelScope() as outside:
                async with pool.map(ignore_cancellation_for, [5, 5, 5]):
                    await trio.sleep(0.5)
                    if how == "the body raised":
                        raise ValueError("the body")
                    if how == "cancelled from outside":
                        outside.cancel()
                        await trio.sleep(10)
            assert trio.current_time() == 5
            stats = pool.statistics()
            assert (stats.running, stats.queued, stats.succeeded) == (0, 0, 2)
        assert_no_bookkeeping(pool)

    run_with_sigint(main)

"""Issue 17, adversary: a cancelling group does not wait for room in the pool."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping


async def test_a_failing_block_does_not_wait_for_a_submit_still_waiting_for_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Another task's ``group.submit`` waits for room in a full pool; the
    body raises. The block cancels the group's jobs and returns at once (it
    waited, shielded, for the room, here an hour); the waiting job, accepted
    later, is cancelled at once."""
    late: list[trio_pool.Job[None]] = []
    async with trio_pool.open_pool(1, capacity=0) as pool:
        other = pool.submit_nowait(trio.sleep, 3600)  # someone else's job

        async with trio.open_nursery() as outside:
            with pytest.raises(ValueError, match="the body"):
                async with pool.group() as group:

                    async def submit_to_the_group() -> None:
                        late.append(await group.submit(trio.sleep, 1))

                    outside.start_soon(submit_to_the_group)
                    await trio.testing.wait_all_tasks_blocked()
                    assert pool.statistics().waiting_submitters == 1
                    raise ValueError("the body")
            assert trio.current_time() == 0
            other.cancel()  # room: the waiting submit is accepted
        await late[0].wait()
        assert late[0].state is trio_pool.JobState.CANCELLED
        assert trio.current_time() == 0  # it never ran its second
        assert_balanced(pool)
    assert_no_bookkeeping(pool)

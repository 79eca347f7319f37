"""`Pool.group`: a nursery-shaped scope of jobs over a shared pool."""

# pyright: reportPrivateUsage=false, reportPossiblyUnboundVariable=false

from __future__ import annotations

import logging
import signal
import sys

import pytest
import trio
import trio.lowlevel
import trio.testing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

import trio_pool
import trio_pool._group

from .helpers import assert_balanced, assert_no_bookkeeping, sleep_and_return

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

CANCELLED = trio_pool.JobState.CANCELLED
SUCCEEDED = trio_pool.JobState.SUCCEEDED
FAILED = trio_pool.JobState.FAILED


async def fail_after(seconds: float, message: str = "boom") -> None:
    await trio.sleep(seconds)
    raise ValueError(message)


def assert_group_empty(group: trio_pool.JobGroup) -> None:
    assert not group._pending
    assert not group._open


async def test_the_block_waits_for_its_own_jobs_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4) as pool:
        other = pool.submit_nowait(sleep_and_return, 10)
        async with pool.group() as group:
            first = await group.submit(sleep_and_return, 1, "a")
            second = group.submit_nowait(sleep_and_return, 2, "b")
            assert await group.run(sleep_and_return, 1, "c") == "c"
        assert trio.current_time() == 2
        assert (first.state, second.state) == (SUCCEEDED, SUCCEEDED)
        assert not other.done
        assert_group_empty(group)
        assert_balanced(pool)
    assert_no_bookkeeping(pool)


async def test_fail_fast_cancels_the_others_and_the_body(
    autojump_clock: trio.abc.Clock,
) -> None:
    body_cancelled = False
    async with trio_pool.open_pool(2, capacity=4) as pool:
        other = pool.submit_nowait(sleep_and_return, 3)
        with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="boom")):
            async with pool.group(name="fan-out") as group:
                failing = await group.submit(fail_after, 1)
                queued = await group.submit(sleep_and_return, 5)  # no worker yet
                try:
                    await trio.sleep(10)
                except trio.Cancelled:
                    body_cancelled = True
                    raise
        assert trio.current_time() == 1
        assert body_cancelled
        assert (failing.state, queued.state) == (FAILED, CANCELLED)
        assert not other.done  # another caller's job is untouched
        await other.wait()
        assert other.state is SUCCEEDED
        assert_group_empty(group)


async def test_fail_fast_cancels_running_jobs(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(3) as pool:
        with pytest.RaisesGroup(ValueError):
            async with pool.group() as group:
                running = [group.submit_nowait(sleep_and_return, 5) for _ in range(2)]
                group.submit_nowait(fail_after, 1)
        assert [job.state for job in running] == [CANCELLED, CANCELLED]
        assert trio.current_time() == 1


async def test_without_fail_fast_every_job_runs_and_failures_come_together(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3) as pool:
        with pytest.RaisesGroup(
            pytest.RaisesExc(ValueError, match="one"),
            pytest.RaisesExc(trio_pool.JobTimeout),
        ) as raised:
            async with pool.group(fail_fast=False) as group:
                ok = group.submit_nowait(sleep_and_return, 3, "ok")
                group.submit_nowait(fail_after, 1, "one")
                group.submit_nowait(sleep_and_return, 10, timeout=2)
                await trio.sleep(5)  # the body is not cancelled
        assert "2 jobs of group" in str(raised.value)
        assert ok.state is SUCCEEDED
        assert trio.current_time() == 5


async def test_failures_raised_by_the_group_are_read(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pool.open_pool(2) as pool:
        with pytest.RaisesGroup(ValueError):
            async with pool.group() as group:
                group.submit_nowait(fail_after, 1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_cancelled_job_is_no_failure(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2) as pool:
        async with pool.group() as group:
            job = group.submit_nowait(sleep_and_return, 5)
            survivor = group.submit_nowait(sleep_and_return, 1)
            job.cancel()
        assert (job.state, survivor.state) == (CANCELLED, SUCCEEDED)


async def test_the_body_error_comes_out_as_itself(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    error = KeyError("body")
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(KeyError) as raised:
            async with pool.group() as group:
                queued = [group.submit_nowait(sleep_and_return, 5) for _ in range(3)]
                failed = group.submit_nowait(fail_after, 0)  # queued behind them
                await trio.sleep(1)
                raise error
        assert raised.value is error
        assert trio.current_time() == 1
        assert failed.state is CANCELLED
        assert all(job.state is CANCELLED for job in queued)
        assert_group_empty(group)
    # a failure the body's exception hid is not lost: the pool warns of it
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(KeyError):
            async with pool.group(fail_fast=False) as group:
                group.submit_nowait(fail_after, 0, "hidden")
                await trio.sleep(1)
                raise KeyError("body")
    assert any("hidden" in str(r.exc_info) for r in caplog.records if r.exc_info)


async def test_reading_a_job_the_group_cancelled_gives_the_failures(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="first")):
            async with pool.group() as group:
                group.submit_nowait(fail_after, 1, "first")
                slow = group.submit_nowait(sleep_and_return, 5)
                with trio.CancelScope(shield=True):  # the body reads it anyway
                    await slow.result()


async def test_outside_cancellation_cancels_the_jobs_and_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def stubborn() -> str:
        with trio.CancelScope(shield=True):
            await trio.sleep(2)
        await trio.sleep(10)
        return "never"

    async with trio_pool.open_pool(2) as pool:
        other = pool.submit_nowait(sleep_and_return, 5)
        with trio.move_on_after(1) as scope:
            async with pool.group() as group:
                job = group.submit_nowait(stubborn)
                queued = group.submit_nowait(sleep_and_return, 5)
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert trio.current_time() == 2  # waited for the shielded part
        assert (job.state, queued.state) == (CANCELLED, CANCELLED)
        assert not other.done
        assert_group_empty(group)


async def test_outside_cancellation_while_the_block_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        with trio.move_on_after(1) as scope:
            async with pool.group() as group:
                job = group.submit_nowait(sleep_and_return, 5)
        assert scope.cancelled_caught
        assert job.state is CANCELLED
        assert trio.current_time() == 1


async def test_a_fail_fast_group_cancels_a_body_waiting_for_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        with pytest.RaisesGroup(ValueError):
            async with pool.group() as group:
                await group.submit(fail_after, 1)
                await group.submit(sleep_and_return, 1)  # waits for room
                raise AssertionError("not reached")
        assert pool.statistics().waiting_submitters == 0
        assert_group_empty(group)


async def test_jobs_of_the_group_may_submit_to_it_while_it_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    done: list[int] = []

    async def spread(group: trio_pool.JobGroup, depth: int) -> None:
        await trio.sleep(1)
        done.append(depth)
        if depth < 3:
            group.submit_nowait(spread, group, depth + 1)

    async with trio_pool.open_pool(2) as pool, pool.group() as group:
        group.submit_nowait(spread, group, 0)
    assert done == [0, 1, 2, 3]
    assert trio.current_time() == 4


async def test_a_submit_after_the_block_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        async with pool.group(name="req") as group:
            pass
        with pytest.raises(RuntimeError, match="group 'req' has ended"):
            group.submit_nowait(sleep_and_return, 1)
        with pytest.raises(RuntimeError, match="has ended"):
            await group.submit(sleep_and_return, 1)
        with pytest.raises(RuntimeError, match="has ended"):
            await group.run(sleep_and_return, 1)
        assert pool.statistics().submitted == 0


async def test_the_pools_refusals_come_through(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        async with pool.group() as group:
            group.submit_nowait(sleep_and_return, 1)
            with pytest.raises(trio_pool.PoolOverloaded):
                group.submit_nowait(sleep_and_return, 1)
            with pytest.raises(TypeError):
                group.submit_nowait(sleep_and_return, 1, name=3)  # type: ignore[arg-type]
            assert len(group._pending) == 1
            pool.close()
            with pytest.raises(trio_pool.PoolClosed):
                await group.submit(sleep_and_return, 1)
        assert_group_empty(group)


async def test_group_arguments_and_misuse() -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(TypeError, match="fail_fast"):
            pool.group(fail_fast=1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name"):
            pool.group(name=5)  # type: ignore[arg-type]
        with pytest.raises(AttributeError, match=r"async with pool\.group"):
            pool.group().submit_nowait  # type: ignore[attr-defined]  # noqa: B018
        block = pool.group()
        async with block as group:
            assert group.fail_fast
            assert group.name.startswith("group-")
            assert "JobGroup" in repr(group)
            with pytest.raises(RuntimeError, match="entered only once"):
                async with block:
                    pass


async def test_the_group_is_a_span_parent_of_its_jobs(
    autojump_clock: trio.abc.Clock,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with trio_pool.open_pool(2, tracer_provider=provider) as pool:
        async with pool.group(name="request") as group:
            group.submit_nowait(sleep_and_return, 1, name="part")
            group.submit_nowait(sleep_and_return, 1, name="part")
        with pytest.RaisesGroup(ValueError):
            async with pool.group(name="failing") as group:
                group.submit_nowait(fail_after, 1, name="bad")
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.name == "group request"]
    parts = [s for s in spans if s.name == "run part"]
    assert len(parts) == 2
    assert request.context is not None
    for part in parts:
        assert part.parent is not None
        assert part.parent.span_id == request.context.span_id
    assert request.attributes is not None
    assert request.attributes["trio_pool.group.failed_jobs"] == 0
    (failing,) = [s for s in spans if s.name == "group failing"]
    assert failing.status.status_code is StatusCode.ERROR
    assert failing.attributes is not None
    assert failing.attributes["trio_pool.group.failed_jobs"] == 1


async def test_groups_of_several_requests_are_independent(
    autojump_clock: trio.abc.Clock,
) -> None:
    results: dict[int, object] = {}

    async def handler(pool: trio_pool.Pool, request: int) -> None:
        try:
            async with pool.group() as group:
                jobs = [
                    group.submit_nowait(
                        fail_after if request == 1 and part == 1 else sleep_and_return,
                        part + 1,
                    )
                    for part in range(3)
                ]
            results[request] = [job.state for job in jobs]
        except ExceptionGroup as exc:
            results[request] = exc

    async with trio_pool.open_pool(9) as pool, trio.open_nursery() as nursery:
        for request in range(3):
            nursery.start_soon(handler, pool, request)
    assert results[0] == results[2] == [SUCCEEDED] * 3
    assert isinstance(results[1], ExceptionGroup)


async def test_a_job_submitted_as_the_block_exits_is_waited_for(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (found by the state machine: the exit passed its checkpoint with
    # nothing pending, and did not look again)
    late: list[trio_pool.Job[object]] = []
    group: trio_pool.JobGroup | None = None

    async def checkpoint_where_another_task_submits() -> None:
        await trio.lowlevel.checkpoint()
        if group is not None and not late:  # another task's turn
            late.append(group.submit_nowait(sleep_and_return, 1))

    monkeypatch.setattr(
        trio_pool._group, "checkpoint", checkpoint_where_another_task_submits
    )
    async with trio_pool.open_pool(1) as pool:
        async with pool.group() as group:
            pass
        assert late
        assert late[0].done
        assert trio.current_time() == 1


async def test_a_failing_group_cancels_what_is_submitted_to_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        with pytest.RaisesGroup(ValueError):
            async with pool.group() as group:
                group.submit_nowait(fail_after, 1)
                with trio.CancelScope(shield=True):
                    await trio.sleep(2)  # the group fails meanwhile
                    late = group.submit_nowait(sleep_and_return, 1)
                    assert late.state is CANCELLED
                    assert_balanced(pool)


async def test_run_cancelled_cancels_its_job(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1) as pool:
        async with pool.group() as group:
            with trio.move_on_after(1):
                await group.run(sleep_and_return, 5)
        assert pool.statistics().cancelled == 1
        assert trio.current_time() == 1


async def test_a_body_group_with_the_groups_cancellation_in_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def raise_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise KeyError("cleanup failed")

    async with trio_pool.open_pool(2) as pool:
        # The body's own error (a nursery's, with the group's Cancelled of its
        # other task taken out) comes out as itself.
        with pytest.RaisesGroup(KeyError):
            async with pool.group() as group, trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                nursery.start_soon(raise_when_cancelled)
                group.submit_nowait(fail_after, 1)


async def test_the_groups_submits_take_keys_and_shed(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, per_key_limit=1, shed=True) as pool:
        async with pool.group() as group:
            await group.run(sleep_and_return, 1)  # measured: jobs take 1 s
            first = await group.submit(sleep_and_return, 1, key="k")
            second = group.submit_nowait(sleep_and_return, 1, key="k")
            assert pool.statistics().waiting_for_key == 1
            with trio.move_on_after(1.5):
                with pytest.raises(trio_pool.PoolOverloaded, match="sheds"):
                    await group.submit(sleep_and_return, 1, key="k")
                with pytest.raises(trio_pool.PoolOverloaded, match="sheds"):
                    group.submit_nowait(sleep_and_return, 1, key="k")
            assert len(group._pending) == 2
        assert first.finished_at == 2
        assert second.finished_at == 3


def test_ctrl_c_as_the_group_exits_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The block's enter and exit are KI-protected: a Ctrl-C there comes out
    as itself, and every job of the group (and of the pool) is done."""
    pools: list[trio_pool.Pool] = []
    groups: list[trio_pool.JobGroup] = []
    jobs: list[trio_pool.Job[object]] = []
    real = trio_pool.JobGroup._exit
    fired: list[bool] = []

    async def interrupted(self: trio_pool.JobGroup, exc: BaseException | None) -> bool:
        if not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGINT)
        return await real(self, exc)

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            pools.append(pool)
            monkeypatch.setattr(trio_pool.JobGroup, "_exit", interrupted)
            async with pool.group() as group:
                groups.append(group)
                jobs.extend(group.submit_nowait(sleep_and_return, 5) for _ in range(3))

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert fired
    assert all(job.done for job in jobs)
    assert not groups[0]._pending
    assert_no_bookkeeping(pools[0])

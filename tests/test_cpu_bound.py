"""CPU-bound jobs in real trio-parallel worker processes (docs/howto/cpu-bound.rst).

Success paths share trio-parallel's default worker context, whose processes
outlive a test and serve the next. A test that counts or kills processes
opens a context of its own, and its process calls check in on a Unix socket
(`cpu_helpers.check_in`): the test then knows that a call really runs in a
process, which one, and sees its connection close when the process dies.
Processes take real time, so the tests wait for what the parent can see (a
check-in, a job's end, `trio.testing.wait_all_tasks_blocked`), never for
wall-clock sleeps. Under the autojump clock a task waiting for a process
counts as blocked: a time limit expires as soon as every task waits, so the
time-limit tests move a `trio.testing.MockClock` by hand instead.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import traceback
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
import trio_parallel
from cpu_work import count_primes, primes_job

import trio_pool

from .cpu_helpers import hold, spin_forever
from .helpers import assert_balanced

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

EXAMPLES = Path(__file__).parents[1] / "examples"

#: count_primes(limit) for a few limits, computed in this process.
EXPECTED = {limit: count_primes(limit) for limit in (0, 2, 3, 100, 1000, 20_000)}


class CheckIns:
    """The test's end of the Unix socket where process calls check in."""

    def __init__(self, listener: trio.socket.SocketType, address: str) -> None:
        self.listener = listener
        self.address = address

    async def next(self) -> tuple[trio.socket.SocketType, int, int]:
        """Wait for the next call to check in: its connection, token and pid."""
        conn, _ = await self.listener.accept()
        data = b""
        while len(data) < 8:
            chunk = await conn.recv(8 - len(data))
            assert chunk, "a process call hung up before checking in"
            data += chunk
        return conn, int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big")


@asynccontextmanager
async def open_check_ins(folder: Path) -> AsyncGenerator[CheckIns, None]:
    """Listen on a Unix socket in ``folder`` for process calls to check in."""
    address = str(folder / "check-in")
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        await listener.bind(address)
        listener.listen()
        yield CheckIns(listener, address)


async def spin_job(context: trio_parallel.WorkerContext, address: str) -> None:
    """A job whose process call never returns unless its process is killed."""
    await context.run_sync(spin_forever, address, kill_on_cancel=True)


async def assert_dead(conn: trio.socket.SocketType, pid: int) -> None:
    """The process ``pid`` is gone: its connection closed, no such process."""
    assert await conn.recv(1) == b""
    conn.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


async def test_results_come_back_through_pool_jobs() -> None:
    limits = list(EXPECTED)
    async with trio_pool.open_pool(2) as pool:
        jobs = [await pool.submit(primes_job, limit) for limit in limits]
        assert [await job.result() for job in jobs] == list(EXPECTED.values())
        async with pool.map(primes_job, limits) as results:
            assert [count async for count in results] == list(EXPECTED.values())
        assert await pool.run(primes_job, 1000) == 168
    stats = pool.statistics()
    assert (stats.submitted, stats.succeeded, stats.failed) == (13, 13, 0)


async def test_the_pool_bounds_how_many_process_calls_run(tmp_path: Path) -> None:
    """5 jobs, 2 pool workers, a process limiter of 4: at most 2 calls run.

    Each process call checks in and runs until the test releases it; only
    then may the next queued job start its call.
    """
    limiter = trio.CapacityLimiter(4)  # more than the pool: the pool is the bound
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
        trio_pool.open_pool(2, capacity=3) as pool,
    ):

        async def held(token: int) -> tuple[int, int]:
            return await context.run_sync(
                hold, check_ins.address, token, kill_on_cancel=True, limiter=limiter
            )

        jobs = [await pool.submit(held, token) for token in range(5)]
        running: dict[trio.socket.SocketType, int] = {}
        for done in range(5):
            while len(running) < min(2, 5 - done):
                conn, token, _ = await check_ins.next()
                running[conn] = token
            await trio.testing.wait_all_tasks_blocked()
            stats = pool.statistics()
            assert (stats.running, stats.queued, stats.succeeded) == (
                len(running),
                max(0, 3 - done),
                done,
            )
            assert limiter.borrowed_tokens == len(running)
            assert context.statistics().running_workers == len(running)
            assert_balanced(pool)
            conn, token = running.popitem()
            await conn.send(b"x")  # let this one call return
            conn.close()
            assert (await jobs[token].result())[0] == token
        pids = {pid for _, pid in [await job.result() for job in jobs]}
        assert len(pids) == 2  # never more than 2 at once: 2 processes did it all
        assert context.statistics().idle_workers == 2


async def test_a_time_limit_kills_the_process_call(
    mock_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
        trio_pool.open_pool(1) as pool,
    ):
        start = trio.current_time()
        stuck = await pool.submit(spin_job, context, check_ins.address, timeout=5)
        conn, _, pid = await check_ins.next()  # spinning in process pid
        mock_clock.jump(4)
        await trio.testing.wait_all_tasks_blocked()
        assert not stuck.done  # still spinning, 1 s before its limit
        mock_clock.jump(1)
        await stuck.wait()
        assert stuck.state is trio_pool.JobState.TIMED_OUT
        assert trio.current_time() - start == 5
        with pytest.raises(trio_pool.JobTimeout):
            await stuck.result()
        await assert_dead(conn, pid)
        stats = context.statistics()  # the killed worker is not kept for reuse
        assert (stats.running_workers, stats.idle_workers) == (0, 0)

        # The next call works, in a new process.
        async def pid_job() -> int:
            return await context.run_sync(os.getpid)

        assert await pool.run(pid_job) != pid
        assert await pool.run(primes_job, 1000) == 168
    assert pool.statistics().timed_out == 1


async def test_without_kill_on_cancel_a_timed_out_job_waits_for_its_process(
    mock_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The contrast: the process call shields its job from the time limit."""
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
        trio_pool.open_pool(1) as pool,
    ):

        async def patient() -> tuple[int, int]:
            return await context.run_sync(hold, check_ins.address, 7)

        start = trio.current_time()
        job = await pool.submit(patient, timeout=1)
        conn, _, pid = await check_ins.next()
        mock_clock.jump(2)  # past the limit
        await trio.testing.wait_all_tasks_blocked()
        assert not job.done  # the call goes on, and the job waits for it
        await conn.send(b"x")
        conn.close()
        assert await job.result() == (7, pid)  # late, but it succeeded
        assert job.state is trio_pool.JobState.SUCCEEDED
        assert trio.current_time() - start == 2


async def test_a_failing_process_call_stays_in_its_job() -> None:
    limits = [1000, -1, 100, -5, 3]
    async with trio_pool.open_pool(2) as pool:
        jobs = [await pool.submit(primes_job, limit) for limit in limits]
        outcomes = [await job.wait() for job in jobs]
    assert [job.state for job in jobs] == [
        trio_pool.JobState.SUCCEEDED,
        trio_pool.JobState.FAILED,
        trio_pool.JobState.SUCCEEDED,
        trio_pool.JobState.FAILED,
        trio_pool.JobState.SUCCEEDED,
    ]
    assert [outcomes[i].unwrap() for i in (0, 2, 4)] == [168, 25, 1]
    with pytest.raises(ValueError, match=r"^limit must be >= 0, not -1$") as info:
        await jobs[1].result()
    # The traceback reaches into the worker process, where the error was raised.
    text = "".join(traceback.format_exception(info.value))
    assert re.search(r'cpu_work\.py", line \d+, in count_primes', text), text
    stats = pool.statistics()
    assert (stats.succeeded, stats.failed) == (3, 2)


async def test_cancelling_a_running_job_kills_only_its_process(
    tmp_path: Path,
) -> None:
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
        trio_pool.open_pool(2) as pool,
    ):
        stuck = await pool.submit(spin_job, context, check_ins.address)
        conn, _, pid = await check_ins.next()

        async def held() -> tuple[int, int]:
            return await context.run_sync(hold, check_ins.address, 1)

        other = await pool.submit(held)
        other_conn, _, other_pid = await check_ins.next()
        stuck.cancel()
        await stuck.wait()
        assert stuck.state is trio_pool.JobState.CANCELLED
        await assert_dead(conn, pid)
        # The other job goes on, in its process, and so does the pool.
        assert other.state is trio_pool.JobState.RUNNING
        await other_conn.send(b"x")
        other_conn.close()
        assert await other.result() == (1, other_pid)
        assert await pool.run(primes_job, 100) == 25


async def test_shutdown_resolves_every_handle_and_kills_the_processes(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
    ):
        async with trio_pool.open_pool(2, capacity=4) as pool:
            jobs = [
                await pool.submit(spin_job, context, check_ins.address)
                for _ in range(5)
            ]
            calls = [await check_ins.next(), await check_ins.next()]
            start = trio.current_time()
            await pool.shutdown(grace_period=10)
            assert trio.current_time() - start == 10
        assert [job.state for job in jobs] == [trio_pool.JobState.CANCELLED] * 5
        for conn, _, pid in calls:
            await assert_dead(conn, pid)
        stats = context.statistics()
        assert (stats.running_workers, stats.idle_workers) == (0, 0)
        assert pool.statistics().cancelled == 5


async def test_a_failing_body_cancels_every_job_and_kills_the_processes(
    tmp_path: Path,
) -> None:
    jobs: list[trio_pool.Job[None]] = []
    calls: list[tuple[trio.socket.SocketType, int, int]] = []
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
    ):
        with pytest.raises(KeyError, match="the body failed"):
            async with trio_pool.open_pool(2, capacity=4) as pool:
                for _ in range(4):
                    jobs.append(await pool.submit(spin_job, context, check_ins.address))
                calls += [await check_ins.next(), await check_ins.next()]
                raise KeyError("the body failed")
        assert [job.state for job in jobs] == [trio_pool.JobState.CANCELLED] * 4
        for conn, _, pid in calls:
            await assert_dead(conn, pid)
        assert context.statistics().running_workers == 0


async def test_an_outer_cancel_cancels_every_job_and_kills_the_processes(
    tmp_path: Path,
) -> None:
    jobs: list[trio_pool.Job[None]] = []
    calls: list[tuple[trio.socket.SocketType, int, int]] = []
    async with (
        open_check_ins(tmp_path) as check_ins,
        trio_parallel.open_worker_context() as context,
    ):
        with trio.CancelScope() as outer:
            async with trio_pool.open_pool(2, capacity=4) as pool:
                for _ in range(4):
                    jobs.append(await pool.submit(spin_job, context, check_ins.address))
                calls += [await check_ins.next(), await check_ins.next()]
                outer.cancel()
                await trio.sleep_forever()
        assert outer.cancelled_caught
        assert [job.state for job in jobs] == [trio_pool.JobState.CANCELLED] * 4
        for conn, _, pid in calls:
            await assert_dead(conn, pid)
        assert context.statistics().running_workers == 0


def test_the_example_script_runs_with_its_main_guard() -> None:
    """Spawned workers import the script's module: its guard keeps them workers."""
    output = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "cpu_work.py"),
            "--jobs=4",
            "--limit=2000",
            "--processes=2",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert re.fullmatch(
        r"4 jobs of count_primes\(2000\) through 2 processes: "
        r"\d+\.\d\d s, \d+\.\d jobs/s\n",
        output,
    ), output

"""The implementations compared: the same jobs, at most ``workers`` at a time.

Each ``run_*`` function runs ``n`` jobs of one kind (``noop``, ``checkpoint``:
one schedule point, ``cpu``: about 20 µs of arithmetic) through one library or
idiom, and returns when every result is in. `worker.py` times one of them in a
fresh process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable
from typing import Any

import trio

import trio_pool

CPU_LOOPS = 400  # about 20 µs on the 2-core machines this was tuned on


def burn() -> int:
    """About 20 µs of pure-Python work."""
    total = 0
    for i in range(CPU_LOOPS):
        total += i * i
    return total


# ---------------------------------------------------------------- trio jobs


# Each job takes an optional item that it ignores, so that every
# implementation runs the very same function: ``pool.map`` passes it an item,
# the others call it with none (a wrapper coroutine around it would cost the
# map a frame per job that nobody else pays).


async def trio_noop(_: object = None) -> None:
    """A job that does nothing."""


async def trio_checkpoint(_: object = None) -> None:
    """A job that passes one schedule point."""
    await trio.lowlevel.checkpoint()


async def trio_cpu(_: object = None) -> int:
    """A job that burns about 20 µs."""
    return burn()


TRIO_JOBS: dict[str, Callable[..., Any]] = {
    "noop": trio_noop,
    "checkpoint": trio_checkpoint,
    "cpu": trio_cpu,
}


def _telemetry_kwargs(telemetry: str) -> dict[str, Any]:
    if telemetry == "off":
        return {"telemetry": False}
    if telemetry == "nosdk":
        return {}
    if telemetry.startswith("stub"):
        return _stub_providers(sampled=telemetry == "stub")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    class DroppingExporter(InMemorySpanExporter):
        """Exports into memory and forgets, so RSS measures the pool, not spans."""

        def export(self, spans: Any) -> Any:
            result = super().export(spans)
            self.clear()
            return result

    # "sdk-unsampled": the SDK with a sampler that samples nothing, the
    # cheapest way to leave tracing on in production.
    sampler = ALWAYS_OFF if telemetry == "sdk-unsampled" else None
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(DroppingExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


def _stub_providers(*, sampled: bool) -> dict[str, Any]:
    """Providers whose calls do nothing (``telemetry_floor.py``): what is left
    of a pool's telemetry with them is the pool's own part."""
    from opentelemetry import metrics, trace

    class StubSpan(trace.NonRecordingSpan):
        def is_recording(self) -> bool:
            return sampled

    span = StubSpan(trace.INVALID_SPAN_CONTEXT)

    class StubTracer(trace.NoOpTracer):
        def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
            return span

    class StubTracerProvider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            return StubTracer()

    class StubHistogram:
        def record(self, *args: Any, **kwargs: Any) -> None:
            pass

    class StubMeter(metrics.NoOpMeter):
        def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
            return StubHistogram()

    class StubMeterProvider(metrics.MeterProvider):
        def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
            return StubMeter("stub")

    return {
        "tracer_provider": StubTracerProvider(),
        "meter_provider": StubMeterProvider(),
    }


def run_trio_pool_submit(n: int, workers: int, job: str, telemetry: str) -> None:
    """trio_pool: submit every job from one task, then await every result."""
    fn = TRIO_JOBS[job]
    kwargs = _telemetry_kwargs(telemetry)

    async def main() -> None:
        async with trio_pool.open_pool(workers, **kwargs) as pool:
            jobs = [await pool.submit(fn) for _ in range(n)]
            for handle in jobs:
                await handle.result()

    trio.run(main)


def run_trio_pool_map(n: int, workers: int, job: str, telemetry: str) -> None:
    """trio_pool: pool.map over range(n)."""
    fn = TRIO_JOBS[job]
    kwargs = _telemetry_kwargs(telemetry)

    async def main() -> None:
        async with trio_pool.open_pool(workers, **kwargs) as pool:
            async with pool.map(fn, range(n)) as results:
                async for _ in results:
                    pass

    trio.run(main)


def run_trio_nursery_limiter(n: int, workers: int, job: str) -> None:
    """The idiom to beat: a nursery, a CapacityLimiter acquired before start_soon."""
    fn = TRIO_JOBS[job]

    async def main() -> None:
        limiter = trio.CapacityLimiter(workers)
        results: list[Any] = []

        async def run_one(token: object) -> None:
            try:
                results.append(await fn())
            finally:
                limiter.release_on_behalf_of(token)

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(run_one, token)

    trio.run(main)


def run_trio_channel_pool(n: int, workers: int, job: str) -> None:
    """The floor: a minimal memory-channel worker pool with no features."""
    fn = TRIO_JOBS[job]

    async def main() -> None:
        send, receive = trio.open_memory_channel[Any](workers)
        results: list[Any] = []

        async def worker() -> None:
            while True:
                try:
                    item = receive.receive_nowait()
                except trio.WouldBlock:
                    try:
                        item = await receive.receive()
                    except trio.EndOfChannel:
                        return
                except trio.EndOfChannel:
                    return
                results.append(await item())

        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(worker)
            async with send:
                for _ in range(n):
                    try:
                        send.send_nowait(fn)
                    except trio.WouldBlock:
                        await send.send(fn)

    trio.run(main)


def run_anyio_taskgroup_limiter(n: int, workers: int, job: str) -> None:
    """anyio on the trio backend: a task group and an anyio CapacityLimiter."""
    import anyio
    import anyio.lowlevel

    async def noop() -> None:
        pass

    async def checkpoint() -> None:
        await anyio.lowlevel.checkpoint()

    async def cpu() -> int:
        return burn()

    fn = {"noop": noop, "checkpoint": checkpoint, "cpu": cpu}[job]

    async def main() -> None:
        limiter = anyio.CapacityLimiter(workers)

        async def run_one(token: object) -> None:
            try:
                await fn()
            finally:
                limiter.release_on_behalf_of(token)

        async with anyio.create_task_group() as group:
            for _ in range(n):
                token = object()
                await limiter.acquire_on_behalf_of(token)
                group.start_soon(run_one, token)

    anyio.run(main, backend="trio")


def run_aiometer(n: int, workers: int, job: str) -> None:
    """aiometer.run_all on trio (it needs the whole list of jobs up front)."""
    import aiometer

    fn = TRIO_JOBS[job]

    async def main() -> None:
        await aiometer.run_all([fn] * n, max_at_once=workers)

    trio.run(main)


def _asyncio_job(job: str) -> Callable[[], Any]:
    async def noop() -> None:
        pass

    async def checkpoint() -> None:
        await asyncio.sleep(0)

    async def cpu() -> int:
        return burn()

    return {"noop": noop, "checkpoint": checkpoint, "cpu": cpu}[job]


def run_asyncio_taskgroup_semaphore(n: int, workers: int, job: str) -> None:
    """asyncio: a TaskGroup and a Semaphore acquired before create_task."""
    fn = _asyncio_job(job)

    async def main() -> None:
        semaphore = asyncio.Semaphore(workers)

        async def run_one() -> None:
            try:
                await fn()
            finally:
                semaphore.release()

        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            for _ in range(n):
                await semaphore.acquire()
                group.create_task(run_one())

    asyncio.run(main())


def run_asyncio_queue_workers(n: int, workers: int, job: str) -> None:
    """asyncio: a bounded Queue and ``workers`` worker tasks."""
    fn = _asyncio_job(job)

    async def main() -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(workers)
        results: list[Any] = []

        async def worker() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                results.append(await item())

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        for _ in range(n):
            await queue.put(fn)
        for _ in range(workers):
            await queue.put(None)
        await asyncio.gather(*tasks)

    asyncio.run(main())


def run_thread_pool(n: int, workers: int, job: str) -> None:
    """concurrent.futures.ThreadPoolExecutor with sync jobs."""
    fn: Callable[[], Any] = {
        "noop": lambda: None,
        "checkpoint": functools.partial(time.sleep, 0),
        "cpu": burn,
    }[job]
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        futures = [executor.submit(fn) for _ in range(n)]
        for future in futures:
            future.result()


def _with_telemetry(
    runner: Callable[[int, int, str, str], None], telemetry: str
) -> Callable[[int, int, str], None]:
    def run(n: int, workers: int, job: str) -> None:
        runner(n, workers, job, telemetry)

    return run


TELEMETRY = {
    "off": "telemetry off",
    "nosdk": "telemetry, no SDK",
    "sdk": "telemetry, SDK",
    "sdk-unsampled": "telemetry, SDK, nothing sampled",
}
IMPLEMENTATIONS: dict[str, Callable[[int, int, str], None]] = {
    **{
        f"trio_pool submit ({label})": _with_telemetry(run_trio_pool_submit, key)
        for key, label in TELEMETRY.items()
    },
    **{
        f"trio_pool map ({label})": _with_telemetry(run_trio_pool_map, key)
        for key, label in TELEMETRY.items()
    },
    "trio nursery + CapacityLimiter (idiom)": run_trio_nursery_limiter,
    "trio channel pool (floor)": run_trio_channel_pool,
    "anyio task group + CapacityLimiter": run_anyio_taskgroup_limiter,
    "aiometer.run_all": run_aiometer,
    "asyncio TaskGroup + Semaphore": run_asyncio_taskgroup_semaphore,
    "asyncio Queue + workers": run_asyncio_queue_workers,
    "ThreadPoolExecutor": run_thread_pool,
}
IDIOM = "trio nursery + CapacityLimiter (idiom)"

"""The trio_pool demo: a crawler-like batch with backpressure, failures and time-outs.

Run it with ``python3 -m nox -s demo`` (or ``python examples/demo.py``). It
runs 200 simulated fetches through 16 workers: some fail, some are too slow
and time out, and a burst is refused with ``submit_nowait``. Every job gets
an OpenTelemetry span under the submitter's span; the demo prints the
outcome, the pool's statistics, the spans and the metrics at the end.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import trio_pool


class FetchError(Exception):
    """A simulated failed fetch."""


async def fetch(url: str, rng: random.Random) -> int:
    """Pretend to fetch ``url``; return its size in bytes."""
    await trio.sleep(rng.uniform(0.001, 0.02))
    if rng.random() < 0.05:
        raise FetchError(f"{url}: connection reset")
    if rng.random() < 0.03:
        await trio.sleep(10)  # a stuck server: the job's time limit stops it
    return rng.randrange(1_000, 100_000)


def try_submit(pool: trio_pool.Pool, rng: random.Random) -> bool:
    """Submit one fetch if there is room right now; never wait."""
    try:
        pool.submit_nowait(fetch, "https://example.test/burst", rng)
    except trio_pool.PoolOverloaded:
        return False
    return True


async def main() -> None:
    """Run the demo."""
    logging.basicConfig(level=logging.ERROR)  # failures are logged at WARNING
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer = tracer_provider.get_tracer("demo")
    rng = random.Random(42)

    urls = [f"https://example.test/page/{i}" for i in range(200)]
    async with trio_pool.open_pool(
        16,
        capacity=32,
        job_timeout=0.5,
        name="crawler",
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    ) as pool:
        with tracer.start_as_current_span("crawl"):
            jobs = [await pool.submit(fetch, url, rng, name="fetch") for url in urls]
        total = 0
        for job in jobs:
            outcome = await job.wait()
            if job.state is trio_pool.JobState.SUCCEEDED:
                total += outcome.unwrap()
        print(f"fetched {total:,} bytes")
        print("outcomes:", dict(Counter(job.state.value for job in jobs)))

        # A burst that must never block the caller: take what fits, refuse the rest.
        accepted = sum(try_submit(pool, rng) for _ in range(100))
        print(f"burst of 100: {accepted} accepted, {100 - accepted} refused at once")
        data = reader.get_metrics_data()  # the gauges report live pools
    print("statistics:", pool.statistics())

    finished = spans.get_finished_spans()
    crawl = next(span for span in finished if span.name == "crawl")
    children = [
        span
        for span in finished
        if span.parent is not None and span.parent.span_id == crawl.context.span_id
    ]
    print(f"spans: {len(finished)} in all, {len(children)} children of 'crawl'")
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = len(list(metric.data.data_points))
                print(f"metric {metric.name} ({metric.unit}): {points} point(s)")


if __name__ == "__main__":
    trio.run(main)

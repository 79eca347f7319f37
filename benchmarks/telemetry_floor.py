"""What the OpenTelemetry SDK itself costs per job, with no pool around it.

Per job, a pool with telemetry records one duration histogram measurement and
opens, makes current, and (if sampled) ends one span. This script times
exactly those SDK calls in a loop (CPU time, best of 3 runs), so that the
pool's telemetry figures in ``run.py --compare`` can be read against the part
no pool can avoid. Usage: ``python benchmarks/telemetry_floor.py [-n N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler

# The attributes the pool gives each job's span (see docs/telemetry.rst).
POOL = "trio_pool.name"
JOB = "trio_pool.job.name"
WAIT = "trio_pool.job.wait.duration"


class DroppingExporter(SpanExporter):
    """Takes every span and keeps none."""

    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def best_us(n: int, step: Callable[[], None]) -> float:
    """The best of 3 timings of ``n`` calls of ``step``, in µs per call."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(n):
            step()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def span_step(sampler: Sampler | None) -> Callable[[], None]:
    """One job's span: start it, make it current, end it if sampled."""
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(DroppingExporter()))
    tracer = provider.get_tracer("trio_pool")
    parent = otel_context.get_current()

    def step() -> None:
        span = tracer.start_span(
            "run job",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes={POOL: "pool-1", JOB: "job", WAIT: 0.001},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        if span.is_recording():
            span.set_attribute("trio_pool.job.outcome", "succeeded")
            span.end()
        otel_context.detach(token)

    return step


def main() -> None:
    """Time the histogram record and the span, alone."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000)
    n = parser.parse_args().n
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("x")
    histogram = meter.create_histogram("trio_pool.job.duration", unit="s")
    attributes = {"trio_pool.name": "pool-1", "trio_pool.job.outcome": "succeeded"}
    record = best_us(n, lambda: histogram.record(0.001, attributes))
    sampled = best_us(n, span_step(None))
    unsampled = best_us(n, span_step(ALWAYS_OFF))
    print(f"histogram record               {record:6.2f} µs")
    print(f"span, sampled                  {sampled:6.2f} µs")
    print(f"span, nothing sampled          {unsampled:6.2f} µs")
    print(f"per job, SDK                   {record + sampled:6.2f} µs")
    print(f"per job, SDK, nothing sampled  {record + unsampled:6.2f} µs")


if __name__ == "__main__":
    main()

"""Telemetry's cost per job in a pool, next to what the OpenTelemetry SDK charges.

One method for everything: each figure is the CPU time (``process_time``) of
one run in a fresh process, in µs per job; the rounds are interleaved (every
kind once per round) and the table shows the medians.

The pool rows run ``pool.map`` over 10⁵ no-op jobs through 64 workers
(`workloads.py`'s map, with its providers: a span per job to a dropping
exporter, metrics to an in-memory reader) with telemetry off, with no SDK,
with the SDK and a sampler that samples nothing, and with the SDK sampling
every span.

The floor rows run, in a loop, exactly the SDK calls a pool makes per job, in
the pool's order and with the same providers: the span started with its
attributes, as a child of the submitter's context (read once per batch of a
map's jobs: once here), and made current; the duration histogram recorded
in the span's context (given, not looked up); the outcome attribute set and
the span ended when it is sampled; the context restored. The histogram is
recorded while a sampled span is current, so the SDK's default exemplar
filter (trace-based) offers the reservoir an exemplar per job; the row
without exemplars (an ``AlwaysOffExemplarFilter``) says what that part
costs. Below them, the parts alone.

The stub rows run the same pool and the same loop with providers whose
calls do nothing: the pool's own part is its stub row less the pool with no
SDK and the loop with stubs; what is left of the pool's SDK rows is the
SDK's calls costing more among the pool's tasks than in a tight loop.

Usage: ``python benchmarks/telemetry_floor.py [--rounds R] [-n N]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

POOL = "trio_pool.name"
JOB = "trio_pool.job.name"
WAIT = "trio_pool.job.wait.duration"
OUTCOME = "trio_pool.job.outcome"

POOL_KINDS = {
    "off": "pool, telemetry off",
    "nosdk": "pool, telemetry, no SDK",
    "sdk-unsampled": "pool, SDK, nothing sampled",
    "sdk": "pool, SDK, sampled",
    "stub-unsampled": "pool, stub providers, nothing sampled",
    "stub": "pool, stub providers, sampled",
}
FLOOR_KINDS = {
    "floor-unsampled": "floor, nothing sampled",
    "floor-sampled": "floor, sampled",
    "floor-sampled-no-exemplar": "floor, sampled, no exemplars",
    "record": "  histogram record, no span current",
    "span-unsampled": "  span, nothing sampled",
    "span-sampled": "  span, sampled",
    "floor-stub-unsampled": "floor, stub providers, nothing sampled",
    "floor-stub": "floor, stub providers, sampled",
}
"""The SDK's calls for one job: all of them, then the parts alone."""


def time_pool(kind: str, n: int) -> float:
    """µs per job of one ``pool.map`` run of ``n`` no-op jobs."""
    sys.path.insert(0, str(HERE))
    from workloads import run_trio_pool_map

    gc.collect()
    start = time.process_time()
    run_trio_pool_map(n, 64, "noop", kind)
    return (time.process_time() - start) / n * 1e6


def floor_step(kind: str) -> Callable[[], None]:
    """The SDK calls of one job for floor ``kind``, with workloads.py's providers."""
    sys.path.insert(0, str(HERE))
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import (
        AlwaysOffExemplarFilter,
        MeterProvider,
    )
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from workloads import _telemetry_kwargs  # pyright: ignore[reportPrivateUsage]

    from trio_pool._telemetry import DURATION_BUCKETS, get_meter

    sampled = "unsampled" not in kind
    sdk = "sdk" if sampled else "sdk-unsampled"
    if "stub" in kind:
        sdk = sdk.replace("sdk", "stub")
    providers: dict[str, Any] = _telemetry_kwargs(sdk)
    if kind.endswith("no-exemplar"):
        providers["meter_provider"] = MeterProvider(
            metric_readers=[InMemoryMetricReader()],
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
    tracer = providers["tracer_provider"].get_tracer("trio_pool")
    histogram = get_meter(providers["meter_provider"]).create_histogram(
        "trio_pool.job.duration",
        unit="s",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )
    outcome = {POOL: "pool-1", OUTCOME: "succeeded"}
    get_current, attach, detach = (
        otel_context.get_current,
        otel_context.attach,
        otel_context.detach,
    )
    set_span_in_context, internal = trace.set_span_in_context, trace.SpanKind.INTERNAL

    def record() -> None:
        histogram.record(0.001, outcome)

    parent = get_current()  # the submitter's: once per batch of a map's jobs

    def span_alone() -> None:
        span = tracer.start_span(
            "run job",
            context=parent,
            kind=internal,
            attributes={POOL: "pool-1", JOB: "job", WAIT: 0.001},
        )
        token = attach(set_span_in_context(span, parent))
        if span.is_recording():
            span.set_attribute(OUTCOME, "succeeded")
            span.end()
        detach(token)

    def job() -> None:
        span = tracer.start_span(
            "run job",
            context=parent,
            kind=internal,
            attributes={POOL: "pool-1", JOB: "job", WAIT: 0.001},
        )
        context = set_span_in_context(span, parent)
        token = attach(context)
        histogram.record(0.001, outcome, context)  # in the span's context
        if span.is_recording():
            span.set_attribute(OUTCOME, "succeeded")
            span.end()
        detach(token)

    if kind == "record":
        return record
    if kind.startswith("span"):
        return span_alone
    return job


def time_floor(kind: str, n: int) -> float:
    """µs per call of ``n`` calls of floor ``kind``'s step."""
    step = floor_step(kind)
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - start) / n * 1e6


def time_once(kind: str, n: int) -> float:
    """One timing of ``kind`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "-n", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out)


def main() -> None:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        timer = time_pool if args.child in POOL_KINDS else time_floor
        print(timer(args.child, args.n))
        return
    kinds = {**POOL_KINDS, **FLOOR_KINDS}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for round_ in range(args.rounds):
        shift = round_ % len(order)  # no kind always first, or last
        for kind in order[shift:] + order[:shift]:
            times[kind].append(time_once(kind, args.n))
    median = {kind: statistics.median(samples) for kind, samples in times.items()}
    plain = median["nosdk"]
    print(
        f"CPU time, µs per job, medians of {args.rounds} rounds, n={args.n:,}; "
        "x the pool with telemetry and no SDK"
    )
    for kind, label in kinds.items():
        print(f"{label:40} {median[kind]:6.2f}  {median[kind] / plain:5.2f}x")
    print("per job, beyond the pool with no SDK:")
    for sampling in ("-unsampled", ""):
        sdk, stub = median["sdk" + sampling], median["stub" + sampling]
        floor = median["floor" + (sampling or "-sampled")]
        floor_stub = median["floor-stub" + sampling]
        ours = stub - plain - floor_stub
        inflation = (sdk - stub) - (floor - floor_stub)
        label = "nothing sampled" if sampling else "sampled"
        print(
            f"  {label:16} the pool's own part {ours:5.2f}; the SDK's calls cost "
            f"{inflation:5.2f} more in the pool than in a loop"
        )


if __name__ == "__main__":
    main()

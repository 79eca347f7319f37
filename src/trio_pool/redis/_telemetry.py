"""OpenTelemetry metrics of a stream consumer (API only; the SDK is the user's).

Every instrument is asynchronous: the meter reads each live consumer's
`ConsumerStatistics` when the reader collects, so the consumer pays nothing
per entry, and no provider call is ever made on the consumer's path but
registering and unregistering it. Those are guarded: a provider that raises
is logged once per consumer and otherwise ignored, so telemetry can never
change what the consumer does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, final

from opentelemetry import metrics

from .._log import WARNING, log
from .._telemetry import POOL_NAME, PerProvider, get_meter, is_api_default

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

    from ._statistics import ConsumerStatistics

STREAM_NAME: Final = "trio_pool.stream.name"
STREAM_GROUP: Final = "trio_pool.stream.group"
STREAM_CONSUMER: Final = "trio_pool.stream.consumer"

COUNTERS: Final = (
    ("trio_pool.stream.read_entries", "read", "New entries read."),
    (
        "trio_pool.stream.reclaimed_entries",
        "reclaimed",
        "Entries taken over after their idle time.",
    ),
    (
        "trio_pool.stream.acked_entries",
        "acked",
        "Entries acknowledged after their job succeeded.",
    ),
    (
        "trio_pool.stream.failed_entries",
        "failed",
        "Entries whose job raised, left pending for a retry.",
    ),
    (
        "trio_pool.stream.timed_out_entries",
        "timed_out",
        "Entries whose job ran past its time limit, left pending for a retry.",
    ),
    (
        "trio_pool.stream.dead_lettered_entries",
        "dead_lettered",
        "Entries moved to the dead-letter stream.",
    ),
    (
        "trio_pool.stream.released_entries",
        "released",
        "Entries left pending, unfinished, when the consumer stopped.",
    ),
)
"""Asynchronous Counters: (name, `ConsumerStatistics` field, description)."""

GAUGES: Final = (
    (
        "trio_pool.stream.in_hand",
        "in_hand",
        "Entries taken whose job has not ended.",
    ),
    (
        "trio_pool.stream.pending",
        "pending",
        "The group's pending entries (every consumer's), at the latest check.",
    ),
    (
        "trio_pool.stream.lag",
        "lag",
        "Entries not delivered to the group yet, at the latest check.",
    ),
)
"""Asynchronous UpDownCounters: (name, `ConsumerStatistics` field, description)."""

UNIT: Final = "{entry}"


@final
class _Instruments:
    """The instruments of one meter provider, shared by every consumer on it."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = get_meter(provider)
        self.consumers: dict[int, ConsumerTelemetry] = {}
        self.lock = threading.Lock()  # readers may collect from another thread
        for name, field, description in COUNTERS:
            meter.create_observable_counter(
                name, [self._observer(field)], unit=UNIT, description=description
            )
        for name, field, description in GAUGES:
            meter.create_observable_up_down_counter(
                name, [self._observer(field)], unit=UNIT, description=description
            )

    def _observer(
        self, field: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """A callback reporting one statistics field of every live consumer."""

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            with self.lock:
                live = list(self.consumers.values())
            observations: list[Observation] = []
            for consumer in live:
                value = getattr(consumer.statistics(), field)
                if value is not None:
                    observations.append(metrics.Observation(value, consumer.attributes))
            return observations

        return observe


_instruments_per_provider = PerProvider(_Instruments)


@final
class ConsumerTelemetry:
    """The metrics of one consumer. No method ever raises."""

    name: str
    statistics: Callable[[], ConsumerStatistics]
    attributes: dict[str, str]

    def __init__(
        self,
        *,
        pool_name: str,
        stream: str,
        group: str,
        consumer: str,
        statistics: Callable[[], ConsumerStatistics],
        meter_provider: MeterProvider | None,
    ) -> None:
        self.name = consumer
        self.statistics = statistics
        self.attributes = {
            POOL_NAME: pool_name,
            STREAM_NAME: stream,
            STREAM_GROUP: group,
            STREAM_CONSUMER: consumer,
        }
        self._instruments: _Instruments | None = None
        try:
            provider = meter_provider or metrics.get_meter_provider()
            if not is_api_default(provider):
                self._instruments = _instruments_per_provider.get(provider)
        except Exception as exc:
            self._provider_failed(exc)

    def _provider_failed(self, exc: Exception) -> None:
        log(
            WARNING,
            "stream consumer %r: an OpenTelemetry provider raised; the consumer "
            "goes on without metrics",
            self.name,
            exc_info=exc,
        )

    @property
    def active(self) -> bool:
        """Whether a meter records this consumer."""
        return self._instruments is not None

    def opened(self) -> None:
        """Start reporting this consumer."""
        instruments = self._instruments
        if instruments is not None:
            with instruments.lock:
                instruments.consumers[id(self)] = self

    def closed(self) -> None:
        """Stop reporting this consumer."""
        instruments = self._instruments
        if instruments is not None:
            with instruments.lock:
                instruments.consumers.pop(id(self), None)

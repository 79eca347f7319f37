"""The snapshot returned by `StreamConsumer.statistics`."""

from __future__ import annotations

import attrs


@attrs.frozen
class ConsumerStatistics:
    """A snapshot of a stream consumer, in the manner of Trio's ``statistics()``.

    Every entry the consumer took is in exactly one place, so at every moment
    ``read + reclaimed == in_hand + settling + acked + failed + timed_out +
    dead_lettered + released``. The names are the pool's for the same ideas
    (`trio_pool.PoolStatistics`): ``failed`` counts no time-out, ``closed``
    says it takes no more.
    """

    name: str
    """The consumer's name in its group."""
    stream: str
    """The stream's key."""
    group: str
    """The consumer group."""
    read: int
    """New entries read with ``XREADGROUP``."""
    reclaimed: int
    """Entries taken over with ``XAUTOCLAIM`` after their idle time: from a
    consumer that crashed or stopped, or a failed job waiting for a retry."""
    in_hand: int
    """Entries taken whose job has not ended (not submitted yet, queued in
    the pool, or running). Never more than the pool had room for when they
    were read."""
    settling: int
    """Entries whose job ended, while their acknowledgement or dead letter is
    on its way to Redis."""
    acked: int
    """Entries acknowledged after their job succeeded."""
    failed: int
    """Entries whose job raised, left pending for a retry after the idle
    time (those that ran out of time are in ``timed_out``)."""
    timed_out: int
    """Entries whose job ran past its time limit, left pending for a retry
    after the idle time."""
    dead_lettered: int
    """Entries moved to the dead-letter stream (and acknowledged on the
    source): their last allowed delivery failed, they were delivered more than
    ``max_deliveries`` times, or their payload could not be decoded."""
    released: int
    """Entries left pending, unprocessed or unfinished, when the consumer
    stopped (their jobs cancelled at the end of the grace period, never
    submitted, or read by a read that ended after the stop), or whose
    acknowledgement or dead letter Redis did not take within the settle
    limit as it stopped: another consumer reclaims them after the idle
    time."""
    pending: int | None
    """The group's pending entries, every consumer's, at the latest check
    (when the consumer starts, every ``idle_time / 3`` seconds with the
    renewals, and once more after a shutdown has settled its entries, if
    Redis answers within the settle limit); ``None`` before the first."""
    lag: int | None
    """Entries in the stream not delivered to the group yet, at the latest
    check; ``None`` before the first, or when Redis cannot tell (after
    deletions in the middle of the stream)."""
    closed: bool
    """Whether the consumer has stopped taking entries (`StreamConsumer.close`,
    its shutdown, the pool closing, or a failure)."""

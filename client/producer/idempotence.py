"""Idempotence: the producer id and each partition's sequence numbers.

A batch takes its sequence number when it is first sent and keeps it through every resend, so a
resent batch the broker already wrote is answered with its original offsets: retries never duplicate
or reorder. It is numbered again only when the broker expects another start: a batch failed for good,
or the broker lost records (a crash with --fsync interval). At most five batches per partition are in
flight, as the broker remembers the last five. A producer new to a partition starts at 0.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable

from tidelog.errors import TidelogError
from tidelog.producer._batch import Batch

log = logging.getLogger(__name__)

# The broker remembers this many batches per producer and partition (API.md).
IN_FLIGHT_PER_PARTITION = 5


class PartitionDelivery:
    """Delivery state of one partition (under the producer's lock)."""

    __slots__ = (
        "attempts",
        "held",
        "in_flight",
        "is_ready",
        "next_sequence",
        "paused",
        "queue",
        "renumber_from",
        "rerouted",
        "retry",
    )

    def __init__(self) -> None:
        self.queue: collections.deque[Batch] = collections.deque()  # closed, not yet sent (or to resend)
        self.in_flight = 0
        self.is_ready = False  # listed in the producer's ready queue
        self.next_sequence = 0
        self.held = False  # a batch was refused: wait for the in-flight ones, then resend in order
        self.renumber_from: int | None = None  # the broker expects the batches to resend to start here
        self.retry: list[Batch] = []  # refused batches to send again once the hold ends
        self.attempts = 0  # consecutive retriable refusals, for backoff
        self.paused = False  # backing off after a retriable refusal
        self.rerouted = False  # refused NOT_LEADER with the leader named, resent there without a backoff


class Idempotence:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.producer_id: int | None = None
        self._sequences_unknown = False  # a batch sent before expired: the broker may have it

    @property
    def needs_producer_id(self) -> bool:
        return self.enabled and (self.producer_id is None or self._sequences_unknown)

    def start_over(self, producer_id: int, parts: Iterable[PartitionDelivery]) -> None:
        """A fresh producer id: every partition's sequence starts again at 0 (nothing is in flight)."""
        self.producer_id = producer_id
        self._sequences_unknown = False
        for part in parts:
            part.next_sequence = 0
            for batch in part.queue:
                batch.sequence = None

    def number(self, part: PartitionDelivery, batch: Batch) -> None:
        """Give a batch its sequence when it is first sent (a resend keeps its own)."""
        if self.enabled and batch.sequence is None:
            batch.sequence = part.next_sequence
            part.next_sequence += batch.count

    def out_of_order(self, part: PartitionDelivery, batch: Batch, error: TidelogError) -> None:
        """The broker refused `batch` as out of order: behind a refused batch (then it expects the first
        batch to resend), or after a batch that failed for good or records it lost (then renumber)."""
        expected = int(error.metadata.get("expected_sequence", batch.sequence or 0))
        first_to_resend = min(b.sequence or 0 for b in [*part.retry, batch])
        if expected != first_to_resend:
            log.warning("%s/%d: sequence reset by the broker: %s", batch.topic, batch.partition, error)
            part.renumber_from = expected if part.renumber_from is None else min(part.renumber_from, expected)

    def hold_released(self, part: PartitionDelivery) -> None:
        """Nothing of the partition is in flight any more: number the batches to resend again if needed."""
        if self.enabled and part.renumber_from is not None:
            part.next_sequence = part.renumber_from
            part.renumber_from = None
            for batch in part.retry:
                batch.sequence = None

    def expired(self, batch: Batch) -> None:
        """A batch gave up: if it was ever sent, the broker may have it, so sequences are not known."""
        if batch.sequence is not None:
            self._sequences_unknown = True

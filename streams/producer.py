"""The event producer: validated events, idempotent, acks=all, keyed by cube_id.

Every send returns where the event landed (partition, offset), which is what
read-your-writes waits on. A send the broker does not confirm raises
`WriteNotConfirmedError`; an invalid event never leaves the caller.
"""

from __future__ import annotations

__all__ = ["Delivery", "EventProducer"]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Any

from memlake.errors import BrokerUnavailableError, WriteNotConfirmedError
from memlake.events import Event, serialize_event
from memlake.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one event was written."""

    event_id: str
    cube_id: str
    topic: str
    partition: int
    offset: int


class EventProducer:
    """Writes events to the events topic. Use as a context manager; the constructor does no I/O."""

    def __init__(self, settings: KafkaSettings, *, topic: str | None = None) -> None:
        self._settings = settings
        self._topic = topic or settings.events_topic
        self._producer: Any = None

    @property
    def topic(self) -> str:
        return self._topic

    def _connect(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            s = self._settings
            try:
                self._producer = KafkaProducer(
                    **s.client_options(),
                    # Idempotence is silently dropped by kafka-python if another setting
                    # conflicts with it, so every setting it needs is stated here.
                    enable_idempotence=True,
                    acks="all",
                    retries=2**31 - 1,
                    max_in_flight_requests_per_connection=5,
                    delivery_timeout_ms=s.delivery_timeout_ms,
                    linger_ms=s.linger_ms,
                    batch_size=256 * 1024,
                    compression_type=None,
                )
            except (KafkaError, OSError) as e:
                raise BrokerUnavailableError(s.bootstrap, str(e)) from e
        return self._producer

    def send_raw(self, key: bytes | None, value: bytes, *, topic: str | None = None) -> Any:
        """Queue bytes as they are (for dead letters and tests); returns the send future."""
        return self._connect().send(topic or self._topic, key=key, value=value)

    def send(self, events: Sequence[Event] | Event) -> list[Delivery]:
        """Send events and wait until the broker confirms every one of them."""
        batch: Sequence[Event] = [events] if not isinstance(events, Sequence) else events
        pending = [(event, self.send_raw(event.cube_id.encode(), serialize_event(event))) for event in batch]
        return self._confirm(pending)

    def send_many(self, events: Iterable[Event], *, chunk: int = 5000) -> list[Delivery]:
        """Send a long stream of events, confirming chunk by chunk (bounded memory)."""
        deliveries: list[Delivery] = []
        pending: list[tuple[Event, Any]] = []
        for event in events:
            pending.append((event, self.send_raw(event.cube_id.encode(), serialize_event(event))))
            if len(pending) >= chunk:
                deliveries.extend(self._confirm(pending))
                pending = []
        deliveries.extend(self._confirm(pending))
        return deliveries

    def send_encoded(self, items: Iterable[tuple[Event, bytes]], *, chunk: int = 5000) -> list[Delivery]:
        """Like `send_many` for events whose canonical bytes the caller already made
        (the SDK serialises once, to check the size, and sends those bytes).

        Each chunk is drawn whole from `items` before any of it is sent: the caller's
        per-event work (validation) does not slow the appends down, so the client
        fills large batches, and an invalid event stops its chunk before any of it
        is written.
        """
        deliveries: list[Delivery] = []
        iterator = iter(items)
        while batch := list(islice(iterator, chunk)):
            pending = [(event, self.send_raw(event.cube_id.encode(), value)) for event, value in batch]
            deliveries.extend(self._confirm(pending))
        return deliveries

    def _confirm(self, pending: list[tuple[Event, Any]]) -> list[Delivery]:
        from kafka.errors import KafkaError

        if not pending:
            return []
        timeout_s = self._settings.delivery_timeout_ms / 1000 + 5
        self._connect().flush(timeout=timeout_s)
        out = []
        for event, future in pending:
            try:
                meta = future.get(timeout=timeout_s)
            except KafkaError as e:
                raise WriteNotConfirmedError(str(event.event_id), f"{type(e).__name__}: {e}") from e
            out.append(Delivery(str(event.event_id), event.cube_id, meta.topic, meta.partition, meta.offset))
        return out

    def flush(self) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=self._settings.delivery_timeout_ms / 1000 + 5)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

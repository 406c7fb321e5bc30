"""The event producer: validated events, idempotent, acks=all, keyed by cube_id.

Every send returns where the event landed (partition, offset), which is what
read-your-writes waits on. A send the broker does not confirm raises
`WriteNotConfirmedError`; an invalid event never leaves the caller.
"""

from __future__ import annotations

__all__ = ["Delivery", "EventProducer", "producer_options"]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Any

from memlake.errors import ConfigError, WriteNotConfirmedError
from memlake.events import Event, serialize_event
from memlake.settings import KafkaSettings
from streams.broker_calls import broker_calls


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one event was written."""

    event_id: str
    cube_id: str
    topic: str
    partition: int
    offset: int


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    """The kafka-python producer options every memlake write uses (the producer
    benchmark's raw baseline takes them from here too, so both sides match)."""
    floor = settings.request_timeout_ms + settings.linger_ms
    if settings.delivery_timeout_ms < floor:
        # kafka-python refuses this too, but only as the producer is built, in words
        # that read like a broker failure; said here, it names the setting to change.
        raise ConfigError(
            "kafka.delivery_timeout_ms",
            f"{settings.delivery_timeout_ms} ms is shorter than one request plus the batching delay "
            f"(request_timeout_ms + linger_ms = {floor} ms)",
        )
    return {
        **settings.client_options(),
        # Idempotence is silently dropped by kafka-python if another setting
        # conflicts with it, so every setting it needs is stated here.
        "enable_idempotence": True,
        "acks": "all",
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "linger_ms": settings.linger_ms,
        "batch_size": 256 * 1024,
        "compression_type": None,
        # kafka-python waits 30 s for a first broker whatever the request timeout says:
        # a wrong bootstrap address is reported after one request timeout instead.
        "bootstrap_timeout_ms": settings.request_timeout_ms,
    }


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

            with broker_calls(self._settings.bootstrap, "connecting a producer"):
                self._producer = KafkaProducer(**producer_options(self._settings))
        return self._producer

    def send_raw(self, key: bytes | None, value: bytes, *, topic: str | None = None) -> Any:
        """Queue bytes as they are (for dead letters and tests); returns the send future."""
        return self._connect().send(topic or self._topic, key=key, value=value)

    def send(self, events: Sequence[Event] | Event) -> list[Delivery]:
        """Send events and wait until the broker confirms every one of them.

        Every event is serialised before the first is sent: one that cannot be
        written means none of them is.
        """
        batch: Sequence[Event] = [events] if not isinstance(events, Sequence) else events
        return self.send_encoded([(event, serialize_event(event)) for event in batch], chunk=len(batch) or 1)

    def send_many(self, events: Iterable[Event], *, chunk: int = 5000) -> list[Delivery]:
        """Send a long stream of events, confirming chunk by chunk (bounded memory)."""
        return self.send_encoded(((event, serialize_event(event)) for event in events), chunk=chunk)

    def send_encoded(self, items: Iterable[tuple[Event, bytes]], *, chunk: int = 5000) -> list[Delivery]:
        """Like `send_many` for events whose canonical bytes the caller already made
        (the SDK serialises once, to check the size, and sends those bytes).

        Each chunk is drawn whole from `items` before any of it is sent: the caller's
        per-event work (validation) does not slow the appends down, so the client
        fills large batches, and an invalid event stops its chunk before any of it
        is written. Only what a `Delivery` needs is kept of each event while its
        chunk is in flight: holding the events themselves (pydantic models, about a
        dozen objects each that the cyclic garbage collector scans again and again)
        made the collector cost the SDK as much as validating them.
        """
        if chunk < 1:
            # islice(items, 0) is empty: the stream would end at once, nothing sent, no error.
            raise ValueError(f"chunk must be at least 1, not {chunk}")
        deliveries: list[Delivery] = []
        iterator = iter(items)
        while batch := [(event.event_key, event.cube_id, value) for event, value in islice(iterator, chunk)]:
            pending = [
                (event_id, cube_id, self.send_raw(cube_id.encode(), value))
                for event_id, cube_id, value in batch
            ]
            del batch  # the bytes now live in the client's buffers
            deliveries.extend(self._confirm(pending))
        return deliveries

    def _confirm(self, pending: list[tuple[str, str, Any]]) -> list[Delivery]:
        """Wait for the broker's answer on every pending send, in order."""
        from kafka.errors import KafkaError

        timeout_s = self._settings.delivery_timeout_ms / 1000 + 5
        self._connect().flush(timeout=timeout_s)
        out = []
        for event_id, cube_id, future in pending:
            try:
                meta = future.get(timeout=timeout_s)
            except KafkaError as e:
                raise WriteNotConfirmedError.from_client_error(event_id, e) from e
            out.append(Delivery(event_id, cube_id, meta.topic, meta.partition, meta.offset))
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

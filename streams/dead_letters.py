"""Dead letters: bad records are data, not log lines.

A dead letter keeps the original bytes, the reason, where the record came
from and which stage refused it, so nothing is lost and it can be replayed
once fixed. They are written to the dead-letter topic as JSON.
"""

from __future__ import annotations

__all__ = ["DeadLetter", "DeadLetterWriter", "read_dead_letters"]

import base64
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from memlake.errors import InvalidEventError, RejectedEventError, WriteNotConfirmedError
from memlake.settings import KafkaSettings
from streams.reader import OffsetRange, Record, end_offsets, read_range


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    stage: str  # which job refused it: "land", "materialize", "ingest", ...
    original: bytes | None
    key: bytes | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    event_id: str | None
    failed_at: str
    # For records that came from a file (bulk ingest): the file; `source_offset` is the line number.
    source_file: str | None = None

    @classmethod
    def invalid(cls, record: Record, error: InvalidEventError, *, stage: str) -> DeadLetter:
        """A record that is not a valid event (bad bytes, bad JSON, a field wrong)."""
        return cls(
            reason=error.reason,
            stage=stage,
            original=record.value,
            key=record.key,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            event_id=_event_id_of(record.value),
            failed_at=_now(),
        )

    @classmethod
    def from_file(
        cls, error: InvalidEventError, *, original: bytes, stage: str, source_file: str, line: int
    ) -> DeadLetter:
        """A line of a bulk file (JSON Lines ingest) that is not a valid event."""
        return cls(
            reason=error.reason,
            stage=stage,
            original=original,
            key=None,
            source_topic=None,
            source_partition=None,
            source_offset=line,
            event_id=_event_id_of(original),
            failed_at=_now(),
            source_file=source_file,
        )

    @classmethod
    def rejected(
        cls,
        error: RejectedEventError,
        *,
        original: bytes,
        stage: str,
        source_topic: str | None = None,
        source_partition: int | None = None,
        source_offset: int | None = None,
    ) -> DeadLetter:
        """A valid event that could not apply to its cube."""
        return cls(
            reason=error.reason,
            stage=stage,
            original=original,
            key=error.cube_id.encode(),
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            event_id=error.event_id,
            failed_at=_now(),
        )

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["original"] = base64.b64encode(self.original).decode() if self.original is not None else None
        data["key"] = base64.b64encode(self.key).decode() if self.key is not None else None
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> DeadLetter:
        data = json.loads(raw)
        for name in ("original", "key"):
            if data.get(name) is not None:
                data[name] = base64.b64decode(data[name])
        return cls(**data)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _event_id_of(value: bytes | None) -> str | None:
    """Best effort: the event id of a record that failed validation, for correlation."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return event_id if isinstance(event_id, str) else None


class DeadLetterWriter:
    """Sends dead letters to the dead-letter topic and waits for the broker to confirm."""

    def __init__(self, settings: KafkaSettings) -> None:
        from streams.producer import EventProducer

        self._settings = settings
        self._producer = EventProducer(settings, topic=settings.dlq_topic)

    def send(self, letters: Iterable[DeadLetter]) -> int:
        from kafka.errors import KafkaError

        futures = [
            (letter, self._producer.send_raw(letter.key, letter.to_bytes(), topic=self._settings.dlq_topic))
            for letter in letters
        ]
        self._producer.flush()
        for letter, future in futures:
            try:
                future.get(timeout=self._settings.delivery_timeout_ms / 1000)
            except KafkaError as e:
                raise WriteNotConfirmedError.from_client_error(
                    letter.event_id or "<unparsed record>", e
                ) from e
        return len(futures)

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> DeadLetterWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_dead_letters(settings: KafkaSettings, *, start: int = 0) -> list[DeadLetter]:
    """Every dead letter on the topic from `start` (partition 0: the topic has one)."""
    letters: list[DeadLetter] = []
    for partition, end in end_offsets(settings, settings.dlq_topic).items():
        span = OffsetRange(settings.dlq_topic, partition, start, end)
        letters.extend(DeadLetter.from_bytes(r.value) for r in read_range(settings, span) if r.value)
    return letters

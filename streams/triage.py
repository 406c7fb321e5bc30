"""Triage: split raw records of the log into valid events and dead letters.

Every job that reads the log starts here, so that a malformed record (bytes
that are not JSON, an unknown type, a field wrong) never stops a pipeline: it
becomes a `DeadLetter` with the reason and the source offset, and reading
goes on with the next record. A record whose Kafka key is not its event's
`cube_id` is refused too: per-cube ordering only holds for correctly keyed
records. A record without a key is accepted (its order is the partition's).
"""

from __future__ import annotations

__all__ = ["triage"]

from collections.abc import Iterable

from memlake.errors import FieldProblem, InvalidEventError
from memlake.events import Event, parse_event
from streams.dead_letters import DeadLetter
from streams.reader import Record


def triage(
    records: Iterable[Record], *, stage: str = "land"
) -> tuple[list[tuple[Record, Event]], list[DeadLetter]]:
    """Parse each record; return `(record, event)` pairs in input order and the dead letters."""
    good: list[tuple[Record, Event]] = []
    bad: list[DeadLetter] = []
    for record in records:
        if record.value is None:
            # A tombstone has no place on an append-only event log.
            error = InvalidEventError([FieldProblem("<event>", "empty record (no value)")])
            bad.append(DeadLetter.invalid(record, error, stage=stage))
            continue
        try:
            event = parse_event(record.value)
        except InvalidEventError as e:
            bad.append(DeadLetter.invalid(record, e, stage=stage))
            continue
        if record.key is not None and record.key != event.cube_id.encode():
            # Ordering per cube holds only when the key is the cube id: a record keyed
            # otherwise may sit in another partition than the rest of its cube.
            problem = FieldProblem("key", f"record key {record.key!r} is not the event's cube_id")
            bad.append(DeadLetter.invalid(record, InvalidEventError([problem]), stage=stage))
            continue
        good.append((record, event))
    return good, bad

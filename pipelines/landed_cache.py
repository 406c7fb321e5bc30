"""Events land parsed, kept in the process for materialize to take instead of parsing again.

Land validates every record (triage) and writes its JSON to `events`;
materialize reads that JSON back from the change data feed and needs the
same event objects for the fold. Parsing and validating an event costs tens
of microseconds, a large share of the per-event CPU of a batch. When both
steps of a micro-batch run in one process (the DirectRunner in-process, the
default), materialize takes the object land made for that Kafka record.

A cached event is used only if the JSON read back is the very text it was
parsed from, so a hit returns exactly what `parse_event` would. Entries are
taken once; the oldest go first past a bound, for batches that never reach
materialize (a crash, a failed commit). In other processes it simply misses.
"""

from __future__ import annotations

__all__ = ["LandedEvents", "landed_events"]

import threading
from collections import OrderedDict

from memlake.events import Event

_BOUND = 100_000  # two default batches' worth

Key = tuple[str, int, int]  # topic, partition, offset


class LandedEvents:
    def __init__(self, bound: int = _BOUND) -> None:
        self._bound = bound
        self._lock = threading.Lock()
        self._events: OrderedDict[Key, tuple[str, Event]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def pending(self) -> list[Key]:
        """The keys of events landed and not taken yet."""
        with self._lock:
            return list(self._events)

    def remember(self, key: Key, raw: str, event: Event) -> None:
        with self._lock:
            self._events[key] = (raw, event)
            while len(self._events) > self._bound:
                self._events.popitem(last=False)

    def take(self, key: Key, raw: str) -> Event | None:
        """The event parsed from `raw` at `key`, once; None if not here or the text differs."""
        with self._lock:
            found = self._events.pop(key, None)
        if found is None or found[0] != raw:
            return None
        return found[1]


_LANDED = LandedEvents()


def landed_events() -> LandedEvents:
    """This process's cache."""
    return _LANDED

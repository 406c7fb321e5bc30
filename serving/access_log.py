"""`memory.accessed` events for every search and chat, sent in batches off the request path.

A request only appends what it returned to a bounded in-memory queue; a
background thread turns each entry into one event (one per request and cube,
so the fold counts every read) and sends them together. If the broker is
down the entries stay queued and are retried; past `queue_max` the oldest
are dropped and counted (reads are usage statistics, never worth blocking a
request for). On shutdown the queue is flushed.
"""

from __future__ import annotations

__all__ = ["AccessRecorder", "AccessEntry", "EventSink", "Receipt"]

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from memlake.errors import InfrastructureError
from memlake.events import Event, MemoryAccessed, MemoryAccessedPayload, new_event
from memlake.model import Actor, Source

log = logging.getLogger(__name__)

RequestKind = Literal["search", "chat", "read", "completion"]
_MAX_IDS = 1000  # MemoryAccessedPayload's limit


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where one event was written: what a write answers and what read-your-writes waits on."""

    event_id: str
    cube_id: str
    topic: str
    partition: int
    offset: int


class EventSink(Protocol):
    def send(self, events: Sequence[Event]) -> list[Receipt]:
        """Write events and return once the log has confirmed every one."""
        ...


@dataclass(frozen=True, slots=True)
class AccessEntry:
    actor: Actor
    cube_id: str
    memory_ids: tuple[str, ...]
    request_kind: RequestKind
    request_id: str | None


class AccessRecorder:
    def __init__(
        self,
        sink: EventSink,
        *,
        flush_interval_s: float = 1.0,
        queue_max: int = 100_000,
        product: str = "memlake-serving",
    ) -> None:
        self._sink = sink
        self._interval = flush_interval_s
        self._queue: deque[AccessEntry] = deque()
        self._queue_max = queue_max
        self._product = product
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.failures = 0

    def record(
        self,
        actor: Actor,
        memories: Sequence[tuple[str, str]],
        *,
        request_kind: RequestKind,
        request_id: str | None = None,
    ) -> None:
        """Queue one read of `memories` ((cube_id, memory_id) pairs). Never blocks on I/O."""
        by_cube: dict[str, list[str]] = {}
        for cube_id, memory_id in memories:
            by_cube.setdefault(cube_id, []).append(memory_id)
        with self._lock:
            for cube_id, ids in by_cube.items():
                unique = tuple(dict.fromkeys(ids))
                for start in range(0, len(unique), _MAX_IDS):
                    self._queue.append(
                        AccessEntry(
                            actor, cube_id, unique[start : start + _MAX_IDS], request_kind, request_id
                        )
                    )
            while len(self._queue) > self._queue_max:
                self._queue.popleft()
                self.dropped += 1

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="memlake-access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> int:
        """Send everything queued now; returns the number of events sent."""
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
        if not batch:
            return 0
        events = [self._event(entry) for entry in batch]
        try:
            self._sink.send(events)
        except InfrastructureError as e:
            self.failures += 1
            log.warning("could not send %d memory.accessed events, will retry: %s", len(events), e)
            with self._lock:
                self._queue.extendleft(reversed(batch))
                while len(self._queue) > self._queue_max:
                    self._queue.popleft()
                    self.dropped += 1
            return 0
        self.sent += len(events)
        return len(events)

    def _event(self, entry: AccessEntry) -> Event:
        return new_event(
            MemoryAccessed,
            cube_id=entry.cube_id,
            actor=entry.actor,
            source=Source(product=self._product, ref=entry.request_id),
            payload=MemoryAccessedPayload(
                memory_ids=entry.memory_ids, request_kind=entry.request_kind, request_id=entry.request_id
            ),
        )

"""`memory.accessed` batching: reads queue without I/O and leave together, failures retry, overflow drops.

The sink is an in-memory recorder: what is tested is the batching logic, not
the broker (the end-to-end path is `test_api.py::test_searches_are_counted...`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from memlake.errors import BrokerUnavailableError
from memlake.events import Event, MemoryAccessedPayload
from memlake.model import Actor, ActorKind
from serving.access_log import AccessRecorder, Receipt

READER = Actor(kind=ActorKind.USER, id="reader")


class RecordingSink:
    """Keeps every batch it was sent; fails while `down` is set."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.down = False

    def send(self, events: Sequence[Event]) -> list[Receipt]:
        if self.down:
            raise BrokerUnavailableError("127.0.0.1:1", "test broker is down")
        self.batches.append(list(events))
        return [Receipt(str(e.event_id), e.cube_id, "t", 0, i) for i, e in enumerate(events)]


def ids(event: Event) -> tuple[str, ...]:
    payload = event.payload
    assert isinstance(payload, MemoryAccessedPayload)
    return tuple(payload.memory_ids)


def test_reads_are_queued_without_sending_and_leave_in_one_batch() -> None:
    sink = RecordingSink()
    recorder = AccessRecorder(sink, flush_interval_s=60)
    recorder.record(READER, [("c1", "m1"), ("c2", "m9"), ("c1", "m2"), ("c1", "m1")], request_kind="search")
    recorder.record(READER, [("c1", "m1")], request_kind="chat", request_id="r-2")
    assert sink.batches == []  # the request path never touches the sink
    assert recorder.pending == 3  # one entry per request and cube
    assert recorder.flush() == 3
    [batch] = sink.batches
    assert [(e.type, e.cube_id, ids(e)) for e in batch] == [
        ("memory.accessed", "c1", ("m1", "m2")),  # a repeated id counts once per request
        ("memory.accessed", "c2", ("m9",)),
        ("memory.accessed", "c1", ("m1",)),
    ]
    source = batch[2].source
    assert source is not None
    assert source.ref == "r-2"
    assert recorder.sent == 3
    assert recorder.pending == 0
    assert recorder.flush() == 0
    assert len(sink.batches) == 1


def test_a_failed_send_keeps_the_order_and_retries() -> None:
    sink = RecordingSink()
    recorder = AccessRecorder(sink, flush_interval_s=60)
    recorder.record(READER, [("c1", "a")], request_kind="search")
    sink.down = True
    assert recorder.flush() == 0
    assert recorder.failures == 1
    assert recorder.pending == 1
    recorder.record(READER, [("c1", "b")], request_kind="search")
    sink.down = False
    assert recorder.flush() == 2
    assert [ids(e) for e in sink.batches[0]] == [("a",), ("b",)]


def test_past_the_queue_limit_the_oldest_reads_are_dropped_and_counted() -> None:
    sink = RecordingSink()
    recorder = AccessRecorder(sink, flush_interval_s=60, queue_max=2)
    for memory_id in ("a", "b", "c"):
        recorder.record(READER, [("c1", memory_id)], request_kind="search")
    assert recorder.dropped == 1
    recorder.flush()
    assert [ids(e) for e in sink.batches[0]] == [("b",), ("c",)]


def test_a_large_read_is_split_to_fit_the_payload_and_stop_flushes() -> None:
    sink = RecordingSink()
    recorder = AccessRecorder(sink, flush_interval_s=60)
    recorder.start()
    recorder.record(READER, [("c1", f"m{i}") for i in range(2500)], request_kind="read")
    recorder.stop()  # flushes what is left
    assert [len(ids(e)) for e in sink.batches[0]] == [1000, 1000, 500]


def test_the_background_thread_sends_without_being_asked() -> None:
    sink = RecordingSink()
    recorder = AccessRecorder(sink, flush_interval_s=0.05)
    recorder.start()
    try:
        recorder.record(READER, [("c1", "m1")], request_kind="search")
        deadline = time.monotonic() + 10
        while not sink.batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [ids(e) for e in sink.batches[0]] == [("m1",)]
    finally:
        recorder.stop()

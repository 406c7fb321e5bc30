"""The per-process pool of reading clients, against the real broker: reuse, and no reuse of a
client whose borrower failed or stopped part-way."""

from __future__ import annotations

import os
import signal
import time

import pytest

from memlake.settings import KafkaSettings
from streams import consumer_pool
from streams.producer import EventProducer
from streams.reader import OffsetRange, end_offsets, read_range
from tests.memlake import builders as b

pytestmark = pytest.mark.integration


def _one_partition_with(kafka: KafkaSettings, count: int) -> OffsetRange:
    clock = b.Clock()
    with EventProducer(kafka) as producer:
        sent = producer.send(
            [b.created(at=clock())] + [b.added(f"m{i}", at=clock()) for i in range(count - 1)]
        )
    return OffsetRange(kafka.events_topic, sent[0].partition, 0, count)


def test_a_client_is_lent_again_after_a_clean_use(kafka: KafkaSettings) -> None:
    consumer_pool.close_all()
    with consumer_pool.borrow(kafka) as first:
        pass
    with consumer_pool.borrow(kafka) as second:
        assert second is first
        # Two borrowers at once get two clients.
        with consumer_pool.borrow(kafka) as third:
            assert third is not second
    consumer_pool.close_all()


def test_a_client_whose_borrower_failed_is_closed_not_lent_again(kafka: KafkaSettings) -> None:
    consumer_pool.close_all()
    with pytest.raises(RuntimeError), consumer_pool.borrow(kafka) as failed:
        raise RuntimeError("the borrower failed")
    with consumer_pool.borrow(kafka) as fresh:
        assert fresh is not failed


def test_reads_and_offsets_through_reused_clients_stay_exact(kafka: KafkaSettings) -> None:
    span = _one_partition_with(kafka, 12)
    for _ in range(3):
        assert [r.offset for r in read_range(kafka, span)] == list(range(12))
        assert end_offsets(kafka, kafka.events_topic)[span.partition] == 12
    # A later range of the same partition on the same (reused) client: only its records.
    assert [r.offset for r in read_range(kafka, OffsetRange(span.topic, span.partition, 5, 9))] == [
        5,
        6,
        7,
        8,
    ]


def test_an_abandoned_read_does_not_lend_its_client_again(kafka: KafkaSettings) -> None:
    span = _one_partition_with(kafka, 6)
    consumer_pool.close_all()
    reading = read_range(kafka, span)
    assert next(reading).offset == 0
    reading.close()  # stopped part-way: its client is closed, not returned
    assert [r.offset for r in read_range(kafka, span)] == list(range(6))


def test_a_forked_child_starts_with_no_clients(kafka: KafkaSettings) -> None:
    with consumer_pool.borrow(kafka) as parent_client:
        pass
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's idle client must not be lent here
        try:
            with consumer_pool.borrow(kafka) as child_client:
                reused = child_client is parent_client
            os.write(write, b"reused" if reused else b"fresh")
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish within 60 s")
        time.sleep(0.05)
    assert os.read(read, 16) == b"fresh"
    consumer_pool.close_all()

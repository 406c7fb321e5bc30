"""The lake's lease: one holder at a time, taken over only after it expires, and the
compaction that needs it (real Delta tables, no broker)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lake.lease import Lease
from lake.maintenance import compact
from lake.tables import Lake
from lake.writer import TableWriter
from memlake.errors import LeaseHeldError


def test_a_held_lease_is_refused_to_another_holder_until_released(lake: Lake) -> None:
    first = Lease(lake, "compact", seconds=60, holder="first")
    second = Lease(lake, "compact", seconds=60, holder="second")
    first.acquire()
    with pytest.raises(LeaseHeldError, match="held by first until") as refused:
        second.acquire()
    assert refused.value.holder == "first"
    assert refused.value.expires_at is not None
    assert refused.value.expires_at > refused.value.expires_at.now(refused.value.expires_at.tzinfo)
    first.release()
    assert first.state().holder is None
    second.acquire()
    assert second.state().holder == "second"


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_or_release_it(
    lake: Lake,
) -> None:
    dead = Lease(lake, "compact", seconds=0.2, holder="dead")
    dead.acquire()
    time.sleep(0.3)
    alive = Lease(lake, "compact", seconds=60, holder="alive")
    alive.acquire()
    with pytest.raises(LeaseHeldError, match="held by alive"):
        dead.renew()
    dead.release()  # not its lease any more: nothing to give up
    assert alive.state().holder == "alive"


def test_a_renewal_commits_only_once_half_the_lease_is_gone(lake: Lake) -> None:
    lease = Lease(lake, "compact", seconds=0.4, holder="me")
    lease.acquire()
    taken = lease.state()
    lease.renew()
    assert lease.state() == taken  # most of it left: no commit
    time.sleep(0.25)
    lease.renew()
    renewed = lease.state()
    assert renewed.version == taken.version + 1
    assert renewed.expires_at is not None
    assert taken.expires_at is not None
    assert renewed.expires_at > taken.expires_at


class _OvertakenAfterReading(Lease):
    """Reads the lease's log, then another holder takes the lease before this one commits."""

    def _open(self) -> Any:
        dt = super()._open()
        Lease(self._lake, self.name, seconds=60, holder="quicker").acquire()
        return dt


def test_a_holder_that_read_the_lease_free_is_refused_when_another_took_it_since(lake: Lake) -> None:
    slower = _OvertakenAfterReading(lake, "compact", seconds=60, holder="slower")
    with pytest.raises(LeaseHeldError, match="another process took it at the same moment"):
        slower.acquire()
    assert slower.state().holder == "quicker"
    slower.release()  # it never held it
    assert slower.state().holder == "quicker"


def _race(lake: Lake) -> tuple[list[Lease], list[LeaseHeldError]]:
    holders = [Lease(lake, "compact", seconds=60, holder=f"h{i}") for i in range(2)]
    start = threading.Barrier(len(holders))
    won: list[Lease] = []
    refused: list[LeaseHeldError] = []

    def take(lease: Lease) -> None:
        start.wait()
        try:
            lease.acquire()
        except LeaseHeldError as e:
            refused.append(e)
        else:
            won.append(lease)

    threads = [threading.Thread(target=take, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, refused


def test_of_holders_that_try_at_the_same_moment_exactly_one_gets_the_lease(lake: Lake) -> None:
    Lease(lake, "compact", seconds=60).state()  # the lease's table exists before the race
    for _ in range(8):
        won, refused = _race(lake)
        assert len(won) == 1
        assert len(refused) == 1
        assert won[0].state().holder == won[0].holder
        won[0].release()


def test_a_compaction_while_another_holds_the_lease_is_refused_and_rewrites_nothing(lake: Lake) -> None:
    writer = TableWriter(lake)
    schema = lake.spec("rejected").schema
    for watermark in range(1, 4):  # three small files
        writer.commit_derived("rejected", _rejected_rows(schema, watermark), watermark=watermark)
    before = lake.version("rejected")
    other = Lease(lake, "compact", seconds=60, holder="another compaction")
    with other.held(), pytest.raises(LeaseHeldError, match="held by another compaction"):
        compact(lake, ["rejected"])
    assert lake.version("rejected") == before
    (report,) = compact(lake, ["rejected"])  # free again
    assert report.details["numFilesRemoved"] == 3
    assert lake.table("rejected").to_pyarrow_table().num_rows == 3
    assert Lease(lake, "compact", seconds=60).state().holder is None  # released after


def _rejected_rows(schema: pa.Schema, watermark: int) -> pa.Table:
    row = {name: None for name in schema.names}
    row.update(
        event_id=f"e{watermark}",
        cube_id="c",
        event_type="memory.added",
        error="InvalidEventError",
        reason="test",
        topic="t",
        partition=0,
        offset=watermark,
        event_json="{}",
    )
    return pa.Table.from_pylist([row], schema=schema)


def test_reading_a_lease_never_taken_finds_it_free_and_creates_nothing(lake: Lake) -> None:
    lease = Lease(lake, "compact", seconds=60, holder="reader")
    state = lease.state()
    assert (state.version, state.holder, state.expires_at) == (-1, None, None)
    assert not Path(lake.root, "_leases").exists()

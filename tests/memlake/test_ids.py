"""UUIDv7: version bits, time and strict ordering within one process."""

from __future__ import annotations

import os
import uuid

import pytest

from memlake import ids
from memlake.ids import uuid7, uuid7_time


@pytest.fixture
def fresh_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The id clock is process-wide: give these tests their own and put it back after."""
    monkeypatch.setattr(ids._Clock, "last_ms", 0)
    monkeypatch.setattr(ids._Clock, "counter", 0)


@pytest.mark.usefixtures("fresh_clock")
def test_uuid7_carries_version_variant_and_time() -> None:
    value = uuid7(now_ms=1_700_000_000_123)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid7_time(value) == 1_700_000_000_123


def test_ids_from_a_tight_loop_strictly_increase() -> None:
    made = [uuid7() for _ in range(20_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


@pytest.mark.usefixtures("fresh_clock")
def test_a_clock_going_backwards_keeps_order() -> None:
    later = uuid7(now_ms=1_800_000_000_000)
    after_a_clock_step_back = uuid7(now_ms=1_700_000_000_000)
    assert after_a_clock_step_back > later
    assert uuid7_time(after_a_clock_step_back) == 1_800_000_000_000


@pytest.mark.usefixtures("fresh_clock")
def test_counter_overflow_moves_to_the_next_millisecond() -> None:
    made = [uuid7(now_ms=1_700_000_000_000) for _ in range(5000)]
    assert made == sorted(made)
    assert uuid7_time(made[-1]) > 1_700_000_000_000


def test_uuid7_time_refuses_other_versions() -> None:
    with pytest.raises(ValueError, match="version-4"):
        uuid7_time(uuid.uuid4())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_random_bits() -> None:
    uuid7()  # the parent now holds unused random bytes that a child would inherit
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, back to the parent, and out
        os.write(write_end, uuid7().bytes)
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = uuid7()
    assert len(child) == 16
    assert child[8:] != parent.bytes[8:]  # rand_b: 62 random bits each

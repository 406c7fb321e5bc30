"""UUIDv7 identifiers (RFC 9562): time-ordered, so event ids sort by creation."""

from __future__ import annotations

__all__ = ["uuid7", "uuid7_time"]

import os
import threading
import time
import uuid


class _Clock:
    """The last millisecond used and the counter within it, shared by the process."""

    lock = threading.Lock()
    last_ms = 0
    counter = 0


def uuid7(*, now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7. Ids made in one process are strictly increasing.

    Within one millisecond the 12-bit `rand_a` field is a counter seeded at
    random (RFC 9562, method 1), so that ids from a tight loop still sort.
    """
    clock = _Clock
    # One read of the system's random source per id: 2 bytes may seed the counter, 8 are rand_b.
    entropy = os.urandom(10)
    with clock.lock:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms > clock.last_ms:
            clock.last_ms = ms
            clock.counter = int.from_bytes(entropy[:2], "big") & 0x07FF
        else:
            ms = clock.last_ms
            clock.counter += 1
            if clock.counter > 0x0FFF:
                clock.last_ms += 1
                ms = clock.last_ms
                clock.counter = 0
        counter = clock.counter
    rand_b = int.from_bytes(entropy[2:], "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand_b
    return uuid.UUID(int=value)


def uuid7_time(value: uuid.UUID) -> int:
    """The Unix time in milliseconds that a UUIDv7 carries."""
    if value.version != 7:
        raise ValueError(f"{value} is a version-{value.version} UUID, not version 7")
    return value.int >> 80

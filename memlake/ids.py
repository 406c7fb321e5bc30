"""UUIDv7 identifiers (RFC 9562): time-ordered, so event ids sort by creation."""

from __future__ import annotations

__all__ = ["uuid7", "uuid7_time"]

import os
import threading
import time
import uuid

# Random bytes are drawn from the system in blocks: one `urandom` call per id was a
# system call on every event a producer writes. 10 bytes make one id.
_ID_ENTROPY = 10
_POOL_BYTES = _ID_ENTROPY * 512

_RAND_B = (1 << 62) - 1
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


class _Clock:
    """The last millisecond used, the counter within it and the unused random bytes,
    shared by the process."""

    lock = threading.Lock()
    last_ms = 0
    counter = 0
    pool = b""
    pool_at = 0


def _forget_entropy_after_fork() -> None:
    # A forked child starts with a copy of the parent's pool: drawing from it would
    # give both processes the same "random" bits, so the child reads its own.
    _Clock.lock = threading.Lock()
    _Clock.pool = b""
    _Clock.pool_at = 0


os.register_at_fork(after_in_child=_forget_entropy_after_fork)


def uuid7(*, now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7. Ids made in one process are strictly increasing.

    Within one millisecond the 12-bit `rand_a` field is a counter seeded at
    random (RFC 9562, method 1), so that ids from a tight loop still sort.
    """
    clock = _Clock
    with clock.lock:
        at = clock.pool_at
        if at + _ID_ENTROPY > len(clock.pool):
            clock.pool = os.urandom(_POOL_BYTES)
            at = 0
        clock.pool_at = at + _ID_ENTROPY
        # 80 random bits: the top 11 may seed the counter, the low 62 are rand_b.
        entropy = int.from_bytes(clock.pool[at : at + _ID_ENTROPY], "big")
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ms > clock.last_ms:
            clock.last_ms = ms
            clock.counter = entropy >> 69
        else:
            ms = clock.last_ms
            clock.counter += 1
            if clock.counter > 0x0FFF:
                clock.last_ms += 1
                ms = clock.last_ms
                clock.counter = 0
        counter = clock.counter
    value = ((ms & ((1 << 48) - 1)) << 80) | _VERSION_AND_VARIANT | (counter << 64) | (entropy & _RAND_B)
    return uuid.UUID(int=value)


def uuid7_time(value: uuid.UUID) -> int:
    """The Unix time in milliseconds that a UUIDv7 carries."""
    if value.version != 7:
        raise ValueError(f"{value} is a version-{value.version} UUID, not version 7")
    return value.int >> 80

"""Reading clients kept per process and lent out, one borrower at a time.

A new `KafkaConsumer` costs 0.2 to 0.4 s here (bootstrap connection, cluster
metadata) against 2 to 6 ms for `end_offsets` on one already connected. Follow
mode asks for end offsets and reads offset ranges every micro-batch, so a
fresh client per call was a large share of each batch's fixed cost. Clients
hold no consumer group and commit nothing (offsets live in the lake), so a
client is safe to reuse once a borrower is done with it: the next borrower
assigns and seeks its own partitions.

A client whose borrower failed, or stopped reading part-way, is closed rather
than returned: its state is not trusted. After a fork (Beam's multi-process
workers) the child starts with an empty pool: the parent's sockets are not its own.
"""

from __future__ import annotations

__all__ = ["borrow", "close_all"]

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from memlake.settings import KafkaSettings
from streams.broker_calls import broker_calls

_IDLE_PER_KEY = 4  # clients kept per (settings, options); more borrowers get new ones


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[Any]] = {}
        self._pid = os.getpid()

    def _take(self, key: str) -> Any | None:
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _give_back(self, key: str, consumer: Any) -> bool:
        with self._lock:
            if self._pid != os.getpid():
                return False
            idle = self._idle.setdefault(key, [])
            if len(idle) >= _IDLE_PER_KEY:
                return False
            idle.append(consumer)
            return True

    def close_all(self) -> None:
        with self._lock:
            idle = [c for clients in self._idle.values() for c in clients] if self._pid == os.getpid() else []
            self._idle = {}
        for consumer in idle:
            consumer.close()

    @contextmanager
    def borrow(self, settings: KafkaSettings, **options: Any) -> Iterator[Any]:
        key = repr((sorted(settings.client_options().items()), sorted(options.items())))
        consumer = self._take(key) or _connect(settings, **options)
        try:
            yield consumer
        except BaseException:
            consumer.close()
            raise
        if not self._give_back(key, consumer):
            consumer.close()


def _connect(settings: KafkaSettings, **options: Any) -> Any:
    from kafka import KafkaConsumer

    with broker_calls(settings.bootstrap, "connecting a consumer"):
        return KafkaConsumer(
            **settings.client_options(),
            enable_auto_commit=False,  # offsets live in the lake, never in the broker
            auto_offset_reset="earliest",
            consumer_timeout_ms=1000,
            **options,
        )


_POOL = _Pool()
atexit.register(_POOL.close_all)


def borrow(settings: KafkaSettings, **options: Any) -> Any:
    """A connected consumer with `options`, for the `with` block only; returned to the pool after it
    unless the block raised (then it is closed). Use `assign` + `seek`: it belongs to no group."""
    return _POOL.borrow(settings, **options)


def close_all() -> None:
    """Close every idle client of this process (at exit, and in tests)."""
    _POOL.close_all()

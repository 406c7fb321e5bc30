"""The newest version of each table, kept open per process for reads of its log alone.

A table's version, its watermark and its stored Kafka offsets live in its log.
Opening a `DeltaTable` for one of them lists the log and reads it from the last
checkpoint (7-13 ms a table here, and a micro-batch asked about 50 times); an
open one brought up to date reads only the commits since (under 1 ms). The
objects never leave this module: a caller gets the value it asked for, so no
caller holds a table that moves under it.

A table deleted and created again at the same place while a process runs is
not followed (its new log would look older than the one held): that is not a
supported operation on a live lake.
"""

from __future__ import annotations

__all__ = ["TableHeads", "table_heads"]

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from deltalake import DeltaTable

T = TypeVar("T")
_KEEP = 64  # tables kept open per process (a lake has eight; tests and rebuilds open many lakes)


class TableHeads:
    """Open tables by URI, each brought to its newest version before every read."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._keep = keep
        self._open: OrderedDict[str, DeltaTable] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, uri: str, storage_options: dict[str, str] | None, read: Callable[[DeltaTable], T]) -> T:
        """`read` applied to the table at `uri` as it is now (raises delta-rs' errors as they are)."""
        from deltalake import DeltaTable

        key = uri
        with self._lock:
            dt = self._open.pop(key, None)
            if dt is None:
                dt = DeltaTable(uri, storage_options=storage_options)
            else:
                dt.update_incremental()
            value = read(dt)
            self._open[key] = dt
            while len(self._open) > self._keep:
                self._open.popitem(last=False)
            return value

    def __len__(self) -> int:
        return len(self._open)


_HEADS = TableHeads()


def table_heads() -> TableHeads:
    return _HEADS

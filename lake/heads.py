"""Tables kept open per process: at their newest version for reads of the log, and for writes.

A table's version, its watermark and its stored Kafka offsets live in its log.
Opening a `DeltaTable` for one of them lists the log and reads it from the last
checkpoint (7-13 ms a table here, and a micro-batch asked about 50 times); an
open one brought up to date reads only the commits since (under 1 ms), and a
local one is not even listed unless the file of its next commit exists. The
objects never leave this module except to the function a caller passes, for
the length of that call and under a lock: a reader gets the value it asked
for, so no caller holds a table that moves under it.

A read can also be memoised under a key: it is then answered from memory as
long as the table has not moved past the version it was read at (a version's
log never changes). A table's watermark and stored offsets are transaction
versions, and delta-rs finds each by replaying the log's transaction actions
(1-4 ms a read here, growing with the commits since the checkpoint) while a
batch asks for the same ones several times per table version.

Writes get tables of their own, one per table and a lock each (a commit can
take a hundred milliseconds, and reads must not wait for it): a commit brings
its table up to date instead of opening it (5-19 ms a table, six tables a
batch). A failed write drops its table, so the next one opens it afresh.

A table brought up to date is still opened afresh once it is `_REOPEN_AFTER`
versions past the one it was opened at: delta-rs' open table carries every
commit it has been brought through, and each append and update costs more
with them (a 10-row append: 8 ms at first, 60 ms after 600 commits, 89 ms
after 1,100), while a fresh open starts from the last checkpoint. 1,200
appends took 70 s on one table kept open, 16 s reopened every 10 versions.

A table deleted and created again at the same place while a process runs is
not followed (its new log would look older than the one held): that is not a
supported operation on a live lake.
"""

from __future__ import annotations

__all__ = ["TableHeads", "table_heads"]

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from deltalake import DeltaTable

T = TypeVar("T")
_KEEP = 64  # tables kept open per process (a lake has eight; tests and rebuilds open many lakes)
# Versions a kept table is brought through before it is opened afresh (see the module's
# docstring): 1,200 appends took 15.8 s reopened every 10, 17.1 s every 30, 20.5 s every 100.
_REOPEN_AFTER = 20


class TableHeads:
    """Open tables by URI, each brought to its newest version before every read."""

    def __init__(self, keep: int = _KEEP) -> None:
        self._keep = keep
        self._open: OrderedDict[str, _Kept] = OrderedDict()
        self._memos: dict[str, dict[Hashable, tuple[int, Any]]] = {}
        self._writers: OrderedDict[str, _Writer] = OrderedDict()
        self._lock = threading.Lock()

    def read(
        self,
        uri: str,
        storage_options: dict[str, str] | None,
        read: Callable[[DeltaTable], T],
        *,
        memo: Hashable | None = None,
    ) -> T:
        """`read` applied to the table at `uri` as it is now (raises delta-rs' errors as they are).

        With `memo`, a value read at the table's current version under the same key is
        returned instead of reading again: `read` must then depend on the log alone, and
        the caller must not change what it gets back.
        """
        from deltalake import DeltaTable

        with self._lock:
            kept = self._open.pop(uri, None)
            if kept is None:
                kept = _Kept(DeltaTable(uri, storage_options=storage_options))
                self._memos.pop(uri, None)
            else:
                kept.bring_up_to_date(uri, storage_options)
            dt = kept.table
            if memo is None:
                value = read(dt)
            else:
                version = int(dt.version())
                memos = self._memos.setdefault(uri, {})
                found = memos.get(memo)
                if found is not None and found[0] == version:
                    value = found[1]
                else:
                    value = read(dt)
                    memos[memo] = (version, value)
            self._open[uri] = kept
            while len(self._open) > self._keep:
                dropped, _ = self._open.popitem(last=False)
                self._memos.pop(dropped, None)
            return value

    def remember(self, uri: str, memo: Hashable, version: int, value: Any) -> None:
        """Record what the read memoised under `memo` gives at `version`: a writer knows its
        commit's watermark, and finding it in the log again costs a replay per table."""
        with self._lock:
            if uri in self._open:  # a table opened afresh starts without memos anyway
                self._memos.setdefault(uri, {})[memo] = (version, value)

    def recall(self, uri: str, memo: Hashable, version: int) -> Any | None:
        """The value memoised under `memo` at exactly `version`, if any (None: unknown)."""
        with self._lock:
            found = self._memos.get(uri, {}).get(memo)
            return found[1] if found is not None and found[0] == version else None

    def write(self, uri: str, storage_options: dict[str, str] | None, write: Callable[[DeltaTable], T]) -> T:
        """`write` applied to the table at `uri`, brought up to date, one write per table at a time."""
        from deltalake import DeltaTable

        with self._lock:
            entry = self._writers.pop(uri, None) or _Writer()
            self._writers[uri] = entry  # most recently used last
            while len(self._writers) > self._keep:
                self._writers.popitem(last=False)
        with entry.lock:
            kept, entry.kept = entry.kept, None  # dropped unless the write succeeds
            if kept is None:
                kept = _Kept(DeltaTable(uri, storage_options=storage_options))
            else:
                kept.bring_up_to_date(uri, storage_options)
            value = write(kept.table)
            entry.kept = kept
            return value

    def __len__(self) -> int:
        return len(self._open)


def _may_have_moved(uri: str, dt: DeltaTable) -> bool:
    """Whether a newer version of the table may exist than the one `dt` holds.

    Commits are numbered without gaps, so a local table has moved exactly when the next
    commit's file exists: one stat (5 us here) instead of delta-rs listing the whole log
    (1.5 ms at 35 commits, and the log grows until its retention ends). Object stores
    are always asked.
    """
    if "://" in uri and not uri.startswith("file://"):
        return True
    root = uri.removeprefix("file://")
    return os.path.exists(f"{root}/_delta_log/{int(dt.version()) + 1:020d}.json")


class _Kept:
    """An open table and the version it was opened at."""

    def __init__(self, table: DeltaTable) -> None:
        self.table = table
        self.opened_at = int(table.version())

    def bring_up_to_date(self, uri: str, storage_options: dict[str, str] | None) -> None:
        """Move to the newest version: in place, or opened afresh once far from where it
        was opened (the table may also have moved on by a write of this process)."""
        from deltalake import DeltaTable

        if int(self.table.version()) - self.opened_at >= _REOPEN_AFTER:
            self.table = DeltaTable(uri, storage_options=storage_options)
            self.opened_at = int(self.table.version())
        elif _may_have_moved(uri, self.table):
            self.table.update_incremental()


class _Writer:
    """A table kept open for writes, and the lock that makes its writes one at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: _Kept | None = None


_HEADS = TableHeads()


def table_heads() -> TableHeads:
    return _HEADS

"""Tables kept open for log reads: always the newest version, bounded, per process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from lake.heads import _REOPEN_AFTER, TableHeads


def _append(uri: str, n: int, *, app: str | None = None, version: int = 0) -> None:
    props = CommitProperties(app_transactions=[Transaction(app, version)]) if app else None
    write_deltalake(uri, pa.table({"x": list(range(n))}), mode="append", commit_properties=props)


def test_reads_follow_every_new_commit(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, 1)
    heads = TableHeads()
    assert heads.read(uri, None, lambda dt: dt.version()) == 0
    _append(uri, 2, app="materialize:t", version=7)
    _append(uri, 3)
    # Brought up to date, and equal to what a freshly opened table says.
    assert heads.read(uri, None, lambda dt: dt.version()) == 2 == DeltaTable(uri).version()
    assert heads.read(uri, None, lambda dt: dt.transaction_version("materialize:t")) == 7


def test_keeps_at_most_its_bound(tmp_path: Path) -> None:
    heads = TableHeads(keep=2)
    uris = [str(tmp_path / f"t{i}") for i in range(4)]
    for uri in uris:
        _append(uri, 1)
        heads.read(uri, None, lambda dt: dt.version())
    assert len(heads) == 2
    # One dropped is opened again when asked for.
    assert heads.read(uris[0], None, lambda dt: dt.version()) == 0


def test_a_failed_read_drops_the_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, 1)
    heads = TableHeads()
    heads.read(uri, None, lambda dt: dt.version())

    def boom(_: DeltaTable) -> int:
        raise RuntimeError("read failed")

    with pytest.raises(RuntimeError):
        heads.read(uri, None, boom)
    assert len(heads) == 0
    assert heads.read(uri, None, lambda dt: dt.version()) == 0


def _counted_watermark(calls: list[int]) -> Callable[[DeltaTable], int | None]:
    """A watermark read that records the table version of every call."""

    def watermark(dt: DeltaTable) -> int | None:
        calls.append(dt.version())
        return dt.transaction_version("materialize:t")

    return watermark


def test_a_memoised_read_runs_once_per_table_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, 1, app="materialize:t", version=3)
    heads = TableHeads()
    calls: list[int] = []
    watermark = _counted_watermark(calls)

    assert [heads.read(uri, None, watermark, memo="w") for _ in range(3)] == [3, 3, 3]
    assert calls == [0]
    # Another key is its own read; a read without a key always runs.
    assert heads.read(uri, None, lambda dt: dt.version(), memo="v") == 0
    assert heads.read(uri, None, watermark) == 3
    assert calls == [0, 0]
    # A new commit: the memo is stale and read again, once.
    _append(uri, 1, app="materialize:t", version=9)
    assert heads.read(uri, None, watermark, memo="w") == 9
    assert heads.read(uri, None, watermark, memo="w") == 9
    assert calls == [0, 0, 1]


def test_a_value_a_writer_remembers_answers_that_version_only(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, 1, app="materialize:t", version=3)
    heads = TableHeads()
    calls: list[int] = []
    watermark = _counted_watermark(calls)

    # Not open for reads yet: nothing is remembered (an opened table starts without memos).
    heads.remember(uri, "w", 0, 3)
    assert heads.recall(uri, "w", 0) is None
    assert heads.read(uri, None, watermark, memo="w") == 3
    _append(uri, 1, app="materialize:t", version=9)
    heads.remember(uri, "w", 1, 9)
    assert heads.recall(uri, "w", 1) == 9
    assert heads.recall(uri, "w", 0) is None  # another version: unknown
    assert heads.read(uri, None, watermark, memo="w") == 9
    assert calls == [0]  # the new version was answered from what the writer remembered


def test_memos_go_with_their_table(tmp_path: Path) -> None:
    heads = TableHeads(keep=1)
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    _append(first, 1, app="x", version=1)
    _append(second, 1)
    calls: list[str] = []

    def read(dt: DeltaTable) -> int | None:
        calls.append("read")
        return dt.transaction_version("x")

    assert heads.read(first, None, read, memo="x") == 1
    heads.read(second, None, lambda dt: dt.version())  # evicts the first table, and its memo
    assert heads.read(first, None, read, memo="x") == 1
    assert calls == ["read", "read"]


def test_a_write_gets_the_table_at_its_newest_version_and_keeps_it_open(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, 1)
    heads = TableHeads()
    seen: list[DeltaTable] = []

    def append(dt: DeltaTable) -> int:
        seen.append(dt)
        write_deltalake(dt, pa.table({"x": [9]}), mode="append")
        dt.update_incremental()
        return int(dt.version())

    assert heads.write(uri, None, append) == 1
    _append(uri, 2)  # another writer moves the table on
    assert heads.write(uri, None, append) == 3  # brought up to date first
    assert seen[0] is seen[1]  # the same open table, not opened again
    assert DeltaTable(uri).version() == 3
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 5


def test_a_failed_write_drops_its_table(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    _append(uri, 1)
    heads = TableHeads()
    seen: list[DeltaTable] = []

    def boom(dt: DeltaTable) -> None:
        seen.append(dt)
        raise RuntimeError("commit failed")

    with pytest.raises(RuntimeError):
        heads.write(uri, None, boom)
    assert heads.write(uri, None, lambda dt: seen.append(dt) or dt.version()) == 0
    assert seen[0] is not seen[1]  # opened afresh after the failure


def test_an_unchanged_local_table_is_not_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "t")
    _append(path, 1)
    heads = TableHeads()
    uri = f"file://{path}"
    assert heads.read(uri, None, lambda dt: dt.version()) == 0
    listed: list[int] = []
    original = DeltaTable.update_incremental

    def counted(self: DeltaTable) -> None:
        listed.append(1)
        original(self)

    monkeypatch.setattr(DeltaTable, "update_incremental", counted)
    assert [heads.read(uri, None, lambda dt: dt.version()) for _ in range(3)] == [0, 0, 0]
    assert listed == []  # the next commit's file is not there: nothing to list
    _append(path, 2)
    assert heads.read(uri, None, lambda dt: dt.version()) == 1
    assert listed == [1]


def test_a_kept_table_is_opened_afresh_once_far_past_where_it_was_opened(tmp_path: Path) -> None:
    """delta-rs' open table carries every commit it was brought through (each append gets
    slower with them): past `_REOPEN_AFTER` versions it is replaced, reads and writes alike."""
    uri = str(tmp_path / "t")
    _append(uri, 1, app="materialize:t", version=0)
    heads = TableHeads()
    read_from: list[DeltaTable] = []
    written_to: list[DeltaTable] = []

    def append(dt: DeltaTable) -> int:
        written_to.append(dt)
        write_deltalake(dt, pa.table({"x": [9]}), mode="append")
        return int(dt.version())

    def version(dt: DeltaTable) -> int:
        read_from.append(dt)
        return int(dt.version())

    for n in range(1, _REOPEN_AFTER + 3):
        assert heads.write(uri, None, append) == n
        assert heads.read(uri, None, version) == n == DeltaTable(uri).version()
    # The same objects until they were _REOPEN_AFTER versions on, then new ones at the head.
    assert all(dt is written_to[0] for dt in written_to[:_REOPEN_AFTER])
    assert written_to[_REOPEN_AFTER] is not written_to[0]
    assert all(dt is read_from[0] for dt in read_from[:_REOPEN_AFTER])
    assert read_from[-1] is not read_from[0]
    # Memos are per version, so they outlive the reopening.
    assert heads.read(uri, None, lambda dt: dt.transaction_version("materialize:t"), memo="w") == 0
    assert heads.read(uri, None, lambda dt: -1, memo="w") == 0

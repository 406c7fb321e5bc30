"""From fold rows to commits: upsert rows of new keys are appended only while the table
is exactly at the batch's cut; anywhere else they are merged, and no key is ever doubled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
import pytest

from lake.scan import scan
from lake.schemas import spec
from lake.state import LoadedState
from lake.tables import Lake
from memlake.events import Event, serialize_event
from memlake.fold import CubeState, fold
from pipelines.derived import combined, commit_table, rows_table
from pipelines.folding import EV, MADE, CubeRows, LoggedEvent, fold_cube
from tests.memlake import builders as b

_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _logged(events: list[Event], *, version: int) -> list[LoggedEvent]:
    return [
        LoggedEvent(e, serialize_event(e).decode(), version, "t", 0, i, _AT) for i, e in enumerate(events)
    ]


def _fold(prior: CubeState, events: list[Event], *, version: int) -> CubeRows:
    loaded = LoadedState(prior, dict(prior.history), complete=True)
    return fold_cube(loaded, _logged(events, version=version), buckets=4)


def _in_cube(event: Event, cube_id: str) -> Event:
    return event.model_copy(update={"cube_id": cube_id})


def _last_operation(lake: Lake, name: str = "memories") -> str:
    return str(lake.table(name).history(1)[0]["operation"])


def test_shards_rows_combine_to_insert_only_if_all_insert() -> None:
    assert combined(["insert", "insert"]) == "insert"
    assert combined(["insert", "auto"]) == "auto"


def test_the_fold_says_whether_its_memory_rows_change_memories_it_held() -> None:
    clock = b.Clock()
    first = [b.created(at=clock()), b.added("m1", at=clock()), b.added("m2", at=clock())]
    adds = _fold(CubeState(), first, version=1)
    assert len(adds.memories) == 2
    assert not adds.updates_memories
    prior = fold(CubeState(), first).state
    # A memory added and changed within one batch is still a new key.
    later = [b.added("m3", at=clock()), b.updated("m3", at=clock(), tags=["x"])]
    assert not _fold(prior, later, version=2).updates_memories
    assert _fold(prior, [b.updated("m1", at=clock(), tags=["x"])], version=2).updates_memories


def test_new_keys_are_appended_at_the_cut_and_merged_past_it(lake: Lake) -> None:
    clock = b.Clock()
    first = [b.created(at=clock()), b.added("m1", at=clock())]
    rows = _fold(CubeState(), first, version=1)
    commit_table(
        lake, "memories", [rows_table("memories", rows.memories)], watermark=1, kind="insert", cut=-1
    )
    assert _last_operation(lake) == "WRITE"

    prior = fold(CubeState(), first).state
    second = _fold(prior, [b.added("m2", at=clock())], version=2)
    assert not second.updates_memories
    # The table is at events version 1; a batch whose cut is 0 (say a crash left the
    # others behind) must not append: m2's row could be there already.
    commit_table(
        lake, "memories", [rows_table("memories", second.memories)], watermark=2, kind="insert", cut=0
    )
    assert _last_operation(lake) == "MERGE"
    # Replayed from the same cut after a crash that left memories ahead: merged again, not doubled.
    commit_table(
        lake, "memories", [rows_table("memories", second.memories)], watermark=3, kind="insert", cut=1
    )
    assert _last_operation(lake) == "MERGE"
    # At its cut, a batch of new keys is appended.
    third = _fold(fold(prior, [b.added("m2", at=clock())]).state, [b.added("m3", at=clock())], version=4)
    commit_table(
        lake, "memories", [rows_table("memories", third.memories)], watermark=4, kind="insert", cut=3
    )
    assert _last_operation(lake) == "WRITE"

    ids = scan(lake.table("memories"), spec("memories"), columns=["memory_id"]).column("memory_id")
    assert sorted(ids.to_pylist()) == ["m1", "m2", "m3"]
    assert pc.count_distinct(ids).as_py() == 3


def test_an_erasure_replaces_its_memories_versions_in_a_commit_of_their_own(lake: Lake) -> None:
    clock = b.Clock()
    about_bob = [
        b.created(at=clock()),
        b.added("m1", "bob likes tea", at=clock(), subject_id="bob"),
        b.updated("m1", at=clock(), tags=["x"]),
        b.added("m3", "carol likes tea", at=clock(), subject_id="carol"),
    ]
    # The same memory id in another cube: only the erased cube's m1 is replaced.
    other = [_in_cube(e, "other") for e in (b.created(at=clock()), b.added("m1", "dan", at=clock()))]
    first = [_fold(CubeState(), about_bob, version=1), _fold(CubeState(), other, version=1)]
    parts = [rows_table("memory_versions", rows.memory_versions) for rows in first]
    commit_table(lake, "memory_versions", parts, watermark=1)

    erasure = _fold(fold(CubeState(), about_bob).state, [b.erased("bob", at=clock())], version=2)
    # Every version of bob's memory, the erasure's own too, is marked to replace the lake's;
    # carol's is untouched.
    marked = [(r["memory_id"], r["version"], r[MADE]) for r in erasure.memory_versions if MADE in r]
    assert marked == [("m1", 1, -1), ("m1", 2, -1), ("m1", 3, 2)]  # -1: in the lake already
    update = _in_cube(b.updated("m1", at=clock(), tags=["y"]), "other")
    later = _fold(fold(CubeState(), other).state, [update], version=2)
    parts = [rows_table("memory_versions", rows.memory_versions) for rows in (erasure, later)]
    before = lake.version("memory_versions")
    commit_table(lake, "memory_versions", parts, watermark=2)

    log = lake.commit_log("memory_versions", limit=2)
    # The rewrite, then the batch's append: only the second moves the watermark.
    assert [entry["version"] for entry in log] == [before + 2, before + 1]
    assert log[1]["memlake.rewrites_for"] == "2"
    assert "memlake.watermark" not in log[1]
    assert log[0]["memlake.watermark"] == 2
    versions = scan(lake.table("memory_versions"), spec("memory_versions")).to_pylist()
    text = {(v["cube_id"], v["memory_id"], v["version"]): v["text"] for v in versions}
    assert len(text) == len(versions)  # no key twice
    assert text == {
        (b.CUBE, "m1", 1): None,  # both past versions of bob's memory rewritten in place
        (b.CUBE, "m1", 2): None,
        (b.CUBE, "m1", 3): None,  # the erasure's own version
        (b.CUBE, "m3", 1): "carol likes tea",
        ("other", "m1", 1): "dan",
        ("other", "m1", 2): "dan",
    }

    # Replayed (a crash after both commits): already at the watermark, nothing is written.
    commit_table(lake, "memory_versions", parts, watermark=2)
    assert lake.version("memory_versions") == before + 2


def test_an_erasure_rewrites_versions_the_table_holds_past_the_cut(lake: Lake) -> None:
    """`memory_versions` ahead of the batch's cut (a crash, or another table restored): the
    erasure must rewrite the versions it already holds of the events it folds again."""
    clock = b.Clock()
    first = [b.created(at=clock()), b.added("m1", "bob likes tea", at=clock(), subject_id="bob")]
    second = [
        b.updated("m1", at=clock(), tags=["x"]),
        b.added("m2", "bob likes jazz", at=clock(), subject_id="bob"),
    ]
    erased = [b.erased("bob", at=clock())]
    prior = fold(CubeState(), first).state
    commit_table(
        lake,
        "memory_versions",
        [rows_table("memory_versions", _fold(CubeState(), first, version=1).memory_versions)],
        watermark=1,
    )
    commit_table(
        lake,
        "memory_versions",
        [rows_table("memory_versions", _fold(prior, second, version=2).memory_versions)],
        watermark=2,
    )

    # The rerun folds from events version 1: the second batch again, then the erasure.
    loaded = LoadedState(prior, dict(prior.history), complete=True)
    logged = _logged(second, version=2) + [
        LoggedEvent(e, serialize_event(e).decode(), 3, "t", 0, len(second) + i, _AT)
        for i, e in enumerate(erased)
    ]
    rerun = fold_cube(loaded, logged, buckets=4)
    commit_table(lake, "memory_versions", [rows_table("memory_versions", rerun.memory_versions)], watermark=3)

    versions = scan(lake.table("memory_versions"), spec("memory_versions")).to_pylist()
    found = {(v["memory_id"], v["version"]): (v["status"], v["text"]) for v in versions}
    assert len(found) == len(versions)  # no key twice
    expected = fold(CubeState(), first + second + erased).state.history
    assert found == {
        (m.memory_id, m.version): (m.status.value, None) for history in expected.values() for m in history
    }
    assert len(found) == 5  # m1 v1-v3 and m2 v1-v2, every one erased


def test_what_another_writer_committed_first_is_not_counted_again(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits part of this batch's usage (events version 2) after this one has
    its rows and before it writes: the writer picks the rows past the watermark it finds then,
    and the read is counted once (before, the rows picked at the start counted it twice)."""
    commit_table(lake, "usage", [], watermark=1)
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def read(ev: int) -> dict[str, object]:
        return {
            "day": at.date(),
            "cube_id": "c1",
            "memory_id": "m1",
            "access_count": 1,
            "last_accessed_at": at,
            EV: ev,
        }

    real = Lake.write_to
    others: list[int] = []

    def another_writer_first(self: Lake, name: str, write: Any) -> Any:
        if name == "usage" and not others:
            others.append(0)  # before: the other writer's own write comes through here too
            other = commit_table(Lake(self.settings), "usage", [rows_table("usage", [read(2)])], watermark=2)
            others[0] = other.rows
        return real(self, name, write)

    monkeypatch.setattr(Lake, "write_to", another_writer_first)
    result = commit_table(lake, "usage", [rows_table("usage", [read(2), read(3)])], watermark=3)

    assert others == [1]
    assert result.rows == 1  # the read of events version 3 only
    usage = scan(lake.table("usage"), spec("usage"))
    assert usage.column("access_count").to_pylist() == [2]
    assert lake.watermark("usage") == 3

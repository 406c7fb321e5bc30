"""The hash chain and the comparison of two copies of a cube's history."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from memlake.chain import ChainEntry, chain, check_links, compare, digest, genesis, link


def _entries(records: list[bytes], cube: str = "c1", *, stored: bool = True) -> list[ChainEntry]:
    links = chain(cube, records)
    return [
        ChainEntry(
            event_id=f"e{i}",
            record_digest=digest(r),
            position=f"p0@{i}",
            stored_link=links[i] if stored else None,
        )
        for i, r in enumerate(records)
    ]


def test_links_follow_the_documented_formula() -> None:
    first = hashlib.sha256(b"memlake-chain:v1|genesis|cube-a").hexdigest()
    assert genesis("cube-a") == first
    record = b'{"type":"memory.added"}'
    expected = hashlib.sha256(
        b"memlake-chain:v1|" + first.encode() + b"|" + hashlib.sha256(record).hexdigest().encode()
    ).hexdigest()
    assert chain("cube-a", [record]) == [expected]
    assert link(first, digest(record)) == expected


def test_chain_continues_from_a_head() -> None:
    records = [b"a", b"b", b"c", b"d"]
    whole = chain("c", records)
    assert chain("c", records[2:], head=whole[1]) == whole[2:]


def test_chains_of_two_cubes_differ_for_the_same_records() -> None:
    assert chain("c1", [b"x"]) != chain("c2", [b"x"])


def test_order_matters() -> None:
    assert chain("c", [b"a", b"b"])[-1] != chain("c", [b"b", b"a"])[-1]


def test_intact_copies_have_no_discrepancy() -> None:
    entries = _entries([b"one", b"two", b"three"])
    assert compare(entries, entries) == []
    assert check_links("c1", entries) == []


def test_an_altered_record_is_named_and_breaks_the_chain() -> None:
    reference = _entries([b"one", b"two", b"three"])
    altered = list(reference)
    altered[1] = ChainEntry("e1", digest(b"TWO"), "p0@1", reference[1].stored_link)
    found = compare(reference, altered)
    assert [(d.kind, d.event_id) for d in found] == [("altered", "e1")]
    broken = check_links("c1", altered)
    assert [(d.kind, d.event_id) for d in broken] == [("broken_link", "e1")]


def test_missing_and_unexpected_records() -> None:
    reference = _entries([b"one", b"two", b"three"])
    copy = [reference[0], reference[2], ChainEntry("zz", digest(b"forged"), "p0@9")]
    found = {(d.kind, d.event_id) for d in compare(reference, copy)}
    assert found == {("missing", "e1"), ("unexpected", "zz")}
    # Dropping a row leaves every later stored link unexplained.
    assert [d.kind for d in check_links("c1", copy[:2])] == ["broken_link"]


def test_a_moved_record_is_reported_as_reordered_and_only_it() -> None:
    reference = _entries([b"a", b"b", b"c", b"d", b"e"])
    moved = [reference[0], reference[2], reference[3], reference[1], reference[4]]
    found = compare(reference, moved)
    assert [(d.kind, d.event_id) for d in found] == [("reordered", "e1")]


def test_duplicate_records_pair_by_occurrence() -> None:
    records = [b"a", b"a", b"b"]
    reference = [ChainEntry("e0", digest(b"a"), "p0@0"), ChainEntry("e0", digest(b"a"), "p0@1")]
    reference.append(ChainEntry("e1", digest(b"b"), "p0@2"))
    assert compare(reference, reference) == []
    found = compare(reference, reference[1:])
    assert [(d.kind, d.event_id) for d in found] == [("missing", "e0")]
    assert len(chain("c", records)) == 3


@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=30), st.data())
def test_any_single_edit_is_detected(records: list[bytes], data: st.DataObject) -> None:
    reference = _entries(records)
    index = data.draw(st.integers(0, len(records) - 1))
    edit = data.draw(st.sampled_from(["alter", "drop", "swap"]))
    copy = list(reference)
    if edit == "alter":
        original = copy[index]
        copy[index] = ChainEntry(
            original.event_id, digest(records[index] + b"!"), original.position, original.stored_link
        )
    elif edit == "drop":
        del copy[index]
    else:
        other = data.draw(st.integers(0, len(records) - 1))
        if other == index or records[other] == records[index]:
            return
        copy[index], copy[other] = copy[other], copy[index]
    assert compare(reference, copy), f"{edit} at {index} went unnoticed"
    if edit != "drop" or index < len(records) - 1:
        # Only a dropped last record keeps the lake's own links consistent; Kafka catches that.
        assert check_links("c1", copy), f"{edit} at {index} kept the stored chain consistent"

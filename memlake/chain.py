"""Tamper evidence: each cube's events chained by hash in log order.

Link `i` of a cube's chain is `sha256(tag | link[i-1] | sha256(record[i]))`,
where `record[i]` is the event's bytes exactly as the log holds them and
link 0 is derived from the cube id. Whoever edits, drops, inserts or moves
one event changes every link from there on, so a chain head kept elsewhere
(or recomputed from the log) exposes it. `compare` lines up two copies of
a cube's history (the Kafka log and the lake's `events` table) and names
every event that was altered, is missing, was added, or sits out of order.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

__all__ = [
    "CHAIN_VERSION",
    "genesis",
    "digest",
    "link",
    "chain",
    "ChainEntry",
    "Discrepancy",
    "DiscrepancyKind",
    "compare",
    "check_links",
]

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

CHAIN_VERSION = "v1"
_TAG = f"memlake-chain:{CHAIN_VERSION}".encode()


def genesis(cube_id: str) -> str:
    """Link 0 of a cube's chain: bound to the cube, so two cubes' chains never coincide."""
    return hashlib.sha256(_TAG + b"|genesis|" + cube_id.encode()).hexdigest()


def digest(record: bytes) -> str:
    """The SHA-256 of one event's bytes as logged."""
    return hashlib.sha256(record).hexdigest()


def link(previous: str, record_digest: str) -> str:
    """The link after `previous` for a record whose digest is `record_digest`."""
    return hashlib.sha256(_TAG + b"|" + previous.encode() + b"|" + record_digest.encode()).hexdigest()


def chain(cube_id: str, records: Iterable[bytes], *, head: str | None = None) -> list[str]:
    """Links for records in log order, continuing from `head` (the genesis when None)."""
    current = genesis(cube_id) if head is None else head
    out = []
    for record in records:
        current = link(current, digest(record))
        out.append(current)
    return out


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One event of one copy of a cube's history, in that copy's order."""

    event_id: str
    record_digest: str
    position: str  # where the copy holds it, for reports ("p3@1207")
    stored_link: str | None = None  # the chain hash stored with it (the lake's column)


DiscrepancyKind = Literal["altered", "missing", "unexpected", "reordered", "broken_link"]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: DiscrepancyKind
    event_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: event {self.event_id}: {self.detail}"


def _keyed(entries: Sequence[ChainEntry]) -> list[tuple[tuple[str, int], ChainEntry]]:
    # The same event may sit in the log twice (a resent record): the n-th copy pairs with the n-th.
    seen: dict[str, int] = {}
    out = []
    for entry in entries:
        n = seen.get(entry.event_id, 0)
        seen[entry.event_id] = n + 1
        out.append(((entry.event_id, n), entry))
    return out


def _out_of_order(sequence: Sequence[int]) -> set[int]:
    """Indices not on one longest increasing subsequence: the fewest events that moved."""
    tails: list[int] = []  # tails[k]: smallest last value of an increasing run of length k+1
    tail_index: list[int] = []
    parent = [-1] * len(sequence)
    for i, value in enumerate(sequence):
        k = bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[k] = value
            tail_index[k] = i
        parent[i] = tail_index[k - 1] if k > 0 else -1
    keep: set[int] = set()
    i = tail_index[-1] if tail_index else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    return set(range(len(sequence))) - keep


def check_links(cube_id: str, entries: Sequence[ChainEntry], *, head: str | None = None) -> list[Discrepancy]:
    """Recompute the chain over `entries` and report the first stored link that disagrees.

    Everything after a broken link disagrees too; only the first is reported,
    with the count of the rest.
    """
    current = genesis(cube_id) if head is None else head
    for index, entry in enumerate(entries):
        current = link(current, entry.record_digest)
        if entry.stored_link is not None and entry.stored_link != current:
            rest = len(entries) - index - 1
            return [
                Discrepancy(
                    "broken_link",
                    entry.event_id,
                    f"stored chain hash at {entry.position} does not match the recomputed one "
                    f"(the event or one before it was changed; {rest} later links follow from it)",
                )
            ]
    return []


def compare(reference: Sequence[ChainEntry], copy: Sequence[ChainEntry]) -> list[Discrepancy]:
    """Everything in which `copy` differs from `reference`, both in their own log order.

    `missing`: in the reference, not in the copy; `unexpected`: the other way;
    `altered`: in both with different bytes; `reordered`: in both, but among the
    fewest events that must move for the copy's order to match the reference's.
    """
    ref = _keyed(reference)
    cpy = _keyed(copy)
    ref_index = {key: i for i, (key, _) in enumerate(ref)}
    cpy_keys = {key for key, _ in cpy}
    out: list[Discrepancy] = []
    for key, entry in ref:
        if key not in cpy_keys:
            out.append(Discrepancy("missing", entry.event_id, f"at {entry.position} in the reference only"))
    common: list[tuple[int, ChainEntry]] = []
    for key, entry in cpy:
        i = ref_index.get(key)
        if i is None:
            out.append(Discrepancy("unexpected", entry.event_id, f"at {entry.position} in the copy only"))
            continue
        original = ref[i][1]
        if original.record_digest != entry.record_digest:
            out.append(
                Discrepancy(
                    "altered",
                    entry.event_id,
                    f"bytes at {entry.position} differ from the reference at {original.position}",
                )
            )
        common.append((i, entry))
    for index in sorted(_out_of_order([i for i, _ in common])):
        i, entry = common[index]
        out.append(
            Discrepancy(
                "reordered",
                entry.event_id,
                f"at {entry.position} in the copy, but at {ref[i][1].position} in the reference order",
            )
        )
    return out

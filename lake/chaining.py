"""The `chain_hash` column of the `events` table: each cube's events chained by hash in log order.

Land calls `with_chain` on the rows it is about to append (after dropping
those already landed): each row's link continues its cube's chain from the
last row the table holds for that cube (`memlake.chain`). The heads are read
from the table once per process and kept, keyed by the table version they
describe, so follow mode does not rescan the table every micro-batch.
"""

from __future__ import annotations

__all__ = ["with_chain", "chain_heads", "remember"]

import threading
from typing import TYPE_CHECKING

import pyarrow as pa

from lake.scan import scan
from lake.schemas import EVENTS
from memlake.chain import chain

if TYPE_CHECKING:
    from deltalake import DeltaTable

_lock = threading.Lock()
# table uri -> (table version, {cube_id: last chain hash}) for every cube of that version.
_heads: dict[str, tuple[int, dict[str, str]]] = {}


def chain_heads(dt: DeltaTable) -> dict[str, str]:
    """The last chain hash of every cube in the loaded version of the events table."""
    version = int(dt.version())
    with _lock:
        cached = _heads.get(dt.table_uri)
    if cached is not None and cached[0] == version:
        return dict(cached[1])
    data = scan(dt, EVENTS, columns=["cube_id", "partition", "offset", "chain_hash"])
    heads: dict[str, str] = {}
    if data.num_rows:
        ordered = data.sort_by(
            [("cube_id", "ascending"), ("partition", "ascending"), ("offset", "ascending")]
        )
        for cube_id, link in zip(
            ordered.column("cube_id").to_pylist(), ordered.column("chain_hash").to_pylist(), strict=True
        ):
            if link is not None:
                heads[cube_id] = link
    with _lock:
        _heads[dt.table_uri] = (version, heads)
    return dict(heads)


def with_chain(dt: DeltaTable, data: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """`data` (rows in log order) with `chain_hash` filled in, and the cubes' new heads."""
    heads = chain_heads(dt)
    links: list[str | None] = [None] * data.num_rows
    rows_by_cube: dict[str, list[int]] = {}
    for index, cube_id in enumerate(data.column("cube_id").to_pylist()):
        rows_by_cube.setdefault(cube_id, []).append(index)
    raw = data.column("event_json").to_pylist()
    for cube_id, indices in rows_by_cube.items():
        cube_links = chain(cube_id, (raw[i].encode() for i in indices), head=heads.get(cube_id))
        for index, link in zip(indices, cube_links, strict=True):
            links[index] = link
        heads[cube_id] = cube_links[-1]
    position = data.schema.get_field_index("chain_hash")
    column = pa.array(links, pa.string())
    return data.set_column(position, "chain_hash", column), heads


def remember(dt: DeltaTable, heads: dict[str, str]) -> None:
    """After a commit: the heads that describe the table's new version."""
    with _lock:
        _heads[dt.table_uri] = (int(dt.version()), dict(heads))

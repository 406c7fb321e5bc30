"""The two tables consolidation owns: `memory_vectors` (its embedding cache) and `hot_memories`.

Both live under the lake root beside the tables the log derives, with the
same table configuration (change data feed, retention that keeps the
rollback window), and both are derived: dropping them loses nothing but
time. `hot_memories` is the hand-off to distillation and KV-cache jobs; its
schema is documented in docs/governance.md and is a contract.
"""

from __future__ import annotations

__all__ = [
    "VECTORS",
    "HOT_MEMORIES",
    "OwnTable",
    "VECTORS_SCHEMA",
    "HOT_SCHEMA",
    "consolidate_app_id",
    "subject_predicate",
]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lake.scan import sql_in, sql_literal
from lake.tables import Lake, delta_errors

if TYPE_CHECKING:
    from deltalake import DeltaTable

_TS = pa.timestamp("us", tz="UTC")

VECTORS = "memory_vectors"
HOT_MEMORIES = "hot_memories"

VECTORS_SCHEMA = pa.schema(
    [
        ("bucket", pa.int32()),  # hash of cube_id, as in `memories`
        ("cube_id", pa.string()),
        ("memory_id", pa.string()),
        # SHA-256 of the clear text, or of the ciphertext for sealed content: never a
        # fingerprint of sealed plaintext.
        ("content_sha256", pa.string()),
        ("subject_id", pa.string()),
        ("embedder", pa.string()),
        ("sealed", pa.bool_()),
        # float16 little-endian; for sealed content the vector is sealed too (under the
        # subject's data key), so erasing the subject shreds it with the content.
        ("vector", pa.binary()),
    ]
)

HOT_SCHEMA = pa.schema(
    [
        ("selection_version", pa.int64()),  # the events-table version (snapshot) it was chosen from
        ("selected_at", _TS),  # the as-of time of the consolidation run
        ("cube_id", pa.string()),
        ("memory_id", pa.string()),
        ("memory_version", pa.int64()),  # the version judged hot
        ("kind", pa.string()),
        ("rank", pa.int32()),  # 1 = hottest within its cube
        ("score", pa.float64()),  # reads weighted by age: sum of count * 0.5 ** (age_days / half_life)
        ("access_count", pa.int64()),  # reads within the window
        ("last_accessed_at", _TS),
        ("subject_id", pa.string()),  # the person the memory is about (erasure follows it)
        ("sealed", pa.bool_()),  # content is sealed: open it with the subject's data key
    ]
)


def consolidate_app_id(table: str) -> str:
    return f"consolidate:{table}"


def subject_predicate(subject_id: str, memories: Iterable[tuple[str, str]]) -> str:
    """SQL selecting rows about a subject: its own rows and those of the given (cube, memory) pairs."""
    by_cube: dict[str, set[str]] = {}
    for cube_id, memory_id in memories:
        by_cube.setdefault(cube_id, set()).add(memory_id)
    terms = [f"subject_id = {sql_literal(subject_id)}"]
    for cube_id, ids in sorted(by_cube.items()):
        terms.append(f"(cube_id = {sql_literal(cube_id)} AND {sql_in('memory_id', ids)})")
    return " OR ".join(terms)


@dataclass(frozen=True)
class OwnTable:
    """A table consolidation writes, under the lake root. The constructor does no I/O."""

    lake: Lake
    name: str
    schema: pa.Schema
    partition_by: Sequence[str] = ()

    @property
    def uri(self) -> str:
        return f"{self.lake.root}/{self.name}"

    def exists(self) -> bool:
        from deltalake import DeltaTable

        with delta_errors(self.name):
            return bool(DeltaTable.is_deltatable(self.uri, storage_options=self.lake.storage_options))

    def table(self) -> DeltaTable:
        """The table, created (empty) first when it does not exist."""
        from deltalake import DeltaTable

        if self.lake.is_local:
            Path(self.uri.removeprefix("file://")).parent.mkdir(parents=True, exist_ok=True)
        with delta_errors(self.name):
            if not self.exists():
                DeltaTable.create(
                    self.uri,
                    self.schema,
                    mode="ignore",
                    partition_by=list(self.partition_by) or None,
                    name=self.name,
                    configuration=self.lake.configuration(),
                    storage_options=self.lake.storage_options,
                )
            return DeltaTable(self.uri, storage_options=self.lake.storage_options)

    def read(
        self,
        *,
        columns: list[str] | None = None,
        filters: list[tuple[str, str, Any]] | None = None,
    ) -> pa.Table:
        """Rows of the current version (only those matching partition `filters`), in the table's schema."""
        if not self.exists():
            empty = self.schema.empty_table()
            return empty if columns is None else empty.select(columns)
        dt = self.table()
        with delta_errors(self.name):
            data = dt.to_pyarrow_table(filters=filters, columns=columns)
        target = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        return data.select(target.names).cast(target)

    def app_version(self, app_id: str) -> int:
        if not self.exists():
            return -1
        with delta_errors(self.name):
            value = self.table().transaction_version(app_id)
        return -1 if value is None else int(value)

    def delete(self, predicate: str) -> int:
        """Delete the rows matching a SQL predicate; how many went."""
        if not self.exists():
            return 0
        dt = self.table()
        with delta_errors(self.name):
            metrics = dt.delete(predicate)
        return int(metrics.get("num_deleted_rows", 0) or 0)

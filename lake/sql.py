"""SQL over the lake: DuckDB on Arrow datasets of Delta versions, optionally as of the past.

Every lake table a query names is registered under its own name (`events`,
`memories`, `memory_versions`, `cubes`, `cube_versions`, `usage`,
`rejected`). `as_of` may be an events-table version (the lake as it was
when that version was materialized: a consistent cut of every table) or a
point in time (each table's Delta version at that time, which vacuum limits
to the rollback window).
"""

from __future__ import annotations

__all__ = ["query", "write_result"]

import re
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from lake.scan import for_duckdb, table_dataset, without_views
from lake.schemas import DERIVED_TABLES, TABLES
from lake.snapshot import find_cut
from lake.tables import Lake, delta_errors
from memlake.errors import LakeError, StoreUnavailableError, TimeTravelError


def _named(sql: str) -> list[str]:
    return [name for name in TABLES if re.search(rf"\b{name}\b", sql, flags=re.IGNORECASE)]


def _version(lake: Lake, name: str, as_of: int | datetime | None) -> DeltaTable | None:
    """The table's version a query reads (None: the table had no version then)."""
    if as_of is None:
        return lake.table(name)
    if isinstance(as_of, datetime):
        try:
            return lake.table(name, version=as_of)
        except StoreUnavailableError:
            raise
        except LakeError as e:
            raise TimeTravelError(
                name, f"no version at {as_of.isoformat()}: {e.problem}", requested=as_of
            ) from e
    if name == "events":
        return lake.table(name, version=as_of)
    version = find_cut(lake, DERIVED_TABLES, at_most=as_of).versions[name]
    return None if version is None else lake.table(name, version=version)


def _source(lake: Lake, name: str, as_of: int | datetime | None) -> ds.Dataset | pa.Table:
    """The table's version a query reads, as a lazy dataset: DuckDB reads only the columns
    and row groups the query needs, instead of the whole table up front."""
    table = lake.spec(name)
    dt = _version(lake, name, as_of)
    return table.schema.empty_table() if dt is None else for_duckdb(table_dataset(dt, table))


def query(lake: Lake, sql: str, *, as_of: int | datetime | None = None) -> pa.Table:
    """Run one SQL statement over the lake's tables; the result as Arrow."""
    import duckdb

    if isinstance(as_of, int):
        # A version past the log's head would read as the lake now, and one before it as
        # empty tables: either answers a question the caller did not ask.
        latest = lake.version("events")
        if not 0 <= as_of <= latest:
            raise TimeTravelError(
                "events", f"the events table has versions 0..{latest}, not {as_of}", requested=as_of
            )
    connection = duckdb.connect()
    try:
        for name in _named(sql):
            connection.register(name, _source(lake, name, as_of))
        try:
            relation = connection.sql(sql)
            if relation is None:  # an empty text, or a last statement that returns no rows
                raise LakeError(
                    "sql", "the text holds no query: give one that returns rows (SELECT, WITH ...)"
                )
            result = relation.to_arrow_table()
        except duckdb.Error as e:
            raise LakeError(", ".join(_named(sql)) or "sql", f"query failed: {e}") from e
        return without_views(pa.table(result))
    finally:
        connection.close()


def write_result(data: pa.Table, path: Path) -> None:
    """Write a result as Parquet (`.parquet`) or CSV (`.csv`)."""
    suffix = path.suffix.lower()
    with delta_errors("sql"):
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(data, path)
        elif suffix == ".csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(data, path)
        else:
            raise LakeError("sql", f"unknown output format {suffix!r}: use .parquet or .csv")

"""Reading a Delta table version into Arrow with file pruning and exact row filters.

delta-rs 1.6 attaches each file's min/max statistics to its pyarrow fragment
as `string_view` literals, which pyarrow cannot compare with the `string`
columns it reads: any filter on a string column fails. So fragments are
rebuilt here with their partition values only; files are pruned by delta-rs
itself (`prune`, a SQL predicate evaluated against the log's statistics) and
row groups by the Parquet footers, and rows are filtered exactly by `filter`.
"""

from __future__ import annotations

__all__ = ["scan", "sql_in", "sql_literal", "table_dataset", "for_duckdb", "without_views"]

import re
import urllib.parse
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pa_fs

from lake.schemas import TableSpec
from lake.tables import delta_errors

if TYPE_CHECKING:
    from deltalake import DeltaTable


def sql_literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def sql_in(column: str, values: Iterable[object]) -> str:
    items = sorted({sql_literal(v) for v in values})
    return f'"{column}" IN ({", ".join(items)})' if items else "false"


def _plain(kind: pa.DataType) -> pa.DataType:
    if kind == pa.string_view():
        return pa.string()
    if kind == pa.binary_view():
        return pa.binary()
    if pa.types.is_list(kind) or pa.types.is_list_view(kind) or pa.types.is_large_list(kind):
        return pa.list_(_plain(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_plain(f.type)) for f in kind])
    return kind


def without_views(data: pa.Table) -> pa.Table:
    """The same table with view types (what delta-rs readers return) cast to plain ones,
    which every pyarrow kernel and Arrow consumer understands."""
    schema = pa.schema([f.with_type(_plain(f.type)) for f in data.schema])
    return data if schema == data.schema else data.cast(schema)


def _partition_expression(path: str, table: TableSpec) -> ds.Expression | None:
    expression = None
    segments = urllib.parse.unquote(path).split("/")
    for column in table.partition_by:
        field = table.schema.field(column)
        prefix = f"{column}="
        raw = next((s[len(prefix) :] for s in segments if s.startswith(prefix)), None)
        if raw is None:
            continue
        if raw == "__HIVE_DEFAULT_PARTITION__":
            part = pc.field(column).is_null()
        else:
            value = pa.scalar(raw).cast(field.type)
            part = pc.field(column) == value
        expression = part if expression is None else expression & part
    return expression


# Wide columns read only for the rows a filter kept (a second, positional read).
_WIDE = frozenset({"memory_json", "cube_json", "event_json", "text", "policy_json"})


def _mentions(expression: ds.Expression, column: str) -> bool:
    return re.search(rf"\b{re.escape(column)}\b", str(expression)) is not None


def _files(dt: DeltaTable, prune: str | None) -> tuple[pa_fs.FileSystem, list[str]]:
    """The table's data files (pruned by delta-rs from the log's statistics) and a filesystem."""
    uri = dt.table_uri
    if "://" not in uri or uri.startswith("file://"):
        # Local tables: plain paths, without building delta-rs' per-file statistics expressions.
        paths = dt.file_uris(file_pruning_predicate=prune) if prune else dt.file_uris()
        return pa_fs.LocalFileSystem(), [p.removeprefix("file://") for p in paths]
    source = dt.to_pyarrow_dataset(file_pruning_predicate=prune) if prune else dt.to_pyarrow_dataset()
    return source.filesystem, [fragment.path for fragment in source.get_fragments()]


def _viewed(kind: pa.DataType) -> pa.DataType:
    if kind == pa.string():
        return pa.string_view()
    if pa.types.is_list(kind):
        return pa.list_(_viewed(kind.value_type))
    return kind


def for_duckdb(dataset: ds.FileSystemDataset) -> ds.FileSystemDataset:
    """The dataset with its strings typed as views, for DuckDB to scan with filters.

    A table's files differ: those delta-rs writes through a MERGE store `string_view`
    as their columns' Arrow type, the others `string`. DuckDB hands a query's WHERE to
    pyarrow's scan, which checks it against each file's statistics; under the table's
    plain-string schema it found no kernel for string against string_view, and the query
    failed (`memlake sql "... FROM usage WHERE cube_id = ..."`, or `rebuild --verify`
    reading a differing row back). Under view types both kinds of files read.
    """
    schema = pa.schema([f.with_type(_viewed(f.type)) for f in dataset.schema])
    return ds.FileSystemDataset(list(dataset.get_fragments()), schema, dataset.format, dataset.filesystem)


def table_dataset(dt: DeltaTable, table: TableSpec, *, prune: str | None = None) -> ds.FileSystemDataset:
    """The loaded version of `dt` as a lazy Arrow dataset in the table's own schema.

    Nothing is read until it is scanned, so a consumer that streams (DuckDB, a batch
    reader) holds a few row groups at a time instead of the whole table.
    """
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
    filesystem, paths = _files(dt, prune)
    fragments = []
    for path in paths:
        expression = _partition_expression(path, table)
        fragments.append(
            fmt.make_fragment(
                path,
                filesystem=filesystem,
                partition_expression=pc.scalar(True) if expression is None else expression,
            )
        )
    return ds.FileSystemDataset(fragments, table.schema, fmt, filesystem)


def scan(
    dt: DeltaTable,
    table: TableSpec,
    *,
    columns: list[str] | None = None,
    filter: ds.Expression | None = None,
    prune: str | None = None,
) -> pa.Table:
    """Rows of the loaded version of `dt`, in the table's own schema."""
    with delta_errors(table.name):  # its files are read here, from the store
        return _scan(dt, table, columns=columns, filter=filter, prune=prune)


def _scan(
    dt: DeltaTable,
    table: TableSpec,
    *,
    columns: list[str] | None,
    filter: ds.Expression | None,
    prune: str | None,
) -> pa.Table:
    dataset = table_dataset(dt, table, prune=prune)
    wanted = list(columns or table.schema.names)
    target = pa.schema([table.schema.field(c) for c in wanted])
    if filter is None:
        return dataset.to_table(columns=wanted).cast(target)
    # The filter is evaluated in memory, not pushed into the scan: pushed down, pyarrow
    # would compare it with the files' string_view statistics and fail. So the first read
    # takes only the columns the filter names and the narrow ones asked for: every narrow
    # column of a `memories` bucket (22 of them) was most of a follower's batch once its
    # state cache overflowed.
    narrow = [c for c in table.schema.names if _mentions(filter, c) or (c in wanted and c not in _WIDE)]
    head = dataset.to_table(columns=narrow).cast(pa.schema([table.schema.field(c) for c in narrow]))
    head = head.append_column("__row", pa.array(range(head.num_rows), pa.int64()))
    kept = head.filter(filter)
    wide = [c for c in wanted if c not in narrow]
    if not wide or kept.num_rows == 0:
        out = kept.select([c for c in wanted if c in narrow])
        for column in wide:
            out = out.append_column(table.schema.field(column), pa.nulls(0, table.schema.field(column).type))
        return out.select(wanted).cast(target)
    extra = dataset.take(kept.column("__row"), columns=wide)
    out = kept
    for column in wide:
        out = out.append_column(
            table.schema.field(column), extra.column(column).cast(table.schema.field(column).type)
        )
    return out.select(wanted).cast(target)

"""Compare two lakes table by table (a rebuild against the live tables)."""

from __future__ import annotations

__all__ = ["TableDifference", "compare_table"]

from dataclasses import dataclass, field

import pyarrow as pa

from lake.scan import scan
from lake.tables import Lake


@dataclass(frozen=True)
class TableDifference:
    table: str
    rows_left: int
    rows_right: int
    only_left: int = 0
    only_right: int = 0
    changed: int = 0
    samples: tuple[str, ...] = field(default=())

    @property
    def equal(self) -> bool:
        return self.only_left == self.only_right == self.changed == 0 and self.rows_left == self.rows_right


def _read(lake: Lake, name: str, version: int | None) -> pa.Table:
    table = lake.spec(name)
    if version is None:
        return table.schema.empty_table()
    data = scan(lake.table(name, version=version), table)
    return data.sort_by([(k, "ascending") for k in table.keys]) if data.num_rows > 1 else data


def compare_table(
    left: Lake,
    left_version: int | None,
    right: Lake,
    right_version: int | None,
    name: str,
    *,
    samples: int = 5,
) -> TableDifference:
    """Rows of `name` in two lakes (at given versions; None: empty): equal, or how they differ."""
    keys = list(left.spec(name).keys)
    a = _read(left, name, left_version)
    b = _read(right, name, right_version)
    if a.num_rows == b.num_rows and all(a.column(c).equals(b.column(c)) for c in a.column_names):
        return TableDifference(name, a.num_rows, b.num_rows)
    # Slow path only when they differ: by key, in Python, to say how.
    left_rows = {tuple(r[k] for k in keys): r for r in a.to_pylist()}
    right_rows = {tuple(r[k] for k in keys): r for r in b.to_pylist()}
    only_left = sorted(set(left_rows) - set(right_rows), key=repr)
    only_right = sorted(set(right_rows) - set(left_rows), key=repr)
    changed = []
    for key in sorted(set(left_rows) & set(right_rows), key=repr):
        l_row, r_row = left_rows[key], right_rows[key]
        if l_row != r_row:
            columns = [c for c in l_row if l_row[c] != r_row[c]]
            changed.append(f"{key}: {', '.join(columns)} differ")
    notes = [f"only in live: {k}" for k in only_left[:samples]]
    notes += [f"only in rebuilt: {k}" for k in only_right[:samples]]
    notes += changed[:samples]
    return TableDifference(
        name, a.num_rows, b.num_rows, len(only_left), len(only_right), len(changed), tuple(notes)
    )

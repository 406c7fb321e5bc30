"""Hot-memory selection: the memories distillation and KV-cache jobs should take next.

Heat comes from the lake's `usage` table (reads per memory per day):

    score = sum over the window's days of  count(day) * 0.5 ** (age_days(day) / half_life_days)

with `age_days` counted in whole days from the run's as-of day, so two runs
on the same day score alike. Per cube the `hot_per_cube` best-scoring
active plaintext memories with at least `hot_min_accesses` reads in the
window are selected (ties: more reads, then the id). Memories this run
expires, archives or merges away are not selected.

The `hot_memories` table holds the latest selection only: a run replaces
the rows of the cubes it covered (all of them, or `--cube`), and writes
nothing when the selection is unchanged.
"""

from __future__ import annotations

__all__ = ["HotRules", "Heat", "heat_of", "select_hot", "HotMemoriesTable"]

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from lake.scan import sql_literal
from lake.tables import Lake, delta_errors
from memlake.model import MemoryKind, MemoryStatus
from pipelines.consolidation_tables import HOT_MEMORIES, HOT_SCHEMA, OwnTable, subject_predicate
from pipelines.lifecycle import MemoryRow


@dataclass(frozen=True, slots=True)
class HotRules:
    window_days: int = 30
    half_life_days: float = 7.0
    per_cube: int = 32
    min_accesses: int = 2


@dataclass(frozen=True, slots=True)
class Heat:
    score: float
    access_count: int
    last_accessed_at: datetime | None


def heat_of(
    usage: Iterable[tuple[str, str, date, int, datetime | None]], today: date, rules: HotRules
) -> dict[tuple[str, str], Heat]:
    """Heat per (cube_id, memory_id) from usage rows (cube_id, memory_id, day, count, last read)."""
    score: dict[tuple[str, str], float] = {}
    count: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], datetime | None] = {}
    for cube_id, memory_id, day, reads, last_read in usage:
        age = (today - day).days
        if age < 0 or age >= rules.window_days or reads <= 0:
            continue
        key = (cube_id, memory_id)
        score[key] = score.get(key, 0.0) + reads * 0.5 ** (age / rules.half_life_days)
        count[key] = count.get(key, 0) + reads
        previous = last.get(key)
        if last_read is not None and (previous is None or last_read > previous):
            last[key] = last_read
        else:
            last.setdefault(key, previous)
    return {key: Heat(round(score[key], 9), count[key], last.get(key)) for key in score}


def select_hot(
    rows: Sequence[MemoryRow],
    heat: Mapping[tuple[str, str], Heat],
    rules: HotRules,
    *,
    exclude: frozenset[tuple[str, str]] = frozenset(),
    watermark: int,
    as_of: datetime,
) -> list[dict[str, Any]]:
    """The `hot_memories` rows for these memories (any number of cubes)."""
    by_cube: dict[str, list[tuple[Heat, MemoryRow]]] = {}
    for row in rows:
        found = heat.get((row.cube_id, row.memory_id))
        if (
            found is None
            or found.access_count < rules.min_accesses
            or (row.cube_id, row.memory_id) in exclude
            or row.status is not MemoryStatus.ACTIVE
            or row.kind is not MemoryKind.PLAINTEXT
        ):
            continue
        by_cube.setdefault(row.cube_id, []).append((found, row))
    out = []
    for cube_id in sorted(by_cube):
        ranked = sorted(
            by_cube[cube_id], key=lambda item: (-item[0].score, -item[0].access_count, item[1].memory_id)
        )
        for rank, (found, row) in enumerate(ranked[: rules.per_cube], start=1):
            out.append(
                {
                    "selection_version": watermark,
                    "selected_at": as_of,
                    "cube_id": cube_id,
                    "memory_id": row.memory_id,
                    "memory_version": row.version,
                    "kind": row.kind.value,
                    "rank": rank,
                    "score": found.score,
                    "access_count": found.access_count,
                    "last_accessed_at": found.last_accessed_at,
                    "subject_id": row.subject_id,
                    "sealed": row.sealed,
                }
            )
    return out


_COMPARED = ("cube_id", "memory_id", "memory_version", "rank", "score", "access_count")


def _signature(data: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(zip(*(data.column(c).to_pylist() for c in _COMPARED), strict=True))


class HotMemoriesTable:
    """The `hot_memories` table. The constructor does no I/O."""

    def __init__(self, lake: Lake) -> None:
        self._table = OwnTable(lake, HOT_MEMORIES, HOT_SCHEMA)

    @property
    def table(self) -> OwnTable:
        return self._table

    def read(self) -> pa.Table:
        return self._table.read()

    def replace(self, rows: Sequence[Mapping[str, Any]], *, cube_id: str | None = None) -> int | None:
        """Replace the selection (of one cube, or all); the version written, None when unchanged."""
        from deltalake import write_deltalake

        data = pa.table({f.name: [r[f.name] for r in rows] for f in HOT_SCHEMA}, schema=HOT_SCHEMA)
        current = self._table.read()
        if cube_id is not None:
            current = current.filter(pa.compute.equal(current.column("cube_id"), cube_id))
        if _signature(current) == _signature(data) and self._table.exists():
            return None
        if data.num_rows:
            data = data.sort_by([("cube_id", "ascending"), ("rank", "ascending")])
        dt = self._table.table()
        predicate = None if cube_id is None else f"cube_id = {sql_literal(cube_id)}"
        with delta_errors(HOT_MEMORIES):
            write_deltalake(dt, data, mode="overwrite", predicate=predicate)  # moves `dt` to its commit
            return int(dt.version())

    def forget(self, *, subject_id: str, memories: Iterable[tuple[str, str]] = ()) -> int:
        """Delete the selection's rows about a subject (and of the given (cube, memory) pairs)."""
        return self._table.delete(subject_predicate(subject_id, memories))

"""The fold's prior state of a batch's cubes, read from the lake at one consistent cut.

Only what the batch's events can touch is read, so a batch costs in
proportion to its size, not to the lake's:
- the cube row, and the memories the events name (ids, merge and
  transformation sources, accessed ids);
- for cubes the batch erases a subject in: every memory, every past version
  and the cube's history (an erasure rewrites past versions);
- for cubes the batch rolls back: the memories changed after the lowest
  target, each with the version current at each target (none where it did
  not exist yet), and the cube's history. A memory with no version after
  every target is the same then and now but for bookkeeping, which a
  rollback leaves be: the fold has nothing to do with it;
- of the ids already applied or refused, only the batch's own (UUIDv7 ids are
  time-ordered, so file statistics skip old files).
The result is a `CubeState` the kernel's fold accepts unchanged; handlers
never look beyond what is loaded here.
"""

from __future__ import annotations

__all__ = ["StateRequest", "LoadedState", "load_states", "judged_events", "references"]

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import pyarrow as pa
import pyarrow.compute as pc

from lake.rows import cube_from_json, memory_from_json
from lake.scan import sql_in, sql_literal
from lake.schemas import bucket_of
from lake.snapshot import Cut, Snapshot
from lake.tables import Lake
from memlake.events import (
    CubeRolledBack,
    Event,
    MemoryAccessed,
    MemoryMerged,
    MemoryTransformed,
    SubjectErased,
)
from memlake.fold import CubeState
from memlake.model import Cube, Memory


@dataclass(frozen=True)
class StateRequest:
    """What one cube's batch needs from the lake."""

    cube_id: str
    memory_ids: frozenset[str] = frozenset()
    event_ids: frozenset[str] = frozenset()
    full: bool = False  # everything: the batch erases a subject
    rollback_targets: frozenset[int] = frozenset()  # cube versions the batch's rollbacks go back to


@dataclass(frozen=True)
class LoadedState:
    state: CubeState
    # Versions of memories as loaded, to tell a rewritten past version from an untouched one,
    # and the event behind each (memory_id, version) loaded.
    loaded_history: Mapping[str, tuple[Memory, ...]] = field(default_factory=dict)
    loaded_events: Mapping[tuple[str, int], tuple[str | None, str | None]] = field(default_factory=dict)
    # Everything the lake holds of the cube (every memory, version and cube version): such a
    # state can be kept and folded onto again without reading the lake (pipelines.state_cache).
    complete: bool = False


def references(cube_id: str, events: Sequence[Event]) -> StateRequest:
    """The state a cube's events need: the memories they name, their ids, whether all of it."""
    memory_ids: set[str] = set()
    full = False
    targets: set[int] = set()
    for event in events:
        if event.memory_id is not None:
            memory_ids.add(event.memory_id)
        if isinstance(event, MemoryAccessed):
            memory_ids.update(event.payload.memory_ids)
        elif isinstance(event, MemoryMerged):
            memory_ids.update(event.payload.sources)
        elif isinstance(event, MemoryTransformed):
            memory_ids.update(ref.memory_id for ref in event.payload.sources)
        elif isinstance(event, CubeRolledBack):
            targets.add(event.payload.to_version)
        elif isinstance(event, SubjectErased):
            full = True
    return StateRequest(
        cube_id,
        frozenset(memory_ids),
        frozenset(e.event_key for e in events),
        full,
        frozenset(targets),
    )


def _isin(column: str, values: Iterable[str]) -> pc.Expression:
    return pc.field(column).isin(pa.array(sorted(set(values)), pa.string()))


def _in_buckets(cube_ids: Sequence[str], buckets: int) -> tuple[pc.Expression, str]:
    """The filter and the partition pruning predicate for these cubes' rows."""
    numbers = sorted({bucket_of(c, buckets) for c in cube_ids})
    expression = _isin("cube_id", cube_ids) & pc.field("bucket").isin(pa.array(numbers, pa.int32()))
    return expression, sql_in("bucket", numbers)


def judged_events(lake: Lake, cut: Cut, requests: Sequence[StateRequest]) -> Judged:
    """Of the batch's event ids, those each cube has applied, and refused, as of `cut`."""
    applied: dict[str, set[str]] = defaultdict(set)
    refused: dict[str, set[str]] = defaultdict(set)
    event_ids = [e for r in requests for e in r.event_ids]
    if cut.empty or not event_ids:
        return applied, refused
    snap = Snapshot(lake, cut.watermark, dict(cut.versions))
    in_buckets, bucket_prune = _in_buckets([r.cube_id for r in requests], lake.settings.buckets)
    # UUIDv7 ids grow with time: the batch's range skips files of older events.
    id_range = f"event_id >= {sql_literal(min(event_ids))} AND event_id <= {sql_literal(max(event_ids))}"
    rows = snap.read(
        "cube_versions",
        columns=["cube_id", "event_id"],
        filter=in_buckets & _isin("event_id", event_ids),
        prune=f"{bucket_prune} AND {id_range}",
    )
    for cube_id, event_id in zip(
        rows.column("cube_id").to_pylist(), rows.column("event_id").to_pylist(), strict=True
    ):
        applied[cube_id].add(event_id)
    rows = snap.read(
        "rejected", columns=["cube_id", "event_id"], filter=_isin("event_id", event_ids), prune=id_range
    )
    for cube_id, event_id in zip(
        rows.column("cube_id").to_pylist(), rows.column("event_id").to_pylist(), strict=True
    ):
        refused[cube_id].add(event_id)
    return applied, refused


Judged = tuple[dict[str, set[str]], dict[str, set[str]]]  # applied, refused ids per cube


def _whole_by_choice(candidates: list[Cube], up_to: int, budget: int | None) -> list[str]:
    """Cubes of at most `up_to` versions, smallest first, whose estimated versions fit `budget`.

    A cube's version counts its events; each holds a cube version and about one memory
    version, so twice it estimates what reading the cube whole holds (`KeptState.versions`).
    Without the budget a follower on 5,000 cubes read every one of them whole each batch
    (2M decoded versions for a 1M-event log) while its cache could keep 100,000.
    """
    small = sorted((c for c in candidates if c.version <= up_to), key=lambda c: (c.version, c.cube_id))
    if budget is None:
        return [c.cube_id for c in small]
    chosen, spent = [], 0
    for cube in small:
        spent += 2 * cube.version
        if spent > budget:
            break
        chosen.append(cube.cube_id)
    return chosen


History = dict[str, dict[str, list[Memory]]]  # cube -> memory -> versions, oldest first
MadeBy = dict[str, dict[tuple[str, int], tuple[str | None, str | None]]]  # cube -> (memory, version) -> event


def load_states(
    lake: Lake,
    cut: Cut,
    requests: Sequence[StateRequest],
    *,
    whole_up_to: int = 0,
    whole_budget: int | None = None,
    judged: Judged | None = None,
) -> dict[str, LoadedState]:
    """Prior states of the requested cubes as of `cut` (empty states where nothing exists).

    A cube whose version is at most `whole_up_to` (its events so far, so a bound on its
    memory versions) is read whole, as if the batch erased a subject: small enough to keep.
    `whole_budget` bounds the versions read whole that way in all, smallest cubes first:
    reading more than the caller can keep only costs time and memory.
    """
    if cut.empty or not requests:
        return {r.cube_id: LoadedState(CubeState(), complete=True) for r in requests}
    snap = Snapshot(lake, cut.watermark, dict(cut.versions))
    buckets = lake.settings.buckets
    cube_ids = [r.cube_id for r in requests]
    wanted = {(r.cube_id, m) for r in requests for m in r.memory_ids}

    cubes: dict[str, Cube] = {}
    rows = snap.read(
        "cubes",
        columns=["cube_id", "cube_json"],
        filter=_isin("cube_id", cube_ids),
        prune=sql_in("cube_id", cube_ids),
    )
    for value in rows.column("cube_json").to_pylist():
        cube = cube_from_json(value)
        cubes[cube.cube_id] = cube
    full_ids = [r.cube_id for r in requests if r.cube_id in cubes and r.full]
    full_ids += _whole_by_choice(
        [cubes[r.cube_id] for r in requests if r.cube_id in cubes and not r.full], whole_up_to, whole_budget
    )
    full_set = set(full_ids)
    targets = {
        r.cube_id: r.rollback_targets
        for r in requests
        if r.rollback_targets and r.cube_id in cubes and r.cube_id not in full_set
    }

    decode = _decoder()
    history, made_by, changed = _memory_versions(
        snap, full_ids, targets, wanted, buckets=buckets, decode=decode
    )
    # A rollback also reads the memories it changes, which its events need not name.
    wanted |= changed
    memories = _current_memories(snap, cube_ids, full_ids, wanted, buckets=buckets, decode=decode)
    cube_history = _cube_history(snap, [*full_ids, *targets], buckets)

    # `judged`: looked up already by a caller that needs it for more cubes than these.
    applied, refused = judged if judged is not None else judged_events(lake, cut, requests)
    out: dict[str, LoadedState] = {}
    for request in requests:
        cid = request.cube_id
        per_memory = {mid: tuple(versions) for mid, versions in history.get(cid, {}).items()}
        state = CubeState(
            cube=cubes.get(cid),
            memories=MappingProxyType(memories.get(cid, {})),
            history=MappingProxyType(dict(per_memory)),
            cube_history=tuple(c for _, c in sorted(cube_history.get(cid, []), key=lambda item: item[0])),
            applied=frozenset(applied.get(cid, ())),
            refused=frozenset(refused.get(cid, ())),
        )
        out[cid] = LoadedState(
            state, per_memory, dict(made_by.get(cid, {})), complete=cid in full_set or cid not in cubes
        )
    return out


def _decoder() -> Callable[[str], Memory]:
    """`memory_from_json`, once per text: a memory's current row and its newest version are
    the same text unless it was read since, and a decode costs ~35 µs."""
    decoded: dict[str, Memory] = {}

    def decode(value: str) -> Memory:
        memory = decoded.get(value)
        if memory is None:
            memory = decoded[value] = memory_from_json(value)
        return memory

    return decode


def _memory_versions(
    snap: Snapshot,
    full_ids: Sequence[str],
    targets: Mapping[str, frozenset[int]],
    wanted: set[tuple[str, str]],
    *,
    buckets: int,
    decode: Callable[[str], Memory],
) -> tuple[History, MadeBy, set[tuple[str, str]]]:
    """Every version of the memories of `full_ids`. Of a cube rolled back to `targets[cube]`,
    the memories changed after the lowest (returned too) and those named, each with the
    version current at each target: what a rollback to it finds as the newest no later.

    Only the versions kept are decoded: a rollback of a large cube would otherwise
    decode its whole history each batch.
    """
    history: History = defaultdict(dict)
    made_by: MadeBy = defaultdict(dict)
    changed: set[tuple[str, str]] = set()
    if not full_ids and not targets:
        return history, made_by, changed
    read_filter, prune = _in_buckets([*full_ids, *targets], buckets)
    rows = snap.read(
        "memory_versions",
        columns=["cube_id", "memory_id", "version", "cube_version", "memory_json", "event_id", "event_type"],
        filter=read_filter,
        prune=prune,
    )
    per_memory: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    keys = ("cube_id", "memory_id", "version", "cube_version")
    for row, (cube_id, memory_id, version, cube_version) in enumerate(
        zip(*(rows.column(c).to_pylist() for c in keys), strict=True)
    ):
        per_memory[(cube_id, memory_id)].append((version, cube_version, row))
    chosen: list[tuple[str, str, int, int]] = []  # cube, memory, version, row
    for key, versions in per_memory.items():
        versions.sort()
        cube_targets = targets.get(key[0])
        if cube_targets is None:
            chosen.extend((*key, version, row) for version, _, row in versions)
            continue
        if versions[-1][1] > min(cube_targets):
            changed.add(key)
        elif key not in wanted:
            continue
        made_at = [cube_version for _, cube_version, _ in versions]
        picked = {bisect_right(made_at, target) - 1 for target in cube_targets} - {-1}
        chosen.extend((*key, versions[i][0], versions[i][2]) for i in sorted(picked))
    take = pa.array([row for *_, row in chosen], pa.int64())
    values, event_ids, event_types = (
        rows.column(c).take(take).to_pylist() for c in ("memory_json", "event_id", "event_type")
    )
    for (cube_id, memory_id, version, _), value, event_id, event_type in zip(
        chosen, values, event_ids, event_types, strict=True
    ):
        history[cube_id].setdefault(memory_id, []).append(decode(value))
        made_by[cube_id][(memory_id, version)] = (event_id, event_type)
    return history, made_by, changed


def _current_memories(
    snap: Snapshot,
    cube_ids: Sequence[str],
    full_ids: Sequence[str],
    wanted: set[tuple[str, str]],
    *,
    buckets: int,
    decode: Callable[[str], Memory],
) -> dict[str, dict[str, Memory]]:
    """The current memories `wanted`, and every memory of `full_ids`."""
    memory_ids = {m for _, m in wanted}
    if not memory_ids and not full_ids:
        return defaultdict(dict)
    bucket_filter, bucket_prune = _in_buckets(cube_ids, buckets)
    memory_filter = _isin("memory_id", memory_ids)
    if full_ids:
        memory_filter = memory_filter | _isin("cube_id", full_ids)
    elif memory_ids:
        # Memory ids the SDK makes are UUIDv7, time-ordered: a batch's new memories are newer
        # than every file of the table, whose statistics skip them (most of the files read).
        lowest, highest = sql_literal(min(memory_ids)), sql_literal(max(memory_ids))
        bucket_prune = f"{bucket_prune} AND memory_id >= {lowest} AND memory_id <= {highest}"
    rows = snap.read(
        "memories",
        columns=["cube_id", "memory_id", "memory_json"],
        filter=bucket_filter & memory_filter,
        prune=bucket_prune,
    )
    full_set = set(full_ids)
    memories: dict[str, dict[str, Memory]] = defaultdict(dict)
    for cube_id, memory_id, value in zip(
        rows.column("cube_id").to_pylist(),
        rows.column("memory_id").to_pylist(),
        rows.column("memory_json").to_pylist(),
        strict=True,
    ):
        if cube_id in full_set or (cube_id, memory_id) in wanted:
            memories[cube_id][memory_id] = decode(value)
    return memories


def _cube_history(snap: Snapshot, cube_ids: Sequence[str], buckets: int) -> dict[str, list[tuple[int, Cube]]]:
    """The cube versions that changed more than the version (the rest hold no `cube_json`)."""
    cube_history: dict[str, list[tuple[int, Cube]]] = defaultdict(list)
    if not cube_ids:
        return cube_history
    read_filter, prune = _in_buckets(cube_ids, buckets)
    rows = snap.read(
        "cube_versions",
        columns=["cube_id", "version", "cube_json"],
        filter=read_filter & pc.field("cube_json").is_valid(),
        prune=prune,
    )
    for cube_id, version, value in zip(
        *(rows.column(c).to_pylist() for c in ("cube_id", "version", "cube_json")), strict=True
    ):
        cube_history[cube_id].append((version, cube_from_json(value)))
    return cube_history

"""Fold one cube's new events onto its prior state and turn the result into table rows.

Pure: no I/O. The same prior state and events always give the same rows,
which is what lets every derived table be written independently (each with
its own watermark) and repaired by re-running after a crash.

Rows of the append and counter tables carry `_ev`, the events-table version
of the event they come from: a table that already reflects that version
skips them. Rows of the upsert tables (`memories`, `cubes`) are final states
and are idempotent by key.
"""

from __future__ import annotations

__all__ = ["LoggedEvent", "CubeRows", "changed_more_than_version", "fold_cube", "EV", "MADE"]

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lake.rows import cube_row, memory_row
from lake.schemas import bucket_of
from lake.state import LoadedState
from memlake.events import Event, MemoryAccessed, SubjectErased
from memlake.fold import CubeState, fold
from memlake.model import Cube, Memory, equal_but

EV = "_ev"  # the events-table version a row comes from
# On the `memory_versions` rows of a memory an erasure rewrote: the events version that made
# that version (-1: it was in the lake before the batch). Null on every other row.
MADE = "_made"
_VERSION = frozenset({"version"})  # what a memory event alone changes in its cube


def changed_more_than_version(previous: Cube | None, cube: Cube) -> bool:
    """Whether `cube` differs from the version before it in more than the version: such cube
    versions are the ones `cube_versions` stores `cube_json` for, and a state holds."""
    return previous is None or not equal_but(previous, cube, _VERSION)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event with where it sits: in the events table and in Kafka."""

    event: Event
    raw: str
    events_version: int
    topic: str
    partition: int
    offset: int
    logged_at: datetime

    @property
    def order(self) -> tuple[int, int, int]:
        # Log order of a cube: its key pins it to one partition, so offsets order it;
        # the events version breaks ties for records landed twice.
        return (self.partition, self.offset, self.events_version)


@dataclass
class CubeRows:
    memories: list[dict[str, Any]] = field(default_factory=list)
    memory_versions: list[dict[str, Any]] = field(default_factory=list)
    # A `memories` row changes a memory the prior state held (else every row is a new key).
    updates_memories: bool = False
    cubes: list[dict[str, Any]] = field(default_factory=list)
    cube_versions: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    state: CubeState | None = None  # the cube's state after the fold

    def table(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = getattr(self, name)
        return rows


def fold_cube(
    loaded: LoadedState,
    events: Sequence[LoggedEvent],
    *,
    buckets: int,
) -> CubeRows:
    """Fold a cube's events (in log order) onto its loaded state; the rows every table gets."""
    ordered = sorted(events, key=lambda e: e.order)
    prior = loaded.state
    result = fold(prior, [e.event for e in ordered])
    state = result.state
    rows = CubeRows(state=state)
    rows.applied = len(result.applied)
    rows.duplicates = len(ordered) - len(result.applied) - len(result.rejected)

    # Event objects are the ones passed in: find each one's logged copy by identity,
    # without formatting UUIDs again and again.
    logged_of: dict[int, LoggedEvent] = {}
    first_copy: dict[str, LoggedEvent] = {}
    for logged in ordered:
        logged_of[id(logged.event)] = first_copy.setdefault(logged.event.event_key, logged)
    by_version: dict[int, LoggedEvent] = {version: logged_of[id(event)] for event, version in result.applied}
    erasures = [
        logged_of[id(event)].events_version for event, _ in result.applied if isinstance(event, SubjectErased)
    ]

    # A memory's row (its JSON above all) is made once: the newest version of a
    # memory is also its current state, a row of `memories` and of `memory_versions`.
    made: dict[int, dict[str, Any]] = {}

    def row_of(memory: Memory) -> dict[str, Any]:
        row = made.get(id(memory))
        if row is None:
            row = made[id(memory)] = memory_row(memory, buckets=buckets)
        return row

    # Only the memories the fold wrote can differ from the prior state: a kept state holds
    # the whole cube (thousands of memories), and a batch touches a few of them.
    for memory_id in result.touched:
        memory = state.memories.get(memory_id)
        old = prior.memories.get(memory_id)
        if memory is not None and old is not memory and old != memory:
            rows.memories.append(row_of(memory))
            # The prior state holds every memory the events name, so absent there is absent
            # from the lake at the cut.
            rows.updates_memories |= old is not None

    # The cube version of the batch's last erasure: versions made before it may have been
    # shredded after the table took them.
    erased_at = max((v for event, v in result.applied if isinstance(event, SubjectErased)), default=None)
    for memory_id in result.touched:
        versions = state.history.get(memory_id, ())
        before = loaded.loaded_history.get(memory_id, ())
        if versions is before:
            continue
        past, new = versions[: len(before)], versions[len(before) :]
        made_by = [by_version[memory.cube_version] for memory in new]
        # Only an erasure rewrites versions in place: past ones, or new ones made before it.
        if erased_at is not None and (
            any(m.cube_version < erased_at for m in new)
            or any(old is not memory and old != memory for old, memory in zip(before, past, strict=True))
        ):
            # An erasure rewrote versions in place: the lake gets all of the memory's versions
            # at once, tagged `_ev` with the newest event behind any of them, so that a table
            # past it skips them all. Those a table holds already (made at or before its
            # watermark: it may have run ahead of the cut, after a crash or a restore of
            # another table) replace its rows; the others are appended.
            group = max([*erasures, *(source.events_version for source in made_by)])
            sources = [(-1, *loaded.loaded_events.get((memory_id, m.version), (None, None))) for m in past]
            sources += [
                (source.events_version, source.event.event_key, source.event.type) for source in made_by
            ]
            for memory, (made_at, event_id, event_type) in zip(versions, sources, strict=True):
                rows.memory_versions.append(
                    {
                        **row_of(memory),
                        "event_id": event_id,
                        "event_type": event_type,
                        EV: group,
                        MADE: made_at,
                    }
                )
            continue
        for memory, source in zip(new, made_by, strict=True):
            rows.memory_versions.append(
                {
                    **row_of(memory),
                    "event_id": source.event.event_key,
                    "event_type": source.event.type,
                    EV: source.events_version,
                }
            )

    if state.cube is not None and state.cube != prior.cube:
        rows.cubes.append(cube_row(state.cube))

    previous = prior.cube
    new_cubes = {c.version: c for c in state.cube_history[len(prior.cube_history) :]}
    bucket = None
    for event, version in result.applied:
        logged = by_version[version]
        cube = new_cubes[version]
        changed = changed_more_than_version(previous, cube)
        if bucket is None:
            bucket = bucket_of(event.cube_id, buckets)
        rows.cube_versions.append(
            {
                "bucket": bucket,
                "cube_id": event.cube_id,
                "version": version,
                "event_id": logged.event.event_key,
                "event_type": event.type,
                "memory_id": event.memory_id,
                "actor": event.actor.principal,
                "occurred_at": event.occurred_at,
                "logged_at": logged.logged_at,
                "topic": logged.topic,
                "partition": logged.partition,
                "offset": logged.offset,
                "cube_json": cube.model_dump_json() if changed else None,
                EV: logged.events_version,
            }
        )
        previous = cube
        if isinstance(event, MemoryAccessed):
            rows.usage.extend(_usage(event, version, logged, prior_ids=prior.memories, state=state))

    for rejection in result.rejected:
        logged = logged_of[id(rejection.event)]
        event = rejection.event
        rows.rejected.append(
            {
                "event_id": event.event_key,
                "cube_id": event.cube_id,
                "memory_id": event.memory_id,
                "event_type": event.type,
                "error": type(rejection.error).__name__,
                "reason": rejection.reason,
                "topic": logged.topic,
                "partition": logged.partition,
                "offset": logged.offset,
                "occurred_at": event.occurred_at,
                "event_json": logged.raw,
                EV: logged.events_version,
            }
        )
    return rows


def _usage(
    event: MemoryAccessed, version: int, logged: LoggedEvent, *, prior_ids: Any, state: Any
) -> list[dict[str, Any]]:
    """One usage row per memory the read counted: those that existed when it happened."""
    out = []
    day = event.occurred_at.astimezone(UTC).date()
    for memory_id in dict.fromkeys(event.payload.memory_ids):
        existed = memory_id in prior_ids or (
            memory_id in state.history and state.history[memory_id][0].cube_version < version
        )
        if existed:
            out.append(
                {
                    "day": day,
                    "cube_id": event.cube_id,
                    "memory_id": memory_id,
                    "access_count": 1,
                    "last_accessed_at": event.occurred_at,
                    EV: logged.events_version,
                }
            )
    return out

"""The pure fold: `apply(state, event) -> state` for one cube.

`CubeState` is a frozen value: the cube, its current memories, every
version of every memory (the history a rollback reads) and the ids of the
events already applied (so a duplicate changes nothing). A state loaded
for a batch may hold less (lake/state.py): only what that batch's events
read, which for a rollback to `N` is, of each memory changed since, its
version current at `N`. Handlers are
registered per event class and work on a private mutable draft; `apply`
and `fold` wrap them so that callers only ever see frozen states. `fold`
thaws once for a whole sequence, which keeps long replays linear.

Events that are valid but cannot apply (an update to a memory that does not
exist, an ACL change by a stranger) raise a `RejectedEventError` subclass;
the state is left unchanged. `fold` collects those instead of stopping and
remembers their ids, so that replaying a sequence onto its own result (a
redelivered batch) changes nothing.
"""

from __future__ import annotations

__all__ = ["CubeState", "Rejection", "FoldResult", "apply", "fold", "project", "memories_at", "permits"]

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from memlake.errors import (
    CubeExistsError,
    CubeNotFoundError,
    MemoryExistsError,
    MemoryNotFoundError,
    MemoryNotWritableError,
    PermissionDeniedError,
    RejectedEventError,
    RollbackTargetError,
    VersionConflictError,
)
from memlake.events import (
    CubeAclChanged,
    CubeCreated,
    CubePolicyChanged,
    CubeRolledBack,
    Event,
    MemoryAccessed,
    MemoryAdded,
    MemoryArchived,
    MemoryDeleted,
    MemoryExpired,
    MemoryMerged,
    MemoryTransformed,
    MemoryUpdated,
    SubjectErased,
)
from memlake.model import (
    Acl,
    Actor,
    ActorKind,
    Cube,
    Governance,
    Indicators,
    Memory,
    MemoryHeader,
    MemoryKind,
    MemoryStatus,
    Role,
    SourceRef,
    equal_but,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Lifecycle states a memory can still be changed from by writers.
_WRITABLE = frozenset({MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED})


@dataclass(frozen=True, slots=True)
class CubeState:
    """Everything the fold knows about one cube. `cube is None` before `cube.created`."""

    cube: Cube | None = None
    memories: Mapping[str, Memory] = field(default_factory=lambda: _EMPTY)
    history: Mapping[str, tuple[Memory, ...]] = field(default_factory=lambda: _EMPTY)
    cube_history: tuple[Cube, ...] = ()
    applied: frozenset[str] = frozenset()
    # Ids of events `fold` refused: an event id is judged once, so a redelivered
    # copy of a refused event stays refused even if it could apply by now.
    refused: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        return self.cube.version if self.cube else 0

    def live_memories(self) -> list[Memory]:
        return [m for m in self.memories.values() if m.status.is_live]

    def view(self) -> dict[str, Any]:
        """What a reader of the cube sees, without bookkeeping (versions, timestamps,
        behavioural indicators): two states with equal views hold the same memories
        and policy. Deleted memories are not part of the view."""
        memories = {
            mid: m.model_dump(
                mode="json",
                exclude={"indicators": True, "cube_version": True, "header": {"updated_at"}},
            )
            for mid, m in sorted(self.memories.items())
            if m.status is not MemoryStatus.DELETED
        }
        policy = self.cube.policy.model_dump(mode="json") if self.cube else None
        return {"policy": policy, "memories": memories}


@dataclass(frozen=True, slots=True)
class Rejection:
    event: Event
    error: RejectedEventError

    @property
    def reason(self) -> str:
        return self.error.reason


@dataclass(frozen=True, slots=True)
class FoldResult:
    state: CubeState
    rejected: tuple[Rejection, ...] = ()
    # Versions produced, in order: (event, cube version after it).
    applied: tuple[tuple[Event, int], ...] = ()
    # Memories whose current state or history the fold wrote, in the order first written:
    # what a caller compares with the prior state instead of every memory of the cube.
    touched: tuple[str, ...] = ()


_V = TypeVar("_V")


def _copy(mapping: Mapping[str, _V]) -> dict[str, _V]:
    """A dict copy; a state's mappings are read-only views of dicts, whose `copy` is the
    dict's own (several times faster than `dict(view)`, which reads key by key: a kept
    state holds every memory of its cube, copied for every batch)."""
    if isinstance(mapping, MappingProxyType | dict):
        return mapping.copy()
    return dict(mapping)


class _Draft:
    """The mutable working copy handlers write to; never escapes this module."""

    __slots__ = ("applied", "cube", "cube_history", "history", "memories", "refused", "touched", "writes")

    def __init__(self, state: CubeState) -> None:
        self.cube = state.cube
        self.memories: dict[str, Memory] = _copy(state.memories)
        self.history: dict[str, tuple[Memory, ...]] = _copy(state.history)
        self.cube_history: list[Cube] = list(state.cube_history)
        self.applied: set[str] = set(state.applied)
        self.refused: set[str] = set(state.refused)
        self.writes = 0  # memory writes so far: lets `fold` prove a rejection wrote nothing
        self.touched: dict[str, None] = {}  # an ordered set

    def freeze(self) -> CubeState:
        return CubeState(
            cube=self.cube,
            memories=MappingProxyType(dict(self.memories)),
            history=MappingProxyType(dict(self.history)),
            cube_history=tuple(self.cube_history),
            applied=frozenset(self.applied),
            refused=frozenset(self.refused),
        )

    def put(self, memory: Memory, *, versioned: bool = True) -> None:
        self.writes += 1
        self.touched[memory.memory_id] = None
        self.memories[memory.memory_id] = memory
        if versioned:
            self.history[memory.memory_id] = (*self.history.get(memory.memory_id, ()), memory)

    def set_cube(self, cube: Cube) -> None:
        self.cube = cube
        self.cube_history.append(cube)


_E = TypeVar("_E")
_Handler = Callable[[_Draft, Any, int], None]
_HANDLERS: dict[type, _Handler] = {}


def _handles(
    event_class: type[_E],
) -> Callable[[Callable[[_Draft, _E, int], None]], Callable[[_Draft, _E, int], None]]:
    def register(handler: Callable[[_Draft, _E, int], None]) -> Callable[[_Draft, _E, int], None]:
        _HANDLERS[event_class] = handler
        return handler

    return register


# --- guards ---------------------------------------------------------------------


def _require_cube(draft: _Draft, event: Event) -> Cube:
    if draft.cube is None:
        raise CubeNotFoundError(event.cube_id, event_id=event.event_key)
    return draft.cube


def permits(cube: Cube, actor: Actor, role: Role) -> bool:
    """Whether the cube lets `actor` act in `role`: memlake's own jobs (`system:*`) always;
    anyone else as the ACL grants. Callers that check before they emit (the command line,
    erasure) ask this, so that they refuse exactly what the fold would."""
    return actor.kind is ActorKind.SYSTEM or cube.acl.grants(actor.principal, role)


def _require_role(cube: Cube, event: Event, *, role: Role, action: str) -> None:
    if not permits(cube, event.actor, role):
        raise PermissionDeniedError(
            cube.cube_id, principal=event.actor.principal, action=action, event_id=event.event_key
        )


def _require_memory(draft: _Draft, event: Event, *, writable: bool = True) -> Memory:
    assert event.memory_id is not None  # guaranteed by the envelope's validation
    memory = draft.memories.get(event.memory_id)
    if memory is None:
        raise MemoryNotFoundError(event.cube_id, event.memory_id, event_id=event.event_key)
    if writable and memory.status not in _WRITABLE:
        raise MemoryNotWritableError(
            event.cube_id, event.memory_id, memory.status.value, event_id=event.event_key
        )
    return memory


def _bump_cube(cube: Cube, version: int, at: datetime, **changes: Any) -> Cube:
    return cube.evolve(version=version, updated_at=at, **changes)


def _revise(memory: Memory, version: int, at: datetime, **changes: Any) -> Memory:
    """A new version of a memory: its own version + 1, touched at cube `version`."""
    header = memory.header.evolve(updated_at=at, **changes.pop("header", {}))
    indicators = memory.indicators.evolve(version=memory.indicators.version + 1)
    return memory.evolve(header=header, indicators=indicators, cube_version=version, **changes)


def _expires_at(at: datetime, ttl_seconds: int | None) -> datetime | None:
    return at + timedelta(seconds=ttl_seconds) if ttl_seconds else None


# What a rollback does not restore, so what it does not compare.
_BOOKKEEPING = frozenset({"indicators", "cube_version", "header"})
_UPDATED_AT = frozenset({"updated_at"})


def _same_but_bookkeeping(a: Memory, b: Memory) -> bool:
    """Equal but for indicators, cube version and `updated_at`: a rollback leaves such a memory be.

    On the values (`equal_but`; two `model_dump`s of each cost 17 µs, and a rollback
    compares every memory of the cube)."""
    return equal_but(a, b, _BOOKKEEPING) and equal_but(a.header, b.header, _UPDATED_AT)


# --- cube events ----------------------------------------------------------------


@_handles(CubeCreated)
def _cube_created(draft: _Draft, event: CubeCreated, version: int) -> None:
    if draft.cube is not None:
        raise CubeExistsError(event.cube_id, event_id=event.event_key)
    p = event.payload
    owner = p.owner or event.actor.principal
    draft.set_cube(
        Cube(
            cube_id=event.cube_id,
            name=p.name,
            acl=Acl(owner=owner, writers=p.writers, readers=p.readers),
            policy=p.policy,
            subject_id=p.subject_id,
            version=version,
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
    )


@_handles(CubePolicyChanged)
def _policy_changed(draft: _Draft, event: CubePolicyChanged, version: int) -> None:
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="owner", action="change the policy")
    draft.set_cube(_bump_cube(cube, version, event.occurred_at, policy=event.payload.policy))


@_handles(CubeAclChanged)
def _acl_changed(draft: _Draft, event: CubeAclChanged, version: int) -> None:
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="owner", action="change the ACL")
    draft.set_cube(_bump_cube(cube, version, event.occurred_at, acl=event.payload.acl))


@_handles(CubeRolledBack)
def _rolled_back(draft: _Draft, event: CubeRolledBack, version: int) -> None:
    """The cube's memories and policy return to their state at `to_version`.

    The ACL is not rolled back: a revoked reader must stay revoked. Behavioural
    indicators (access counts) are facts about reads and are kept too.
    """
    cube = _require_cube(draft, event)
    _require_role(cube, event, role=cube.policy.rollback_by, action="roll back")
    target = event.payload.to_version
    if not 1 <= target <= cube.version:
        raise RollbackTargetError(
            cube.cube_id, to_version=target, current=cube.version, event_id=event.event_key
        )
    then = _memories_in(draft.history, target)
    for memory_id, now in list(draft.memories.items()):
        old = then.get(memory_id)
        if old is None:
            if now.status is not MemoryStatus.DELETED:
                draft.put(_revise(now, version, event.occurred_at, status=MemoryStatus.DELETED))
            continue
        # Most memories are untouched since the target: the very same value.
        if old is now or _same_but_bookkeeping(old, now):
            continue
        draft.put(
            old.evolve(
                header=old.header.evolve(updated_at=event.occurred_at),
                indicators=now.indicators.evolve(version=now.indicators.version + 1),
                cube_version=version,
            )
        )
    policy = _cube_at(draft.cube_history, target).policy
    draft.set_cube(_bump_cube(cube, version, event.occurred_at, policy=policy))


# --- memory events --------------------------------------------------------------


@_handles(MemoryAdded)
def _memory_added(draft: _Draft, event: MemoryAdded, version: int) -> None:
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="writers", action="add memories")
    assert event.memory_id is not None
    if event.memory_id in draft.memories:
        raise MemoryExistsError(event.cube_id, event.memory_id, event_id=event.event_key)
    p = event.payload
    ttl = p.ttl_seconds or cube.policy.ttl_seconds
    draft.put(
        Memory(
            memory_id=event.memory_id,
            cube_id=event.cube_id,
            kind=p.kind,
            content=p.content,
            artifact=p.artifact,
            header=MemoryHeader(
                memory_type=p.memory_type,
                tags=p.tags,
                source=event.source,
                lineage=p.lineage,
                created_at=event.occurred_at,
                updated_at=event.occurred_at,
            ),
            governance=Governance(
                visibility=p.visibility,
                readers_override=p.readers_override,
                ttl_seconds=p.ttl_seconds,
                expires_at=_expires_at(event.occurred_at, ttl),
                priority=p.priority,
                pinned=p.pinned,
                sensitivity=p.sensitivity,
                signature=p.signature,
                subject_id=p.subject_id or (p.content.subject_id if p.content else None) or cube.subject_id,
            ),
            cube_version=version,
        )
    )


@_handles(MemoryUpdated)
def _memory_updated(draft: _Draft, event: MemoryUpdated, version: int) -> None:
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="writers", action="update memories")
    memory = _require_memory(draft, event)
    p = event.payload
    changed = p.model_fields_set
    governance_changes: dict[str, Any] = {
        name: getattr(p, name)
        for name in ("visibility", "readers_override", "ttl_seconds", "priority", "pinned", "sensitivity")
        if name in changed
    }
    if "ttl_seconds" in changed:
        governance_changes["expires_at"] = _expires_at(event.occurred_at, p.ttl_seconds)
    header_changes = {name: getattr(p, name) for name in ("memory_type", "tags") if name in changed}
    top = {name: getattr(p, name) for name in ("content", "artifact") if name in changed}
    if "content" in top and memory.kind is not MemoryKind.PLAINTEXT:
        raise MemoryNotWritableError(
            event.cube_id,
            memory.memory_id,
            f"a {memory.kind.value} memory (no text content)",
            event_id=event.event_key,
        )
    draft.put(
        _revise(
            memory,
            version,
            event.occurred_at,
            header=header_changes,
            governance=memory.governance.evolve(**governance_changes),
            **top,
        )
    )


def _set_status(
    draft: _Draft, event: Event, version: int, status: MemoryStatus, *, action: str, role: Role
) -> None:
    cube = _require_cube(draft, event)
    _require_role(cube, event, role=role, action=action)
    memory = _require_memory(draft, event)
    draft.put(_revise(memory, version, event.occurred_at, status=status))


@_handles(MemoryDeleted)
def _memory_deleted(draft: _Draft, event: MemoryDeleted, version: int) -> None:
    _set_status(draft, event, version, MemoryStatus.DELETED, action="delete memories", role="writers")


@_handles(MemoryExpired)
def _memory_expired(draft: _Draft, event: MemoryExpired, version: int) -> None:
    _set_status(draft, event, version, MemoryStatus.EXPIRED, action="expire memories", role="owner")


@_handles(MemoryArchived)
def _memory_archived(draft: _Draft, event: MemoryArchived, version: int) -> None:
    _set_status(draft, event, version, MemoryStatus.ARCHIVED, action="archive memories", role="writers")


@_handles(MemoryAccessed)
def _memory_accessed(draft: _Draft, event: MemoryAccessed, version: int) -> None:
    """Reads update behavioural indicators only; they make no new memory version.

    Ids no longer present (deleted between the read and this event) are skipped:
    the read happened, there is just nothing left to count it on.
    """
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="readers", action="read memories")
    for memory_id in dict.fromkeys(event.payload.memory_ids):
        memory = draft.memories.get(memory_id)
        if memory is None:
            continue
        indicators = memory.indicators.evolve(
            access_count=memory.indicators.access_count + 1, last_accessed_at=event.occurred_at
        )
        draft.put(memory.evolve(indicators=indicators), versioned=False)
    draft.set_cube(_bump_cube(cube, version, cube.updated_at))


@_handles(MemoryMerged)
def _memory_merged(draft: _Draft, event: MemoryMerged, version: int) -> None:
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="writers", action="merge memories")
    assert event.memory_id is not None
    p = event.payload
    sources: list[Memory] = []
    for source_id in dict.fromkeys(p.sources):
        source = draft.memories.get(source_id)
        if source is None:
            raise MemoryNotFoundError(event.cube_id, source_id, event_id=event.event_key)
        if source.status not in _WRITABLE:
            raise MemoryNotWritableError(
                event.cube_id, source_id, source.status.value, event_id=event.event_key
            )
        sources.append(source)
    lineage = tuple(SourceRef(memory_id=s.memory_id, version=s.version) for s in sources)
    survivor = draft.memories.get(event.memory_id)
    if survivor is not None and survivor.memory_id not in p.sources:
        # Checked before any write: a rejected event must leave no trace in the draft.
        raise MemoryExistsError(event.cube_id, event.memory_id, event_id=event.event_key)
    tags = tuple(dict.fromkeys((*p.tags, *(t for s in sources for t in s.header.tags))))
    for source in sources:
        if source.memory_id != event.memory_id:
            draft.put(_revise(source, version, event.occurred_at, status=MemoryStatus.MERGED))
    if survivor is not None and survivor.memory_id in p.sources:
        draft.put(
            _revise(
                survivor,
                version,
                event.occurred_at,
                content=p.content,
                header={"tags": tags, "lineage": lineage},
                governance=survivor.governance.evolve(priority=max(s.governance.priority for s in sources)),
            )
        )
        return
    first = sources[0]
    draft.put(
        Memory(
            memory_id=event.memory_id,
            cube_id=event.cube_id,
            kind=MemoryKind.PLAINTEXT,
            content=p.content,
            header=MemoryHeader(
                memory_type=first.header.memory_type,
                tags=tags,
                source=event.source or first.header.source,
                lineage=lineage,
                created_at=event.occurred_at,
                updated_at=event.occurred_at,
            ),
            governance=first.governance.evolve(priority=max(s.governance.priority for s in sources)),
            indicators=Indicators(
                access_count=sum(s.indicators.access_count for s in sources),
                last_accessed_at=max(
                    (s.indicators.last_accessed_at for s in sources if s.indicators.last_accessed_at),
                    default=None,
                ),
            ),
            cube_version=version,
        )
    )


@_handles(MemoryTransformed)
def _memory_transformed(draft: _Draft, event: MemoryTransformed, version: int) -> None:
    """A transformation's output: a new memory (or a new version of an earlier output)."""
    cube = _require_cube(draft, event)
    _require_role(cube, event, role="writers", action="transform memories")
    assert event.memory_id is not None
    p = event.payload
    for ref in p.sources:
        if ref.memory_id not in draft.memories:
            raise MemoryNotFoundError(event.cube_id, ref.memory_id, event_id=event.event_key)
    existing = draft.memories.get(event.memory_id)
    if existing is not None:
        if existing.kind is not p.transformation.target:
            raise MemoryExistsError(event.cube_id, event.memory_id, event_id=event.event_key)
        draft.put(
            _revise(
                existing,
                version,
                event.occurred_at,
                status=MemoryStatus.ACTIVE,
                artifact=p.artifact,
                content=p.content,
                header={"lineage": p.sources, "tags": p.tags, "memory_type": p.memory_type},
            )
        )
        return
    draft.put(
        Memory(
            memory_id=event.memory_id,
            cube_id=event.cube_id,
            kind=p.transformation.target,
            content=p.content,
            artifact=p.artifact,
            header=MemoryHeader(
                memory_type=p.memory_type,
                tags=p.tags,
                source=event.source,
                lineage=p.sources,
                created_at=event.occurred_at,
                updated_at=event.occurred_at,
            ),
            governance=Governance(subject_id=cube.subject_id),
            cube_version=version,
        )
    )


@_handles(SubjectErased)
def _subject_erased(draft: _Draft, event: SubjectErased, version: int) -> None:
    """Content about the subject leaves every version, not only the current one."""
    cube = _require_cube(draft, event)
    _require_role(cube, event, role=cube.policy.erase_by, action="erase subjects")
    subject = event.payload.subject_id

    def about_subject(memory: Memory) -> bool:
        return subject in (memory.subject_id, cube.subject_id)

    def shredded(memory: Memory) -> Memory:
        # Past versions are marked erased too, so that a rollback to before the
        # erasure cannot bring back a live memory without content.
        status = memory.status if memory.status is MemoryStatus.DELETED else MemoryStatus.ERASED
        return memory.evolve(content=None, status=status)

    for memory_id, versions in list(draft.history.items()):
        if any(about_subject(m) for m in versions):
            draft.history[memory_id] = tuple(shredded(m) if about_subject(m) else m for m in versions)
            draft.touched[memory_id] = None
    for memory in list(draft.memories.values()):
        if about_subject(memory):
            draft.put(_revise(memory, version, event.occurred_at, status=MemoryStatus.ERASED, content=None))
    draft.set_cube(_bump_cube(cube, version, event.occurred_at))


# --- the fold -------------------------------------------------------------------


def _memories_in(history: Mapping[str, tuple[Memory, ...]], cube_version: int) -> dict[str, Memory]:
    """Each memory as it stood at `cube_version` (absent if it did not exist yet)."""
    out: dict[str, Memory] = {}
    for memory_id, versions in history.items():
        for memory in reversed(versions):
            if memory.cube_version <= cube_version:
                out[memory_id] = memory
                break
    return out


def _cube_at(cube_history: Iterable[Cube], cube_version: int) -> Cube:
    found = None
    for cube in cube_history:
        if cube.version <= cube_version:
            found = cube
    assert found is not None, "a cube exists from version 1"
    return found


def memories_at(state: CubeState, cube_version: int) -> dict[str, Memory]:
    """Time travel inside the fold: every memory as of a cube version."""
    return _memories_in(state.history, cube_version)


def _apply_to_draft(draft: _Draft, event: Event) -> int | None:
    """Apply one event; return the new cube version, or None for a duplicate."""
    event_id = event.event_key
    if event_id in draft.applied or event_id in draft.refused:
        return None
    current = draft.cube.version if draft.cube else 0
    if event.expected_version is not None and event.expected_version != current:
        raise VersionConflictError(
            event.cube_id, expected=event.expected_version, actual=current, event_id=event_id
        )
    handler = _HANDLERS[type(event)]
    version = current + 1
    handler(draft, event, version)
    cube = draft.cube
    assert cube is not None
    if cube.version != version:
        # Memory-only events still move the cube forward by one version.
        draft.set_cube(_bump_cube(cube, version, cube.updated_at))
    draft.applied.add(event_id)
    return version


def apply(state: CubeState, event: Event) -> CubeState:
    """Apply one event to a cube's state. Raises `RejectedEventError` when it cannot apply."""
    if state.cube is not None and event.cube_id != state.cube.cube_id:
        raise ValueError(f"event for cube {event.cube_id!r} applied to cube {state.cube.cube_id!r}")
    draft = _Draft(state)
    _apply_to_draft(draft, event)
    return draft.freeze()


def fold(state: CubeState, events: Iterable[Event]) -> FoldResult:
    """Apply events in order; rejected ones are collected, not raised.

    A rejected event leaves no trace in the state but its id in `refused`:
    handlers validate before they write (a guard below proves it), and a
    redelivered copy of a refused event is then a duplicate like any other.
    """
    draft = _Draft(state)
    rejected: list[Rejection] = []
    applied: list[tuple[Event, int]] = []
    for event in events:
        if draft.cube is not None and event.cube_id != draft.cube.cube_id:
            raise ValueError(f"event for cube {event.cube_id!r} folded into cube {draft.cube.cube_id!r}")
        checkpoint = (draft.cube, len(draft.cube_history), draft.writes)
        try:
            version = _apply_to_draft(draft, event)
        except RejectedEventError as e:
            if (
                draft.cube,
                len(draft.cube_history),
                draft.writes,
            ) != checkpoint:  # pragma: no cover - handlers validate first
                raise AssertionError(f"handler for {event.event_type} wrote before rejecting") from e
            # Kept without its traceback: that references this frame, which holds the
            # result being built, a cycle that kept whole batches alive until a full collection.
            rejected.append(Rejection(event, e.with_traceback(None)))
            draft.refused.add(event.event_key)
            continue
        if version is not None:
            applied.append((event, version))
    return FoldResult(draft.freeze(), tuple(rejected), tuple(applied), tuple(draft.touched))


def project(events: Iterable[Event]) -> CubeState:
    """The state of a cube from its whole event sequence (rejections dropped)."""
    return fold(CubeState(), events).state

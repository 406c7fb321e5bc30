"""Audit: who read or changed what in a cube, and when, from the lake's `events` table.

Every write is an event and every read through the service is a
`memory.accessed` event, so the log already is the audit trail; this reads
it back for one cube, optionally since a time and for one principal. Times
are the log's own (`logged_at`, the Kafka timestamp), with the time the
event claims (`occurred_at`) beside it. Events the fold refused (a stranger
writing, an update to a deleted memory) are listed too, with the reason:
an attempt is worth auditing. Content is never shown, only ids and fields.
"""

from __future__ import annotations

__all__ = ["AuditEntry", "audit", "describe"]

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from lake.scan import scan
from lake.tables import Lake
from memlake.errors import InvalidEventError
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
    parse_event,
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    logged_at: datetime
    occurred_at: datetime
    principal: str
    action: str  # the event type
    memory_ids: tuple[str, ...]
    detail: str
    event_id: str
    position: str  # partition@offset in the log
    refused: str | None = None  # the fold's reason, when the event did not apply

    def line(self) -> str:
        what = ",".join(self.memory_ids) or "-"
        refused = f"  REFUSED: {self.refused}" if self.refused else ""
        return (
            f"{self.logged_at.isoformat()}  {self.principal:<28} {self.action:<20} {what:<24} "
            f"{self.detail}{refused}"
        )


def describe(event: Event) -> tuple[tuple[str, ...], str]:
    """The memories an event touched and what it did, without any content."""
    ids: tuple[str, ...] = (event.memory_id,) if event.memory_id else ()
    if isinstance(event, MemoryAccessed):
        read = event.payload
        request = f", request {read.request_id}" if read.request_id else ""
        return tuple(dict.fromkeys(read.memory_ids)), f"read ({read.request_kind}{request})"
    if isinstance(event, MemoryAdded):
        added = event.payload
        sealed = ", sealed" if added.content is not None and added.content.sealed is not None else ""
        return ids, f"added {added.kind.value} {added.memory_type}{sealed}"
    if isinstance(event, MemoryUpdated):
        return ids, "changed " + ", ".join(sorted(event.payload.model_fields_set))
    if isinstance(event, MemoryDeleted | MemoryExpired | MemoryArchived):
        reason = getattr(event.payload, "reason", None)
        return ids, f"reason: {reason}" if reason else ""
    if isinstance(event, MemoryMerged):
        sources = tuple(s for s in event.payload.sources if s != event.memory_id)
        return (*ids, *sources), f"merged {', '.join(sources)} into {event.memory_id}: {event.payload.reason}"
    if isinstance(event, MemoryTransformed):
        made = event.payload
        inputs = tuple(s.memory_id for s in made.sources)
        return (*ids, *inputs), f"{made.transformation.value} from {', '.join(inputs)}"
    if isinstance(event, CubeCreated):
        return ids, f"created (owner {event.payload.owner or event.actor.principal})"
    if isinstance(event, CubePolicyChanged):
        return ids, "policy " + event.payload.policy.model_dump_json(exclude_defaults=True)
    if isinstance(event, CubeAclChanged):
        acl = event.payload.acl
        return ids, f"acl owner={acl.owner} writers={list(acl.writers)} readers={list(acl.readers)}"
    if isinstance(event, CubeRolledBack):
        return ids, f"rolled back to version {event.payload.to_version}"
    if isinstance(event, SubjectErased):
        return ids, f"erased subject {event.payload.subject_id}"
    return ids, ""


def _refusals(lake: Lake, cube_id: str) -> dict[str, str]:
    if not lake.exists("rejected"):
        return {}
    data = scan(
        lake.table("rejected"),
        lake.spec("rejected"),
        columns=["event_id", "reason"],
        filter=pc.field("cube_id") == cube_id,
    )
    return dict(zip(data.column("event_id").to_pylist(), data.column("reason").to_pylist(), strict=True))


def audit(
    lake: Lake, cube_id: str, *, since: datetime | None = None, principal: str | None = None
) -> list[AuditEntry]:
    """The cube's events in log order (logged at or after `since`, by `principal`)."""
    if not lake.exists("events"):
        return []
    where = pc.field("cube_id") == cube_id
    prune = None
    if since is not None:
        where = where & (pc.field("logged_at") >= pa.scalar(since, pa.timestamp("us", tz="UTC")))
        prune = f"day >= '{since.date().isoformat()}'"
    if principal is not None:
        where = where & (pc.field("actor") == principal)
    columns = ["partition", "offset", "logged_at", "actor", "event_id", "event_json"]
    data = scan(lake.table("events"), lake.spec("events"), columns=columns, filter=where, prune=prune)
    refused = _refusals(lake, cube_id)
    out = []
    for partition, offset, logged_at, actor, event_id, raw in sorted(
        zip(*(data.column(c).to_pylist() for c in columns), strict=True), key=lambda r: (r[0], r[1])
    ):
        try:
            event = parse_event(raw)
        except InvalidEventError as e:
            # Landed events were valid; one that no longer parses was altered (`memlake verify`).
            out.append(
                AuditEntry(
                    logged_at, logged_at, actor, "unreadable", (), str(e), event_id, f"{partition}@{offset}"
                )
            )
            continue
        ids, detail = describe(event)
        out.append(
            AuditEntry(
                logged_at=logged_at,
                occurred_at=event.occurred_at,
                principal=actor,
                action=event.type,
                memory_ids=ids,
                detail=detail,
                event_id=event_id,
                position=f"{partition}@{offset}",
                refused=refused.get(event_id),
            )
        )
    return out

"""Consolidation decisions as events, with ids that depend only on what was decided.

A decision about one version of one memory always gets the same event id
(a UUIDv7 whose time is that version's time and whose random bits are a
hash of the decision), whenever and however often it is made. So a second
run on the same snapshot produces the very events of the first: the
consolidation job drops those already in the log, and the fold would
ignore a copy anyway (it remembers applied event ids).
"""

from __future__ import annotations

__all__ = ["CONSOLIDATOR", "PRODUCT", "decision_id", "run_id", "to_event"]

import hashlib
import uuid
from datetime import datetime

from memlake.events import (
    Event,
    MemoryArchived,
    MemoryArchivedPayload,
    MemoryExpired,
    MemoryExpiredPayload,
    MemoryMerged,
    MemoryMergedPayload,
    new_event,
)
from memlake.model import Actor, ActorKind, Content, Source
from pipelines.lifecycle import Decision

CONSOLIDATOR = Actor(kind=ActorKind.SYSTEM, id="consolidate")
PRODUCT = "memlake-consolidate"
_MAX_REASON = 1024


def _uuid7_from(ms: int, digest: bytes) -> uuid.UUID:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (int.from_bytes(digest[:2], "big") & 0x0FFF) << 64
    value |= 0b10 << 62
    value |= int.from_bytes(digest[2:10], "big") & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def decision_id(decision: Decision) -> uuid.UUID:
    """The event id of a decision: the same decision on the same version, the same id."""
    sources = ";".join(f"{m}@{v}" for m, v in decision.sources)
    parts = (
        "memlake-consolidate:v1",
        decision.rule,
        decision.cube_id,
        decision.memory_id,
        str(decision.version),
        sources,
        decision.content_from or "",
    )
    material = "|".join(parts)
    digest = hashlib.sha256(material.encode()).digest()
    return _uuid7_from(int(decision.decided_on.timestamp() * 1000), digest)


def run_id(watermark: int, as_of: datetime) -> uuid.UUID:
    """The correlation id of one run: which snapshot, decided as of when."""
    digest = hashlib.sha256(f"memlake-consolidate-run|{watermark}|{as_of.isoformat()}".encode()).digest()
    return _uuid7_from(int(as_of.timestamp() * 1000), digest)


def to_event(
    decision: Decision,
    *,
    now: datetime,
    watermark: int,
    correlation_id: uuid.UUID,
    content: Content | None = None,
) -> Event:
    """The event that carries out `decision` (a merge needs the surviving `content`)."""
    source = Source(product=PRODUCT, ref=f"snapshot:{watermark}")
    reason = decision.reason[:_MAX_REASON]
    payload: MemoryExpiredPayload | MemoryArchivedPayload | MemoryMergedPayload
    kind: type[MemoryExpired] | type[MemoryArchived] | type[MemoryMerged]
    if decision.rule in ("expire", "retain"):
        kind, payload = MemoryExpired, MemoryExpiredPayload(reason=reason)
    elif decision.rule in ("decay", "contradiction"):
        kind, payload = MemoryArchived, MemoryArchivedPayload(reason=reason)
    else:
        if content is None:
            raise ValueError(f"a merge into {decision.memory_id} needs the surviving content")
        kind = MemoryMerged
        payload = MemoryMergedPayload(
            sources=tuple(m for m, _ in decision.sources), content=content, reason=reason
        )
    event = new_event(
        kind,
        cube_id=decision.cube_id,
        memory_id=decision.memory_id,
        actor=CONSOLIDATOR,
        payload=payload,
        occurred_at=now,
        source=source,
        correlation_id=correlation_id,
    )
    return event.model_copy(update={"event_id": decision_id(decision)})

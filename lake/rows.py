"""Rows of the lake's tables from the kernel's values, and back.

The flat columns serve SQL and filters; the `*_json` column of a row holds
the whole value, so that reading a row back gives exactly the `Memory` or
`Cube` the fold produced.
"""

from __future__ import annotations

__all__ = [
    "memory_row",
    "memory_from_json",
    "cube_row",
    "cube_from_json",
    "event_row",
    "to_table",
    "principal",
]

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from lake.schemas import TableSpec, bucket_of
from memlake.events import Event
from memlake.model import Cube, Memory


def principal(event: Event) -> str:
    return event.actor.principal


def memory_row(memory: Memory, *, buckets: int) -> dict[str, Any]:
    # Enum members are str subclasses, written as they are: `.value` costs an enum
    # descriptor call per field, and this runs for every version of every memory.
    content = memory.content
    artifact = memory.artifact
    g = memory.governance
    return {
        "bucket": bucket_of(memory.cube_id, buckets),
        "cube_id": memory.cube_id,
        "memory_id": memory.memory_id,
        "version": memory.indicators.version,
        "cube_version": memory.cube_version,
        "kind": memory.kind,
        "status": memory.status,
        "memory_type": memory.header.memory_type,
        "tags": list(memory.header.tags),
        "text": content.text if content is not None else None,
        "sealed": content is not None and content.sealed is not None,
        "subject_id": memory.subject_id,
        "artifact_uri": artifact.uri if artifact is not None else None,
        "artifact_format": artifact.format if artifact is not None else None,
        "visibility": g.visibility,
        "sensitivity": g.sensitivity,
        "priority": g.priority,
        "pinned": g.pinned,
        "expires_at": g.expires_at,
        "access_count": memory.indicators.access_count,
        "last_accessed_at": memory.indicators.last_accessed_at,
        "created_at": memory.header.created_at,
        "updated_at": memory.header.updated_at,
        "memory_json": memory.model_dump_json(),
    }


def memory_from_json(value: str) -> Memory:
    return Memory.model_validate_json(value)


def cube_row(cube: Cube) -> dict[str, Any]:
    return {
        "cube_id": cube.cube_id,
        "name": cube.name,
        "owner": cube.acl.owner,
        "writers": list(cube.acl.writers),
        "readers": list(cube.acl.readers),
        "subject_id": cube.subject_id,
        "policy_json": cube.policy.model_dump_json(),
        "version": cube.version,
        "created_at": cube.created_at,
        "updated_at": cube.updated_at,
        "cube_json": cube.model_dump_json(),
    }


def cube_from_json(value: str) -> Cube:
    return Cube.model_validate_json(value)


def _ms(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def event_row(
    event: Event, *, topic: str, partition: int, offset: int, timestamp_ms: int, raw: bytes
) -> dict[str, Any]:
    logged_at = _ms(timestamp_ms)
    source = event.source
    return {
        "day": logged_at.date(),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "logged_at": logged_at,
        "event_id": event.event_key,
        "type": event.type,
        "schema_version": event.schema_version,
        "cube_id": event.cube_id,
        "memory_id": event.memory_id,
        "occurred_at": event.occurred_at,
        "actor": event.actor.principal,
        "source_product": source.product if source is not None else None,
        "source_ref": source.ref if source is not None else None,
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "correlation_id": str(event.correlation_id) if event.correlation_id else None,
        "event_json": raw.decode(),
        "chain_hash": None,  # set by the writer, which knows the cube's chain head (lake.chaining)
    }


def to_table(table: TableSpec, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) as an Arrow table of the table's exact schema."""
    return pa.Table.from_pylist(list(rows), schema=table.schema)

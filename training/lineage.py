"""Transformations are events: `memory.transformed` with lineage to what they were made from.

Training never writes a table: it emits events, and the pipelines fold them
into the lake like any other write. The memories it produces have fixed ids
per cube (one KV cache, one adapter), so a new cache or adapter is a new
version of the same memory and the old one stays readable in its history.
"""

from __future__ import annotations

__all__ = [
    "TRAINING_ACTOR",
    "KV_MEMORY_ID",
    "ADAPTER_MEMORY_ID",
    "EventSink",
    "transformed_event",
    "recited_memory_id",
]

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Protocol

from memlake.events import (
    Event,
    MemoryTransformed,
    MemoryTransformedPayload,
    Transformation,
    new_event,
)
from memlake.model import Actor, ActorKind, ArtifactRef, Content, Source, SourceRef

TRAINING_ACTOR = Actor(kind=ActorKind.SYSTEM, id="memlake.training")
KV_MEMORY_ID = "memlake.kv-cache"
ADAPTER_MEMORY_ID = "memlake.lora-adapter"


class EventSink(Protocol):
    """Where events go: `streams.producer.EventProducer` in production."""

    def send(self, events: Sequence[Event] | Event) -> Sequence[Any]: ...


def recited_memory_id(topic: str) -> str:
    """A stable id per recited topic: reciting the same topic again makes a new version."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", topic).strip("-").lower()[:48] or "topic"
    return f"memlake.recited.{slug}.{hashlib.sha256(topic.encode()).hexdigest()[:8]}"


def transformed_event(
    *,
    cube_id: str,
    memory_id: str,
    transformation: Transformation,
    sources: Sequence[SourceRef],
    artifact: ArtifactRef | None = None,
    text: str | None = None,
    tags: Sequence[str] = (),
    memory_type: str = "derived",
    job: str,
    ref: str | None = None,
) -> Event:
    payload = MemoryTransformedPayload(
        transformation=transformation,
        sources=tuple(sources),
        artifact=artifact,
        content=Content(text=text) if text is not None else None,
        memory_type=memory_type,
        tags=tuple(tags),
    )
    return new_event(
        MemoryTransformed,
        cube_id=cube_id,
        memory_id=memory_id,
        actor=TRAINING_ACTOR,
        payload=payload,
        source=Source(product=f"memlake.{job}", ref=ref),
    )

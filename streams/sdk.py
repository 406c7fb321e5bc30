"""The client SDK that products call to write memory events.

```python
from memlake.settings import Settings
from streams.sdk import MemlakeClient

with MemlakeClient(Settings(), actor="user:alice", product="notes-app") as client:
    client.create_cube("alice-notes", name="Alice's notes")
    delivery = client.add_memory("alice-notes", "Alice prefers green tea", tags=["preference"])
    print(delivery.partition, delivery.offset)
```

Every method builds one event, validates it (an invalid event raises
`InvalidEventError` here and is never written), seals its content when the
cube or the call asks for it, sends it with the idempotent producer and
returns the `Delivery` once the broker has confirmed it. `ingest` sends a
JSON Lines file in bulk (see `streams.ingest` for the line formats).
"""

from __future__ import annotations

__all__ = ["MemlakeClient", "CubeProfile", "CubeCatalog", "InMemoryCubeCatalog"]

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from memlake.errors import ConfigError, FieldProblem, InvalidEventError, one_line
from memlake.events import (
    MAX_EVENT_BYTES,
    CubeAclChanged,
    CubeCreated,
    CubePolicyChanged,
    CubeRolledBack,
    Event,
    MemoryAccessed,
    MemoryAdded,
    MemoryDeleted,
    MemoryMerged,
    MemoryUpdated,
    new_event,
    serialize_event,
)
from memlake.ids import uuid7
from memlake.model import Acl, Actor, ArtifactRef, Content, MemoryKind, Policy, Source
from memlake.settings import Settings
from streams.dead_letters import DeadLetter, DeadLetterWriter
from streams.ingest import IngestProblem, IngestReport, parse_line
from streams.producer import Delivery, EventProducer
from streams.sealing import LocalKeyStore, Sealer

RequestKind = Literal["search", "chat", "read", "completion"]


@dataclass(frozen=True, slots=True)
class CubeProfile:
    """What the SDK must know about a cube to write to it: whether to seal, and for whom."""

    policy: Policy
    subject_id: str | None = None


class CubeCatalog(Protocol):
    """Looks up the governance of a cube (a lake-backed catalog in a service)."""

    def profile(self, cube_id: str) -> CubeProfile | None: ...

    def remember(self, cube_id: str, profile: CubeProfile) -> None: ...


class InMemoryCubeCatalog:
    """The cubes this process has created or re-governed through the SDK."""

    def __init__(self) -> None:
        self._profiles: dict[str, CubeProfile] = {}
        self._lock = threading.Lock()

    def profile(self, cube_id: str) -> CubeProfile | None:
        return self._profiles.get(cube_id)

    def remember(self, cube_id: str, profile: CubeProfile) -> None:
        with self._lock:
            self._profiles[cube_id] = profile


class MemlakeClient:
    """Writes validated memory events for one actor. Use as a context manager.

    The constructor does no I/O: the broker is reached on the first send.
    `catalog` tells the SDK which cubes encrypt their content; by default it
    learns from the `create_cube` / `change_policy` calls made through it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        actor: Actor | str,
        product: str = "memlake-sdk",
        catalog: CubeCatalog | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._settings = settings
        try:
            self._actor = actor if isinstance(actor, Actor) else Actor.parse(actor)
        except ValueError as e:  # pydantic's ValidationError included
            raise ConfigError("actor", f"{actor!r} is not a principal kind:id: {one_line(e)}") from None
        self._product = product
        self._catalog: CubeCatalog = catalog if catalog is not None else InMemoryCubeCatalog()
        self._sealer = sealer
        self._producer = EventProducer(settings.kafka)
        try:
            self._source = Source(product=product)  # the common case (no ref), made once
        except ValueError as e:
            raise ConfigError("product", f"{product!r} is not a product name: {one_line(e)}") from None

    @property
    def actor(self) -> Actor:
        return self._actor

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            self._sealer = Sealer(LocalKeyStore(self._settings.governance.key_store))
        return self._sealer

    # --- cubes -----------------------------------------------------------------

    def create_cube(
        self,
        cube_id: str,
        *,
        name: str,
        owner: str | None = None,
        writers: Sequence[str] = (),
        readers: Sequence[str] = (),
        policy: Policy | None = None,
        subject_id: str | None = None,
        source_ref: str | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> Delivery:
        payload: dict[str, Any] = {"name": name, "writers": list(writers), "readers": list(readers)}
        if owner is not None:
            payload["owner"] = owner
        if policy is not None:
            payload["policy"] = policy.model_dump(mode="json")
        if subject_id is not None:
            payload["subject_id"] = subject_id
        return self._send_one(
            CubeCreated, cube_id, payload, source_ref=source_ref, correlation_id=correlation_id
        )

    def change_policy(self, cube_id: str, policy: Policy, *, expected_version: int | None = None) -> Delivery:
        return self._send_one(
            CubePolicyChanged,
            cube_id,
            {"policy": policy.model_dump(mode="json")},
            expected_version=expected_version,
        )

    def change_acl(self, cube_id: str, acl: Acl, *, expected_version: int | None = None) -> Delivery:
        return self._send_one(
            CubeAclChanged, cube_id, {"acl": acl.model_dump(mode="json")}, expected_version=expected_version
        )

    def rollback_cube(
        self,
        cube_id: str,
        to_version: int,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Delivery:
        payload: dict[str, Any] = {"to_version": to_version}
        if reason is not None:
            payload["reason"] = reason
        return self._send_one(CubeRolledBack, cube_id, payload, expected_version=expected_version)

    # --- memories --------------------------------------------------------------

    def add_memory(
        self,
        cube_id: str,
        text: str | None = None,
        *,
        memory_id: str | None = None,
        kind: MemoryKind = MemoryKind.PLAINTEXT,
        artifact: ArtifactRef | None = None,
        memory_type: str = "fact",
        tags: Sequence[str] = (),
        ttl_seconds: int | None = None,
        priority: float | None = None,
        visibility: str | None = None,
        sensitivity: str | None = None,
        subject_id: str | None = None,
        source_ref: str | None = None,
        occurred_at: datetime | None = None,
        expected_version: int | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> Delivery:
        """Add a memory; `memory_id` defaults to a fresh `m-<uuid7>`.

        With `subject_id` the text is sealed under that subject's key; without
        it, it is sealed under the cube's subject when the cube's policy says
        `encrypt_content`.
        """
        event = self.build_add_memory(
            cube_id,
            text,
            memory_id=memory_id,
            kind=kind,
            artifact=artifact,
            memory_type=memory_type,
            tags=tags,
            ttl_seconds=ttl_seconds,
            priority=priority,
            visibility=visibility,
            sensitivity=sensitivity,
            subject_id=subject_id,
            source_ref=source_ref,
            occurred_at=occurred_at,
            expected_version=expected_version,
            correlation_id=correlation_id,
        )
        return self.send(event)[0]

    def build_add_memory(
        self,
        cube_id: str,
        text: str | None = None,
        *,
        memory_id: str | None = None,
        kind: MemoryKind = MemoryKind.PLAINTEXT,
        artifact: ArtifactRef | None = None,
        memory_type: str = "fact",
        tags: Sequence[str] = (),
        ttl_seconds: int | None = None,
        priority: float | None = None,
        visibility: str | None = None,
        sensitivity: str | None = None,
        subject_id: str | None = None,
        source_ref: str | None = None,
        occurred_at: datetime | None = None,
        expected_version: int | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> Event:
        """The validated `memory.added` event `add_memory` would send (for batches: `send_many`)."""
        payload: dict[str, Any] = {"kind": kind, "memory_type": memory_type, "tags": tags}
        if text is not None:
            payload["content"] = {"text": text}
        if artifact is not None:
            payload["artifact"] = artifact.model_dump(mode="json", exclude_none=True)
        optional = {
            "ttl_seconds": ttl_seconds,
            "priority": priority,
            "visibility": visibility,
            "sensitivity": sensitivity,
            "subject_id": subject_id,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        return self.build(
            MemoryAdded,
            cube_id,
            payload,
            memory_id=memory_id or f"m-{uuid7().hex}",
            source_ref=source_ref,
            occurred_at=occurred_at,
            expected_version=expected_version,
            correlation_id=correlation_id,
        )

    def update_memory(
        self,
        cube_id: str,
        memory_id: str,
        *,
        text: str | None = None,
        memory_type: str | None = None,
        tags: Sequence[str] | None = None,
        ttl_seconds: int | None = None,
        priority: float | None = None,
        pinned: bool | None = None,
        visibility: str | None = None,
        sensitivity: str | None = None,
        subject_id: str | None = None,
        source_ref: str | None = None,
        expected_version: int | None = None,
    ) -> Delivery:
        """Change the fields given (at least one); the rest of the memory stays as it is."""
        changes: dict[str, Any] = {
            "memory_type": memory_type,
            "tags": list(tags) if tags is not None else None,
            "ttl_seconds": ttl_seconds,
            "priority": priority,
            "pinned": pinned,
            "visibility": visibility,
            "sensitivity": sensitivity,
        }
        payload = {k: v for k, v in changes.items() if v is not None}
        if text is not None:
            payload["content"] = self._content(cube_id, text, subject_id)
        return self._send_one(
            MemoryUpdated,
            cube_id,
            payload,
            memory_id=memory_id,
            source_ref=source_ref,
            expected_version=expected_version,
        )

    def delete_memory(
        self, cube_id: str, memory_id: str, *, reason: str | None = None, expected_version: int | None = None
    ) -> Delivery:
        payload = {"reason": reason} if reason is not None else {}
        return self._send_one(
            MemoryDeleted, cube_id, payload, memory_id=memory_id, expected_version=expected_version
        )

    def merge_memories(
        self, cube_id: str, into: str, sources: Sequence[str], text: str, *, reason: str | None = None
    ) -> Delivery:
        payload: dict[str, Any] = {"sources": list(sources), "content": {"text": text}}
        if reason is not None:
            payload["reason"] = reason
        return self._send_one(MemoryMerged, cube_id, payload, memory_id=into)

    def record_access(
        self,
        cube_id: str,
        memory_ids: Sequence[str],
        *,
        request_kind: RequestKind = "read",
        request_id: str | None = None,
    ) -> Delivery:
        """Record that a read (search, chat...) returned these memories (behavioural indicators)."""
        payload: dict[str, Any] = {"memory_ids": list(memory_ids), "request_kind": request_kind}
        if request_id is not None:
            payload["request_id"] = request_id
        return self._send_one(MemoryAccessed, cube_id, payload)

    # --- sending ---------------------------------------------------------------

    def send(self, events: Event | Sequence[Event]) -> list[Delivery]:
        """Send already-built events (sealed as their cubes require); wait for every confirmation.

        Every event is prepared (and so validated) before the first is sent: one bad
        event in a batch means none of it is written.
        """
        batch = [events] if not isinstance(events, Sequence) else list(events)
        return self._producer.send_encoded([self._encode(event) for event in batch])

    def send_many(self, events: Iterable[Event], *, chunk: int = 5000) -> list[Delivery]:
        """Send a long stream of events, confirmed chunk by chunk. An invalid one stops the
        stream there: the chunks before its own are sent, none of its own chunk is."""
        return self._producer.send_encoded((self._encode(event) for event in events), chunk=chunk)

    def ingest(self, path: Path | str, *, chunk: int = 5000) -> IngestReport:
        """Send a JSON Lines file (formats in `streams.ingest`), streaming it chunk by chunk.

        Invalid lines are reported with their line number and reason and sent to
        the dead-letter topic (stage "ingest"); every valid line is sent, in file
        order, so one cube's events keep their order on the log.
        """
        path = Path(path)
        report = IngestReport(path=str(path))
        letters: list[DeadLetter] = []
        pending: list[tuple[Event, bytes]] = []

        def flush_pending() -> None:
            for delivery in self._producer.send_encoded(pending):
                report.sent += 1
                previous = report.last_offsets.get(delivery.partition, -1)
                report.last_offsets[delivery.partition] = max(previous, delivery.offset)
            pending.clear()

        with path.open("rb") as lines:
            for number, raw_line in enumerate(lines, start=1):
                report.lines = number
                raw = raw_line.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                try:
                    encoded = self._encode(parse_line(raw, actor=self._actor, product=self._product))
                except InvalidEventError as e:
                    report.problems.append(IngestProblem(number, e.reason))
                    letters.append(
                        DeadLetter.from_file(
                            e, original=raw, stage="ingest", source_file=str(path), line=number
                        )
                    )
                    continue
                pending.append(encoded)
                if len(pending) >= chunk:
                    flush_pending()
        flush_pending()
        if letters:
            with DeadLetterWriter(self._settings.kafka) as writer:
                writer.send(letters)
        return report

    def prepare(self, event: Event) -> Event:
        """The event as it goes on the log: size-checked, content sealed where required.

        It also teaches the catalog about cubes whose governance this client writes.
        """
        return self._encode(event)[0]

    def _encode(self, event: Event) -> tuple[Event, bytes]:
        """`prepare`, returning the canonical bytes too, so that they are made once."""
        if isinstance(event, CubeCreated):
            profile = CubeProfile(event.payload.policy, event.payload.subject_id)
            self._catalog.remember(event.cube_id, profile)
        elif isinstance(event, CubePolicyChanged):
            known = self._catalog.profile(event.cube_id)
            subject = known.subject_id if known else None
            self._catalog.remember(event.cube_id, CubeProfile(event.payload.policy, subject))
        elif isinstance(event, MemoryAdded | MemoryUpdated | MemoryMerged):
            event = self._seal_event(event)
        value = serialize_event(event)
        if len(value) > MAX_EVENT_BYTES:
            raise InvalidEventError(
                [FieldProblem("<event>", f"{len(value)} bytes is over the limit of {MAX_EVENT_BYTES}")],
                event_type=event.type,
            )
        return event, value

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> MemlakeClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- internals -------------------------------------------------------------

    def _send_one(
        self,
        event_class: type[Any],
        cube_id: str,
        payload: dict[str, Any],
        *,
        memory_id: str | None = None,
        source_ref: str | None = None,
        expected_version: int | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> Delivery:
        event = self.build(
            event_class,
            cube_id,
            payload,
            memory_id=memory_id,
            source_ref=source_ref,
            expected_version=expected_version,
            correlation_id=correlation_id,
        )
        return self.send(event)[0]

    def build(
        self,
        event_class: type[Any],
        cube_id: str,
        payload: dict[str, Any],
        *,
        memory_id: str | None = None,
        source_ref: str | None = None,
        occurred_at: datetime | None = None,
        expected_version: int | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> Event:
        """A validated event of this client's actor and product (not sent, not sealed yet)."""
        return new_event(
            event_class,
            cube_id=cube_id,
            actor=self._actor,
            payload=payload,
            memory_id=memory_id,
            occurred_at=occurred_at,
            source=self._source if source_ref is None else Source(product=self._product, ref=source_ref),
            correlation_id=correlation_id,
            expected_version=expected_version,
        )

    def _seal_subject(self, cube_id: str, subject_id: str | None) -> str | None:
        """Whose key seals content written to this cube now, if anyone's."""
        if subject_id is not None:
            return subject_id
        profile = self._catalog.profile(cube_id)
        if profile is None or not profile.policy.encrypt_content:
            return None
        # A cube that encrypts without naming a subject is sealed under its own id,
        # so that erasing the cube's key still forgets all of it.
        return profile.subject_id or cube_id

    def _content(self, cube_id: str, text: str, subject_id: str | None) -> dict[str, Any]:
        subject = self._seal_subject(cube_id, subject_id)
        if subject is None:
            return {"text": text}
        return {"sealed": self.sealer.seal(text, subject).model_dump(mode="json")}

    def _seal_event(self, event: MemoryAdded | MemoryUpdated | MemoryMerged) -> Event:
        content = event.payload.content
        if content is None or content.text is None:
            return event
        explicit = event.payload.subject_id if isinstance(event, MemoryAdded) else None
        subject = self._seal_subject(event.cube_id, explicit)
        if subject is None:
            return event
        sealed = Content(sealed=self.sealer.seal(content.text, subject))
        payload = event.payload.model_copy(update={"content": sealed})
        return event.model_copy(update={"payload": payload})

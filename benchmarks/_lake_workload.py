"""A seeded stream of memory events over many cubes, like products would write them.

Mostly valid events, with the awkward ones a lake must survive mixed in:
rejected events (updates of missing memories, ACL changes by strangers,
rollbacks to versions that do not exist), re-sent duplicates, rollbacks,
merges, transformations and erasures. Used by the lake's tests and benchmarks.
"""

from __future__ import annotations

__all__ = ["Workload", "generate", "invalid_records"]

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from memlake.events import (
    CubeAclChanged,
    CubeCreated,
    CubePolicyChanged,
    CubeRolledBack,
    Event,
    MemoryAccessed,
    MemoryAdded,
    MemoryDeleted,
    MemoryMerged,
    MemoryTransformed,
    MemoryUpdated,
    SubjectErased,
    new_event,
)
from memlake.model import Actor, ActorKind

_OWNER = Actor(kind=ActorKind.USER, id="owner")
_READER = Actor(kind=ActorKind.USER, id="reader")
_STRANGER = Actor(kind=ActorKind.USER, id="stranger")
_SYSTEM = Actor(kind=ActorKind.SYSTEM, id="consolidate")
_WORDS = [
    "tea",
    "coffee",
    "paris",
    "berlin",
    "cat",
    "dog",
    "piano",
    "chess",
    "running",
    "rust",
    "python",
    "delta",
    "kafka",
    "beam",
]


@dataclass
class _Cube:
    cube_id: str
    subject: str | None
    version: int = 0
    live: list[str] = field(default_factory=list)
    next_memory: int = 0


@dataclass
class Workload:
    """Generates events one by one; `rejections_expected` counts those made to be refused."""

    cubes: int = 50
    seed: int = 7
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    rollbacks: bool = True
    erasures: bool = True
    duplicate_rate: float = 0.01
    _rng: random.Random = field(init=False)
    _state: list[_Cube] = field(init=False)
    _clock: datetime = field(init=False)
    _last: list[Event] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._state = [
            _Cube(f"cube-{i:05d}", f"subject-{i}" if self.erasures and i % 10 == 0 else None)
            for i in range(self.cubes)
        ]
        self._clock = self.start

    def _event(self, cls: Any, cube: _Cube, payload: Any, *, memory_id: str | None = None,
               actor: Actor = _OWNER) -> Event:  # fmt: skip
        self._clock += timedelta(milliseconds=10)
        return new_event(
            cls,
            cube_id=cube.cube_id,
            actor=actor,
            payload=payload,
            memory_id=memory_id,
            occurred_at=self._clock,
        )

    def _text(self) -> str:
        return " ".join(self._rng.choice(_WORDS) for _ in range(self._rng.randint(3, 12)))

    def next(self) -> Event:
        rng = self._rng
        if self._last and rng.random() < self.duplicate_rate:
            return rng.choice(self._last)  # a product re-sending after a timeout
        cube = rng.choice(self._state)
        event = self._next_for(cube)
        self._last = [*self._last[-50:], event]
        return event

    def _next_for(self, cube: _Cube) -> Event:
        rng = self._rng
        if cube.version == 0:
            cube.version = 1
            payload: dict[str, Any] = {"name": f"notes of {cube.cube_id}", "readers": [_READER.principal]}
            if cube.subject:
                payload["subject_id"] = cube.subject
            return self._event(CubeCreated, cube, payload)
        roll = rng.random()
        cube.version += 1  # an estimate: rejected events do not move it, which is fine here
        if roll < 0.45 or not cube.live:
            cube.next_memory += 1
            memory_id = f"{cube.cube_id}-m{cube.next_memory}"
            cube.live.append(memory_id)
            tags = rng.sample(_WORDS, 2)
            return self._event(
                MemoryAdded, cube, {"content": {"text": self._text()}, "tags": tags}, memory_id=memory_id
            )
        if roll < 0.62:
            return self._event(
                MemoryUpdated, cube, {"content": {"text": self._text()}}, memory_id=rng.choice(cube.live)
            )
        if roll < 0.78:
            ids = rng.sample(cube.live, min(len(cube.live), rng.randint(1, 4)))
            return self._event(
                MemoryAccessed, cube, {"memory_ids": ids, "request_kind": "search"}, actor=_READER
            )
        if roll < 0.82:
            memory_id = cube.live.pop(rng.randrange(len(cube.live)))
            return self._event(MemoryDeleted, cube, {}, memory_id=memory_id)
        if roll < 0.84 and len(cube.live) >= 2:
            a, b = rng.sample(cube.live, 2)
            cube.live.remove(b)
            return self._event(
                MemoryMerged, cube, {"sources": [a, b], "content": {"text": self._text()}}, memory_id=a
            )
        if roll < 0.86:
            source = rng.choice(cube.live)
            cube.next_memory += 1
            output = f"{cube.cube_id}-m{cube.next_memory}"
            payload = {
                "transformation": "plaintext_to_activation",
                "sources": [{"memory_id": source, "version": 1}],
                "artifact": {"uri": f"file:///kv/{output}", "format": "safetensors-kv",
                             "base_model_fingerprint": "smollm2-135m"},
            }  # fmt: skip
            cube.live.append(output)
            return self._event(MemoryTransformed, cube, payload, memory_id=output, actor=_SYSTEM)
        if roll < 0.88:
            return self._event(CubePolicyChanged, cube, {"policy": {"ttl_seconds": rng.randint(60, 10**6)}})
        if roll < 0.90:
            # Refused: only the owner may change the ACL.
            acl = {"owner": _STRANGER.principal}
            return self._event(CubeAclChanged, cube, {"acl": acl}, actor=_STRANGER)
        if roll < 0.93:
            # Refused: the memory does not exist.
            return self._event(MemoryUpdated, cube, {"priority": 0.9}, memory_id=f"{cube.cube_id}-missing")
        if roll < 0.96 and self.rollbacks:
            target = rng.randint(1, max(1, cube.version - 1))
            if rng.random() < 0.1:
                target = cube.version + 1000  # refused: a version that does not exist
            # The live list no longer matches after a rollback; later events on
            # memories the rollback removed are refused, as they would be in real life.
            return self._event(CubeRolledBack, cube, {"to_version": target})
        if roll < 0.965 and self.erasures and cube.subject:
            return self._event(SubjectErased, cube, {"subject_id": cube.subject})
        return self._event(
            MemoryUpdated, cube, {"tags": rng.sample(_WORDS, 3)}, memory_id=rng.choice(cube.live)
        )

    def events(self, n: int) -> Iterator[Event]:
        for _ in range(n):
            yield self.next()


def generate(n: int, *, cubes: int = 50, seed: int = 7, **options: Any) -> list[Event]:
    return list(Workload(cubes=cubes, seed=seed, **options).events(n))


def invalid_records(n: int, *, seed: int = 11) -> list[tuple[bytes | None, bytes]]:
    """(key, value) records that are not valid events, each bad in its own way."""
    rng = random.Random(seed)
    samples: list[tuple[bytes | None, bytes]] = [
        (b"cube-x", b"not json at all"),
        (b"cube-x", b'{"type": "memory.exploded", "schema": 2}'),
        (b"cube-x", b'{"schema": 99, "type": "memory.added"}'),
        (b"cube-x", b"[1, 2, 3]"),
        (b"cube-x", b'{"schema": 2, "type": "memory.added", "cube_id": "cube-x"}'),
    ]
    return [samples[rng.randrange(len(samples))] for _ in range(n)]

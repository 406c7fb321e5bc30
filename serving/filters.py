"""What a search or a listing may narrow memories down to: kind, tags, type, time, status.

A filter is applied twice: pushed down to the vector index as an expression
(so that the index returns candidates that can match) and checked again on
the snapshot's memories, which are the truth. Only live lifecycle states can
be asked for: deleted, expired, merged and erased memories never come back.
"""

from __future__ import annotations

__all__ = ["MemoryFilter", "SEARCHABLE_STATUSES", "milvus_literal"]

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from memlake.model import Memory, MemoryKind, MemoryStatus

# Statuses a reader may ask for. Everything else is gone for retrieval.
SEARCHABLE_STATUSES = frozenset({MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED})

_SAFE_LITERAL = re.compile(r"^[^\"'\\\x00-\x1f\x7f\ud800-\udfff]*$")


def milvus_literal(value: str) -> str | None:
    """A Milvus string literal for `value`, or None when it cannot be written safely.

    Milvus Lite's expression parser has no parameter binding, so values are
    quoted here; a value with quotes, backslashes, control characters or lone
    surrogates is not pushed down at all (the snapshot check still applies it).
    Other characters are written as they are: the parser knows no `\\u` escape
    (found by the API fuzz test with a non-ASCII tag).
    """
    if not _SAFE_LITERAL.match(value):
        return None
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class MemoryFilter:
    kinds: frozenset[MemoryKind] = frozenset()
    tags_any: frozenset[str] = frozenset()
    tags_all: frozenset[str] = frozenset()
    memory_types: frozenset[str] = frozenset()
    created_after: datetime | None = None
    created_before: datetime | None = None
    statuses: frozenset[MemoryStatus] = field(default_factory=lambda: frozenset({MemoryStatus.ACTIVE}))

    def __post_init__(self) -> None:
        gone = self.statuses - SEARCHABLE_STATUSES
        if gone:
            names = ", ".join(sorted(s.value for s in gone))
            raise ValueError(f"memories that are {names} cannot be retrieved")
        if not self.statuses:
            raise ValueError("at least one status must be asked for")

    def matches(self, memory: Memory, *, now: datetime) -> bool:
        """Whether retrieval may return the memory: a searchable status, not expired, content left."""
        if memory.status not in self.statuses or memory.is_expired_at(now):
            return False
        if memory.content is None and memory.kind is MemoryKind.PLAINTEXT:
            return False  # erased content: nothing left to return
        return self.matches_shape(memory)

    def matches_shape(self, memory: Memory) -> bool:
        """Kind, type, tags and creation time only (what a listing of any status filters on)."""
        if self.kinds and memory.kind not in self.kinds:
            return False
        if self.memory_types and memory.header.memory_type not in self.memory_types:
            return False
        tags = set(memory.header.tags)
        if self.tags_any and not (tags & self.tags_any):
            return False
        if self.tags_all and not self.tags_all <= tags:
            return False
        created = memory.header.created_at
        if self.created_after is not None and created < self.created_after:
            return False
        return not (self.created_before is not None and created >= self.created_before)

    def milvus_expression(self, cube_ids: Sequence[str]) -> str:
        """The part of the filter the index can evaluate, ANDed with the cube restriction."""
        cubes = [lit for c in cube_ids if (lit := milvus_literal(c)) is not None]
        parts = [f"cube_id in [{', '.join(cubes)}]"]
        parts.append(f"status in [{', '.join(json.dumps(s.value) for s in sorted(self.statuses))}]")
        if self.kinds:
            parts.append(f"kind in [{', '.join(json.dumps(k.value) for k in sorted(self.kinds))}]")
        types = [lit for t in sorted(self.memory_types) if (lit := milvus_literal(t)) is not None]
        if types and len(types) == len(self.memory_types):
            parts.append(f"memory_type in [{', '.join(types)}]")
        any_tags = [lit for t in sorted(self.tags_any) if (lit := milvus_literal(t)) is not None]
        if any_tags and len(any_tags) == len(self.tags_any):
            parts.append(f"array_contains_any(tags, [{', '.join(any_tags)}])")
        all_tags = [lit for t in sorted(self.tags_all) if (lit := milvus_literal(t)) is not None]
        if all_tags and len(all_tags) == len(self.tags_all):
            parts.append(f"array_contains_all(tags, [{', '.join(all_tags)}])")
        if self.created_after is not None:
            parts.append(f"created_at_ms >= {_ms(self.created_after)}")
        if self.created_before is not None:
            parts.append(f"created_at_ms < {_ms(self.created_before)}")
        return " and ".join(parts)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)

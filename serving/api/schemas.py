"""Request and response bodies of the HTTP API (the OpenAPI spec is generated from these).

Every string and list has a bound, so an oversized request is refused by
validation (422, naming the field) before any work is done.
"""

from __future__ import annotations

__all__ = [
    "ErrorBody",
    "ErrorOut",
    "WriteOut",
    "Position",
    "CubeCreate",
    "PolicyChange",
    "AclChange",
    "RollbackIn",
    "CubeOut",
    "CubeListOut",
    "CubeVersionOut",
    "CubeVersionsOut",
    "CubeAsOfOut",
    "MemoryChangeOut",
    "CubeDiffOut",
    "MemoryCreate",
    "MemoryUpdate",
    "MemoryOut",
    "MemoryListOut",
    "MemoryVersionOut",
    "MemoryHistoryOut",
    "LineageOut",
    "SearchFilters",
    "SearchIn",
    "SearchHitOut",
    "SearchOut",
    "ChatMessageIn",
    "ChatIn",
    "UsedMemoryOut",
    "ChatOut",
    "ParametricOut",
    "HealthOut",
    "memory_out",
    "cube_out",
    "PRINCIPAL_PATTERN",
]

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memlake.model import (
    ID_PATTERN,
    MAX_TEXT_CHARS,
    ArtifactRef,
    Cube,
    Memory,
    MemoryKind,
    MemoryStatus,
    Policy,
    Sensitivity,
    SourceRef,
    Visibility,
)
from serving.scheduler import SchedulerPolicy

PRINCIPAL_PATTERN = r"^(user|agent|service|system):[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,127}$"
Principal = Annotated[str, Field(pattern=PRINCIPAL_PATTERN, max_length=140)]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=128)]
Tag = Annotated[str, Field(min_length=1, max_length=128)]
ShortText = Annotated[str, Field(max_length=1024)]
MAX_PRINCIPALS = 1000
MAX_TAGS = 64


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- errors and receipts ------------------------------------------------------------


class ErrorBody(_Out):
    type: str = Field(description="A stable, machine-readable name of the problem.")
    message: str = Field(description="What was wrong, for a person.")
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorOut(_Out):
    error: ErrorBody


class WriteOut(_Out):
    """A write became an event: where it sits in the log. Read your write with
    `consistency=wait` and `wait_for=[{partition, offset}]`."""

    event_id: str
    cube_id: str
    memory_id: str | None = None
    topic: str
    partition: int
    offset: int


class Position(_In):
    partition: Annotated[int, Field(ge=0, le=100_000)]
    offset: Annotated[int, Field(ge=0, le=2**62)]


# --- cubes ----------------------------------------------------------------------------


class CubeCreate(_In):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    writers: Annotated[list[Principal], Field(max_length=MAX_PRINCIPALS)] = []
    readers: Annotated[list[Principal], Field(max_length=MAX_PRINCIPALS)] = []
    policy: Policy = Policy()
    subject_id: Id | None = None


class PolicyChange(_In):
    policy: Policy


class AclChange(_In):
    owner: Principal | None = Field(None, description="A new owner; only the owner can hand the cube over.")
    writers: Annotated[list[Principal], Field(max_length=MAX_PRINCIPALS)] = []
    readers: Annotated[list[Principal], Field(max_length=MAX_PRINCIPALS)] = []


class RollbackIn(_In):
    to_version: Annotated[int, Field(ge=1, le=2**62)]
    reason: ShortText | None = None


class CubeOut(_Out):
    cube_id: str
    name: str
    owner: str
    writers: list[str]
    readers: list[str]
    policy: Policy
    subject_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    memory_count: int | None = None
    snapshot_version: int


class CubeListOut(_Out):
    cubes: list[CubeOut]
    snapshot_version: int


class CubeVersionOut(_Out):
    version: int
    event_id: str
    event_type: str
    memory_id: str | None
    actor: str
    occurred_at: datetime
    logged_at: datetime
    partition: int
    offset: int


class CubeVersionsOut(_Out):
    cube_id: str
    versions: list[CubeVersionOut]
    next_after_version: int | None


# --- memories -------------------------------------------------------------------------


class MemoryOut(_Out):
    memory_id: str
    cube_id: str
    kind: MemoryKind
    status: MemoryStatus
    text: str | None = Field(description="The content (opened if it was sealed); null once erased.")
    sealed: bool
    artifact: ArtifactRef | None
    memory_type: str
    tags: list[str]
    lineage: list[SourceRef]
    visibility: Visibility
    priority: float
    pinned: bool
    sensitivity: Sensitivity
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    cube_version: int
    access_count: int
    last_accessed_at: datetime | None


class MemoryCreate(_In):
    memory_id: Id | None = Field(None, description="Chosen by the service when absent.")
    kind: MemoryKind = MemoryKind.PLAINTEXT
    text: Annotated[str | None, Field(min_length=1, max_length=MAX_TEXT_CHARS)] = None
    artifact: ArtifactRef | None = None
    memory_type: Annotated[str, Field(min_length=1, max_length=64)] = "fact"
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    lineage: Annotated[list[SourceRef], Field(max_length=1000)] = []
    visibility: Visibility = Visibility.CUBE
    readers_override: Annotated[list[Principal] | None, Field(max_length=MAX_PRINCIPALS)] = None
    ttl_seconds: Annotated[int | None, Field(gt=0, le=100 * 365 * 86400)] = None
    priority: Annotated[float, Field(ge=0, le=1)] = 0.5
    pinned: bool = False
    sensitivity: Sensitivity = Sensitivity.INTERNAL
    subject_id: Id | None = None
    source_ref: Annotated[str | None, Field(max_length=512)] = None

    @model_validator(mode="after")
    def _content_matches_kind(self) -> MemoryCreate:
        if self.kind is MemoryKind.PLAINTEXT and (self.text is None or not self.text.strip()):
            raise ValueError("a plaintext memory needs a non-blank 'text'")
        if self.kind is not MemoryKind.PLAINTEXT and self.artifact is None:
            raise ValueError(f"an {self.kind.value} memory needs 'artifact'")
        return self


class MemoryUpdate(_In):
    text: Annotated[str | None, Field(min_length=1, max_length=MAX_TEXT_CHARS)] = None
    artifact: ArtifactRef | None = None
    memory_type: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    tags: Annotated[list[Tag] | None, Field(max_length=MAX_TAGS)] = None
    visibility: Visibility | None = None
    readers_override: Annotated[list[Principal] | None, Field(max_length=MAX_PRINCIPALS)] = None
    ttl_seconds: Annotated[int | None, Field(gt=0, le=100 * 365 * 86400)] = None
    priority: Annotated[float | None, Field(ge=0, le=1)] = None
    pinned: bool | None = None
    sensitivity: Sensitivity | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> MemoryUpdate:
        if not self.model_fields_set:
            raise ValueError("an update must change at least one field")
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")
        return self


class MemoryListOut(_Out):
    memories: list[MemoryOut]
    next_cursor: str | None
    snapshot_version: int


class MemoryVersionOut(_Out):
    memory: MemoryOut
    event_id: str | None
    event_type: str | None


class MemoryHistoryOut(_Out):
    cube_id: str
    memory_id: str
    versions: list[MemoryVersionOut]


class LineageOut(_Out):
    cube_id: str
    memory_id: str
    lineage: dict[str, Any] = Field(description="{memory_id, version, kind, sources: [...]}, recursively.")
    derived: list[MemoryOut] = Field(description="Memories of the cube made from this one.")


class CubeAsOfOut(_Out):
    cube: CubeOut | None
    version: int
    memories: list[MemoryOut]


class MemoryChangeOut(_Out):
    memory_id: str
    fields: list[str]
    before: MemoryOut
    after: MemoryOut


class CubeDiffOut(_Out):
    cube_id: str
    from_version: int
    to_version: int
    added: list[MemoryOut]
    removed: list[MemoryOut]
    changed: list[MemoryChangeOut]
    cube_fields: list[str]


# --- search and chat --------------------------------------------------------------------


class SearchFilters(_In):
    kinds: Annotated[list[MemoryKind], Field(max_length=3)] = []
    tags_any: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    tags_all: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    memory_types: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=32)
    ] = []
    created_after: datetime | None = None
    created_before: datetime | None = None
    statuses: Annotated[
        list[Literal[MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED]], Field(min_length=1, max_length=2)
    ] = [MemoryStatus.ACTIVE]


class _Consistency(_In):
    consistency: Literal["snapshot", "wait"] = Field(
        "snapshot",
        description="'snapshot' answers from the pinned snapshot at once; 'wait' first waits (bounded) "
        "until the snapshot covers every position in `wait_for`.",
    )
    wait_for: Annotated[list[Position], Field(max_length=64)] = []
    timeout_s: Annotated[float | None, Field(gt=0, le=300)] = None


class SearchIn(_Consistency):
    query: Annotated[str, Field(min_length=1)]
    cube_ids: Annotated[list[Id], Field(min_length=1)]
    top_k: Annotated[int, Field(ge=1)] = 10
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    filters: SearchFilters = SearchFilters()


class SearchHitOut(_Out):
    memory: MemoryOut
    score: float
    relevance: float
    similarity: float | None
    lexical_score: float | None
    ranks: dict[str, int]


class SearchOut(_Out):
    hits: list[SearchHitOut]
    snapshot_version: int
    timings_ms: dict[str, float]


class ChatMessageIn(_In):
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class ChatIn(_Consistency):
    cube_ids: Annotated[list[Id], Field(min_length=1)]
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=64)]
    stream: bool = False
    max_new_tokens: Annotated[int | None, Field(ge=1)] = None
    token_budget: Annotated[int | None, Field(ge=0, le=32_768)] = None
    policy: SchedulerPolicy | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0

    @model_validator(mode="after")
    def _asks_something(self) -> ChatIn:
        if not any(m.role == "user" and m.content.strip() for m in self.messages):
            raise ValueError("the conversation needs a non-blank user message")
        return self


class UsedMemoryOut(_Out):
    cube_id: str
    memory_id: str
    version: int
    text: str
    score: float
    relevance: float
    tokens: int


class ParametricOut(_Out):
    """Which LoRA adapter answered and whether a cached KV prefix was reused (docs/training.md)."""

    adapter: str | None = Field(description="models:/<name>/<version> of the adapter; null: none")
    adapter_reason: str | None = Field(description="Why no adapter answered.")
    kv_cache: str | None = Field(description="Artifact URI of the KV cache whose prefix was reused.")
    kv_reused_tokens: int = Field(description="Prompt tokens read from the KV cache, not computed.")
    kv_reason: str | None = Field(description="Why no cached prefix was reused.")


class ChatOut(_Out):
    answer: str
    memories_used: list[UsedMemoryOut]
    snapshot_version: int
    model: str
    finish_reason: Literal["stop", "length"]
    usage: dict[str, int]
    timings_ms: dict[str, float]
    parametric: ParametricOut


class HealthOut(_Out):
    status: Literal["ok", "loading", "unavailable"]
    snapshot_version: int | None = None
    memories: int | None = None
    problem: str | None = None


# --- conversions ----------------------------------------------------------------------


def memory_out(memory: Memory, text: str | None) -> MemoryOut:
    g = memory.governance
    return MemoryOut(
        memory_id=memory.memory_id,
        cube_id=memory.cube_id,
        kind=memory.kind,
        status=memory.status,
        text=text,
        sealed=memory.content is not None and memory.content.sealed is not None,
        artifact=memory.artifact,
        memory_type=memory.header.memory_type,
        tags=list(memory.header.tags),
        lineage=list(memory.header.lineage),
        visibility=g.visibility,
        priority=g.priority,
        pinned=g.pinned,
        sensitivity=g.sensitivity,
        expires_at=g.expires_at,
        created_at=memory.header.created_at,
        updated_at=memory.header.updated_at,
        version=memory.version,
        cube_version=memory.cube_version,
        access_count=memory.indicators.access_count,
        last_accessed_at=memory.indicators.last_accessed_at,
    )


def cube_out(cube: Cube, *, snapshot_version: int, memory_count: int | None = None) -> CubeOut:
    return CubeOut(
        cube_id=cube.cube_id,
        name=cube.name,
        owner=cube.acl.owner,
        writers=list(cube.acl.writers),
        readers=list(cube.acl.readers),
        policy=cube.policy,
        subject_id=cube.subject_id,
        version=cube.version,
        created_at=cube.created_at,
        updated_at=cube.updated_at,
        memory_count=memory_count,
        snapshot_version=snapshot_version,
    )

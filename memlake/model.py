"""The domain model: cubes and the memories inside them.

Everything here is a frozen value. The fold (`memlake.fold`) produces new
values from events; nothing in this module does I/O.
"""

from __future__ import annotations

__all__ = [
    "MemoryKind",
    "MemoryStatus",
    "Visibility",
    "Sensitivity",
    "ActorKind",
    "Actor",
    "Source",
    "Acl",
    "Policy",
    "Sealed",
    "Content",
    "ArtifactRef",
    "SourceRef",
    "MemoryHeader",
    "Governance",
    "Indicators",
    "Memory",
    "Cube",
    "ID_PATTERN",
    "MAX_TEXT_CHARS",
    "UtcDatetime",
    "Identifier",
    "utcnow",
    "equal_but",
]

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_set = object.__setattr__  # frozen models: the copy is built before anyone sees it

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,127}$"
MAX_TEXT_CHARS = 65_536


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a timezone (UTC expected)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes`, equal to `model_copy(update=changes)` (neither validates):
        the fold makes several per event from values that are valid already. It skips
        `copy.copy` of each part, which saves only ~15% per copy (4.8 vs 5.7 µs here).
        Set operations on the keys, and the fields-set shared when it already holds the
        changed names, took a two-field copy from 2.6 to 1.9 µs."""
        cls = type(self)
        fields = cls.__pydantic_fields__
        if not changes.keys() <= fields.keys():
            raise ValueError(f"{cls.__name__} has no field {sorted(changes.keys() - fields.keys())}")
        new = cls.__new__(cls)
        _set(new, "__dict__", {**self.__dict__, **changes})
        fields_set = self.__pydantic_fields_set__
        if not changes.keys() <= fields_set:
            fields_set = fields_set | changes.keys()
        _set(new, "__pydantic_fields_set__", fields_set)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_private__", None)
        return new


def equal_but(a: BaseModel, b: BaseModel, skip: frozenset[str]) -> bool:
    """Equal in every field but those in `skip` (two values of one class).

    The fold's values mostly share their parts (`evolve` copies references), and dict
    equality in C tries `is` before `==` on each value: 1.0 against 2.4 µs for a cube
    compared field by field in Python."""
    blank = dict.fromkeys(skip)
    return {**a.__dict__, **blank} == {**b.__dict__, **blank}


class MemoryKind(StrEnum):
    PLAINTEXT = "plaintext"
    ACTIVATION = "activation"
    PARAMETRIC = "parametric"


class MemoryStatus(StrEnum):
    """The lifecycle of a memory (MemOS MemLifecycle): active → archived → expired / deleted.

    `merged` memories live on inside the memory they were merged into;
    `erased` memories had their content crypto-shredded.
    """

    ACTIVE = "active"
    ARCHIVED = "archived"
    EXPIRED = "expired"
    DELETED = "deleted"
    MERGED = "merged"
    ERASED = "erased"

    @property
    def is_live(self) -> bool:
        """Live memories are the ones retrieval may return."""
        return self is MemoryStatus.ACTIVE


class Visibility(StrEnum):
    PRIVATE = "private"  # owner and writers only
    CUBE = "cube"  # every reader of the cube (default)


class Sensitivity(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class ActorKind(StrEnum):
    USER = "user"
    AGENT = "agent"
    SERVICE = "service"
    SYSTEM = "system"  # memlake's own jobs: consolidation, distillation, erasure


class Actor(_Value):
    kind: ActorKind
    id: Identifier

    @property
    def principal(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def parse(cls, principal: str) -> Actor:
        kind, sep, ident = principal.partition(":")
        if not sep:
            raise ValueError(f"principal {principal!r} is not of the form kind:id")
        return cls(kind=ActorKind(kind), id=ident)


class Source(_Value):
    """Where an event came from: the product and its own reference (e.g. a dialogue id)."""

    product: Annotated[str, Field(min_length=1, max_length=128)]
    ref: Annotated[str | None, Field(max_length=512)] = None
    attributes: dict[str, str] = Field(default_factory=dict)


class Acl(_Value):
    """Who may do what in a cube. Principals are `kind:id` strings."""

    owner: str
    writers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()

    @field_validator("writers", "readers")
    @classmethod
    def _canonical(cls, principals: tuple[str, ...]) -> tuple[str, ...]:
        # Sorted and unique, so that two equal ACLs serialise identically.
        return tuple(sorted(set(principals)))

    def is_owner(self, principal: str) -> bool:
        return principal == self.owner

    def can_write(self, principal: str) -> bool:
        return self.is_owner(principal) or principal in self.writers

    def can_read(self, principal: str) -> bool:
        return self.can_write(principal) or principal in self.readers

    def grants(self, principal: str, role: Role) -> bool:
        """Whether `principal` holds `role`: the owner, a writer (the owner is one) or a
        reader (writers are). A policy's rule (`rollback_by`, `erase_by`) names one."""
        if role == "owner":
            return self.is_owner(principal)
        return self.can_write(principal) if role == "writers" else self.can_read(principal)


Role = Literal["owner", "writers", "readers"]
RoleRule = Literal["owner", "writers"]


class Policy(_Value):
    """Governance of a cube; changed only by `cube.policy_changed` events."""

    ttl_seconds: Annotated[int | None, Field(gt=0)] = None
    retention_days: Annotated[int | None, Field(gt=0)] = None
    encrypt_content: bool = False
    rollback_by: RoleRule = "owner"
    erase_by: RoleRule = "owner"
    # Decay (docs/governance.md): None takes the deployment's default (GovernanceSettings).
    decay_half_life_days: Annotated[float | None, Field(gt=0)] = None
    archive_below_priority: Annotated[float | None, Field(ge=0, le=1)] = None


class Sealed(_Value):
    """Content encrypted under a per-subject data key (envelope encryption).

    Destroying the subject's key makes every copy unreadable, in Kafka too:
    that is how an immutable log forgets (crypto-shredding).
    """

    alg: Literal["AES-256-GCM"] = "AES-256-GCM"
    key_id: Identifier
    subject_id: Identifier
    nonce: Annotated[str, Field(min_length=1)]  # base64
    ciphertext: Annotated[str, Field(min_length=1)]  # base64


class Content(_Value):
    """Plaintext memory content: either clear `text` or `sealed` ciphertext."""

    text: Annotated[str | None, Field(max_length=MAX_TEXT_CHARS)] = None
    sealed: Sealed | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.text is None) == (self.sealed is None):
            raise ValueError("exactly one of 'text' or 'sealed' must be set")
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")
        return self

    @property
    def subject_id(self) -> str | None:
        return self.sealed.subject_id if self.sealed else None


class ArtifactRef(_Value):
    """An activation (KV cache) or parametric (LoRA adapter) artifact."""

    uri: Annotated[str, Field(min_length=1, max_length=2048)]
    format: Annotated[str, Field(min_length=1, max_length=64)]  # e.g. "safetensors-kv", "peft-lora"
    base_model_fingerprint: Annotated[str, Field(min_length=1, max_length=256)]
    mlflow_model_version: str | None = None
    sha256: str | None = None


class SourceRef(_Value):
    """Lineage: one version of one memory that another memory was made from."""

    memory_id: Identifier
    version: Annotated[int, Field(ge=1)]


class MemoryHeader(_Value):
    memory_type: Annotated[str, Field(min_length=1, max_length=64)] = "fact"
    tags: tuple[str, ...] = ()
    source: Source | None = None
    lineage: tuple[SourceRef, ...] = ()
    created_at: UtcDatetime
    updated_at: UtcDatetime


class Governance(_Value):
    visibility: Visibility = Visibility.CUBE
    readers_override: tuple[str, ...] | None = None
    ttl_seconds: Annotated[int | None, Field(gt=0)] = None
    expires_at: UtcDatetime | None = None
    priority: Annotated[float, Field(ge=0, le=1)] = 0.5
    pinned: bool = False
    sensitivity: Sensitivity = Sensitivity.INTERNAL
    signature: str | None = None
    subject_id: str | None = None


class Indicators(_Value):
    """Behavioural indicators: how a memory is used. Not rolled back (they are facts about reads)."""

    access_count: Annotated[int, Field(ge=0)] = 0
    last_accessed_at: UtcDatetime | None = None
    version: Annotated[int, Field(ge=1)] = 1


class Memory(_Value):
    memory_id: Identifier
    cube_id: Identifier
    kind: MemoryKind
    status: MemoryStatus = MemoryStatus.ACTIVE
    content: Content | None = None
    artifact: ArtifactRef | None = None
    header: MemoryHeader
    governance: Governance = Governance()
    indicators: Indicators = Indicators()
    cube_version: Annotated[int, Field(ge=1)]  # the cube version that last changed this memory

    @property
    def version(self) -> int:
        return self.indicators.version

    @property
    def subject_id(self) -> str | None:
        return self.governance.subject_id or (self.content.subject_id if self.content else None)

    def readable_by(self, principal: str, acl: Acl) -> bool:
        """Memory-level visibility on top of the cube ACL."""
        if acl.can_write(principal):
            return True
        if self.governance.visibility is Visibility.PRIVATE:
            return False
        if self.governance.readers_override is not None:
            return principal in self.governance.readers_override
        return acl.can_read(principal)

    def is_expired_at(self, now: datetime) -> bool:
        return self.governance.expires_at is not None and self.governance.expires_at <= now


class Cube(_Value):
    cube_id: Identifier
    name: Annotated[str, Field(min_length=1, max_length=256)]
    acl: Acl
    policy: Policy = Policy()
    subject_id: str | None = None  # the person a cube is about, for erasure
    version: Annotated[int, Field(ge=1)]
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @property
    def owner(self) -> str:
        return self.acl.owner


def utcnow() -> datetime:
    return datetime.now(UTC)

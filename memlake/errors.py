"""The one exception root of memlake and its typed subclasses.

Every error carries its evidence as attributes (which cube, which version,
which field) so that callers can act on it without parsing messages. Driver
errors are translated at the adapter (`raise ... from e`); HTTP status codes
are chosen in `serving/` only.
"""

from __future__ import annotations

__all__ = [
    "MemlakeError",
    "ErasureDeniedError",
    "ConfigError",
    "InvalidEventError",
    "FieldProblem",
    "UnknownSchemaError",
    "RejectedEventError",
    "CubeNotFoundError",
    "CubeExistsError",
    "MemoryNotFoundError",
    "MemoryExistsError",
    "MemoryNotWritableError",
    "PermissionDeniedError",
    "VersionConflictError",
    "RollbackTargetError",
    "InfrastructureError",
    "LocalServiceError",
    "BrokerError",
    "ObjectStoreError",
    "DeltaReaderError",
    "BrokerUnavailableError",
    "TopicsNotReadyError",
    "WriteNotConfirmedError",
    "LakeError",
    "ConcurrentWriteError",
    "StoreUnavailableError",
    "LeaseHeldError",
    "TimeTravelError",
    "SealedContentError",
    "DatasetError",
    "ModelLoadError",
    "ArtifactError",
    "StaleArtifactError",
    "TrainingError",
    "AuthenticationError",
    "ConsistencyTimeoutError",
    "SnapshotUnavailableError",
    "VectorIndexError",
    "GenerationError",
    "LimitExceededError",
    "one_line",
]

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError


def one_line(error: ValueError) -> str:
    """What is wrong with a value, in one line: pydantic's messages without the layout of
    its report (a title line and one indented block per field), or the error's own text."""
    if isinstance(error, ValidationError):
        return "; ".join(problem["msg"] for problem in error.errors())
    return str(error)


class MemlakeError(Exception):
    """Root of every error memlake raises on purpose."""


class ConfigError(MemlakeError):
    """A setting is missing or contradicts another."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"setting {setting!r}: {problem}")


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of an event: `payload.content.text: required`."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class InvalidEventError(MemlakeError):
    """An event failed validation; nothing was written or applied.

    `problems` names each field and what is wrong with it; `raw` keeps the
    original bytes (when there were any) so a dead letter loses nothing.
    """

    def __init__(
        self,
        problems: list[FieldProblem],
        *,
        event_type: str | None = None,
        raw: bytes | None = None,
    ) -> None:
        self.problems = tuple(problems)
        self.event_type = event_type
        self.raw = raw
        what = f"invalid {event_type} event" if event_type else "invalid event"
        super().__init__(f"{what}: " + "; ".join(str(p) for p in self.problems))

    @property
    def reason(self) -> str:
        return str(self)


class UnknownSchemaError(InvalidEventError):
    """The event declares a schema version this code cannot read or upcast."""

    def __init__(self, schema: object, *, supported: int, raw: bytes | None = None) -> None:
        self.schema = schema
        self.supported = supported
        super().__init__(
            [FieldProblem("schema", f"unsupported schema version {schema!r} (newest known: {supported})")],
            raw=raw,
        )


class RejectedEventError(MemlakeError):
    """A valid event that cannot apply to the current state of its cube.

    The fold raises it; pipelines record it (dead letter / rejected) with
    `reason` and go on. The event itself stays in the log.
    """

    def __init__(self, reason: str, *, cube_id: str, event_id: str | None = None) -> None:
        self.cube_id = cube_id
        self.event_id = event_id
        super().__init__(reason)

    @property
    def reason(self) -> str:
        return str(self)


class CubeNotFoundError(RejectedEventError):
    def __init__(self, cube_id: str, *, event_id: str | None = None) -> None:
        super().__init__(f"cube {cube_id!r} does not exist", cube_id=cube_id, event_id=event_id)


class CubeExistsError(RejectedEventError):
    def __init__(self, cube_id: str, *, event_id: str | None = None) -> None:
        super().__init__(f"cube {cube_id!r} already exists", cube_id=cube_id, event_id=event_id)


class MemoryNotFoundError(RejectedEventError):
    def __init__(self, cube_id: str, memory_id: str, *, event_id: str | None = None) -> None:
        self.memory_id = memory_id
        super().__init__(
            f"memory {memory_id!r} does not exist in cube {cube_id!r}", cube_id=cube_id, event_id=event_id
        )


class MemoryExistsError(RejectedEventError):
    def __init__(self, cube_id: str, memory_id: str, *, event_id: str | None = None) -> None:
        self.memory_id = memory_id
        super().__init__(
            f"memory {memory_id!r} already exists in cube {cube_id!r}", cube_id=cube_id, event_id=event_id
        )


class MemoryNotWritableError(RejectedEventError):
    """The memory exists but its lifecycle state forbids the change (e.g. updating a deleted memory)."""

    def __init__(self, cube_id: str, memory_id: str, status: str, *, event_id: str | None = None) -> None:
        self.memory_id = memory_id
        self.status = status
        super().__init__(
            f"memory {memory_id!r} in cube {cube_id!r} is {status} and cannot change",
            cube_id=cube_id,
            event_id=event_id,
        )


class PermissionDeniedError(RejectedEventError):
    def __init__(self, cube_id: str, *, principal: str, action: str, event_id: str | None = None) -> None:
        self.principal = principal
        self.action = action
        super().__init__(
            f"{principal} may not {action} in cube {cube_id!r}", cube_id=cube_id, event_id=event_id
        )


class VersionConflictError(RejectedEventError):
    """The event expected the cube at one version and found another (optimistic concurrency)."""

    def __init__(self, cube_id: str, *, expected: int, actual: int, event_id: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"cube {cube_id!r} is at version {actual}, event expected {expected}",
            cube_id=cube_id,
            event_id=event_id,
        )


class RollbackTargetError(RejectedEventError):
    def __init__(self, cube_id: str, *, to_version: int, current: int, event_id: str | None = None) -> None:
        self.to_version = to_version
        self.current = current
        super().__init__(
            f"cube {cube_id!r} cannot roll back to version {to_version}: "
            f"it must be between 1 and the current version {current}",
            cube_id=cube_id,
            event_id=event_id,
        )


class SealedContentError(MemlakeError):
    """Encrypted content could not be opened (missing or destroyed key, tampered ciphertext)."""

    def __init__(self, key_id: str, problem: str) -> None:
        self.key_id = key_id
        self.problem = problem
        super().__init__(f"sealed content under key {key_id!r}: {problem}")


class InfrastructureError(MemlakeError):
    """A service memlake depends on (broker, object store, index) failed."""


class LeaseHeldError(InfrastructureError):
    """Another process holds the lease this work needs (another compaction of the same lake,
    another writer of its derived tables)."""

    def __init__(self, lease: str, holder: str | None, expires_at: datetime | None) -> None:
        self.lease = lease
        self.holder = holder
        self.expires_at = expires_at
        if holder is None:
            problem = "another process took it at the same moment"
        else:
            until = expires_at.isoformat(timespec="seconds") if expires_at else "it is released"
            problem = f"held by {holder} until {until}"
        super().__init__(f"lease {lease!r} on the lake: {problem}; try again once it is free")


class LocalServiceError(InfrastructureError):
    """A service infra/ runs on this machine could not be installed, started or stopped;
    `log_file`, when there is one, says why."""

    def __init__(self, message: str, *, log_file: str | None = None) -> None:
        self.log_file = log_file
        super().__init__(message + (f" (see {log_file})" if log_file else ""))


class BrokerError(LocalServiceError):
    """The local broker could not be started or stopped."""


class ObjectStoreError(LocalServiceError):
    """The local S3-compatible store (for tests of `s3://` lakes) could not be installed or started."""


class DeltaReaderError(LocalServiceError):
    """A Delta reader tests hold the lake to (Spark, Polars) could not be installed, or its script failed."""


class BrokerUnavailableError(InfrastructureError):
    def __init__(self, bootstrap: str, problem: str) -> None:
        self.bootstrap = bootstrap
        self.problem = problem
        super().__init__(f"Kafka at {bootstrap} is unavailable: {problem}")


class TopicsNotReadyError(InfrastructureError):
    """Topics were created but never showed every partition with a leader in the broker's metadata.

    `pending` says, per topic, what was still missing when the wait ended.
    """

    def __init__(self, bootstrap: str, pending: dict[str, str], *, waited_s: float) -> None:
        self.bootstrap = bootstrap
        self.pending = dict(pending)
        self.topics = tuple(sorted(pending))
        self.waited_s = waited_s
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(pending.items()))
        super().__init__(f"topics at {bootstrap} not ready after {waited_s:.1f} s: {detail}")


class WriteNotConfirmedError(InfrastructureError):
    """The broker did not acknowledge a write; the event may or may not be in the log.

    `retriable`: the client's error was one that a later try may not meet (a timeout, a
    leader moving, the broker gone for a while), not one the write itself causes (too
    large, not authorized)."""

    def __init__(self, event_id: str, problem: str, *, retriable: bool = False) -> None:
        self.event_id = event_id
        self.problem = problem
        self.retriable = retriable
        super().__init__(f"event {event_id} was not confirmed by the broker: {problem}")

    @classmethod
    def from_client_error(cls, event_id: str, error: Exception) -> WriteNotConfirmedError:
        """From the Kafka client's error on the send: its class and text, and whether it is
        retriable (kafka-python's errors say so in `retriable`)."""
        return cls(
            event_id, f"{type(error).__name__}: {error}", retriable=bool(getattr(error, "retriable", False))
        )


class LakeError(InfrastructureError):
    """A Delta table could not be read or written."""

    def __init__(self, table: str, problem: str) -> None:
        self.table = table
        self.problem = problem
        super().__init__(f"lake table {table!r}: {problem}")


class ConcurrentWriteError(LakeError):
    """Another writer committed to the table first, and its commit conflicts with this one
    (the same batch's transaction id, or files this commit rewrote). Nothing of this commit
    landed; planning the batch again from the lake as it is now is safe."""


class StoreUnavailableError(LakeError):
    """The lake's store did not answer: a connection refused or reset, a timeout, or a server
    error, still failing after the store client's own retries (`max_retries`, `retry_timeout`
    in `lake.storage_options`). Whatever the call was doing is for a later try to do again:
    a commit is one atomic write of the log, and a batch is planned from what the lake holds."""


class TimeTravelError(LakeError):
    """A version or time the lake cannot show: not reached yet, before the start, or vacuumed."""

    def __init__(
        self, table: str, problem: str, *, cube_id: str | None = None, requested: object = None
    ) -> None:
        self.cube_id = cube_id
        self.requested = requested
        super().__init__(table, problem)


class DatasetError(MemlakeError):
    """An evaluation data set (e.g. a LoCoMo-format file) is missing or not in the expected format."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"data set {path}: {problem}")


class ModelLoadError(MemlakeError):
    """The base LLM (or an artifact made for it) could not be loaded from local files."""

    def __init__(self, model: str, problem: str) -> None:
        self.model = model
        self.problem = problem
        super().__init__(f"model {model!r}: {problem}")


class AuthenticationError(MemlakeError):
    """A request carried no API key, or one that is unknown or revoked."""

    def __init__(self, problem: str, *, key_id: str | None = None) -> None:
        self.problem = problem
        self.key_id = key_id
        super().__init__(problem)


class ConsistencyTimeoutError(MemlakeError):
    """A read asked to see a write, and the snapshot did not cover it in time."""

    def __init__(self, *, partition: int, offset: int, waited_s: float, snapshot_version: int) -> None:
        self.partition = partition
        self.offset = offset
        self.waited_s = waited_s
        self.snapshot_version = snapshot_version
        super().__init__(
            f"snapshot {snapshot_version} does not cover partition {partition} offset {offset} "
            f"after waiting {waited_s:.1f} s"
        )


class SnapshotUnavailableError(InfrastructureError):
    """The serving tier has no snapshot of the lake to answer from (yet)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"no snapshot to serve: {problem}")


class VectorIndexError(InfrastructureError):
    """The vector index (Milvus) failed."""

    def __init__(self, uri: str, problem: str) -> None:
        self.uri = uri
        self.problem = problem
        super().__init__(f"vector index at {uri}: {problem}")


class GenerationError(InfrastructureError):
    """The language model (local or an OpenAI-compatible endpoint) failed to answer."""

    def __init__(self, generator: str, problem: str) -> None:
        self.generator = generator
        self.problem = problem
        super().__init__(f"generator {generator}: {problem}")


class LimitExceededError(MemlakeError):
    """A request asked for more than the service allows (a query too long, too many cubes)."""

    def __init__(self, field: str, *, limit: int, actual: int) -> None:
        self.field = field
        self.limit = limit
        self.actual = actual
        super().__init__(f"{field}: {actual} is over the limit of {limit}")


class ArtifactError(InfrastructureError):
    """A KV cache or adapter artifact could not be stored, fetched or verified."""

    def __init__(self, uri: str, problem: str) -> None:
        self.uri = uri
        self.problem = problem
        super().__init__(f"artifact {uri}: {problem}")


class StaleArtifactError(MemlakeError):
    """An artifact no longer matches what it was made from (another base model, a changed memory)."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"artifact {uri} is stale: {reason}")


class TrainingError(MemlakeError):
    """A distillation, recitation or KV-cache job cannot go on for a cube."""

    def __init__(self, cube_id: str, problem: str) -> None:
        self.cube_id = cube_id
        self.problem = problem
        super().__init__(f"cube {cube_id!r}: {problem}")


class ErasureDeniedError(MemlakeError):
    """`erase` was asked by a principal the cubes' policies do not allow to erase (policy `erase_by`)."""

    def __init__(self, subject_id: str, *, principal: str, cubes: tuple[str, ...]) -> None:
        self.subject_id = subject_id
        self.principal = principal
        self.cubes = cubes
        super().__init__(
            f"{principal} may not erase subject {subject_id!r}: "
            f"denied by the policy of cube(s) {', '.join(cubes)}"
        )

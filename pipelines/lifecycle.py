"""Lifecycle rules of consolidation: expiry, retention and decay (MemOS MemLifecycle).

Pure: rows in, decisions out, no I/O. The lifecycle is

    active ──(decay, contradiction)──► archived ──(retention)──► expired
       └─────────────(TTL)────────────────┴──────────(TTL)─────────┘

and `deleted` / `erased` are reached by writers and erasure only. Each rule
reads the cube's policy first and the deployment's defaults
(`GovernanceSettings`) where the policy is silent:

- expiry: a memory expires when `now >= expires_at`; `expires_at` is what
  the fold stored (the memory's own TTL, or the cube's TTL when it was
  added). A memory without one, in a cube whose policy now has a TTL,
  expires at `created_at + policy.ttl_seconds`.
- retention: an archived memory expires `policy.retention_days` after it was
  archived (its last change).
- decay: `effective = priority * 0.5 ** (idle_days / half_life_days)` where
  `idle_days` counts from the later of the last read and the last change;
  an active plaintext memory whose effective priority is below the
  threshold is archived. Pinned memories never decay.
"""

from __future__ import annotations

__all__ = [
    "Rule",
    "Decision",
    "MemoryRow",
    "CubePolicy",
    "effective_priority",
    "expiry_of",
    "lifecycle_decisions",
]

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from memlake.model import MemoryKind, MemoryStatus, Policy

Rule = Literal["expire", "retain", "merge", "contradiction", "decay"]
# The order rules run in, and the order their events are emitted in within a cube.
RULE_ORDER: dict[Rule, int] = {"expire": 0, "retain": 1, "merge": 2, "contradiction": 3, "decay": 4}

_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """The columns of one `memories` row that consolidation decides on."""

    cube_id: str
    memory_id: str
    version: int
    kind: MemoryKind
    status: MemoryStatus
    memory_type: str
    tags: tuple[str, ...]
    subject_id: str | None
    visibility: str
    priority: float
    pinned: bool
    sealed: bool
    expires_at: datetime | None
    last_accessed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    text: str | None = None  # clear text, or the opened sealed text; None when unreadable

    @property
    def last_touched(self) -> datetime:
        if self.last_accessed_at is None:
            return self.updated_at
        return max(self.updated_at, self.last_accessed_at)

    @property
    def ref(self) -> tuple[str, int]:
        return (self.memory_id, self.version)


@dataclass(frozen=True, slots=True)
class CubePolicy:
    """A cube's policy with the deployment's defaults filled in where it is silent."""

    ttl_seconds: int | None
    retention_days: int | None
    half_life_days: float
    archive_below: float

    @classmethod
    def of(cls, policy: Policy, *, half_life_days: float, archive_below: float) -> CubePolicy:
        return cls(
            ttl_seconds=policy.ttl_seconds,
            retention_days=policy.retention_days,
            half_life_days=policy.decay_half_life_days or half_life_days,
            archive_below=(
                archive_below if policy.archive_below_priority is None else policy.archive_below_priority
            ),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """One thing consolidation decided about one memory (the survivor, for a merge)."""

    rule: Rule
    cube_id: str
    memory_id: str
    version: int  # the version decided on: the decision is about that version only
    decided_on: datetime  # when that version was made (gives the event id its time part)
    reason: str
    # merge: every member (survivor included) as (memory_id, version), and whose content survives
    sources: tuple[tuple[str, int], ...] = field(default=())
    content_from: str | None = None

    def __reduce__(self) -> tuple[type[Decision], tuple[object, ...]]:
        # Beam pickles results between stages; this is 5x cheaper than the dataclass default.
        return (
            Decision,
            (
                self.rule,
                self.cube_id,
                self.memory_id,
                self.version,
                self.decided_on,
                self.reason,
                self.sources,
                self.content_from,
            ),
        )

    @property
    def sort_key(self) -> tuple[str, int, str]:
        return (self.cube_id, RULE_ORDER[self.rule], self.memory_id)

    def describe(self) -> str:
        if self.rule == "merge":
            merged = ", ".join(m for m, _ in self.sources if m != self.memory_id)
            return f"{self.cube_id}: merge {merged} into {self.memory_id} ({self.reason})"
        verb = {"expire": "expire", "retain": "expire", "contradiction": "archive", "decay": "archive"}
        return f"{self.cube_id}: {verb[self.rule]} {self.memory_id} v{self.version} ({self.reason})"


def effective_priority(row: MemoryRow, now: datetime, half_life_days: float) -> float:
    """The decayed priority of a memory at `now` (the formula in the module docstring)."""
    idle_days = max(0.0, (now - row.last_touched).total_seconds() / _DAY_S)
    return row.priority * float(0.5 ** (idle_days / half_life_days))


def expiry_of(row: MemoryRow, policy: CubePolicy) -> datetime | None:
    if row.expires_at is not None:
        return row.expires_at
    if policy.ttl_seconds is not None:
        return row.created_at + timedelta(seconds=policy.ttl_seconds)
    return None


def _decision(rule: Rule, row: MemoryRow, reason: str) -> Decision:
    return Decision(rule, row.cube_id, row.memory_id, row.version, row.updated_at, reason)


def lifecycle_decisions(
    rows: Iterable[MemoryRow],
    policy: CubePolicy,
    now: datetime,
    *,
    exclude: frozenset[str] = frozenset(),
    stages: frozenset[Rule] = frozenset({"expire", "retain", "decay"}),
) -> list[Decision]:
    """Expiry, retention and decay for one cube's rows; `exclude` names memories already decided on."""
    out: list[Decision] = []
    for row in rows:
        if row.memory_id in exclude or row.status not in (MemoryStatus.ACTIVE, MemoryStatus.ARCHIVED):
            continue
        expiry = expiry_of(row, policy)
        if "expire" in stages and expiry is not None and expiry <= now:
            out.append(_decision("expire", row, f"ttl: expired at {expiry.isoformat()}"))
            continue
        if row.status is MemoryStatus.ARCHIVED:
            if "retain" in stages and policy.retention_days is not None:
                until = row.updated_at + timedelta(days=policy.retention_days)
                if until <= now:
                    out.append(
                        _decision(
                            "retain", row, f"retention: archived longer than {policy.retention_days} days"
                        )
                    )
            continue
        if (
            "decay" in stages
            and not row.pinned
            and row.kind is MemoryKind.PLAINTEXT
            and policy.archive_below > 0
        ):
            value = effective_priority(row, now, policy.half_life_days)
            if value < policy.archive_below:
                out.append(
                    _decision(
                        "decay",
                        row,
                        f"decay: priority {row.priority:.3g} decayed to {value:.3g} "
                        f"< {policy.archive_below:.3g} (half-life {policy.half_life_days:g} d)",
                    )
                )
    return out

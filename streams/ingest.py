"""Bulk ingest from JSON Lines: the line formats and the report.

Each non-blank line of the file is one of:

* a **full event**, exactly as it sits on the log (it has a `"type"`, e.g.
  `"memory.added"`, and its own `event_id`; older schema versions are
  upcast). Re-ingesting the same file is harmless downstream: the event ids
  are the idempotency keys.
* a **compact line** that products find easier to export (it has an `"op"`):

  | op            | required                | optional                                  |
  |---------------|-------------------------|-------------------------------------------|
  | `create_cube` | `cube`, `name`          | `owner`, `writers`, `readers`, `policy`,  |
  |               |                         | `subject`                                 |
  | `add`         | `cube`, `text`          | `memory_id`, `subject`, and the memory    |
  |               |                         | fields below                              |
  | `update`      | `cube`, `memory_id`     | `text` and the memory fields below        |
  | `delete`      | `cube`, `memory_id`     | `reason`                                  |
  | `access`      | `cube`, `memory_ids`    | `request_kind`, `request_id`              |
  | `rollback`    | `cube`, `to_version`    | `reason`                                  |
  | `policy`      | `cube`, `policy`        |                                           |
  | `acl`         | `cube`, `acl`           |                                           |

  Memory fields: `memory_type`, `tags`, `ttl_seconds`, `priority`, `pinned`,
  `visibility`, `sensitivity`.

  Every compact line may also carry `actor` (`"kind:id"`, default: the
  client's actor), `ref` (the product's own reference, e.g. a dialogue turn),
  `at` (ISO 8601 time with a zone, default: now), `event_id` (a UUID; give it
  to make re-ingesting idempotent) and `expected_version`. An `add` without
  `memory_id` gets a fresh `m-<uuid7>`.

A line that is neither, or whose event is invalid, is reported with its line
number and reason and sent to the dead-letter topic (stage `ingest`); the
other lines are sent.
"""

from __future__ import annotations

__all__ = ["IngestProblem", "IngestReport", "parse_line", "COMPACT_OPS"]

import json
from dataclasses import dataclass, field
from typing import Any

from memlake.errors import FieldProblem, InvalidEventError, one_line
from memlake.events import MAX_EVENT_BYTES, Event, parse_event_dict
from memlake.ids import uuid7
from memlake.model import Actor, utcnow

_COMMON = frozenset({"op", "cube", "actor", "ref", "at", "event_id", "expected_version"})
_MEMORY_FIELDS = ("memory_type", "tags", "ttl_seconds", "priority", "pinned", "visibility", "sensitivity")

# op -> (event type, required fields, optional fields)
COMPACT_OPS: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    "create_cube": (
        "cube.created",
        frozenset({"name"}),
        frozenset({"owner", "writers", "readers", "policy", "subject"}),
    ),
    "add": ("memory.added", frozenset({"text"}), frozenset({"memory_id", "subject", *_MEMORY_FIELDS})),
    "update": ("memory.updated", frozenset({"memory_id"}), frozenset({"text", *_MEMORY_FIELDS})),
    "delete": ("memory.deleted", frozenset({"memory_id"}), frozenset({"reason"})),
    "access": ("memory.accessed", frozenset({"memory_ids"}), frozenset({"request_kind", "request_id"})),
    "rollback": ("cube.rolled_back", frozenset({"to_version"}), frozenset({"reason"})),
    "policy": ("cube.policy_changed", frozenset({"policy"}), frozenset()),
    "acl": ("cube.acl_changed", frozenset({"acl"}), frozenset()),
}


@dataclass(frozen=True, slots=True)
class IngestProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(slots=True)
class IngestReport:
    path: str
    lines: int = 0
    sent: int = 0
    problems: list[IngestProblem] = field(default_factory=list)
    # The last offset written per partition: what a read-your-writes wait needs.
    last_offsets: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.path}: {self.lines} lines, {self.sent} events sent, {len(self.problems)} refused"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def parse_line(raw: bytes, *, actor: Actor, product: str) -> Event:
    """One line of an ingest file as a validated event; `InvalidEventError` names what is wrong."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEventError(
            [FieldProblem("<line>", f"{len(raw)} bytes is over the limit of {MAX_EVENT_BYTES}")], raw=raw
        )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidEventError([FieldProblem("<line>", f"not valid JSON: {e}")], raw=raw) from e
    if not isinstance(data, dict):
        raise InvalidEventError([FieldProblem("<line>", "must be a JSON object")], raw=raw)
    if "op" in data:
        return _compact(data, raw=raw, actor=actor, product=product)
    if "type" in data:
        return parse_event_dict(data, raw=raw)
    raise InvalidEventError(
        [FieldProblem("<line>", "neither a full event (no 'type') nor a compact line (no 'op')")], raw=raw
    )


def _compact(data: dict[str, Any], *, raw: bytes, actor: Actor, product: str) -> Event:
    op = data.get("op")
    if op not in COMPACT_OPS:
        known = ", ".join(COMPACT_OPS)
        raise InvalidEventError([FieldProblem("op", f"unknown op {op!r} (known: {known})")], raw=raw)
    event_type, required, optional = COMPACT_OPS[op]
    problems = [FieldProblem(name, "required") for name in sorted({"cube", *required} - data.keys())]
    problems += [
        FieldProblem(name, f"not a field of op {op!r}")
        for name in sorted(data.keys() - _COMMON - required - optional)
    ]
    if problems:
        raise InvalidEventError(problems, event_type=event_type, raw=raw)
    body = {k: v for k, v in data.items() if k not in _COMMON}
    memory_id = body.pop("memory_id", None)
    if op == "add" and memory_id is None:
        memory_id = f"m-{uuid7().hex}"
    if "text" in body:
        body["content"] = {"text": body.pop("text")}
    if "subject" in body:
        body["subject_id"] = body.pop("subject")
    envelope: dict[str, Any] = {
        "event_id": data.get("event_id") or str(uuid7()),
        "type": event_type,
        "cube_id": data["cube"],
        "occurred_at": data.get("at") or utcnow().isoformat(),
        "actor": _actor(data.get("actor"), actor, raw),
        "source": {"product": product, **({"ref": data["ref"]} if data.get("ref") is not None else {})},
        "payload": body,
    }
    if memory_id is not None:
        envelope["memory_id"] = memory_id
    if data.get("expected_version") is not None:
        envelope["expected_version"] = data["expected_version"]
    try:
        return parse_event_dict(envelope, raw=raw)
    except InvalidEventError as e:
        # Name the fields as the line spells them, not as the envelope does.
        problems = [FieldProblem(_line_field(p.field), p.problem) for p in e.problems]
        raise InvalidEventError(problems, event_type=event_type, raw=raw) from e


def _actor(value: object, default: Actor, raw: bytes) -> dict[str, Any]:
    if value is None:
        return default.model_dump(mode="json")
    if not isinstance(value, str):
        raise InvalidEventError([FieldProblem("actor", "must be a 'kind:id' string")], raw=raw)
    try:
        return Actor.parse(value).model_dump(mode="json")
    except ValueError as e:  # pydantic's ValidationError included
        raise InvalidEventError([FieldProblem("actor", one_line(e))], raw=raw) from e


_RENAMES = {"cube_id": "cube", "occurred_at": "at", "source.ref": "ref", "payload.subject_id": "subject"}


def _line_field(name: str) -> str:
    if name in _RENAMES:
        return _RENAMES[name]
    if name.startswith("payload.content"):
        return "text"
    return name.removeprefix("payload.")

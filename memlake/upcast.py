"""Upcasting: old event schemas are rewritten, step by step, into the current one.

The log is never rewritten, so every schema version ever written must stay
readable. Each step is a small pure function from version N to N+1 of the
raw (decoded JSON) event; `upcast` chains them.

Schema history:
- v1: `actor` was a principal string (`"user:alice"`); plaintext payloads of
  `memory.added`, `memory.updated` and `memory.merged` carried clear `text`.
- v2: `actor` is an object `{kind, id}`; content travels as
  `content: {text} | {sealed}` so that it can be encrypted per subject.
"""

from __future__ import annotations

__all__ = ["CURRENT_SCHEMA", "UPCASTERS", "upcast", "upcast_v1_v2"]

from collections.abc import Callable
from typing import Any

from memlake.errors import FieldProblem, InvalidEventError, UnknownSchemaError

CURRENT_SCHEMA = 2

RawEvent = dict[str, Any]


def upcast_v1_v2(event: RawEvent) -> RawEvent:
    out = dict(event)
    actor = out.get("actor")
    if isinstance(actor, str):
        kind, sep, ident = actor.partition(":")
        out["actor"] = {"kind": kind, "id": ident} if sep else {"kind": "user", "id": actor}
    payload = out.get("payload")
    if isinstance(payload, dict) and out.get("type") in {"memory.added", "memory.updated", "memory.merged"}:
        payload = dict(payload)
        if "text" in payload:
            payload["content"] = {"text": payload.pop("text")}
        out["payload"] = payload
    out["schema"] = 2
    return out


UPCASTERS: dict[int, Callable[[RawEvent], RawEvent]] = {1: upcast_v1_v2}


def upcast(event: RawEvent, *, raw: bytes | None = None) -> RawEvent:
    """Bring a raw event up to `CURRENT_SCHEMA`; refuse versions from the future."""
    version = event.get("schema", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidEventError([FieldProblem("schema", f"must be an integer, got {version!r}")], raw=raw)
    if version > CURRENT_SCHEMA or version < 1:
        raise UnknownSchemaError(version, supported=CURRENT_SCHEMA, raw=raw)
    while version < CURRENT_SCHEMA:
        event = UPCASTERS[version](event)
        version = event["schema"]
    return event

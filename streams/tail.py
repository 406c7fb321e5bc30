"""Following the event log as it grows, and printing events so people can read them.

`follow` yields every record of the events topic from now on (or from the
beginning), parsed; records that are not valid events are yielded too, with
their reason, so a person watching sees everything the log holds. The
`format_*` functions make one readable line of an event or a dead letter.
"""

from __future__ import annotations

__all__ = ["Tailed", "LogTail", "follow", "format_event", "format_tailed", "format_dead_letter"]

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import singledispatch
from typing import Any

from memlake.errors import BrokerUnavailableError, InvalidEventError, SealedContentError
from memlake.events import (
    CubeAclChanged,
    CubeCreated,
    CubePolicyChanged,
    CubeRolledBack,
    Event,
    MemoryAccessed,
    MemoryAdded,
    MemoryArchived,
    MemoryDeleted,
    MemoryExpired,
    MemoryMerged,
    MemoryTransformed,
    MemoryUpdated,
    SubjectErased,
    parse_event,
)
from memlake.model import Content
from memlake.settings import KafkaSettings
from streams.broker_calls import broker_calls
from streams.dead_letters import DeadLetter
from streams.reader import Record

Opener = Callable[[Content], str]
_TEXT_WIDTH = 100


@dataclass(frozen=True, slots=True)
class Tailed:
    """One record of the log as followed: the event, or why it is not one."""

    record: Record
    event: Event | None
    error: InvalidEventError | None = None


class LogTail:
    """Follows the events topic. Entering positions it (at the end, or the beginning),
    so everything written after `__enter__` returns is seen; iterating yields records
    until `max_events` or `idle_timeout_s`. The constructor does no I/O."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        from_beginning: bool = False,
        cube_id: str | None = None,
        max_events: int | None = None,
        idle_timeout_s: float | None = None,
        poll_ms: int = 500,
    ) -> None:
        self._settings = settings
        self._from_beginning = from_beginning
        self._cube_id = cube_id
        self._max_events = max_events
        self._idle_timeout_s = idle_timeout_s
        self._poll_ms = poll_ms
        self._consumer: Any = None

    def __enter__(self) -> LogTail:
        from kafka import KafkaConsumer, TopicPartition

        settings = self._settings
        with broker_calls(settings.bootstrap, "connecting a consumer"):
            consumer = KafkaConsumer(
                **settings.client_options(), enable_auto_commit=False, auto_offset_reset="earliest"
            )
        try:
            with broker_calls(settings.bootstrap, f"seeking in {settings.events_topic!r}"):
                tps = [TopicPartition(settings.events_topic, p) for p in _partitions(consumer, settings)]
                consumer.assign(tps)
                if self._from_beginning:
                    consumer.seek_to_beginning(*tps)
                else:
                    for tp, end in consumer.end_offsets(tps).items():
                        consumer.seek(tp, end)
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer
        return self

    def __exit__(self, *exc: object) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __iter__(self) -> Iterator[Tailed]:
        if self._consumer is None:
            raise RuntimeError("enter the LogTail (`with LogTail(...) as tail:`) before iterating")
        consumer = self._consumer
        yielded = 0
        last_seen = time.monotonic()
        wanted_key = self._cube_id.encode() if self._cube_id is not None else None
        with broker_calls(self._settings.bootstrap, f"reading {self._settings.events_topic!r}"):
            while self._max_events is None or yielded < self._max_events:
                batches = consumer.poll(timeout_ms=self._poll_ms)
                messages = sorted(
                    (m for batch in batches.values() for m in batch), key=lambda m: (m.timestamp, m.partition)
                )
                if not messages:
                    if (
                        self._idle_timeout_s is not None
                        and time.monotonic() - last_seen > self._idle_timeout_s
                    ):
                        return
                    continue
                last_seen = time.monotonic()
                for message in messages:
                    if wanted_key is not None and message.key is not None and message.key != wanted_key:
                        continue
                    tailed = _parse(
                        Record(
                            topic=message.topic,
                            partition=message.partition,
                            offset=message.offset,
                            key=message.key,
                            value=message.value,
                            timestamp_ms=message.timestamp,
                        )
                    )
                    if (
                        self._cube_id is not None
                        and tailed.event is not None
                        and tailed.event.cube_id != self._cube_id
                    ):
                        continue
                    yield tailed
                    yielded += 1
                    if self._max_events is not None and yielded >= self._max_events:
                        return


def follow(
    settings: KafkaSettings,
    *,
    from_beginning: bool = False,
    cube_id: str | None = None,
    max_events: int | None = None,
    idle_timeout_s: float | None = None,
    poll_ms: int = 500,
) -> Iterator[Tailed]:
    """Records of the events topic as they arrive (all partitions), until `max_events`
    have been yielded or nothing arrived for `idle_timeout_s`; forever otherwise.

    With `cube_id`, only that cube's records (matched on the key, then on the event).
    """
    with LogTail(
        settings,
        from_beginning=from_beginning,
        cube_id=cube_id,
        max_events=max_events,
        idle_timeout_s=idle_timeout_s,
        poll_ms=poll_ms,
    ) as tail:
        yield from tail


def _partitions(consumer: Any, settings: KafkaSettings) -> list[int]:
    deadline = time.monotonic() + min(10.0, settings.request_timeout_ms / 1000)
    while time.monotonic() < deadline:
        found = consumer.partitions_for_topic(settings.events_topic)
        if found:
            return sorted(found)
        time.sleep(0.1)
    raise BrokerUnavailableError(
        settings.bootstrap, f"topic {settings.events_topic!r} does not exist (run `memlake up`)"
    )


def _parse(record: Record) -> Tailed:
    try:
        return Tailed(record, parse_event(record.value or b""))
    except InvalidEventError as e:
        return Tailed(record, None, e)


# --- formatting -------------------------------------------------------------------


def format_tailed(tailed: Tailed, *, opener: Opener | None = None) -> str:
    where = f"p{tailed.record.partition}@{tailed.record.offset}"
    if tailed.event is None:
        reason = tailed.error.reason if tailed.error else "no event"
        return f"{where:<9} INVALID  {reason}"
    return f"{where:<9} {format_event(tailed.event, opener=opener)}"


def format_event(event: Event, *, opener: Opener | None = None) -> str:
    """One line: when, which cube, what happened, by whom, and the gist of the payload."""
    when = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    target = f" {event.memory_id}" if event.memory_id else ""
    head = f"{when}  {event.cube_id}  {event.type}{target}  by {event.actor.principal}"
    detail = _detail(event, opener)
    return f"{head}  {detail}" if detail else head


@singledispatch
def _detail(event: Any, opener: Opener | None) -> str:
    return ""


@_detail.register
def _(event: CubeCreated, opener: Opener | None) -> str:
    p = event.payload
    owner = p.owner or event.actor.principal
    extra = f" subject={p.subject_id}" if p.subject_id else ""
    seal = " encrypted" if p.policy.encrypt_content else ""
    return f"name={p.name!r} owner={owner}{extra}{seal}"


@_detail.register
def _(event: CubePolicyChanged, opener: Opener | None) -> str:
    changed = event.payload.policy.model_dump(exclude_defaults=True, mode="json")
    return "policy " + (" ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "reset to defaults")


@_detail.register
def _(event: CubeAclChanged, opener: Opener | None) -> str:
    acl = event.payload.acl
    return f"owner={acl.owner} writers={list(acl.writers)} readers={list(acl.readers)}"


@_detail.register
def _(event: CubeRolledBack, opener: Opener | None) -> str:
    reason = f" ({event.payload.reason})" if event.payload.reason else ""
    return f"to version {event.payload.to_version}{reason}"


@_detail.register
def _(event: MemoryAdded, opener: Opener | None) -> str:
    p = event.payload
    body = _content(p.content, opener) if p.content else f"artifact {p.artifact.uri if p.artifact else '?'}"
    return f"[{p.memory_type}] {body}" + "".join(f" #{t}" for t in p.tags)


@_detail.register
def _(event: MemoryUpdated, opener: Opener | None) -> str:
    p = event.payload
    parts = [_content(p.content, opener)] if p.content else []
    parts += [f"{name}={getattr(p, name)}" for name in sorted(p.model_fields_set - {"content"})]
    return " ".join(parts)


@_detail.register
def _(event: MemoryMerged, opener: Opener | None) -> str:
    return f"from {', '.join(event.payload.sources)}: {_content(event.payload.content, opener)}"


@_detail.register
def _(event: MemoryAccessed, opener: Opener | None) -> str:
    return f"{event.payload.request_kind} returned {', '.join(event.payload.memory_ids)}"


@_detail.register
def _(event: MemoryTransformed, opener: Opener | None) -> str:
    p = event.payload
    sources = ", ".join(f"{s.memory_id}@v{s.version}" for s in p.sources)
    output = p.artifact.uri if p.artifact else _content(p.content, opener) if p.content else "?"
    return f"{p.transformation.value} of {sources} -> {output}"


@_detail.register
def _(event: SubjectErased, opener: Opener | None) -> str:
    return f"subject {event.payload.subject_id} erased"


@_detail.register
def _(event: MemoryDeleted, opener: Opener | None) -> str:
    return f"({event.payload.reason})" if event.payload.reason else ""


@_detail.register
def _(event: MemoryExpired, opener: Opener | None) -> str:
    return f"({event.payload.reason})"


@_detail.register
def _(event: MemoryArchived, opener: Opener | None) -> str:
    return f"({event.payload.reason})"


def _content(content: Content, opener: Opener | None) -> str:
    note = ""
    if content.sealed is not None:
        if opener is None:
            return f"<sealed for {content.sealed.subject_id}>"
        try:
            text = opener(content)
        except SealedContentError:
            return f"<erased: the key of {content.sealed.subject_id} was destroyed>"
        note = f" (sealed for {content.sealed.subject_id})"
    else:
        text = content.text or ""
    text = " ".join(text.split())
    if len(text) > _TEXT_WIDTH:
        text = text[: _TEXT_WIDTH - 1] + "…"
    return (repr(text) if "'" not in text else f'"{text}"') + note


def format_dead_letter(letter: DeadLetter) -> str:
    """One line per dead letter: when, which stage, where from, why, and the start of the bytes."""
    when = datetime.fromisoformat(letter.failed_at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if letter.source_file is not None:
        origin = f"{letter.source_file}:{letter.source_offset}"
    elif letter.source_topic is not None:
        origin = f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
    else:
        origin = "?"
    original = letter.original or b""
    shown = original[:60].decode("utf-8", errors="replace").replace("\n", " ")
    more = "…" if len(original) > 60 else ""
    return f"{when}  {letter.stage:<11} {origin}  {letter.reason}  | {shown}{more}"

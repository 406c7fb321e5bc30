"""Properties of the fold and of serialisation over generated event sequences (hypothesis)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlake.events import Event, parse_event, parse_event_dict, serialize_event
from memlake.fold import CubeState, fold, project
from memlake.model import Actor, ActorKind
from tests.memlake import builders as b

MEMORY_IDS = ("m0", "m1", "m2", "m3")
SUBJECTS = ("bob", "carol")
ACTORS = (b.OWNER, b.OWNER, b.OWNER, b.WRITER, b.READER, b.STRANGER, b.SYSTEM)
TEXT = st.text(alphabet="abcdefghij éü漢", min_size=1, max_size=12).filter(lambda t: bool(t.strip()))

_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

memory_id = st.sampled_from(MEMORY_IDS)
actor = st.sampled_from(ACTORS)

# Each operation is a (name, arguments) pair; `_to_event` turns it into an event at a time.
operation = st.one_of(
    st.tuples(
        st.just("add"),
        st.fixed_dictionaries(
            {"memory_id": memory_id, "text": TEXT, "actor": actor},
            optional={
                "tags": st.lists(st.sampled_from(["pref", "fact", "plan"]), max_size=2),
                "priority": st.floats(0, 1),
                "ttl_seconds": st.integers(1, 10_000),
                "subject_id": st.sampled_from(SUBJECTS),
            },
        ),
    ),
    st.tuples(
        st.just("update"),
        st.fixed_dictionaries(
            {"memory_id": memory_id, "actor": actor},
            optional={
                "content": TEXT.map(lambda t: {"text": t}),
                "priority": st.floats(0, 1),
                "pinned": st.booleans(),
            },
        ).filter(lambda d: len(d) > 2),
    ),
    st.tuples(st.just("delete"), st.fixed_dictionaries({"memory_id": memory_id, "actor": actor})),
    st.tuples(st.just("archive"), st.fixed_dictionaries({"memory_id": memory_id, "actor": actor})),
    st.tuples(st.just("expire"), st.fixed_dictionaries({"memory_id": memory_id, "actor": actor})),
    st.tuples(
        st.just("access"),
        st.fixed_dictionaries({"ids": st.lists(memory_id, min_size=1, max_size=3), "actor": actor}),
    ),
    st.tuples(
        st.just("merge"),
        st.fixed_dictionaries(
            {
                "into": memory_id,
                "sources": st.lists(memory_id, min_size=1, max_size=3),
                "text": TEXT,
                "actor": actor,
            }
        ),
    ),
    st.tuples(
        st.just("transform"),
        st.fixed_dictionaries(
            {"output": st.sampled_from(("a0", "a1")), "source": memory_id, "version": st.integers(1, 3)}
        ),
    ),
    st.tuples(
        st.just("policy"),
        st.fixed_dictionaries(
            {"actor": actor},
            optional={
                "ttl_seconds": st.integers(1, 10_000),
                "rollback_by": st.sampled_from(["owner", "writers"]),
            },
        ),
    ),
    st.tuples(
        st.just("acl"),
        st.fixed_dictionaries(
            {"actor": actor, "writers": st.lists(st.sampled_from(["agent:helper", "user:carol"]), max_size=2)}
        ),
    ),
    st.tuples(st.just("rollback"), st.fixed_dictionaries({"to": st.integers(1, 12), "actor": actor})),
    st.tuples(
        st.just("erase"), st.fixed_dictionaries({"subject": st.sampled_from(SUBJECTS), "actor": actor})
    ),
)


def _to_event(op: tuple[str, dict[str, Any]], at: datetime) -> Event:
    name, a = op
    who: Actor = a.get("actor", b.SYSTEM)
    if name == "add":
        extra = {k: v for k, v in a.items() if k not in {"memory_id", "text", "actor"}}
        return b.added(a["memory_id"], a["text"], at=at, actor=who, **extra)
    if name == "update":
        changes = {k: v for k, v in a.items() if k not in {"memory_id", "actor"}}
        return b.updated(a["memory_id"], at=at, actor=who, **changes)
    if name == "delete":
        return b.deleted(a["memory_id"], at=at, actor=who)
    if name == "archive":
        return b.archived(a["memory_id"], at=at, actor=who)
    if name == "expire":
        return b.expired(a["memory_id"], at=at, actor=who)
    if name == "access":
        return b.accessed(*a["ids"], at=at, actor=who)
    if name == "merge":
        return b.merged(a["into"], a["sources"], a["text"], at=at, actor=who)
    if name == "transform":
        return b.transformed(a["output"], [(a["source"], a["version"])], at=at)
    if name == "policy":
        return b.policy_changed(at=at, actor=who, **{k: v for k, v in a.items() if k != "actor"})
    if name == "acl":
        return b.acl_changed(writers=tuple(a["writers"]), readers=(b.READER.principal,), at=at, actor=who)
    if name == "rollback":
        return b.rolled_back(a["to"], at=at, actor=who)
    assert name == "erase"
    return b.erased(a["subject"], at=at, actor=who)


def _sequence(ops: list[tuple[str, dict[str, Any]]]) -> list[Event]:
    start = b.T0
    events = [b.created(at=start)]
    events.extend(_to_event(op, start + timedelta(seconds=i + 1)) for i, op in enumerate(ops))
    return events


sequences = st.lists(operation, max_size=25).map(_sequence)
sequences_without_erasure = st.lists(operation.filter(lambda op: op[0] != "erase"), max_size=25).map(
    _sequence
)


@_settings
@given(sequences)
def test_folding_a_sequence_is_deterministic_and_refolding_changes_nothing(events: list[Event]) -> None:
    once = fold(CubeState(), events)
    assert project(events) == once.state
    again = fold(once.state, events)
    assert again.state == once.state
    # Every event of the sequence was judged once already: a redelivered batch is all duplicates.
    assert again.applied == ()
    assert again.rejected == ()


@_settings
@given(sequences, st.data())
def test_duplicates_change_nothing(events: list[Event], data: st.DataObject) -> None:
    """Any event delivered again, anywhere after its first copy, changes nothing: applied
    events are skipped, refused ones stay refused (an event is judged once)."""
    once = project(events)
    noisy = list(events)
    copies = data.draw(st.lists(st.integers(0, len(events) - 1), max_size=8), label="copies of")
    for index in copies:
        original = events[index]
        later = data.draw(st.integers(noisy.index(original) + 1, len(noisy)), label="at")
        noisy.insert(later, original)
    assert project(noisy) == once
    # Each copy was of an event already judged; copies of refused events are the ones a
    # naive "skip what was applied" would let through once their cube had changed.
    assert all(str(events[i].event_id) in once.applied | once.refused for i in copies)


@_settings
@given(sequences_without_erasure, st.data())
def test_after_a_rollback_to_n_the_cube_equals_its_view_at_n(
    events: list[Event], data: st.DataObject
) -> None:
    result = fold(CubeState(), events)
    state = result.state
    target = data.draw(st.integers(1, state.version), label="to_version")
    # The state at version N is the fold of the events up to the one that produced N.
    end = next(i for i, event in enumerate(events) if (event, target) in result.applied)
    at_target = project(events[: end + 1])
    assert at_target.version == target
    rollback = b.rolled_back(target, at=b.T0 + timedelta(days=1), actor=b.OWNER)
    after = fold(state, [rollback])
    assert not after.rejected
    assert after.state.version == state.version + 1
    assert after.state.view() == at_target.view()


@_settings
@given(sequences, st.integers(0, 25))
def test_touched_names_every_memory_the_fold_changed(events: list[Event], cut: int) -> None:
    """Callers compare only `touched` memories with the prior state (a kept state holds
    thousands): a memory changed but not named there would never reach the lake."""
    prior = project(events[:cut])
    result = fold(prior, events[cut:])
    changed = {m for m, memory in result.state.memories.items() if prior.memories.get(m) != memory}
    changed |= {m for m, versions in result.state.history.items() if prior.history.get(m) != versions}
    assert changed <= set(result.touched)
    assert len(result.touched) == len(set(result.touched))


@_settings
@given(sequences)
def test_every_generated_event_round_trips_through_bytes(events: list[Event]) -> None:
    for event in events:
        raw = serialize_event(event)
        assert parse_event(raw) == event
        assert serialize_event(parse_event(raw)) == raw
        # The one-pass decoder (current schema) and the general one (dict, upcast) agree.
        assert parse_event(raw) == parse_event_dict(json.loads(raw))


@_settings
@given(
    event_id=st.uuids(),
    cube_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,20}\Z"),
    memory_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._\-]{0,20}\Z"),
    text=st.text(min_size=1, max_size=200).filter(lambda t: bool(t.strip())),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    actor_kind=st.sampled_from(list(ActorKind)),
    tags=st.lists(st.text(min_size=1, max_size=10), max_size=3),
    priority=st.floats(0, 1),
)
def test_arbitrary_field_values_round_trip_exactly(
    *,
    event_id: uuid.UUID,
    cube_id: str,
    memory_id: str,
    text: str,
    at: datetime,
    actor_kind: ActorKind,
    tags: list[str],
    priority: float,
) -> None:
    event = b.added(
        memory_id, text, at=at, actor=Actor(kind=actor_kind, id="x"), tags=tags, priority=priority
    ).model_copy(update={"event_id": event_id, "cube_id": cube_id})
    raw = serialize_event(event)
    again = parse_event(raw)
    assert again == event
    assert serialize_event(again) == raw
    assert again == parse_event_dict(json.loads(raw))

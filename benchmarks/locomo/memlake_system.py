"""memlake under test, through its real path: SDK events → Kafka → Beam land + materialize → Delta
→ the serving snapshot and Milvus index → hybrid retrieval + the memory scheduler.

Each conversation becomes one cube (`locomo-<sample_id>`); each turn one
plaintext memory whose source keeps the dialogue id (`source.ref = "D3:7"`)
and the session (`source.attributes`: session number, its date as written,
the speaker), and whose event occurred at the session's date, so that the
memory's `created_at` is when it was said. Retrieval results are mapped back
to turns through that source only.

Questions are asked at the end of the conversation: the scheduler's "now" is
a day after the last session, which is what its recency component sees.
"""

from __future__ import annotations

__all__ = ["MemlakeSystem", "MemlakeView", "cube_id_of", "turn_events"]

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from benchmarks.locomo.dataset import Conversation, Turn
from benchmarks.locomo.systems import Retrieved
from memlake.errors import InfrastructureError
from memlake.events import CubeCreated, Event, MemoryAdded, new_event
from memlake.model import Actor, Source
from memlake.settings import Settings

if TYPE_CHECKING:
    from serving.embeddings import Embedder
    from serving.generation import Generator

_PRODUCT = "locomo"
# The token budget used to read the scheduler's whole ranking (every candidate fits).
_UNBOUNDED_BUDGET = 1_000_000


def cube_id_of(conversation: Conversation) -> str:
    return f"locomo-{conversation.sample_id}"


def _occurred_at(turn: Turn) -> datetime:
    base = turn.session_date or datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=turn.session)
    # Turns of one session a second apart, so that the log keeps their order in time too.
    return base + timedelta(seconds=turn.index)


def turn_events(conversation: Conversation, actor: Actor) -> list[Event]:
    """`cube.created` then one `memory.added` per turn, in dialogue order."""
    cube_id = cube_id_of(conversation)
    first = min((_occurred_at(t) for t in conversation.turns), default=datetime.now(UTC))
    speakers = (conversation.speaker_a, conversation.speaker_b)
    events: list[Event] = [
        new_event(
            CubeCreated,
            cube_id=cube_id,
            actor=actor,
            occurred_at=first - timedelta(minutes=1),
            source=Source(product=_PRODUCT, ref=conversation.sample_id),
            payload={"name": f"LoCoMo {conversation.sample_id}: {' & '.join(speakers)}"},
        )
    ]
    for turn in conversation.turns:
        events.append(
            new_event(
                MemoryAdded,
                cube_id=cube_id,
                memory_id=f"turn-{turn.session}-{turn.index}",
                actor=actor,
                occurred_at=_occurred_at(turn),
                source=Source(
                    product=_PRODUCT,
                    ref=turn.dia_id,
                    attributes={
                        "session": str(turn.session),
                        "session_date": turn.session_date_text,
                        "speaker": turn.speaker,
                    },
                ),
                payload={
                    "kind": "plaintext",
                    "memory_type": "dialogue_turn",
                    "content": {"text": turn.document},
                    "tags": [f"session:{turn.session}", f"speaker:{turn.speaker}"],
                },
            )
        )
    return events


def _retrieved(memory: Any, text: str) -> Retrieved:
    source = memory.header.source
    if source is None or source.ref is None:
        raise ValueError(f"memory {memory.memory_id} lost the dialogue id it was written with")
    session_text, _, index_text = source.ref.removeprefix("D").partition(":")
    return Retrieved(
        dia_id=source.ref,
        session=int(session_text),
        index=int(index_text),
        date_text=source.attributes.get("session_date", ""),
        text=text,
    )


class MemlakeSystem:
    """memlake's retrieval for the harness. `ingest` does the I/O; `close` stops the service parts."""

    name = "memlake"

    def __init__(
        self,
        settings: Settings,
        *,
        actor: str = "service:locomo-bench",
        name: str = "memlake",
        policy: str | None = None,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._embedder = embedder  # None: the one the settings describe
        # None: the one the settings describe (its tokenizer counts the scheduler's token budget).
        self._generator = generator
        self._actor = Actor.parse(actor)
        self._policy = policy  # None: the scheduler policy of the settings
        self._components: Any = None
        self._now: dict[str, datetime] = {}
        self.events_sent = 0

    def ingest(self, conversations: Sequence[Conversation]) -> dict[str, float]:
        from pipelines.follow import run_jobs
        from serving.service import build_components
        from streams.sdk import MemlakeClient

        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        with MemlakeClient(self._settings, actor=self._actor, product=_PRODUCT) as client:
            for conversation in conversations:
                self.events_sent += len(client.send_many(turn_events(conversation, self._actor)))
                last = max((_occurred_at(t) for t in conversation.turns), default=datetime.now(UTC))
                self._now[conversation.sample_id] = last + timedelta(days=1)
        stages["produce (SDK to Kafka)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        progress = run_jobs(self._settings)
        stages["land + materialize (Beam to Delta)"] = time.perf_counter() - t0
        if progress.landed < self.events_sent:
            # Anything less means events went to the dead-letter topic: the run would measure a partial lake.
            raise InfrastructureError(
                f"the pipelines landed {progress.landed} of the {self.events_sent} events sent "
                f"(dead letters: {progress.dead_letters}); see {self._settings.kafka.dlq_topic}"
            )
        t0 = time.perf_counter()
        self._components = build_components(
            self._settings, embedder=self._embedder, generator=self._generator, embedded_pipeline=False
        )
        # The snapshot is pinned once everything is materialised: no follow thread during the queries.
        self._components.keeper.start(follow=False)
        stages["snapshot + embed + Milvus index"] = time.perf_counter() - t0
        return stages

    def plan(
        self, conversation: Conversation, query: str, budget: int, *, policy: str | None = None
    ) -> list[Retrieved]:
        """The memories the scheduler picks within `budget` tokens, best first (policy per request)."""
        from serving.generation import ChatMessage
        from serving.scheduler import SchedulerPolicy

        components = self._components
        if components is None:
            raise RuntimeError("ingest() first")
        with components.snapshot_for() as snapshot:
            plan = components.chat.plan(
                snapshot,
                principal=self._actor.principal,
                cube_ids=[cube_id_of(conversation)],
                messages=[ChatMessage("user", query)],
                token_budget=budget,
                now=self._now[conversation.sample_id],
                policy=SchedulerPolicy(policy) if policy else None,
            )
        return [_retrieved(s.memory, s.candidate.text) for s in plan.schedule.chosen]

    def search(self, conversation: Conversation, query: str, k: int) -> list[Retrieved]:
        """The scheduler's ranking of the hybrid candidates, best first."""
        return self.plan(conversation, query, _UNBOUNDED_BUDGET, policy=self._policy)[:k]

    def context(self, conversation: Conversation, query: str, budget_tokens: int) -> list[Retrieved]:
        """What the scheduler puts in a model's context within `budget_tokens`."""
        return self.plan(conversation, query, budget_tokens, policy=self._policy)

    def close(self) -> None:
        if self._components is not None:
            self._components.stop()
            self._components = None


class MemlakeView:
    """The same ingested memlake asked with another scheduler policy (per request, as the API allows)."""

    def __init__(self, base: MemlakeSystem, *, name: str, policy: str) -> None:
        self.name = name
        self._base = base
        self._policy = policy

    def ingest(self, conversations: Sequence[Conversation]) -> dict[str, float]:
        return {}  # shares the base system's ingestion

    def search(self, conversation: Conversation, query: str, k: int) -> list[Retrieved]:
        return self._base.plan(conversation, query, _UNBOUNDED_BUDGET, policy=self._policy)[:k]

    def close(self) -> None:
        return None  # the base system owns the service

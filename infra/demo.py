"""memlake's demo, step by step (`make demo` runs it through infra/demo.sh).

The event spine first: a cube is created, a small conversation's memories
stream through Kafka with the SDK, a product's bulk export goes in through
`ingest` (one broken line lands in the dead-letter topic), the cube changes,
and everything is read back from the log, readably, and folded into the
cube's current state. Then the lake: `memlake materialize` lands the log in
Delta and folds it into versioned tables; the cube is read as of an earlier
version, a memory's history is shown, the whole cube is rolled back (an event,
applied by the next materialize), and SQL runs over the tables. Each step is
one function, so that later capabilities add their own steps.

The sample data is the project's own: infra/demo/conversation.jsonl (a short
dialogue, each turn annotated with the memories it yields) and
infra/demo/export.jsonl (a product's export in ingest's compact form).
"""

from __future__ import annotations

__all__ = ["main", "Demo"]

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lake.history import diff, memory_history
from lake.sql import query
from lake.tables import Lake
from lake.time_travel import CubeView, as_of, current
from memlake.events import Event, serialize_event
from memlake.fold import CubeState, project
from memlake.ids import uuid7
from memlake.model import Policy
from memlake.settings import Settings
from pipelines.follow import Progress, run_jobs
from streams.dead_letters import read_dead_letters
from streams.producer import Delivery
from streams.sdk import MemlakeClient
from streams.sealing import LocalKeyStore, Sealer
from streams.tail import LogTail, format_dead_letter, format_tailed

SAMPLES = Path(__file__).resolve().parent / "demo"


def step(title: str) -> None:
    print(f"\n== {title}\n", flush=True)


def show(line: str) -> None:
    print(f"   {line}", flush=True)


@dataclass
class Demo:
    """One run of the demo: its own cube, so that runs never collide in the log."""

    settings: Settings
    cube_id: str = field(default_factory=lambda: f"alice-{uuid7().hex[-8:]}")
    deliveries: list[Delivery] = field(default_factory=list)
    # The cube's version before Alice's changes (step 4): time travel and rollback go back to it.
    before_changes: int = 0

    @property
    def sealer(self) -> Sealer:
        return Sealer(LocalKeyStore(self.settings.governance.key_store))

    def create_cube(self) -> None:
        step(f"1. Alice gets a memory cube ({self.cube_id})")
        with MemlakeClient(self.settings, actor="user:alice", product="demo-assistant") as client:
            delivery = client.create_cube(
                self.cube_id,
                name="Alice's assistant memory",
                readers=["agent:travel-assistant"],
                writers=["agent:travel-assistant"],
                policy=Policy(retention_days=365),
                subject_id="alice",
            )
        self.deliveries.append(delivery)
        show(f"cube.created written to partition {delivery.partition} at offset {delivery.offset}")

    def stream_conversation(self) -> None:
        step("2. The assistant streams what it learns in a conversation (SDK, through Kafka)")
        turns = [
            json.loads(line) for line in (SAMPLES / "conversation.jsonl").read_text().splitlines() if line
        ]
        with MemlakeClient(self.settings, actor="agent:travel-assistant", product="demo-assistant") as client:
            for turn in turns:
                show(f"{turn['speaker']:>9}: {turn['text']}")
                for memory in turn["memories"]:
                    # Content about someone else (Inês) is sealed under her own key.
                    delivery = client.add_memory(
                        self.cube_id,
                        memory["text"],
                        memory_type=memory["type"],
                        tags=memory.get("tags", ()),
                        priority=memory.get("priority"),
                        sensitivity=memory.get("sensitivity"),
                        subject_id=memory.get("subject"),
                        source_ref=f"{turn['dialogue']}#turn-{turn['turn']}",
                    )
                    self.deliveries.append(delivery)
                    sealed = " (sealed for " + memory["subject"] + ")" if memory.get("subject") else ""
                    show(f"{'':>11}-> memory.added p{delivery.partition}@{delivery.offset}{sealed}")

    def ingest_export(self, workdir: Path) -> None:
        step("3. A notes app exports in bulk: `memlake ingest` (one line is broken on purpose)")
        template = (SAMPLES / "export.jsonl").read_text()
        export = workdir / f"export-{self.cube_id}.jsonl"
        export.write_text(template.replace("{cube}", self.cube_id))
        with MemlakeClient(self.settings, actor="user:alice", product="notes-app") as client:
            report = client.ingest(export)
        for line in str(report).splitlines():
            show(line)

    def change_things(self) -> None:
        step("4. Alice changes her mind; the assistant reads; a memory goes")
        with MemlakeClient(self.settings, actor="user:alice", product="demo-assistant") as client:
            state = self._log_state()
            self.before_changes = state.version
            memories = self._live_texts(state)
            budget = next(m for m, text in memories.items() if "budget" in text)
            early = next(m for m, text in memories.items() if "10am" in text)
            self.deliveries.append(
                client.update_memory(
                    self.cube_id, budget, text="Alice's hotel budget is now about 200 euros per night."
                )
            )
            show(f"memory.updated {budget}: the hotel budget is now 200 euros")
            self.deliveries.append(
                client.record_access(self.cube_id, [budget, early], request_kind="chat", request_id="demo-1")
            )
            show(f"memory.accessed: a chat used {budget} and {early}")
            self.deliveries.append(
                client.delete_memory(self.cube_id, early, reason="Alice booked the flight")
            )
            show(f"memory.deleted {early}: the flight is booked")

    def read_back(self) -> list[Event]:
        step("5. Read back from the topic: the cube's events, as the log holds them")
        events: list[Event] = []
        with LogTail(
            self.settings.kafka, from_beginning=True, cube_id=self.cube_id, idle_timeout_s=3
        ) as tail:
            for tailed in tail:
                show(format_tailed(tailed, opener=self.sealer.open))
                if tailed.event is not None:
                    events.append(tailed.event)
        sealed = [e for e in events if b'"sealed"' in serialize_event(e)]
        if sealed:
            raw = serialize_event(sealed[0]).decode()
            show("")
            show("on the wire, sealed content is ciphertext only:")
            show(raw[raw.index('"content"') :][:150] + "…")
        return events

    def fold(self, events: Sequence[Event]) -> None:
        step("6. The cube, folded from its events (what a reader sees now)")
        state = project(events)
        assert state.cube is not None
        show(f"cube {state.cube.cube_id} at version {state.version}, owner {state.cube.owner}")
        for memory in sorted(state.memories.values(), key=lambda m: m.header.created_at):
            content = memory.content
            text = self.sealer.open(content) if content is not None else "<no content>"
            flag = "" if memory.status.is_live else f"  [{memory.status.value}]"
            reads = f"  read {memory.indicators.access_count}x" if memory.indicators.access_count else ""
            show(f"v{memory.version} {memory.header.memory_type:<10} {text}{flag}{reads}")

    def dead_letters(self) -> None:
        step("7. The dead-letter topic: refused records, with the reason and the original bytes")
        for letter in read_dead_letters(self.settings.kafka):
            if self.cube_id.encode() in (letter.original or b""):
                show(format_dead_letter(letter))

    def materialize(self) -> None:
        step("8. The lake: `memlake materialize` lands the log in Delta and folds it into versioned tables")
        self._materialize()
        lake = Lake(self.settings.lake)
        show(f"tables under {lake.root}:")
        for table in ("events", "memories", "memory_versions", "cube_versions", "usage", "rejected"):
            (count,) = query(lake, f"SELECT count(*) AS n FROM {table} WHERE cube_id = '{self.cube_id}'")["n"]
            show(f"  {table:<16} {count.as_py():>3} rows of this cube")
        self._show_view(current(lake, self.cube_id))

    def time_travel(self) -> None:
        step(f"9. Time travel: the cube as of version {self.before_changes}, and one memory's history")
        lake = Lake(self.settings.lake)
        then = as_of(lake, self.cube_id, version=self.before_changes)
        self._show_view(then)
        budget = self._budget_memory(then)
        show("")
        show(f"`memlake history {budget}`: every version, with the event that made it")
        for version in memory_history(lake, budget, cube_id=self.cube_id):
            memory = version.memory
            made = f"{version.event_type:<16} cube v{memory.cube_version:<3}"
            show(f"  v{version.version} {made} {self._text(memory)}")

    def roll_back(self) -> None:
        target = self.before_changes
        step(f"10. Roll the whole cube back to version {target}: an event, applied by the next materialize")
        with MemlakeClient(self.settings, actor="user:alice", product="demo-assistant") as client:
            delivery = client.rollback_cube(self.cube_id, target, reason="undo the demo's changes")
        show(f"cube.rolled_back written to partition {delivery.partition} at offset {delivery.offset}")
        self._materialize()
        lake = Lake(self.settings.lake)
        now = current(lake, self.cube_id)
        self._show_view(now)
        changes = diff(lake, self.cube_id, target, now.version)
        same = not (changes.added or changes.removed or changes.changed)
        verdict = "the same as then" if same else "not the same as then"
        show(f"`memlake diff {self.cube_id} {target} {now.version}`: the memories are {verdict}")
        budget = self._budget_memory(now)
        last = memory_history(lake, budget, cube_id=self.cube_id)[-1]
        made = f"v{last.version} by {last.event_type}"
        show(f"the budget memory's newest version: {made}: {self._text(last.memory)}")

    def sql(self) -> None:
        statement = (
            "SELECT memory_type, count(*) AS memories, sum(access_count) AS reads FROM memories "
            f"WHERE cube_id = '{self.cube_id}' AND status <> 'deleted' "
            "GROUP BY memory_type ORDER BY memory_type"
        )
        step("11. SQL over the lake (DuckDB over the Delta tables): `memlake sql`")
        show(statement)
        result = query(Lake(self.settings.lake), statement)
        for row in result.to_pylist():
            show(f"  {row['memory_type']:<12} {row['memories']:>2} memories, read {row['reads']}x")

    def _materialize(self) -> None:
        def report(progress: Progress) -> None:
            show(progress.line())

        run_jobs(self.settings, report=report)

    def _show_view(self, view: CubeView) -> None:
        show(f"cube {self.cube_id} at version {view.version}: {len(view.visible())} memories")
        for memory in sorted(view.visible().values(), key=lambda m: m.header.created_at):
            show(f"  v{memory.version} {memory.header.memory_type:<10} {self._text(memory)}")

    def _text(self, memory: Any) -> str:
        return self.sealer.open(memory.content) if memory.content is not None else "<no content>"

    def _budget_memory(self, view: CubeView) -> str:
        return next(k for k, m in view.memories.items() if "budget" in self._text(m))

    def _log_state(self) -> CubeState:
        """The cube folded from its events in the log (no lake yet)."""
        with LogTail(
            self.settings.kafka, from_beginning=True, cube_id=self.cube_id, idle_timeout_s=2
        ) as tail:
            return project([t.event for t in tail if t.event is not None])

    def _live_texts(self, state: CubeState) -> dict[str, str]:
        """Memory id -> text of the live memories."""
        return {
            memory.memory_id: self.sealer.open(memory.content)
            for memory in state.live_memories()
            if memory.content is not None
        }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    workdir = Path(args[0]) if args else Path.cwd() / ".memlake-demo"
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(Settings())
    demo.create_cube()
    demo.stream_conversation()
    demo.ingest_export(workdir)
    demo.change_things()
    events = demo.read_back()
    demo.fold(events)
    demo.dead_letters()
    demo.materialize()
    demo.time_travel()
    demo.roll_back()
    demo.sql()
    step("Done")
    show("Look around: `make demo-shell` opens a shell on the demo's broker and state, where")
    show("`memlake tail --from-beginning --open`, `memlake dlq` and `memlake status` show the log,")
    show(
        f"and `memlake show {demo.cube_id} --as-of 3`, `memlake history ...` and `memlake sql ...` the lake."
    )
    show("`make demo-down` stops the demo's broker.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

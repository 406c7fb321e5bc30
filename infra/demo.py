"""memlake's demo, step by step (`make demo` runs it through infra/demo.sh).

Today it shows the event spine: a cube is created, a small conversation's
memories stream through Kafka with the SDK, a product's bulk export goes in
through `ingest` (one broken line lands in the dead-letter topic), the cube
changes, and everything is read back from the log, readably, and folded into
the cube's current state. Each step is one function, so that later
capabilities (materialisation, search, training) add their own steps.

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

from memlake.events import Event, serialize_event
from memlake.fold import project
from memlake.ids import uuid7
from memlake.model import Policy
from memlake.settings import Settings
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
            memories = self.current_memories()
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

    def current_memories(self) -> dict[str, str]:
        """Memory id -> text of the live memories, read back from the log (no lake yet)."""
        events: list[Event] = []
        with LogTail(
            self.settings.kafka, from_beginning=True, cube_id=self.cube_id, idle_timeout_s=2
        ) as tail:
            events = [t.event for t in tail if t.event is not None]
        state = project(events)
        out: dict[str, Any] = {}
        for memory in state.live_memories():
            if memory.content is not None:
                out[memory.memory_id] = self.sealer.open(memory.content)
        return out


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
    step("Done")
    show("Look around: `make demo-shell` opens a shell on the demo's broker and state, where")
    show("`memlake tail --from-beginning --open`, `memlake dlq` and `memlake status` show the log.")
    show("`make demo-down` stops the demo's broker.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

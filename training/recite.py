"""Parametric ► plaintext: ask a cube's adapter what it holds, and keep the answers as memories.

For audit (what did the nightly job bake into the weights?) and for
migration (carrying knowledge to another base model). The adapter is asked,
closed-book and greedily, "What do you remember about <topic>?" for each
topic of the memories it was distilled from (or the topics given); every
non-empty answer becomes a plaintext memory through `memory.transformed`
(parametric ► plaintext) with lineage to the adapter memory's version.
"""

from __future__ import annotations

__all__ = ["Recitation", "RecitationResult", "recite", "recite_cube"]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from lake.snapshot import Snapshot
from memlake.errors import ArtifactError, TrainingError
from memlake.events import Transformation
from memlake.model import SourceRef
from memlake.settings import TrainingSettings
from training.artifacts import ArtifactStore, artifact_sha256
from training.base_model import BaseLLM
from training.dataset import recitation_prompt, topics_of
from training.kv_cache import generate
from training.kv_job import current_artifact_memory
from training.lineage import ADAPTER_MEMORY_ID, EventSink, recited_memory_id, transformed_event
from training.lora import attach_adapter
from training.prompts import encode_prompt
from training.selection import HotMemory


@dataclass(frozen=True, slots=True)
class Recitation:
    topic: str
    text: str
    memory_id: str


@dataclass(frozen=True)
class RecitationResult:
    cube_id: str
    adapter: SourceRef
    model_version: str | None
    recitations: tuple[Recitation, ...]


def recite(base: BaseLLM, model: Any, topics: Sequence[str], *, max_new_tokens: int) -> list[tuple[str, str]]:
    """(topic, answer) for each topic, greedy and closed-book."""
    out = []
    for topic in topics:
        parts = encode_prompt(base.tokenizer, question=recitation_prompt(topic))
        answer = generate(base, parts, max_new_tokens=max_new_tokens, model=model)
        out.append((topic, answer.text))
    return out


def _source_topics(snapshot: Snapshot, cube_id: str, lineage: Sequence[SourceRef]) -> list[str]:
    ids = [ref.memory_id for ref in lineage]
    rows = snapshot.read(
        "memories",
        columns=["memory_id", "version", "text", "tags", "memory_type"],
        filter=(pc.field("cube_id") == cube_id) & pc.field("memory_id").isin(ids),
    ).to_pylist()
    topics: dict[str, None] = {}
    for row in sorted(rows, key=lambda r: r["memory_id"]):
        memory = HotMemory(
            row["memory_id"],
            int(row["version"]),
            row["text"] or "",
            tuple(row["tags"] or ()),
            row["memory_type"] or "fact",
        )
        topics.update(dict.fromkeys(topics_of(memory)))
    return list(topics)


def recite_cube(
    *,
    base: BaseLLM,
    snapshot: Snapshot,
    settings: TrainingSettings,
    store: ArtifactStore,
    sink: EventSink,
    cube_id: str,
    topics: Sequence[str] = (),
) -> RecitationResult:
    adapter = current_artifact_memory(snapshot, cube_id, ADAPTER_MEMORY_ID)
    if adapter is None or adapter.artifact is None:
        raise TrainingError(cube_id, "the cube has no adapter memory to recite from")
    artifact = adapter.artifact
    if artifact.base_model_fingerprint != base.fingerprint_id:
        raise TrainingError(
            cube_id,
            f"the adapter was trained on {artifact.base_model_fingerprint}, loaded is {base.fingerprint_id}",
        )
    folder = store.fetch(artifact.uri)
    if artifact.sha256 and artifact_sha256(folder) != artifact.sha256:
        raise ArtifactError(artifact.uri, "adapter files do not match the sha256 of its event")
    asked = list(topics) or _source_topics(snapshot, cube_id, adapter.header.lineage)
    if not asked:
        raise TrainingError(cube_id, "no topics to ask about: the adapter's source memories are gone")
    with attach_adapter(base, folder) as model:
        answers = recite(base, model, asked, max_new_tokens=settings.recite_max_new_tokens)
    source = SourceRef(memory_id=ADAPTER_MEMORY_ID, version=adapter.version)
    recitations = []
    for topic, text in answers:
        if not text.strip():
            continue
        memory_id = recited_memory_id(topic)
        sink.send(
            transformed_event(
                cube_id=cube_id,
                memory_id=memory_id,
                transformation=Transformation.PARAMETRIC_TO_PLAINTEXT,
                sources=(source,),
                text=text,
                tags=(topic[:128], "recited"),
                memory_type="recited",
                job="recite",
                ref=artifact.mlflow_model_version,
            )
        )
        recitations.append(Recitation(topic, text, memory_id))
    return RecitationResult(cube_id, source, artifact.mlflow_model_version, tuple(recitations))

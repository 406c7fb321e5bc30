"""The service entry point: wires the lake, the event log and the models into the serving tier.

This module (with `memlake.cli.serving`) is the only place in `serving/`
that imports other layers: `lake` for snapshots and history, `streams` for
writes and offsets, `training` for the local base model, `pipelines` for the
optional in-process land + materialize step.
"""

from __future__ import annotations

__all__ = [
    "LakeSnapshotSource",
    "LakeHistoryReader",
    "KafkaEventSink",
    "KafkaOffsetProbe",
    "build_components",
    "build_generator",
    "build_shelves",
    "build_embedder",
    "serve",
]

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc

from lake.history import diff as lake_diff
from lake.history import lineage as lake_lineage
from lake.history import memory_history as lake_memory_history
from lake.rows import cube_from_json, memory_from_json
from lake.schemas import bucket_of
from lake.snapshot import changes as lake_changes
from lake.snapshot import find_cut, open_snapshot
from lake.tables import Lake
from lake.time_travel import as_of as lake_as_of
from memlake.errors import BrokerUnavailableError, ConfigError
from memlake.events import Event
from memlake.model import Content
from memlake.settings import Settings
from serving.access_log import AccessRecorder, Receipt
from serving.auth import ApiKeyStore
from serving.chat import ChatService
from serving.components import Components
from serving.embeddings import Embedder, SentenceTransformerEmbedder
from serving.generation import Generator, OpenAIGenerator, TransformersGenerator
from serving.history import (
    CubeAt,
    CubeChanges,
    CubeVersionInfo,
    MemoryChangeInfo,
    MemoryVersionInfo,
)
from serving.keeper import SnapshotKeeper
from serving.milvus import open_vector_index
from serving.parametric import Shelves
from serving.retrieval import HybridRetriever
from serving.scheduler import MemScheduler, SchedulerPolicy, SchedulerWeights
from serving.snapshot import ChangeSet, LakeCut
from serving.writes import Commands
from streams.broker_calls import broker_calls
from streams.producer import EventProducer
from streams.reader import end_offsets
from streams.sealing import LocalKeyStore, Sealer

if TYPE_CHECKING:
    from training.base_model import BaseLLM

_STATE = ("memories", "cubes")
_UPSERTED = ("insert", "update_postimage")


class LakeSnapshotSource:
    """`memories` and `cubes` at one consistent cut, and their change data feed."""

    def __init__(self, lake: Lake, *, topic: str, partitions: Callable[[], Sequence[int]]) -> None:
        self._lake = lake
        self._topic = topic
        self._partitions = partitions

    def load(self) -> LakeCut:
        snap = open_snapshot(self._lake, tables=_STATE)
        cubes = [
            cube_from_json(v)
            for v in snap.read("cubes", columns=["cube_json"]).column("cube_json").to_pylist()
        ]
        memories = [
            memory_from_json(v)
            for v in snap.read("memories", columns=["memory_json"]).column("memory_json").to_pylist()
        ]
        return LakeCut(snap.watermark, dict(snap.versions), tuple(cubes), tuple(memories))

    def _feed(
        self, name: str, old: int | None, new: int | None, key: list[str], value: str
    ) -> tuple[list[str], set[tuple[str, ...]]]:
        if new is None or old == new:
            return [], set()
        table = lake_changes(self._lake, name, after_version=-1 if old is None else old, to_version=new)
        if table.num_rows == 0:
            return [], set()
        table = table.sort_by([("_commit_version", "ascending")])
        kinds = table.column("_change_type").to_pylist()
        keys = list(zip(*(table.column(k).to_pylist() for k in key), strict=True))
        values = table.column(value).to_pylist()
        latest: dict[tuple[str, ...], str | None] = {}
        for kind, k, v in zip(kinds, keys, values, strict=True):
            if kind in _UPSERTED:
                latest[k] = v
            elif kind == "delete":
                latest[k] = None
        upserted = [v for v in latest.values() if v is not None]
        removed = {k for k, v in latest.items() if v is None}
        return upserted, removed

    def changes(self, *, watermark: int, table_versions: Mapping[str, int | None]) -> ChangeSet | None:
        cut = find_cut(self._lake, _STATE)
        if cut.watermark <= watermark:
            return None
        cubes, gone_cubes = self._feed(
            "cubes", table_versions.get("cubes"), cut.versions["cubes"], ["cube_id"], "cube_json"
        )
        memories, gone_memories = self._feed(
            "memories",
            table_versions.get("memories"),
            cut.versions["memories"],
            ["cube_id", "memory_id"],
            "memory_json",
        )
        return ChangeSet(
            watermark=cut.watermark,
            table_versions=dict(cut.versions),
            cubes=tuple(cube_from_json(v) for v in cubes),
            memories=tuple(memory_from_json(v) for v in memories),
            removed_cubes=tuple(k[0] for k in gone_cubes),
            removed_memories=tuple((k[0], k[1]) for k in gone_memories),
        )

    def covered_offsets(self, watermark: int) -> Mapping[int, int]:
        if watermark < 0:
            return {}
        events = self._lake.table("events", version=watermark)
        return self._lake.land_offsets(self._topic, self._partitions(), dt=events)


class LakeHistoryReader:
    def __init__(self, lake: Lake) -> None:
        self._lake = lake

    def versions(self, cube_id: str, *, after_version: int, limit: int) -> list[CubeVersionInfo]:
        snap = open_snapshot(self._lake, tables=("cube_versions",))
        where = (
            (pc.field("bucket") == bucket_of(cube_id, self._lake.settings.buckets))
            & (pc.field("cube_id") == cube_id)
            & (pc.field("version") > after_version)
        )
        columns = [
            "version",
            "event_id",
            "event_type",
            "memory_id",
            "actor",
            "occurred_at",
            "logged_at",
            "partition",
            "offset",
        ]
        rows = snap.read("cube_versions", columns=columns, filter=where).sort_by("version").slice(0, limit)
        return [CubeVersionInfo(**row) for row in rows.to_pylist()]

    def as_of(self, cube_id: str, *, version: int | None = None, timestamp: datetime | None = None) -> CubeAt:
        view = lake_as_of(self._lake, cube_id, version=version, timestamp=timestamp)
        return CubeAt(view.cube, view.version, dict(view.memories))

    def diff(self, cube_id: str, from_version: int, to_version: int) -> CubeChanges:
        d = lake_diff(self._lake, cube_id, from_version, to_version)
        return CubeChanges(
            from_version=d.from_version,
            to_version=d.to_version,
            added=d.added,
            removed=d.removed,
            changed=tuple(MemoryChangeInfo(c.memory_id, c.fields, c.before, c.after) for c in d.changed),
            cube_fields=d.cube_fields,
        )

    def memory_history(self, cube_id: str, memory_id: str) -> list[MemoryVersionInfo]:
        return [
            MemoryVersionInfo(v.memory, v.event_id, v.event_type)
            for v in lake_memory_history(self._lake, memory_id, cube_id=cube_id)
        ]

    def lineage(self, cube_id: str, memory_id: str) -> dict[str, Any]:
        return lake_lineage(self._lake, memory_id, cube_id=cube_id)


class KafkaEventSink:
    """The idempotent producer (acks=all, keyed by cube_id) behind the `EventSink` role."""

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer

    def send(self, events: Sequence[Event]) -> list[Receipt]:
        return [
            Receipt(d.event_id, d.cube_id, d.topic, d.partition, d.offset)
            for d in self._producer.send(list(events))
        ]

    def close(self) -> None:
        self._producer.close()


class KafkaOffsetProbe:
    """End offsets of the events topic from one long-lived consumer (a few ms a call once connected),
    asked of the broker at most every `max_age_s` unless a caller needs them fresh."""

    def __init__(self, settings: Settings, *, max_age_s: float = 0.5) -> None:
        self._kafka = settings.kafka
        self._max_age_s = max_age_s
        self._cached: dict[int, int] = {}
        self._at = 0.0
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._partitions: list[Any] = []

    def _fetch(self) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        topic = self._kafka.events_topic
        try:
            with broker_calls(self._kafka.bootstrap, f"end offsets of {topic!r}"):
                if self._consumer is None:
                    self._consumer = KafkaConsumer(**self._kafka.client_options(), enable_auto_commit=False)
                if not self._partitions:
                    parts = self._consumer.partitions_for_topic(topic) or set()
                    self._partitions = [TopicPartition(topic, p) for p in sorted(parts)]
                if not self._partitions:
                    return end_offsets(
                        self._kafka, topic
                    )  # waits for the topic's metadata, then fails clearly
                return {
                    tp.partition: int(off) for tp, off in self._consumer.end_offsets(self._partitions).items()
                }
        except BrokerUnavailableError:
            self.close()  # a fresh client next time: this one may be stuck on the lost connection
            raise

    def end_offsets(self, *, refresh: bool = False) -> Mapping[int, int]:
        with self._lock:
            if refresh or not self._cached or time.monotonic() - self._at > self._max_age_s:
                self._cached = self._fetch()
                self._at = time.monotonic()
            return dict(self._cached)

    def partitions(self) -> list[int]:
        return sorted(self.end_offsets())

    def lagging(self, covered: Mapping[int, int]) -> bool:
        """Whether the log holds events past `covered` (the last offset reflected per partition)."""
        return any(end - 1 > covered.get(p, -1) for p, end in self.end_offsets(refresh=True).items())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self._partitions = []


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    m = settings.models
    return SentenceTransformerEmbedder(
        m.embedder,
        dim=m.embedding_dim,
        batch_size=m.embed_batch_size,
        max_tokens=m.embed_max_tokens,
        threads=m.embed_threads,
        cache_size=settings.serving.query_cache_size,
        query_precision=m.query_precision,
    )


def build_generator(settings: Settings) -> Generator:
    m = settings.models
    use_openai = m.generator == "openai" or (m.generator == "auto" and m.openai_base_url)
    if use_openai:
        if not m.openai_base_url or not m.openai_model:
            raise ConfigError(
                "models.openai_base_url", "the openai generator needs openai_base_url and openai_model"
            )
        return OpenAIGenerator(
            base_url=m.openai_base_url,
            model=m.openai_model,
            api_key=m.openai_api_key,
            timeout_s=m.generation_timeout_s,
        )
    from training.base_model import load_base_model

    return TransformersGenerator(
        lambda: load_base_model(m), name=m.base_llm, shelves=lambda base: build_shelves(settings, base)
    )


def build_shelves(settings: Settings, base: BaseLLM) -> Shelves:
    """The KV caches and champion adapters the local generator serves with `base` (settings.training)."""
    from training.artifacts import FileSystemArtifactStore
    from training.kv_registry import PrefixCacheRegistry
    from training.registry import AdapterRegistry
    from training.tracking import MlflowTracker

    t = settings.training
    kv = None
    if t.serve_kv_caches:
        store = FileSystemArtifactStore(t.artifacts_root)
        kv = PrefixCacheRegistry(base, store, max_bytes=t.kv_cache_max_mib * 2**20)
    adapters = AdapterRegistry(base, MlflowTracker(t)) if t.serve_adapters else None
    return Shelves(kv=kv, adapters=adapters)


def _pipeline_step(settings: Settings) -> Callable[[], object]:
    from pipelines.follow import run_jobs

    return lambda: run_jobs(settings)


def build_components(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    embedded_pipeline: bool | None = None,
) -> Components:
    """Everything `create_app` needs; constructing it does no I/O (`Components.start` does)."""
    s = settings.serving
    lake = Lake(settings.lake)
    embedder = embedder or build_embedder(settings)
    generator = generator or build_generator(settings)
    index = open_vector_index(s, settings.models)
    sealer = Sealer(LocalKeyStore(settings.governance.key_store))
    offsets = KafkaOffsetProbe(settings)
    source = LakeSnapshotSource(lake, topic=settings.kafka.events_topic, partitions=offsets.partitions)
    run_pipeline = s.embedded_pipeline if embedded_pipeline is None else embedded_pipeline
    keeper = SnapshotKeeper(
        source,
        index,
        embedder,
        opener=sealer.open,
        follow_interval_s=s.follow_interval_s,
        pipeline_step=_pipeline_step(settings) if run_pipeline else None,
        pipeline_due=lambda snapshot: offsets.lagging(snapshot.covered),
    )
    retriever = HybridRetriever(
        index,
        embedder,
        candidates=s.candidates,
        rrf_k=s.rrf_k,
        dense_weight=s.dense_weight,
        lexical_weight=s.lexical_weight,
    )
    scheduler = MemScheduler(
        policy=SchedulerPolicy(s.scheduler_policy),
        weights=SchedulerWeights(
            relevance=s.weight_relevance,
            recency=s.weight_recency,
            priority=s.weight_priority,
            frequency=s.weight_frequency,
        ),
        recency_half_life_hours=s.recency_half_life_hours,
        frequency_saturation=s.frequency_saturation,
    )
    sink = KafkaEventSink(EventProducer(settings.kafka))

    def seal(text: str, subject_id: str) -> Content:
        return sealer.seal_content(text, subject_id)

    return Components(
        settings=settings,
        keeper=keeper,
        retriever=retriever,
        chat=ChatService(retriever, scheduler, generator, candidates=s.candidates),
        commands=Commands(sink, sealer=seal),
        recorder=AccessRecorder(
            sink, flush_interval_s=s.access_flush_interval_s, queue_max=s.access_queue_max
        ),
        history=LakeHistoryReader(lake),
        keys=ApiKeyStore(s.api_keys_file),
        offsets=offsets,
        opener=sealer.open,
        closers=[sink.close, offsets.close, index.close],
    )


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Run the HTTP service until interrupted (uvicorn, one process)."""
    import uvicorn

    from serving.api import create_app

    app = create_app(build_components(settings), start=True, start_in_background=True)
    uvicorn.run(
        app, host=settings.serving.host, port=settings.serving.port, log_level=log_level, access_log=False
    )

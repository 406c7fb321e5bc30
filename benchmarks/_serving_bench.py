"""What the serving benchmarks share: a populated lake, a pre-built index, a server process.

The corpus is `n` memories spread over cubes, written as real events, landed
and materialised by the real pipeline. Indexing 100k memories with
all-MiniLM-L6-v2 on 2 CPU cores would take ~10 minutes, so the corpus texts
are pairs of sentences from two pools ("<A>. Also, <B>.") and each vector is
the normalised sum of the two sentences' real embeddings (`ComposedEmbedder`);
every query is embedded by the real model at query time. Latency depends on
the index and the code path, not on which exact unit vectors are stored.
"""

from __future__ import annotations

__all__ = [
    "Corpus",
    "ComposedEmbedder",
    "ServerProcess",
    "populate",
    "prebuild_index",
    "serving_settings",
    "percentiles",
    "peak_rss_mb",
    "read_rss_mb",
    "free_port",
]

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from benchmarks._lake_bench import bench_settings, percentile, subprocess_env
from benchmarks._own_peak import status_kib
from lake.tables import Lake
from memlake.events import CubeCreated, Event, MemoryAdded, new_event
from memlake.model import Actor, ActorKind
from memlake.settings import Settings
from pipelines.follow import run_jobs
from serving.auth import ApiKeyStore
from serving.embeddings import SentenceTransformerEmbedder
from serving.keeper import SnapshotKeeper
from serving.milvus import open_vector_index
from serving.service import KafkaOffsetProbe, LakeSnapshotSource
from streams.producer import EventProducer

OWNER = Actor(kind=ActorKind.USER, id="bench")
_NAMES = [
    "Ada",
    "Ben",
    "Cleo",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lea",
    "Max",
    "Nia",
    "Omar",
    "Pia",
    "Quin",
    "Rosa",
    "Sam",
    "Tia",
]
_VERBS = [
    "likes",
    "visited",
    "is learning",
    "wrote about",
    "forgot",
    "bought",
    "cooked",
    "fixed",
    "recommended",
    "plans to try",
]
_THINGS = [
    "green tea",
    "the Berlin office",
    "rust async",
    "a jazz record",
    "the staging database",
    "sourdough bread",
    "the payment service",
    "a mountain bike",
    "the quarterly report",
    "Korean barbecue",
    "the vector index",
    "a chess opening",
    "the tax form",
    "a yoga class",
    "the Kafka cluster",
    "a sci-fi novel",
    "the garden shed",
    "the team offsite",
    "a vintage camera",
    "the onboarding guide",
]
_WHEN = [
    "on Monday",
    "last week",
    "in March",
    "every morning",
    "after lunch",
    "yesterday",
    "this spring",
    "at night",
]


def _sentences(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        out.add(f"{rng.choice(_NAMES)} {rng.choice(_VERBS)} {rng.choice(_THINGS)} {rng.choice(_WHEN)}")
    return sorted(out)


@dataclass(frozen=True)
class Corpus:
    """Memory texts as pairs of pool sentences, and questions about them."""

    first: list[str]
    second: list[str]
    seed: int = 11

    @classmethod
    def make(cls, n: int, *, seed: int = 11) -> Corpus:
        side = max(20, int(np.ceil(np.sqrt(n * 1.6))))
        return cls(_sentences(seed, side), _sentences(seed + 1, side), seed)

    def text(self, i: int) -> str:
        a = self.first[i % len(self.first)]
        b = self.second[(i * 7919 + i // len(self.first)) % len(self.second)]
        return f"{a}. Also, {b}."

    def queries(self, count: int, *, seed: int = 5) -> list[str]:
        rng = random.Random(seed)
        out = []
        for _ in range(count):
            name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
            out.append(
                rng.choice(
                    [
                        f"what does {name} think of {thing}",
                        f"{name} and {thing}",
                        f"who {rng.choice(_VERBS)} {thing}?",
                    ]
                )
            )
        return out


class ComposedEmbedder:
    """Corpus texts: the normalised sum of their two sentences' real embeddings. Anything else: the model."""

    def __init__(self, model: SentenceTransformerEmbedder, corpus: Corpus) -> None:
        self._model = model
        first = model.embed(corpus.first)
        second = model.embed(corpus.second)
        self._first = {s: first[i] for i, s in enumerate(corpus.first)}
        self._second = {s: second[i] for i, s in enumerate(corpus.second)}

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def name(self) -> str:
        return self._model.name

    def _compose(self, text: str) -> npt.NDArray[np.float32] | None:
        head, sep, tail = text.partition(". Also, ")
        a, b = self._first.get(head), self._second.get(tail.removesuffix("."))
        if not sep or a is None or b is None:
            return None
        v = a + b
        out: npt.NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
        return out

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        unknown = []
        for i, text in enumerate(texts):
            v = self._compose(text)
            if v is None:
                unknown.append(i)
            else:
                out[i] = v
        if unknown:
            out[unknown] = self._model.embed([texts[i] for i in unknown])
        return out

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self._model.embed_query(text)


def serving_settings(out_dir: Path, **serving: Any) -> Settings:
    base = bench_settings(out_dir, batch_max_events=200_000, partitions=6)
    home = Path(base.lake.root).parent
    suffix = Path(base.lake.root).name.removeprefix("lake-")
    return base.model_copy(
        update={
            "serving": base.serving.model_copy(
                update={
                    "milvus_uri": str(home / f"milvus-{suffix}.db"),
                    "api_keys_file": home / f"keys-{suffix}.json",
                    **serving,
                }
            )
        }
    )


def _events(corpus: Corpus, n: int, cubes: int) -> Iterator[Event]:
    for c in range(cubes):
        yield new_event(CubeCreated, cube_id=f"bench-{c}", actor=OWNER, payload={"name": f"bench {c}"})
    for i in range(n):
        yield new_event(
            MemoryAdded,
            cube_id=f"bench-{i % cubes}",
            memory_id=f"m-{i}",
            actor=OWNER,
            payload={"content": {"text": corpus.text(i)}, "tags": [f"t{i % 7}"], "priority": (i % 10) / 10},
        )


def populate(settings: Settings, corpus: Corpus, n: int, *, cubes: int) -> dict[str, float]:
    """Write the corpus as events and materialise it; returns the seconds each step took."""
    t0 = time.perf_counter()
    with EventProducer(settings.kafka) as producer:
        producer.send_many(_events(corpus, n, cubes), chunk=5000)
    t1 = time.perf_counter()
    run_jobs(settings)
    t2 = time.perf_counter()
    return {"produce_s": t1 - t0, "materialize_s": t2 - t1}


def prebuild_index(settings: Settings, embedder: Any) -> float:
    """Fill the Milvus collection from the lake with `embedder`; returns seconds."""
    t0 = time.perf_counter()
    probe = KafkaOffsetProbe(settings)
    source = LakeSnapshotSource(
        Lake(settings.lake), topic=settings.kafka.events_topic, partitions=probe.partitions
    )
    index = open_vector_index(settings.serving, settings.models)
    try:
        SnapshotKeeper(source, index, embedder).rebuild_index()
    finally:
        index.close()
        probe.close()
    return time.perf_counter() - t0


def percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q) * 1000, 2) for q in (50, 95, 99)}


def read_rss_mb(pid: int, field: str = "VmRSS") -> float:
    kib = status_kib(field, pid)
    return float("nan") if kib is None else kib / 1024


def peak_rss_mb(pid: int) -> float:
    return read_rss_mb(pid, "VmHWM")


class ServerProcess:
    """`memlake serve` in its own process, with a key for the bench principal."""

    def __init__(
        self, settings: Settings, out_dir: Path, *, port: int, embedded_pipeline: bool = False
    ) -> None:
        self.settings = settings
        self.port = port
        self.key = ApiKeyStore(settings.serving.api_keys_file).create(OWNER.principal, name="bench").secret
        env = subprocess_env(settings)
        env.update(
            {
                "MEMLAKE_SERVING_MILVUS_URI": settings.serving.milvus_uri,
                "MEMLAKE_SERVING_API_KEYS_FILE": str(settings.serving.api_keys_file),
                "MEMLAKE_SERVING_PORT": str(port),
                "MEMLAKE_SERVING_EMBEDDED_PIPELINE": json.dumps(embedded_pipeline),
                "MEMLAKE_SERVING_FOLLOW_INTERVAL_S": "0.1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
            }
        )
        self._log = (out_dir / f"server-{port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memlake", "serve", "--log-level", "warning"],
            env=env,
            stdout=self._log,
            stderr=self._log,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def wait_ready(self, timeout_s: float = 600.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"memlake serve exited with {self.process.returncode}; see {self._log.name}"
                )
            try:
                if httpx.get(self.base_url + "/v1/ready", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"memlake serve not ready after {timeout_s} s; see {self._log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

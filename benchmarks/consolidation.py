"""Consolidation of a cube set: wall time and peak memory of `memlake consolidate` on a large lake.

The set ("full": 1,000,000 memories in 10,000 cubes) is written straight
into the lake's tables at one watermark (building it through Kafka and
materialize would be the lake benchmarks' job, not this one's), with what a
nightly run meets: 3% past their TTL, 5% cold enough to decay, exact
duplicates, versions of facts under one key, reads in `usage` for the hot
selection, and 1% of the memories new since the previous run.

The previous runs' vector cache is filled for the other 99% with seeded
synthetic unit vectors (embedding a million texts first would take this
machine hours; the new memories are embedded by the real all-MiniLM-L6-v2
inside the timed run, in pairs of paraphrases so that near-duplicates are
found). Cold embedding throughput is measured on its own, and a cold first
run over everything is extrapolated from it.

Measured, each in its own `memlake consolidate` process (peak RSS is its
own, read under `benchmarks._own_peak`): the run (decisions sent), a second run on the same snapshot (sends
nothing: idempotence), and the floor, a plain scan of the snapshot's
`memories` rows. Aim ("full"): under 10 minutes and 6 GiB.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks._lake_bench import bench_settings, subprocess_env
from benchmarks._own_peak import run_measured
from lake.rows import cube_row
from lake.schemas import MEMORIES, USAGE, bucket_of
from lake.snapshot import open_snapshot
from lake.tables import Lake
from lake.writer import TableWriter
from memlake.model import Acl, Cube, Policy
from memlake.settings import Settings
from pipelines.consolidation_tables import VECTORS, VECTORS_SCHEMA, OwnTable

# memories, cubes, share of new memories (quick: 50,000 in 500 cubes, ~30 s of consolidation here)
_PROFILES = {"tiny": (1_000, 10, 0.05), "quick": (50_000, 500, 0.01), "full": (1_000_000, 10_000, 0.01)}
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
_TOPICS = ("tea", "chess", "paris", "rust", "jazz", "hiking", "kafka", "delta", "piano", "sushi")
_DIM = 384


def _memory_json(row: dict[str, Any]) -> str:
    iso = {
        k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v) for k, v in row.items()
    }
    return json.dumps(
        {
            "memory_id": row["memory_id"],
            "cube_id": row["cube_id"],
            "kind": "plaintext",
            "status": "active",
            "content": {"text": row["text"], "sealed": None},
            "artifact": None,
            "header": {
                "memory_type": row["memory_type"],
                "tags": row["tags"],
                "source": None,
                "lineage": [],
                "created_at": iso["created_at"],
                "updated_at": iso["updated_at"],
            },
            "governance": {
                "visibility": "cube",
                "readers_override": None,
                "ttl_seconds": None,
                "expires_at": iso["expires_at"],
                "priority": row["priority"],
                "pinned": False,
                "sensitivity": "internal",
                "signature": None,
                "subject_id": None,
            },
            "indicators": {
                "access_count": row["access_count"],
                "last_accessed_at": iso["last_accessed_at"],
                "version": 1,
            },
            "cube_version": row["cube_version"],
        }
    )


def _memories(cube_id: str, count: int, new_pairs: int, rng: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for j in range(count):
        age_days = rng.uniform(1, 60)
        created = AS_OF - timedelta(days=age_days)
        roll = rng.random()
        topic = _TOPICS[j % len(_TOPICS)]
        text = f"In {cube_id} note {j} the user talked about {topic} and item {rng.randrange(10**6)}."
        memory_type, tags, priority, expires = "note", [topic], 0.5, None
        if roll < 0.03:
            expires = AS_OF - timedelta(hours=rng.uniform(1, 100))  # past its TTL
        elif roll < 0.08:
            created = AS_OF - timedelta(days=rng.uniform(200, 400))  # cold: decays below 0.05
            priority = 0.2
        elif roll < 0.10 and j > 0:
            text = rows[-1]["text"]  # an exact duplicate of the previous memory
        elif roll < 0.11:
            memory_type, tags = "fact", [topic, f"key:favourite_{topic}"]  # versions of one fact
            text = f"The favourite {topic} of the user in {cube_id} is number {j}."
        rows.append(
            {
                "memory_id": f"m{j:05d}",
                "cube_id": cube_id,
                "text": text,
                "memory_type": memory_type,
                "tags": tags,
                "priority": priority,
                "expires_at": expires,
                "created_at": created,
                "updated_at": created,
                "last_accessed_at": None,
                "access_count": 0,
                "cube_version": j + 2,
                "new": False,
            }
        )
    # The new memories come in paraphrase pairs, so that near-duplicates exist among them.
    for j in range(0, 2 * new_pairs, 2):
        first, second = rows[-(j + 1)], rows[-(j + 2)]
        topic = _TOPICS[j % len(_TOPICS)]
        first["text"] = f"The user from {cube_id} really enjoys {topic} on weekends."
        second["text"] = f"On weekends the user from {cube_id} really enjoys {topic}."
        for row in (first, second):
            row.update(memory_type="note", tags=[topic], expires_at=None, priority=0.5, new=True)
            row["created_at"] = row["updated_at"] = AS_OF - timedelta(hours=2)
    return rows


def _table(rows: list[dict[str, Any]], buckets: int) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in MEMORIES.schema.names}
    for row in rows:
        values = {
            "bucket": bucket_of(row["cube_id"], buckets),
            "cube_id": row["cube_id"],
            "memory_id": row["memory_id"],
            "version": 1,
            "cube_version": row["cube_version"],
            "kind": "plaintext",
            "status": "active",
            "memory_type": row["memory_type"],
            "tags": row["tags"],
            "text": row["text"],
            "sealed": False,
            "subject_id": None,
            "artifact_uri": None,
            "artifact_format": None,
            "visibility": "cube",
            "sensitivity": "internal",
            "priority": row["priority"],
            "pinned": False,
            "expires_at": row["expires_at"],
            "access_count": row["access_count"],
            "last_accessed_at": row["last_accessed_at"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "memory_json": _memory_json(row),
        }
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=MEMORIES.schema)


def _vectors(rows: list[dict[str, Any]], buckets: int, embedder: str, seed: int) -> pa.Table:
    """Synthetic cached vectors for the memories that are not new (seeded unit vectors)."""
    old = [r for r in rows if not r["new"]]
    generator = np.random.default_rng(seed)
    matrix = generator.standard_normal((len(old), _DIM)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    blobs = matrix.astype("<f2")
    return pa.table(
        {
            "bucket": [bucket_of(r["cube_id"], buckets) for r in old],
            "cube_id": [r["cube_id"] for r in old],
            "memory_id": [r["memory_id"] for r in old],
            "content_sha256": ["t:" + hashlib.sha256(r["text"].encode()).hexdigest() for r in old],
            "subject_id": [None] * len(old),
            "embedder": [embedder] * len(old),
            "sealed": [False] * len(old),
            "vector": [blobs[i].tobytes() for i in range(len(old))],
        },
        schema=VECTORS_SCHEMA,
    )


def _build(settings: Settings, memories: int, cubes: int, new_share: float) -> dict[str, int]:
    """Write the cube set into the lake at watermark 0 (memories, cubes, usage, vector cache)."""
    from deltalake import write_deltalake

    lake = Lake(settings.lake)
    lake.ensure_all()
    writer = TableWriter(lake)
    rng = random.Random(11)
    per_cube = memories // cubes
    cube_rows: list[dict[str, Any]] = []
    usage_rows: list[tuple[date, str, str, int, datetime]] = []
    vectors = OwnTable(lake, VECTORS, VECTORS_SCHEMA, ("bucket",))
    counts = {"memories": 0, "new": 0, "cached_vectors": 0}
    chunk: list[dict[str, Any]] = []
    for c in range(cubes):
        cube_id = f"cube-{c:05d}"
        cube = Cube(
            cube_id=cube_id,
            name=cube_id,
            acl=Acl(owner=f"user:owner-{c}"),
            policy=Policy(retention_days=30),
            version=per_cube + 1,
            created_at=AS_OF - timedelta(days=400),
            updated_at=AS_OF - timedelta(days=400),
        )
        cube_rows.append(cube_row(cube))
        # New memories come in pairs, spread so that `new_share` of all memories are new.
        pairs = int((c + 1) * per_cube * new_share / 2) - int(c * per_cube * new_share / 2)
        rows = _memories(cube_id, per_cube, pairs, rng)
        for row in rows[: max(1, per_cube // 20)]:  # 5% read recently: candidates for the hot table
            reads = rng.randrange(1, 6)
            day = (AS_OF - timedelta(days=rng.randrange(0, 10))).date()
            usage_rows.append(
                (day, cube_id, row["memory_id"], reads, datetime.combine(day, datetime.min.time(), UTC))
            )
        chunk.extend(rows)
        counts["memories"] += len(rows)
        counts["new"] += sum(r["new"] for r in rows)
        if len(chunk) >= 100_000 or c == cubes - 1:
            table = _table(chunk, settings.lake.buckets)
            write_deltalake(lake.table("memories"), table, mode="append")
            cached = _vectors(chunk, settings.lake.buckets, settings.models.embedder, seed=c)
            write_deltalake(vectors.table(), cached, mode="append")
            counts["cached_vectors"] += cached.num_rows
            chunk = []
    # One commit per table carrying the watermark: the snapshot consolidation reads.
    writer.commit_derived("memories", MEMORIES.schema.empty_table(), watermark=0, how="auto")
    writer.commit_derived("cubes", pa.Table.from_pylist(cube_rows), watermark=0, how="overwrite")
    usage = pa.table(
        {name: [row[k] for row in usage_rows] for k, name in enumerate(USAGE.schema.names)},
        schema=USAGE.schema,
    )
    writer.commit_derived("usage", usage, watermark=0, how="overwrite")
    for name in ("memory_versions", "cube_versions", "rejected"):
        writer.commit_derived(name, lake.spec(name).schema.empty_table(), watermark=0)
    return counts


def _consolidate(settings: Settings, out_dir: Path, name: str) -> tuple[float, str, float]:
    """One `memlake consolidate` in its own process: its time, its summary line and its peak
    in GiB (its own: under `benchmarks._own_peak`, not this process's)."""
    env = subprocess_env(settings)
    env["MEMLAKE_GOVERNANCE_KEY_STORE"] = str(out_dir / "keys")
    env["HF_HUB_OFFLINE"] = "1"
    consolidate = ["memlake", "consolidate", "--as-of", AS_OF.isoformat()]
    done = run_measured(consolidate, env=env, work=out_dir / name)
    return done.seconds, done.stdout.strip().splitlines()[-1], done.peak_gib


def _floor(settings: Settings) -> float:
    """Reading the snapshot's memories (the columns consolidation reads) and nothing else."""
    began = time.perf_counter()
    snapshot = open_snapshot(Lake(settings.lake), tables=("memories", "cubes", "usage"))
    for bucket in range(settings.lake.buckets):
        import pyarrow.compute as pc

        snapshot.read("memories", filter=pc.field("bucket") == bucket, prune=f"bucket = {bucket}")
    return time.perf_counter() - began


def _embedding_rate(settings: Settings, count: int) -> float:
    from memlake.cli.governance import minilm_embed

    embed = minilm_embed(settings.models)
    texts = [
        f"The user mentioned {t} while talking about item {i} yesterday."
        for i, t in enumerate((_TOPICS * (count // len(_TOPICS) + 1))[:count])
    ]
    embed(texts[:32])  # load the model outside the measurement
    began = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - began)


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    memories, cubes, new_share = _PROFILES[profile]
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(out_dir)
    began = time.perf_counter()
    counts = _build(settings, memories, cubes, new_share)
    build_s = time.perf_counter() - began

    floor_s = _floor(settings)
    first_s, first, first_peak = _consolidate(settings, out_dir, "first")
    second_s, second, second_peak = _consolidate(settings, out_dir, "second")
    rate = _embedding_rate(settings, 64 if profile == "tiny" else 512)
    peak_gib = max(first_peak, second_peak)
    return {
        "summary": (
            f"{counts['memories']:,} memories in {cubes:,} cubes ({counts['new']:,} new) consolidated in "
            f"{first_s:.1f} s, peak {peak_gib:.2f} GiB; second run on the same snapshot {second_s:.1f} s"
        ),
        "memories": counts["memories"],
        "cubes": cubes,
        "new_memories": counts["new"],
        "build_s": round(build_s, 2),
        "consolidate_s": round(first_s, 2),
        "second_run_s": round(second_s, 2),
        "floor_read_s": round(floor_s, 2),
        "ratio_to_floor": round(first_s / max(floor_s, 1e-9), 2),
        "memories_per_s": round(counts["memories"] / first_s, 1),
        "peak_rss_gib": round(peak_gib, 3),
        "embed_texts_per_s": round(rate, 1),
        "cold_embed_all_extrapolated_s": round(counts["memories"] / rate, 1),
        "first_run": first,
        "second_run": second,
        "aim": {"consolidate_s": 600.0, "peak_rss_gib": 6.0},
        "as_of": AS_OF.isoformat(),
        "today": date.today().isoformat(),
    }

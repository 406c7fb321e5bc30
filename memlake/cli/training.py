"""Training commands: the nightly distillation, KV caches, recitation, champions.

`memlake distill (--cube C | --all) [--mode plaintext|context] [--restart]`   hot memories ► LoRA adapter
`memlake kv-cache (--cube C | --all)`                                        pinned + hot memories ► KV cache
`memlake recite --cube C [--topic T ...]`                                    adapter ► plaintext memories
`memlake champion --cube C`                                                  the cube's champion adapter

On a GPU cluster: `accelerate launch --config_file infra/accelerate/multi-gpu.yaml -m memlake distill --all`
(every process trains; only the main one evaluates, tracks in MLflow and emits events).
Exit status of `distill`: 0 when every cube was promoted or skipped, 4 when a gate rejected one.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from memlake.cli import arguments
from memlake.errors import TrainingError
from memlake.settings import Settings


def register(commands: Any) -> None:
    distill = commands.add_parser("distill", help="distil cubes' hot memories into LoRA adapters (nightly)")
    which = distill.add_mutually_exclusive_group(required=True)
    which.add_argument("--cube", help="one cube")
    which.add_argument("--all", action="store_true", help="every cube with enough hot memories")
    distill.add_argument("--mode", choices=["plaintext", "context"], help="override training.mode")
    distill.add_argument("--restart", action="store_true", help="ignore checkpoints of an unfinished run")
    distill.add_argument(
        "--night",
        type=arguments.night,
        help="the night (YYYY-MM-DD) whose usage window counts; default today",
    )
    distill.set_defaults(run=_distill)

    kv = commands.add_parser("kv-cache", help="precompute KV caches of cubes' pinned and hot memories")
    kv_which = kv.add_mutually_exclusive_group(required=True)
    kv_which.add_argument("--cube", help="one cube")
    kv_which.add_argument("--all", action="store_true", help="every cube with pinned or hot memories")
    kv.add_argument(
        "--night", type=arguments.night, help="the day (YYYY-MM-DD) whose usage window counts; default today"
    )
    kv.set_defaults(run=_kv_cache)

    recite = commands.add_parser("recite", help="ask a cube's adapter what it holds; store the answers")
    recite.add_argument("--cube", required=True)
    recite.add_argument("--topic", action="append", default=[], help="a topic to ask about (repeatable)")
    recite.set_defaults(run=_recite)

    champion = commands.add_parser("champion", help="the cube's champion adapter in the MLflow registry")
    champion.add_argument("--cube", required=True)
    champion.set_defaults(run=_champion)


def _now(night: datetime | None) -> datetime:
    return datetime.now(UTC) if night is None else night


def _distill(settings: Settings, args: argparse.Namespace) -> int:
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    from lake.snapshot import open_snapshot
    from lake.tables import Lake
    from streams.producer import EventProducer
    from training.artifacts import FileSystemArtifactStore
    from training.base_model import load_base_model
    from training.distill_job import distill_cube
    from training.selection import select_memories
    from training.tracking import MlflowTracker

    training = settings.training
    if args.mode:
        training = training.model_copy(update={"mode": args.mode})
    accelerator = Accelerator(mixed_precision=training.mixed_precision)
    device = str(accelerator.device) if settings.models.llm_device == "auto" else None
    lake = Lake(settings.lake)
    # Every process must train on the same data: the main one picks the snapshot.
    pinned = [
        open_snapshot(lake, tables=("memories", "usage")).watermark if accelerator.is_main_process else 0
    ]
    broadcast_object_list(pinned)
    snapshot = open_snapshot(lake, tables=("memories", "usage"), at_most=int(pinned[0]))
    now = _now(args.night)
    if args.all:
        chosen = select_memories(snapshot, training, now=now)
        cubes = [cube for cube, sel in chosen.items() if sel.enough(training)]
    else:
        cubes = [args.cube]
    if not cubes:
        if accelerator.is_main_process:
            print(json.dumps({"cubes": 0, "reason": "no cube has enough hot memories"}), flush=True)
        return 0
    base = load_base_model(settings.models, device=device)
    store = FileSystemArtifactStore(training.artifacts_root)
    tracker = MlflowTracker(training)
    rejected = 0
    with EventProducer(settings.kafka) as producer:
        for cube_id in cubes:
            outcome = distill_cube(
                base=base,
                snapshot=snapshot,
                memories_table_uri=lake.uri("memories"),
                settings=training,
                store=store,
                tracker=tracker,
                sink=producer,
                cube_id=cube_id,
                now=now,
                min_memories=training.min_hot_memories if args.all else 1,
                restart=args.restart,
                accelerator=accelerator,
            )
            rejected += outcome.status == "rejected"
            if accelerator.is_main_process:
                line: dict[str, Any] = {
                    "cube_id": cube_id,
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "run_id": outcome.run_id,
                    "model_version": outcome.model_version,
                }
                if outcome.report is not None:
                    line["metrics"] = {k: round(v, 4) for k, v in outcome.report.metrics().items()}
                if outcome.train is not None:
                    line["resumed_from"] = outcome.train.resumed_from
                print(json.dumps(line, sort_keys=True), flush=True)
    accelerator.end_training()
    return 4 if rejected else 0


def _kv_cache(settings: Settings, args: argparse.Namespace) -> int:
    from lake.snapshot import open_snapshot
    from lake.tables import Lake
    from streams.producer import EventProducer
    from training.artifacts import FileSystemArtifactStore
    from training.base_model import load_base_model
    from training.kv_job import build_cube_cache
    from training.selection import select_memories

    training = settings.training
    snapshot = open_snapshot(Lake(settings.lake), tables=("memories", "usage"))
    now = _now(args.night)
    cubes = list(select_memories(snapshot, training, now=now)) if args.all else [args.cube]
    base = load_base_model(settings.models)
    store = FileSystemArtifactStore(training.artifacts_root)
    with EventProducer(settings.kafka) as producer:
        for cube_id in cubes:
            result = build_cube_cache(
                base=base,
                snapshot=snapshot,
                settings=training,
                store=store,
                sink=producer,
                cube_id=cube_id,
                now=now,
            )
            print(
                json.dumps(
                    {
                        "cube_id": cube_id,
                        "built": result.built,
                        "reason": result.reason,
                        "uri": result.artifact.uri if result.artifact else None,
                        "memories": result.memories,
                        "prefix_tokens": result.prefix_tokens,
                        "seconds": round(result.seconds, 3),
                    },
                    sort_keys=True,
                ),
                flush=True,
            )
    return 0


def _recite(settings: Settings, args: argparse.Namespace) -> int:
    from lake.snapshot import open_snapshot
    from lake.tables import Lake
    from streams.producer import EventProducer
    from training.artifacts import FileSystemArtifactStore
    from training.base_model import load_base_model
    from training.recite import recite_cube

    snapshot = open_snapshot(Lake(settings.lake), tables=("memories",))
    base = load_base_model(settings.models)
    with EventProducer(settings.kafka) as producer:
        result = recite_cube(
            base=base,
            snapshot=snapshot,
            settings=settings.training,
            store=FileSystemArtifactStore(settings.training.artifacts_root),
            sink=producer,
            cube_id=args.cube,
            topics=args.topic,
        )
    for item in result.recitations:
        print(json.dumps({"topic": item.topic, "memory_id": item.memory_id, "text": item.text}), flush=True)
    return 0


def _champion(settings: Settings, args: argparse.Namespace) -> int:
    from training.tracking import MlflowTracker

    champion = MlflowTracker(settings.training).champion(args.cube)
    if champion is None:
        raise TrainingError(args.cube, "no champion adapter")
    print(
        json.dumps(
            {
                "model_uri": champion.uri,
                "source": champion.source,
                "run_id": champion.run_id,
                "tags": champion.tags,
            },
            sort_keys=True,
        )
    )
    return 0

"""The nightly distillation job: a cube's hot memories ► a LoRA adapter, gated, tracked, emitted.

For one cube:
1. select its pinned and hot plaintext memories from one lake snapshot;
2. build the training set and its held-out probes;
3. train a LoRA adapter (resuming from a checkpoint of the same job, if any);
4. measure the base model and the adapter closed-book (recall NLL, answer F1,
   control perplexity); the gate decides;
6. MLflow: the run (params, losses, metrics, the dataset with its Delta table
   and version, the adapter folder) and a new registered model version;
7. only if the gate passed: store the adapter, emit `memory.transformed`
   (plaintext or activation ► parametric) with the model version and the
   source memory versions, then move the `champion` alias.

The job key is a digest of the data, the settings that shape training and the
base model: a killed job started again finds its checkpoints and its MLflow
run by that key. Checkpoints are dropped once a job has finished.
"""

from __future__ import annotations

__all__ = ["DistillOutcome", "distill_cube", "job_key"]

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from lake.snapshot import Snapshot
from memlake.errors import StaleArtifactError
from memlake.events import Transformation
from memlake.model import ArtifactRef, SourceRef
from memlake.settings import TrainingSettings
from training.artifacts import ArtifactStore, artifact_sha256, path_component
from training.base_model import BaseLLM
from training.dataset import build_training_set
from training.evaluate import GateReport, gate, measure
from training.kv_cache import PrefixCache, build_prefix_cache, load_prefix_cache, staleness
from training.kv_job import current_artifact_memory, fit_to_budget
from training.lineage import ADAPTER_MEMORY_ID, KV_MEMORY_ID, EventSink, transformed_event
from training.lora import ADAPTER_FORMAT, attach_lora, lora_config
from training.selection import Selection, live_versions, select_memories
from training.tracking import MlflowTracker, registered_model_name
from training.trainer import SHAPING_SETTINGS, TrainResult, train_adapter

Status = Literal["skipped", "promoted", "rejected"]


@dataclass(frozen=True)
class DistillOutcome:
    cube_id: str
    status: Status
    reason: str
    run_id: str | None = None
    model_version: str | None = None
    report: GateReport | None = None
    train: TrainResult | None = None
    artifact: ArtifactRef | None = None
    sources: tuple[SourceRef, ...] = ()


def job_key(cube_id: str, data_digest: str, settings: TrainingSettings, fingerprint: str) -> str:
    shaping = settings.model_dump(mode="json", include=set(SHAPING_SETTINGS))
    body = json.dumps(
        {"cube": cube_id, "data": data_digest, "settings": shaping, "base": fingerprint}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def _teacher(
    base: BaseLLM, snapshot: Snapshot, selection: Selection, settings: TrainingSettings, store: ArtifactStore
) -> tuple[PrefixCache, tuple[SourceRef, ...]]:
    """The memories as a KV prefix: the cube's stored cache when it is fresh, else built now."""
    memories = fit_to_budget(base.tokenizer, selection.memories, settings.kv_max_tokens)
    stored = current_artifact_memory(snapshot, selection.cube_id, KV_MEMORY_ID)
    if stored is not None and stored.artifact is not None:
        try:
            cache = load_prefix_cache(stored.artifact, store, base=base)
        except StaleArtifactError:
            cache = None
        live = live_versions(snapshot, selection.cube_id)
        if (
            cache is not None
            and staleness(cache.manifest, fingerprint=base.fingerprint_id, live=live) is None
        ):
            return cache, (SourceRef(memory_id=KV_MEMORY_ID, version=stored.version), *cache.manifest.sources)
    cache = build_prefix_cache(base, cube_id=selection.cube_id, memories=memories)
    return cache, cache.manifest.sources


def distill_cube(
    *,
    base: BaseLLM,
    snapshot: Snapshot,
    memories_table_uri: str,
    settings: TrainingSettings,
    store: ArtifactStore,
    tracker: MlflowTracker,
    sink: EventSink,
    cube_id: str,
    now: datetime,
    min_memories: int = 1,
    restart: bool = False,
    accelerator: Any = None,
) -> DistillOutcome:
    """Distil one cube (see the module docstring). Under `accelerate launch` every process calls
    this; only the main one evaluates, tracks, stores and emits."""
    selection = select_memories(snapshot, settings, now=now, cube_id=cube_id).get(cube_id)
    if selection is None or len(selection.memories) < min_memories:
        found = 0 if selection is None else len(selection.memories)
        return DistillOutcome(cube_id, "skipped", f"{found} hot or pinned memories, {min_memories} needed")
    data = build_training_set(selection.memories)
    if not data.probes:
        return DistillOutcome(cube_id, "skipped", "no memory is long enough to ask about")
    key = job_key(cube_id, data.digest, settings, base.fingerprint_id)
    root = Path(settings.checkpoints_root or f"{settings.artifacts_root}/checkpoints")
    work_dir = root / path_component(cube_id) / key
    if restart and work_dir.exists():
        shutil.rmtree(work_dir)
    main = accelerator is None or accelerator.is_main_process

    teacher: PrefixCache | None = None
    sources = selection.sources
    transformation = Transformation.PLAINTEXT_TO_PARAMETRIC
    if settings.mode == "context":
        teacher, sources = _teacher(base, snapshot, selection, settings, store)
        transformation = Transformation.ACTIVATION_TO_PARAMETRIC

    run_id = None
    night = now.date().isoformat()
    if main:
        params = {
            **settings.model_dump(mode="json", exclude={"mlflow_tracking_uri"}),
            "cube_id": cube_id,
            "memories": len(selection.memories),
            "examples": len(data.examples),
            "probes": len(data.probes),
            "data_digest": data.digest,
            "base_model": base.name,
            "base_model_fingerprint": base.fingerprint_id,
            "lake_snapshot_watermark": selection.snapshot_watermark,
            "transformation": transformation.value,
        }
        run_id, resumed = tracker.open_run(cube_id=cube_id, night=night, job_key=key, params=params)
        if not resumed:
            tracker.log_dataset(
                run_id,
                data,
                name=f"{cube_id}@{night}",
                table_uri=memories_table_uri,
                table_version=selection.table_versions.get("memories"),
            )

    def on_checkpoint(step: int, losses: Any) -> None:
        if run_id is not None:
            first = step - len(losses) + 1
            tracker.log_series(run_id, "train_loss", [(first + i, v) for i, v in enumerate(losses)])

    config = lora_config(settings, num_layers=int(base.model.config.num_hidden_layers))
    try:
        with attach_lora(base, config, seed=settings.seed) as model, tempfile.TemporaryDirectory() as tmp:
            trained = train_adapter(
                base,
                model,
                data,
                settings,
                work_dir=work_dir,
                teacher_cache=teacher,
                accelerator=accelerator,
                on_checkpoint=on_checkpoint,
            )
            if not main:
                return DistillOutcome(cube_id, "skipped", "not the main process", train=trained)
            assert run_id is not None
            # The base is measured through the same model with the adapter switched off (the
            # same computation as the plain base model), after training: a resumed job never
            # pays for it twice.
            with model.disable_adapter():
                base_metrics = measure(model, base, data.probes, settings)
            report = gate(base_metrics, measure(model, base, data.probes, settings), settings)
            adapter_dir = Path(tmp) / "adapter"
            model.save_pretrained(str(adapter_dir))
            outcome = _record(
                tracker,
                store,
                sink,
                cube_id=cube_id,
                run_id=run_id,
                report=report,
                trained=trained,
                adapter_dir=adapter_dir,
                sources=sources,
                transformation=transformation,
                base=base,
                data_digest=data.digest,
            )
    except BaseException:
        if run_id is not None:
            tracker.finish(run_id, failed=True)
        raise
    tracker.finish(run_id)
    shutil.rmtree(work_dir, ignore_errors=True)
    return outcome


def _record(
    tracker: MlflowTracker,
    store: ArtifactStore,
    sink: EventSink,
    *,
    cube_id: str,
    run_id: str,
    report: GateReport,
    trained: TrainResult,
    adapter_dir: Path,
    sources: tuple[SourceRef, ...],
    transformation: Transformation,
    base: BaseLLM,
    data_digest: str,
) -> DistillOutcome:
    tracker.log_metrics(
        run_id,
        {
            **report.metrics(),
            "train_final_loss": trained.final_loss,
            "train_seconds": trained.seconds,
            "train_tokens_per_s": trained.tokens / trained.seconds if trained.seconds > 0 else 0.0,
        },
    )
    sha = artifact_sha256(adapter_dir)
    source = tracker.log_adapter(run_id, adapter_dir)
    version = tracker.register(
        cube_id,
        run_id=run_id,
        source=source,
        tags={
            "memlake.cube_id": cube_id,
            "memlake.sources": json.dumps([s.model_dump() for s in sources]),
            "memlake.gate": "passed" if report.passed else "rejected",
            "memlake.data_digest": data_digest,
            "memlake.base_model_fingerprint": base.fingerprint_id,
            "memlake.sha256": sha,
        },
    )
    tracker.set_tags(
        run_id, {"memlake.gate": "passed" if report.passed else "rejected", "memlake.model_version": version}
    )
    if not report.passed:
        return DistillOutcome(
            cube_id, "rejected", "; ".join(report.reasons), run_id, version, report, trained, None, sources
        )
    uri = store.put(adapter_dir, f"adapters/{path_component(cube_id)}/{run_id}")
    name = registered_model_name(tracker.settings, cube_id)
    artifact = ArtifactRef(
        uri=uri,
        format=ADAPTER_FORMAT,
        base_model_fingerprint=base.fingerprint_id,
        mlflow_model_version=f"models:/{name}/{version}",
        sha256=sha,
    )
    sink.send(
        transformed_event(
            cube_id=cube_id,
            memory_id=ADAPTER_MEMORY_ID,
            transformation=transformation,
            sources=sources,
            artifact=artifact,
            memory_type="lora-adapter",
            tags=("lora-adapter",),
            job="distill",
            ref=f"mlflow-run:{run_id}",
        )
    )
    # The log is the source of truth: the alias moves only after the event is confirmed.
    tracker.promote(cube_id, version)
    return DistillOutcome(
        cube_id, "promoted", "gate passed", run_id, version, report, trained, artifact, sources
    )

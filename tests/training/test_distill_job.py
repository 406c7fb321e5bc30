"""The nightly distillation end to end: real lake, real SmolLM2 + peft, real MLflow (SQLite), real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lake.snapshot import open_snapshot
from lake.tables import Lake
from memlake.events import MemoryTransformed, Transformation
from memlake.model import SourceRef, utcnow
from memlake.settings import Settings
from streams.producer import EventProducer
from training.artifacts import FileSystemArtifactStore, artifact_sha256
from training.base_model import BaseLLM
from training.distill_job import DistillOutcome, distill_cube
from training.lineage import ADAPTER_MEMORY_ID
from training.tracking import MlflowTracker, registered_model_name

from .lakefill import Fact, Workload, produce, sync_lake, topic_events

CUBE = "team:alpha"
FACTS = (
    Fact("m-locker", "Ada's locker code at the Berlin office is 4417.", ("ada",), reads=3),
    Fact("m-offsite", "The quarterly team offsite takes place in Lisbon on 14 May.", ("offsite",), reads=4),
    Fact("m-tea", "Bruno always drinks green tea with honey in the morning.", ("bruno",), reads=2),
    Fact("m-cold", "The old printer on floor two was replaced last year.", ("office",), reads=0),
)
_REPO = Path(__file__).resolve().parents[2]


@dataclass
class Night:
    settings: Settings
    outcome: DistillOutcome
    store: FileSystemArtifactStore
    tracker: MlflowTracker


def _distill(settings: Settings, base: BaseLLM, *, restart: bool = False) -> DistillOutcome:
    lake = Lake(settings.lake)
    with EventProducer(settings.kafka) as producer:
        return distill_cube(
            base=base,
            snapshot=open_snapshot(lake, tables=("memories", "usage")),
            memories_table_uri=lake.uri("memories"),
            settings=settings.training,
            store=FileSystemArtifactStore(settings.training.artifacts_root),
            tracker=MlflowTracker(settings.training),
            sink=producer,
            cube_id=CUBE,
            now=utcnow(),
            restart=restart,
        )


@pytest.fixture(scope="module")
def night(module_settings: Settings, base_llm: BaseLLM) -> Night:
    produce(module_settings, Workload().cube(CUBE, FACTS).cube("team:beta", FACTS[3:]).events)
    sync_lake(module_settings)
    outcome = _distill(module_settings, base_llm)
    return Night(
        module_settings,
        outcome,
        FileSystemArtifactStore(module_settings.training.artifacts_root),
        MlflowTracker(module_settings.training),
    )


@pytest.mark.integration
def test_the_adapter_is_gated_tracked_registered_and_emitted(night: Night) -> None:
    outcome, tracker = night.outcome, night.tracker
    assert outcome.status == "promoted", outcome.reason
    report = outcome.report
    assert report is not None
    assert report.adapter.recall_nll < report.base.recall_nll
    assert report.control_ppl_increase <= night.settings.training.gate_max_control_ppl_increase
    # Hot memories only, most read first, at the versions read; the cold one is left out.
    assert outcome.sources == (
        SourceRef(memory_id="m-offsite", version=1),
        SourceRef(memory_id="m-locker", version=1),
        SourceRef(memory_id="m-tea", version=1),
    )

    client = tracker.client()
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["cube_id"] == CUBE
    assert run.data.metrics["gate_passed"] == 1.0
    assert run.data.metrics["adapter_recall_nll"] == pytest.approx(report.adapter.recall_nll)
    losses = client.get_metric_history(outcome.run_id, "train_loss")
    assert [m.step for m in losses] == list(range(1, night.settings.training.max_steps + 1))
    dataset = run.inputs.dataset_inputs[0].dataset
    assert dataset.source_type == "delta_table"
    source = json.loads(dataset.source)
    assert source["path"] == Lake(night.settings.lake).uri("memories")
    assert source["delta_table_version"] == open_snapshot(Lake(night.settings.lake)).versions["memories"]
    assert "adapter_model.safetensors" in {
        a.path.split("/")[-1] for a in client.list_artifacts(outcome.run_id, "adapter")
    }

    champion = tracker.champion(CUBE)
    assert champion is not None
    assert champion.version == outcome.model_version
    assert champion.name == registered_model_name(night.settings.training, CUBE)

    [event] = [e for e in topic_events(night.settings) if isinstance(e, MemoryTransformed)]
    assert event.memory_id == ADAPTER_MEMORY_ID
    assert event.payload.transformation is Transformation.PLAINTEXT_TO_PARAMETRIC
    assert event.payload.sources == outcome.sources
    artifact = event.payload.artifact
    assert artifact is not None
    assert artifact.mlflow_model_version == f"models:/{champion.name}/{champion.version}"
    assert artifact.sha256 == artifact_sha256(night.store.fetch(artifact.uri))


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_")}
    t = settings.training
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(_REPO),
            "MEMLAKE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
            "MEMLAKE_KAFKA_EVENTS_TOPIC": settings.kafka.events_topic,
            "MEMLAKE_KAFKA_PARTITIONS": str(settings.kafka.partitions),
            "MEMLAKE_LAKE_ROOT": settings.lake.root,
            "MEMLAKE_MODELS_LLM_DEVICE": "cpu",
            "MEMLAKE_TRAINING": json.dumps(t.model_dump(mode="json")),
        }
    )
    return env


@pytest.mark.integration
def test_a_killed_job_resumes_from_its_checkpoint_with_the_same_metrics(
    night: Night, base_llm: BaseLLM, tmp_path: Path
) -> None:
    # The gate's thresholds do not shape training: with a gate no adapter can pass, the job
    # is the same job (same data, seed and checkpoints), and the rejection path is exercised.
    strict = night.settings.training.model_copy(update={"gate_min_nll_gain": 0.99})
    settings = night.settings.model_copy(update={"training": strict})
    checkpoints = Path(settings.training.artifacts_root) / "checkpoints"
    champion_before = night.tracker.champion(CUBE)
    emitted_before = len(topic_events(settings))
    log = tmp_path / "distill.log"
    with log.open("wb") as out:
        job = subprocess.Popen(
            [sys.executable, "-m", "memlake", "distill", "--cube", CUBE],
            env=_env(settings),
            cwd=_REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600
        try:
            while not list(checkpoints.rglob("checkpoint-*.pt")):
                assert job.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            job.send_signal(signal.SIGKILL)
        finally:
            job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    killed_at = max(int(p.stem.split("-")[1]) for p in checkpoints.rglob("checkpoint-*.pt"))
    assert 0 < killed_at < settings.training.max_steps

    outcome = _distill(settings, base_llm)
    assert outcome.train is not None
    assert outcome.train.resumed_from == killed_at
    # The same inputs and seed give the same losses and metrics, resumed or not.
    assert night.outcome.train is not None
    assert night.outcome.report is not None
    assert outcome.report is not None
    assert outcome.train.losses == night.outcome.train.losses
    assert outcome.report.metrics() | {"gate_passed": 1.0} == night.outcome.report.metrics()
    # Rejected: registered as a new version, but no event and the champion did not move.
    assert outcome.status == "rejected"
    assert "recall NLL gain" in outcome.reason
    assert outcome.model_version not in {None, night.outcome.model_version}
    assert night.tracker.champion(CUBE) == champion_before
    assert len(topic_events(settings)) == emitted_before
    # The killed run was continued, not duplicated; its checkpoints are gone once it finished.
    runs = night.tracker.client().search_runs(
        [night.tracker.experiment_id()], filter_string=f"tags.`memlake.cube_id` = '{CUBE}'"
    )
    assert len(runs) == 2
    assert outcome.run_id in {r.info.run_id for r in runs}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not list(checkpoints.rglob("checkpoint-*.pt"))

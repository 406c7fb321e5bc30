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

from lake.rows import memory_from_json
from lake.snapshot import open_snapshot
from lake.tables import Lake
from memlake.events import MemoryTransformed, Transformation
from memlake.model import MemoryKind, SourceRef, utcnow
from memlake.settings import Settings
from streams.producer import EventProducer
from training.artifacts import FileSystemArtifactStore, artifact_sha256
from training.base_model import BaseLLM
from training.distill_job import DistillOutcome, distill_cube
from training.kv_cache import generate, load_prefix_cache, prompt_for, staleness
from training.kv_job import KVJobResult, build_cube_cache, current_artifact_memory
from training.kv_registry import PrefixCacheRegistry
from training.lineage import ADAPTER_MEMORY_ID, KV_MEMORY_ID
from training.prompts import encode_prompt
from training.recite import recite_cube
from training.registry import AdapterRegistry
from training.selection import live_versions
from training.tracking import MlflowTracker, registered_model_name

from .lakefill import Fact, Workload, produce, sync_lake, topic_events

CUBE = "team:alpha"
FACTS = (
    Fact("m-locker", "Ada's locker code at the Berlin office is 4417.", ("ada",), reads=3),
    Fact("m-offsite", "The quarterly team offsite takes place in Lisbon on 14 May.", ("offsite",), reads=4),
    Fact("m-tea", "Bruno always drinks green tea with honey in the morning.", ("bruno",), reads=2),
    Fact("m-cold", "The old printer on floor two was replaced last year.", ("office",), reads=0),
)
# A cube of its own for the KV-cache job, whose memories change under it.
KV_CUBE = "team:gamma"
KV_FACTS = (
    Fact("g-pin", "The support hotline number is 555-0199.", ("support",), pinned=True),
    Fact("g-hot", "Deploys are frozen every Friday after 3 pm.", ("deploys",), reads=5),
    Fact("g-cold", "The wiki moved to a new server in March.", ("wiki",), reads=1),
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
    workload = Workload().cube(CUBE, FACTS).cube("team:beta", FACTS[3:]).cube(KV_CUBE, KV_FACTS)
    produce(module_settings, workload.events)
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


@pytest.mark.integration
def test_the_registry_serves_each_cubes_champion_and_follows_the_alias(
    night: Night, base_llm: BaseLLM
) -> None:
    tracker = night.tracker
    champion = tracker.champion(CUBE)
    assert champion is not None
    questions = [encode_prompt(base_llm.tokenizer, question=p) for p in _probe_questions()[:2]]
    plain_before = [generate(base_llm, q, max_new_tokens=8).token_ids for q in questions]
    registry = AdapterRegistry(base_llm, tracker, refresh_s=0)
    try:
        with registry.use(CUBE) as used:
            assert used.used
            assert (used.model_uri, used.run_id) == (champion.uri, night.outcome.run_id)
            adapted = [
                generate(base_llm, q, max_new_tokens=8, model=registry.model).token_ids for q in questions
            ]
        with registry.use("team:beta") as other:
            assert not other.used
            assert other.reason == "no champion adapter"
            plain = [
                generate(base_llm, q, max_new_tokens=8, model=registry.model).token_ids for q in questions
            ]
        assert plain == plain_before  # outside its cube, an adapter changes nothing
        assert adapted != plain_before

        moved = tracker.register(
            CUBE, run_id=champion.run_id or "", source=champion.source, tags=champion.tags
        )
        tracker.promote(CUBE, moved)
        assert registry.resolve(CUBE).version == moved
        assert registry.loaded() == {CUBE: f"models:/{champion.name}/{moved}"}

        foreign = {**champion.tags, "memlake.base_model_fingerprint": "bfloat16:another-model"}
        tracker.promote(
            CUBE, tracker.register(CUBE, run_id=champion.run_id or "", source=champion.source, tags=foreign)
        )
        refused = registry.resolve(CUBE)
        assert not refused.used
        assert "trained on base model bfloat16:another-model" in (refused.reason or "")
    finally:
        registry.close()
        tracker.promote(CUBE, champion.version)
    assert [generate(base_llm, q, max_new_tokens=8).token_ids for q in questions] == plain_before


def _probe_questions() -> list[str]:
    from training.dataset import build_training_set
    from training.selection import HotMemory

    data = build_training_set([HotMemory(f.memory_id, 1, f.text, f.tags) for f in FACTS[:3]])
    return [p.question for p in data.probes]


@pytest.mark.integration
def test_recitation_stores_what_the_adapter_holds_with_lineage_to_it(night: Night, base_llm: BaseLLM) -> None:
    settings = night.settings
    sync_lake(settings)  # the adapter's memory.transformed becomes the cube's parametric memory
    lake = Lake(settings.lake)
    with EventProducer(settings.kafka) as producer:
        result = recite_cube(
            base=base_llm,
            snapshot=open_snapshot(lake),
            settings=settings.training,
            store=night.store,
            sink=producer,
            cube_id=CUBE,
        )
    adapter = SourceRef(memory_id=ADAPTER_MEMORY_ID, version=1)
    assert result.adapter == adapter
    assert (
        result.model_version
        == f"models:/{registered_model_name(settings.training, CUBE)}/{night.outcome.model_version}"
    )
    assert [r.topic for r in result.recitations] == ["ada", "offsite", "bruno"]
    sync_lake(settings)
    memories = open_snapshot(lake).memories(cube_id=CUBE, live_only=True)
    stored = {
        row["memory_id"]: memory_from_json(row["memory_json"])
        for row in memories.select(["memory_id", "memory_json"]).to_pylist()
    }
    for recitation in result.recitations:
        memory = stored[recitation.memory_id]
        assert memory.kind is MemoryKind.PLAINTEXT
        assert memory.content is not None
        assert memory.content.text == recitation.text
        assert memory.header.lineage == (adapter,)
        assert recitation.topic in memory.header.tags


@pytest.mark.integration
def test_the_kv_cache_job_builds_once_and_again_when_a_source_changes(
    night: Night, base_llm: BaseLLM
) -> None:
    settings = night.settings
    lake = Lake(settings.lake)

    def build() -> KVJobResult:
        with EventProducer(settings.kafka) as producer:
            return build_cube_cache(
                base=base_llm,
                snapshot=open_snapshot(lake, tables=("memories", "usage")),
                settings=settings.training,
                store=night.store,
                sink=producer,
                cube_id=KV_CUBE,
                now=utcnow(),
            )

    first = build()
    assert first.built
    assert first.memories == 2  # the pinned and the hot one; g-cold was read once only
    sync_lake(settings)
    assert build().reason == "the current cache is fresh"

    produce(
        settings, Workload().update(KV_CUBE, "g-hot", "Deploys are frozen every Thursday after 5 pm.").events
    )
    sync_lake(settings)
    snapshot = open_snapshot(lake)
    stored = current_artifact_memory(snapshot, KV_CUBE, KV_MEMORY_ID)
    assert stored is not None
    assert stored.artifact is not None
    cache = load_prefix_cache(stored.artifact, night.store, base=base_llm)
    reason = staleness(
        cache.manifest, fingerprint=base_llm.fingerprint_id, live=live_versions(snapshot, KV_CUBE)
    )
    assert reason == "memory g-hot is at version 2, the cache has version 1"
    shelf = PrefixCacheRegistry(base_llm, night.store)
    assert shelf.get(stored, live_versions(snapshot, KV_CUBE)) == (None, reason)
    assert shelf.get(None, {}) == (None, "the cube has no KV cache")

    second = build()
    assert second.built
    sync_lake(settings)
    now_stored = current_artifact_memory(open_snapshot(lake), KV_CUBE, KV_MEMORY_ID)
    assert now_stored is not None
    assert now_stored.version == stored.version + 1
    assert now_stored.header.lineage == (
        SourceRef(memory_id="g-pin", version=1),
        SourceRef(memory_id="g-hot", version=2),
    )
    fresh, why = shelf.get(now_stored, live_versions(open_snapshot(lake), KV_CUBE))
    assert why is None
    assert fresh is not None
    assert shelf.get(now_stored, live_versions(open_snapshot(lake), KV_CUBE))[0] is fresh  # loaded once
    question = "On which day are deploys frozen?"
    reused = generate(base_llm, prompt_for(fresh, base_llm.tokenizer, question=question), prefix_cache=fresh)
    scratch = generate(
        base_llm,
        encode_prompt(
            base_llm.tokenizer,
            question=question,
            memories=[f.text for f in KV_FACTS[:1]] + ["Deploys are frozen every Thursday after 5 pm."],
        ),
    )
    assert reused.token_ids == scratch.token_ids


@pytest.mark.integration
def test_distill_all_skips_cubes_without_enough_hot_memories(
    night: Night, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from memlake.cli import main

    picky = night.settings.training.model_copy(update={"min_hot_memories": 50})
    for name, value in _env(night.settings.model_copy(update={"training": picky})).items():
        if name.startswith("MEMLAKE_"):
            monkeypatch.setenv(name, value)
    assert main(["distill", "--all"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cubes": 0, "reason": "no cube has enough hot memories"}


@pytest.mark.integration
def test_distill_runs_under_accelerate_launch(night: Night) -> None:
    picky = night.settings.training.model_copy(update={"min_hot_memories": 50})
    launcher = Path(sys.executable).parent / "accelerate"
    done = subprocess.run(
        [
            str(launcher),
            "launch",
            "--config_file",
            str(_REPO / "infra" / "accelerate" / "cpu.yaml"),
            "-m",
            "memlake",
            "distill",
            "--all",
        ],
        env=_env(night.settings.model_copy(update={"training": picky})),
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["cubes"] == 0

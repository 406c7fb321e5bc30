"""Erasure end to end: real broker, real Delta, Milvus Lite, MLflow on SQLite, the real embedder.

After `memlake erase SUBJECT` the subject's plaintext can be found nowhere
under the lake root, in the vector index or in Kafka's readable payloads;
KV caches built from it are gone and the adapter trained on it is withdrawn.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.tables import Lake
from memlake.cli import main
from memlake.errors import SealedContentError
from memlake.events import (
    Event,
    MemoryTransformed,
    MemoryTransformedPayload,
    Transformation,
    event_to_dict,
    new_event,
    parse_event,
)
from memlake.model import Actor, ActorKind, ArtifactRef, Content, MemoryStatus, Policy, SourceRef
from memlake.settings import Settings
from pipelines.consolidate import run_consolidate
from pipelines.consolidation_tables import VECTORS, VECTORS_SCHEMA, OwnTable
from pipelines.follow import run_jobs
from pipelines.hot_memories import HotMemoriesTable
from serving.milvus import open_vector_index
from streams.reader import OffsetRange, end_offsets, read_range
from streams.sdk import MemlakeClient
from streams.sealing import LocalKeyStore, Sealer
from tests.pipelines.cli_env import use_settings
from tests.pipelines.helpers import lake_memories, produce
from tests.waiting import until
from training.artifacts import FileSystemArtifactStore
from training.tracking import TAINTED_TAG, MlflowTracker, registered_model_name

pytestmark = pytest.mark.integration

SUBJECT = "person-7"
SECRETS = ("Dana Whitfield was diagnosed with asthma in 2019", "Dana Whitfield lives at 12 Larch Road")
NEEDLES = ("Whitfield", "asthma", "Larch Road")
OTHER = "The team standup is at 9:30 every weekday"
KV_JOB = Actor(kind=ActorKind.SYSTEM, id="kv-job")


def plaintext_in_lake(root: Path, needles: tuple[str, ...]) -> list[str]:
    """Every file under `root` holding a needle: Parquet cells decoded, other files as raw bytes."""
    found: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            texts: list[str] = []
            for column in table.columns:
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    texts.extend(v for v in column.to_pylist() if v)
                elif pa.types.is_binary(column.type):
                    texts.extend(v.decode("utf-8", "replace") for v in column.to_pylist() if v)
                elif pa.types.is_list(column.type):
                    texts.extend(str(v) for v in column.to_pylist() if v)
            blob = "\n".join(texts)
        else:
            blob = path.read_bytes().decode("utf-8", "replace")
        found.extend(f"{path.relative_to(root)}: {n}" for n in needles if n in blob)
    return found


def kafka_payloads(settings: Settings) -> list[bytes]:
    topic = settings.kafka.events_topic
    out: list[bytes] = []
    for partition, end in end_offsets(settings.kafka, topic).items():
        out.extend(r.value or b"" for r in read_range(settings.kafka, OffsetRange(topic, partition, 0, end)))
    return out


def _artifact(settings: Settings, tmp_path: Path, key: str) -> str:
    folder = tmp_path / "artifact-src" / key
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(uuid.uuid4().bytes * 8)
    return FileSystemArtifactStore(settings.training.artifacts_root).put(folder, key)


def _register_adapter(settings: Settings, cube: str, uri: str, *, champion: bool) -> str:
    tracker = MlflowTracker(settings.training)
    run_id, _ = tracker.open_run(cube_id=cube, night="2026-05-01", job_key=uri, params={})
    version = tracker.register(cube, run_id=run_id, source=uri, tags={})
    tracker.finish(run_id)
    if champion:
        tracker.promote(cube, version)
    return f"models:/{registered_model_name(settings.training, cube)}/{version}"


def _transformed(
    cube: str, memory_id: str, kind: Transformation, sources: list[str], artifact: ArtifactRef
) -> Event:
    return new_event(
        MemoryTransformed,
        cube_id=cube,
        memory_id=memory_id,
        actor=KV_JOB,
        payload=MemoryTransformedPayload(
            transformation=kind,
            sources=tuple(SourceRef(memory_id=s, version=1) for s in sources),
            artifact=artifact,
        ),
    )


def test_erase_leaves_no_trace_and_withdraws_what_was_built_from_the_subject(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(monkeypatch, settings)
    about = f"dana-{uuid.uuid4().hex[:6]}"
    shared = f"team-{uuid.uuid4().hex[:6]}"
    with MemlakeClient(settings, actor="user:alice") as client:
        client.create_cube(about, name="about dana", policy=Policy(encrypt_content=True), subject_id=SUBJECT)
        client.add_memory(about, SECRETS[0], memory_id="health")
        client.add_memory(about, SECRETS[1], memory_id="address")
        client.create_cube(shared, name="team", writers=["system:kv-job"])
        client.add_memory(shared, SECRETS[1] + ", a colleague said", memory_id="hearsay", subject_id=SUBJECT)
        client.add_memory(shared, OTHER, memory_id="standup")
        for _ in range(3):
            client.record_access(shared, ["hearsay", "standup"], request_kind="search")

    kv_uri = _artifact(settings, tmp_path, "kv/hearsay")
    tainted_uri = _artifact(settings, tmp_path, "adapters/hearsay")
    clean_uri = _artifact(settings, tmp_path, "adapters/standup")
    tainted_model = _register_adapter(settings, shared, tainted_uri, champion=True)
    clean_model = _register_adapter(settings, shared, clean_uri, champion=False)

    def ref(uri: str, fmt: str, model: str | None = None) -> ArtifactRef:
        return ArtifactRef(
            uri=uri, format=fmt, base_model_fingerprint="smollm2-test", mlflow_model_version=model
        )

    produce(
        settings.kafka,
        [
            _transformed(
                shared,
                "kv",
                Transformation.PLAINTEXT_TO_ACTIVATION,
                ["hearsay", "standup"],
                ref(kv_uri, "kv"),
            ),
            _transformed(
                shared,
                "adapter",
                Transformation.PLAINTEXT_TO_PARAMETRIC,
                ["hearsay"],
                ref(tainted_uri, "peft-lora", tainted_model),
            ),
            _transformed(
                shared,
                "adapter-clean",
                Transformation.PLAINTEXT_TO_PARAMETRIC,
                ["standup"],
                ref(clean_uri, "peft-lora", clean_model),
            ),
        ],
    )
    run_jobs(settings)
    from memlake.cli.governance import embed_factory

    run_consolidate(settings, embed_factory(settings), as_of=datetime.now(UTC))
    assert main(["index", "rebuild"]) == 0
    lake = Lake(settings.lake)
    root = Path(settings.lake.root)
    sealer = Sealer(LocalKeyStore(settings.governance.key_store))

    # Before: the subject's content is sealed everywhere, but it opens; derived copies exist.
    memories = lake_memories(lake)
    assert sealer.open(memories[(about, "health")].content) == SECRETS[0]  # type: ignore[arg-type]
    assert plaintext_in_lake(root, NEEDLES) == []
    assert plaintext_in_lake(root, ("standup is at 9:30",)), "the scan must see clear text in the lake"
    index_keys = open_vector_index(settings.serving, settings.models)
    index_keys.ensure()
    stored = index_keys.row_keys()
    before_keys = {(k.cube_id, k.memory_id) for k in stored}
    index_keys.close()
    assert {(about, "health"), (shared, "hearsay"), (shared, "standup")} <= before_keys
    vectors = OwnTable(lake, VECTORS, VECTORS_SCHEMA).read()
    assert SUBJECT in vectors.column("subject_id").to_pylist()
    assert "hearsay" in HotMemoriesTable(lake).read().column("memory_id").to_pylist()

    # A principal the policies do not allow is refused, and nothing is destroyed.
    assert main(["erase", SUBJECT, "--actor", "user:mallory"]) == 1
    assert "may not erase" in capsys.readouterr().err
    assert main(["erase", SUBJECT, "--actor", "user:mallory", "--dry-run"]) == 1  # as the run would be
    assert "may not erase" in capsys.readouterr().err
    assert sealer.open(memories[(about, "health")].content) == SECRETS[0]  # type: ignore[arg-type]

    assert main(["erase", SUBJECT, "--dry-run"]) == 0
    assert "would erase subject person-7: 2 cube(s)" in capsys.readouterr().out
    assert main(["erase", SUBJECT, "--actor", "user:alice", "--materialize"]) == 0
    out = capsys.readouterr().out
    assert "adapters withdrawn 1 (1 were champions)" in out

    # The key is gone: no copy of the content opens any more, in the lake or in Kafka.
    memories = lake_memories(lake)
    for key in ((about, "health"), (about, "address"), (shared, "hearsay")):
        assert memories[key].status is MemoryStatus.ERASED
        assert memories[key].content is None
    assert memories[(shared, "standup")].content == Content(text=OTHER)
    assert plaintext_in_lake(root, NEEDLES) == []
    assert plaintext_in_lake(root, ("standup is at 9:30",))
    # The current version of the history table: older files (until vacuum) hold only ciphertext.
    versions = lake.table("memory_versions").to_pyarrow_table().to_pylist()
    about_subject = [v for v in versions if v["memory_id"] in ("health", "address", "hearsay")]
    assert about_subject
    assert all(v["text"] is None and not v["sealed"] for v in about_subject)
    sealed_seen = 0
    for raw in kafka_payloads(settings):
        assert not any(n.encode() in raw for n in NEEDLES)
        content = event_to_dict(parse_event(raw)).get("payload", {}).get("content")
        if content and "sealed" in content:
            sealed_seen += 1
            with pytest.raises(SealedContentError):
                sealer.open(Content.model_validate(content))
    assert sealed_seen == 3

    # The derived copies are gone: index rows, vectors, hot rows.
    index = open_vector_index(settings.serving, settings.models)
    index.ensure()
    stored = index.row_keys()
    after_keys = {(k.cube_id, k.memory_id) for k in stored}
    index.close()
    assert not after_keys & {(about, "health"), (about, "address"), (shared, "hearsay")}
    assert (shared, "standup") in after_keys
    vectors = OwnTable(lake, VECTORS, VECTORS_SCHEMA).read()
    assert SUBJECT not in vectors.column("subject_id").to_pylist()
    assert "standup" in vectors.column("memory_id").to_pylist()
    hot = HotMemoriesTable(lake).read().column("memory_id").to_pylist()
    assert "hearsay" not in hot
    assert "standup" in hot

    # What was built from the subject: the KV cache is deleted, the adapter tainted and withdrawn.
    store = FileSystemArtifactStore(settings.training.artifacts_root)
    assert not store.exists(kv_uri)
    assert not store.exists(tainted_uri)
    assert store.exists(clean_uri)
    tracker = MlflowTracker(settings.training)
    assert tracker.champion(shared) is None
    name, _, version = tainted_model.removeprefix("models:/").rpartition("/")
    assert TAINTED_TAG in tracker.client().get_model_version(name, version).tags
    name, _, version = clean_model.removeprefix("models:/").rpartition("/")
    assert TAINTED_TAG not in tracker.client().get_model_version(name, version).tags
    assert memories[(shared, "kv")].status is MemoryStatus.DELETED
    assert memories[(shared, "adapter")].status is MemoryStatus.DELETED
    assert memories[(shared, "adapter-clean")].status is MemoryStatus.ACTIVE

    # Erasing again finds nothing left to erase.
    assert main(["erase", SUBJECT, "--dry-run"]) == 0
    assert "would erase subject person-7: 0 cube(s)" in capsys.readouterr().out


def test_erase_with_materialize_leaves_it_to_the_running_follower_and_waits_for_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The follower holds the writer lease: a one-shot run would be refused."""
    use_settings(monkeypatch, settings)
    about = f"erin-{uuid.uuid4().hex[:6]}"
    with MemlakeClient(settings, actor="user:alice") as client:
        client.create_cube(about, name="about erin", policy=Policy(encrypt_content=True), subject_id=SUBJECT)
        client.add_memory(about, SECRETS[0], memory_id="health")
    lake = Lake(settings.lake)
    stop = threading.Event()
    follower = threading.Thread(target=run_jobs, args=(settings,), kwargs={"follow": True, "stop": stop})
    follower.start()
    try:
        until(
            lambda: (about, "health") in (lake_memories(lake) if lake.exists("memories") else {}),
            timeout_s=120,
        )
        assert main(["erase", SUBJECT, "--actor", "user:alice", "--materialize"]) == 0
        out = capsys.readouterr().out
        assert "land and materialize left to the lake's running writer" in out
        assert "materialized; vacuum removed" in out
        erased = lake_memories(lake)[(about, "health")]
        assert erased.status is MemoryStatus.ERASED
        assert erased.content is None
    finally:
        stop.set()
        follower.join(timeout=120)

"""`memlake ingest | tail | dlq | status` end to end against the real broker."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from memlake.cli import main
from memlake.settings import KafkaSettings, Settings
from streams.sdk import MemlakeClient
from streams.tail import LogTail, format_tailed

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The command line reads its settings from the environment, as in production."""
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("MEMLAKE_KAFKA_EVENTS_TOPIC", kafka.events_topic)
    monkeypatch.setenv("MEMLAKE_KAFKA_DLQ_TOPIC", kafka.dlq_topic)
    monkeypatch.setenv("MEMLAKE_GOVERNANCE_KEY_STORE", str(tmp_path / "keys"))
    return Settings()


def _write_export(path: Path) -> Path:
    lines = [
        {"op": "create_cube", "cube": "travel", "name": "Trip planning", "actor": "user:sam"},
        {
            "op": "add",
            "cube": "travel",
            "text": "Sam is vegetarian",
            "memory_id": "diet",
            "actor": "user:sam",
        },
        {"op": "add", "cube": "travel", "text": "Flight lands 9:40", "priority": 3},
        {
            "op": "add",
            "cube": "travel",
            "text": "Hotel is near the station",
            "memory_id": "hotel",
            "actor": "user:sam",
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_ingest_then_tail_and_dlq(env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = _write_export(tmp_path / "export.jsonl")
    assert main(["ingest", str(export)]) == 1  # one line refused
    out = capsys.readouterr().out
    assert "4 lines, 3 events sent, 1 refused" in out
    assert "line 3: invalid memory.added event: priority: Input should be less than or equal to 1" in out

    assert main(["tail", "--from-beginning", "--max", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "travel  cube.created  by user:sam  name='Trip planning' owner=user:sam" in lines[0]
    assert "memory.added diet  by user:sam  [fact] 'Sam is vegetarian'" in lines[1]
    assert "memory.added hotel" in lines[2]

    assert main(["dlq"]) == 0
    out = capsys.readouterr().out
    assert f"ingest      {export}:3  invalid memory.added event: priority" in out
    assert out.rstrip().endswith(f"1 dead letters on {env.kafka.dlq_topic}")


def test_tail_prints_events_as_they_arrive_for_one_cube(env: Settings) -> None:
    seen: list[str] = []
    with LogTail(env.kafka, cube_id="live", max_events=2, idle_timeout_s=30) as tail:

        def read() -> None:
            seen.extend(format_tailed(t) for t in tail)

        reader = threading.Thread(target=read)
        reader.start()
        with MemlakeClient(env, actor="user:lee") as client:
            client.create_cube("other", name="Not followed")
            client.create_cube("live", name="Followed")
            client.add_memory("other", "not shown", memory_id="o1")
            client.add_memory("live", "shown as it arrives", memory_id="l1")
        reader.join(timeout=60)
    assert len(seen) == 2
    assert "live  cube.created  by user:lee" in seen[0]
    assert "'shown as it arrives'" in seen[1]


def test_tail_stops_when_idle(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--idle", "1"]) == 0
    assert capsys.readouterr().out == ""


def test_status_shows_topics_end_offsets_and_how_far_the_lake_is_behind(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "lake"
    monkeypatch.setenv("MEMLAKE_LAKE_ROOT", str(root))
    with MemlakeClient(env, actor="user:lee") as client:
        client.create_cube("s", name="S")
        delivery = client.add_memory("s", "one", memory_id="m")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"memlake writes to {env.kafka.bootstrap}" in out
    assert f"topic {env.kafka.events_topic}: 6 partitions, 2 records" in out
    assert f"  partition {delivery.partition}: end offset 2" in out
    assert f"topic {env.kafka.dlq_topic}: 1 partition, 0 records" in out
    assert f"lake at {root}: nothing landed yet" in out
    assert not root.exists()  # status only reads

    assert main(["materialize"]) == 0
    with MemlakeClient(env, actor="user:lee") as client:
        client.add_memory("s", "two", memory_id="m2")
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"lake at {root}: events v1, derived tables at v1\n" in out
    assert "  not landed yet: 1 events\n" in out
    assert f"  partition {delivery.partition}: 1 not landed\n" in out


def test_topics_creates_what_is_missing_and_says_what_exists(
    env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = f"{env.kafka.events_topic}.fresh"
    monkeypatch.setenv("MEMLAKE_KAFKA_EVENTS_TOPIC", fresh)
    assert main(["topics"]) == 0
    out = capsys.readouterr().out
    assert f"topic {fresh}: created (6 partitions, replication 1)" in out
    assert f"topic {env.kafka.dlq_topic}: exists (1 partitions, replication 1)" in out

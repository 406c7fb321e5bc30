"""`memlake verify`: the hash chain recomputed from Kafka and from the lake catches tampering."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lake.scan import scan
from lake.tables import Lake
from memlake.cli import main
from memlake.events import (
    CubeCreated,
    CubeCreatedPayload,
    Event,
    MemoryAdded,
    MemoryAddedPayload,
    new_event,
)
from memlake.model import Actor, ActorKind, Content
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.verify import verify_cube
from tests.pipelines.cli_env import use_settings
from tests.pipelines.helpers import produce

pytestmark = pytest.mark.integration

OWNER = Actor(kind=ActorKind.USER, id="owner")
T0 = datetime(2026, 2, 1, tzinfo=UTC)


def _cube(cube: str, memories: int) -> list[Event]:
    events: list[Event] = [
        new_event(
            CubeCreated, cube_id=cube, actor=OWNER, occurred_at=T0, payload=CubeCreatedPayload(name=cube)
        )
    ]
    for i in range(memories):
        events.append(
            new_event(
                MemoryAdded,
                cube_id=cube,
                memory_id=f"m{i}",
                actor=OWNER,
                occurred_at=T0 + timedelta(minutes=i + 1),
                payload=MemoryAddedPayload(content=Content(text=f"fact number {i} about {cube}")),
            )
        )
    return events


def _rows(lake: Lake, cube: str) -> list[dict[str, object]]:
    import pyarrow.compute as pc

    data = scan(
        lake.table("events"),
        lake.spec("events"),
        columns=["partition", "offset", "event_id", "event_json"],
        filter=pc.field("cube_id") == cube,
    )
    return sorted(data.to_pylist(), key=lambda r: (r["partition"], r["offset"]))


def _where(row: dict[str, object]) -> str:
    return f'"partition" = {row["partition"]} AND "offset" = {row["offset"]}'


def test_verify_finds_altered_missing_and_reordered_events(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cubes = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("intact", "altered", "missing", "moved")}
    for cube in cubes.values():
        produce(settings.kafka, _cube(cube, 5))
    run_jobs(settings)
    lake = Lake(settings.lake)
    for cube in cubes.values():
        report = verify_cube(settings, cube)
        assert report.ok, report.discrepancies
        assert report.lake_events == report.kafka_events == 6
        assert report.kafka_head == report.lake_head

    # Someone with write access to the lake edits one event, drops another and swaps two more.
    events = lake.table("events")
    altered = _rows(lake, cubes["altered"])[3]
    forged = str(altered["event_json"]).replace("fact number 2", "fact number 9")
    events.update(new_values={"event_json": forged}, predicate=_where(altered))
    missing = _rows(lake, cubes["missing"])[2]
    lake.table("events").delete(_where(missing))
    first, second = _rows(lake, cubes["moved"])[2:4]
    for row, other in ((first, second), (second, first)):
        lake.table("events").update(
            new_values={"event_json": str(other["event_json"]), "event_id": str(other["event_id"])},
            predicate=_where(row),
        )

    assert verify_cube(settings, cubes["intact"]).ok
    found = verify_cube(settings, cubes["altered"]).discrepancies
    assert {(d.kind, d.event_id) for d in found} == {
        ("altered", altered["event_id"]),
        ("broken_link", altered["event_id"]),
    }
    found = verify_cube(settings, cubes["missing"]).discrepancies
    kinds = {(d.kind, d.event_id) for d in found}
    assert ("missing", missing["event_id"]) in kinds
    assert {kind for kind, _ in kinds} == {"missing", "broken_link"}
    found = verify_cube(settings, cubes["moved"]).discrepancies
    assert {d.kind for d in found} == {"reordered", "broken_link"}
    assert {d.event_id for d in found if d.kind == "reordered"} <= {first["event_id"], second["event_id"]}

    # The command says so too, with a failing exit code.
    use_settings(monkeypatch, settings)
    assert main(["verify", cubes["intact"]]) == 0
    assert main(["verify", cubes["altered"], "--json"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert record["ok"] is False
    assert record["cube_id"] == cubes["altered"]


def test_events_not_landed_yet_are_not_missing(settings: Settings) -> None:
    cube = f"late-{uuid.uuid4().hex[:6]}"
    events = _cube(cube, 4)
    produce(settings.kafka, events[:3])
    run_jobs(settings)
    produce(settings.kafka, events[3:])
    report = verify_cube(settings, cube)
    assert report.ok, report.discrepancies
    assert (report.lake_events, report.not_landed) == (3, 2)
    assert "3 events in the lake, 3 in Kafka up to what it landed (2 more not landed yet)" in report.summary()


def test_verify_reads_the_partition_the_producer_chose(settings: Settings) -> None:
    from pipelines.verify import _partition_of
    from streams.producer import EventProducer

    with EventProducer(settings.kafka) as producer:
        for i in range(8):
            cube = f"where-{i}-{uuid.uuid4().hex[:4]}"
            (delivery,) = producer.send(_cube(cube, 0))
            assert delivery.partition == _partition_of(cube, list(range(settings.kafka.partitions)))

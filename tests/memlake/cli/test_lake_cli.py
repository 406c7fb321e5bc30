"""`memlake materialize | show | history | diff | sql | lake ... | rebuild` from the command line.

Settings come from the environment, as in production; each test lands its own log
on the real broker into its own lake (a folder, or a bucket of the local S3 API).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from benchmarks._lake_workload import generate
from infra.object_store import LocalObjectStore
from lake.lease import Lease
from lake.schemas import DERIVED_TABLES
from lake.tables import Lake
from memlake.cli import main
from memlake.events import CubeCreated, new_event
from memlake.fold import FoldResult
from memlake.model import Actor, ActorKind, MemoryStatus
from memlake.settings import KafkaSettings, Settings
from streams.reader import end_offsets
from tests.pipelines.helpers import produce, pure_fold

pytestmark = pytest.mark.integration


def _environment(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings, tmp_path: Path, root: str) -> None:
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("MEMLAKE_KAFKA_EVENTS_TOPIC", kafka.events_topic)
    monkeypatch.setenv("MEMLAKE_KAFKA_DLQ_TOPIC", kafka.dlq_topic)
    monkeypatch.setenv("MEMLAKE_GOVERNANCE_KEY_STORE", str(tmp_path / "keys"))
    monkeypatch.setenv("MEMLAKE_LAKE_ROOT", root)
    monkeypatch.setenv("MEMLAKE_PIPELINES_BATCH_MAX_EVENTS", "100")


def _materialized(kafka: KafkaSettings, capsys: pytest.CaptureFixture[str], *, seed: int) -> list[FoldResult]:
    """Land and materialize a fresh log with `memlake materialize`; each cube's pure fold, by cube id."""
    events = generate(240, cubes=2, seed=seed, rollbacks=False, erasures=False)
    produce(kafka, events)
    assert main(["materialize"]) == 0
    assert "done: batch" in capsys.readouterr().out
    return [result for _, result in sorted(pure_fold(events).items())]


def _json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def in_folder(kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KafkaSettings:
    """The command line's environment, with the lake in a folder of this test."""
    _environment(monkeypatch, kafka, tmp_path, str(tmp_path / "lake"))
    return kafka


def test_show_history_diff_and_sql_read_what_materialize_wrote(
    in_folder: KafkaSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _materialized(in_folder, capsys, seed=31)
    state = results[0].state
    assert state.cube is not None
    cube_id = state.cube.cube_id
    visible = {k for k, m in state.memories.items() if m.status is not MemoryStatus.DELETED}

    assert main(["show", cube_id, "--json"]) == 0
    (now,) = _json_lines(capsys)
    assert now["version"] == state.version
    assert set(now["memories"]) == visible
    assert main(["show", cube_id, "--as-of", "2", "--json"]) == 0
    (then,) = _json_lines(capsys)
    assert then["version"] == 2
    assert main(["show", cube_id]) == 0
    assert f"{cube_id} (" in capsys.readouterr().out

    memory_id, versions = next(iter(state.history.items()))
    assert main(["history", memory_id, "--cube", cube_id, "--json"]) == 0
    history = _json_lines(capsys)
    assert [h["cube_version"] for h in history] == [m.cube_version for m in versions]

    assert main(["diff", cube_id, "1", str(state.version)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{cube_id}: version 1 -> {state.version}"
    assert {line.split()[1] for line in lines if line.startswith("  + ")} == visible

    assert main(["sql", "SELECT count(*) AS n FROM memories"]) == 0
    memories = sum(len(r.state.memories) for r in results)
    assert capsys.readouterr().out.splitlines() == ["n", str(memories)]
    parquet, csv = tmp_path / "out" / "rows.parquet", tmp_path / "out" / "rows.csv"
    parquet.parent.mkdir()
    by_cube = "SELECT cube_id, count(*) AS n FROM memory_versions GROUP BY cube_id ORDER BY cube_id"
    assert main(["sql", by_cube, "--out", str(parquet)]) == 0
    assert main(["sql", by_cube, "--out", str(csv)]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out
    assert pq.read_table(parquet).to_pylist() == pacsv.read_csv(csv).to_pylist()
    first = Lake(Settings().lake).version("events") - 1
    assert main(["sql", "SELECT count(*) AS n FROM memory_versions", "--as-of", str(first)]) == 0
    earlier = int(capsys.readouterr().out.splitlines()[1])
    assert 0 < earlier < sum(row["n"] for row in pq.read_table(parquet).to_pylist())


def test_bad_requests_say_what_is_wrong(
    in_folder: KafkaSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cube = _materialized(in_folder, capsys, seed=32)[0].state.cube
    assert cube is not None
    cube_id, latest = cube.cube_id, cube.version

    assert main(["show", cube_id, "--as-of", "999"]) == 1
    assert f"cube {cube_id!r} has versions 1..{latest}, not 999" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["show", cube_id, "--as-of", "2026-01-01T00:00:00"])
    assert exited.value.code == 2
    assert "argument --as-of: '2026-01-01T00:00:00' needs a timezone" in capsys.readouterr().err
    assert main(["history", "no-such-memory"]) == 1
    assert "no memory 'no-such-memory'" in capsys.readouterr().err
    assert main(["sql", "SELECT 1 AS one", "--out", str(tmp_path / "rows.txt")]) == 1
    assert "unknown output format '.txt'" in capsys.readouterr().err
    assert main(["lake", "restore", "memories", "--version", "999"]) == 1
    assert "not 999" in capsys.readouterr().err
    assert main(["lake", "restore", "events", "--version", "1"]) == 1
    assert "the events table is the landed log and is not restored" in capsys.readouterr().err
    for argv in (["lake", "compact", "--table", "nope"], ["lake", "restore", "nope", "--version", "1"]):
        assert main(argv) == 1
        assert (
            "lake table 'nope': no such table (the lake's tables: events, memories" in capsys.readouterr().err
        )
    head = Lake(Settings().lake).version("events")
    assert main(["sql", "SELECT count(*) FROM memories", "--as-of", str(head + 1)]) == 1
    assert f"the events table has versions 0..{head}, not {head + 1}" in capsys.readouterr().err


@pytest.mark.usefixtures("quiet_kafka_client")
def test_a_rollback_the_lake_shows_cannot_apply_is_refused_before_anything_is_emitted(
    in_folder: KafkaSettings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cube = _materialized(in_folder, capsys, seed=33)[0].state.cube
    assert cube is not None
    cube_id, latest = cube.cube_id, cube.version
    logged = sum(end_offsets(in_folder, in_folder.events_topic).values())

    assert main(["rollback", cube_id, "--to-version", str(latest + 1)]) == 1
    err = capsys.readouterr().err
    assert f"cube {cube_id!r} cannot roll back to version {latest + 1}" in err
    assert f"between 1 and the current version {latest}" in err
    assert "note" not in err  # the lake holds the whole log: its lag is no reason
    assert main(["rollback", "no-such-cube", "--to-version", "1"]) == 1
    assert "cube 'no-such-cube' does not exist" in capsys.readouterr().err
    assert cube.policy.rollback_by == "owner"
    assert main(["rollback", cube_id, "--to-version", "1", "--actor", "user:mallory"]) == 1
    assert f"user:mallory may not roll back in cube {cube_id!r}" in capsys.readouterr().err
    assert sum(end_offsets(in_folder, in_folder.events_topic).values()) == logged  # nothing emitted

    assert main(["rollback", cube_id, "--to-version", str(latest)]) == 0  # as system:memlake-cli
    assert f"for {cube_id} to version {latest}" in capsys.readouterr().out
    assert sum(end_offsets(in_folder, in_folder.events_topic).values()) == logged + 1

    # A cube created a moment ago is in the log, not yet in the lake: the refusal says why.
    owner = Actor(kind=ActorKind.USER, id="owner")
    produce(in_folder, [new_event(CubeCreated, cube_id="just-created", actor=owner, payload={"name": "n"})])
    assert main(["rollback", "just-created", "--to-version", "1"]) == 1
    err = capsys.readouterr().err
    assert "cube 'just-created' does not exist" in err
    assert (
        "memlake: note: the lake is behind the log (2 events not landed): "
        "`memlake materialize` brings it up" in err
    )
    # The note is a hint: with Kafka away the refusal stands, without it.
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", f"127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("MEMLAKE_KAFKA_REQUEST_TIMEOUT_MS", "1000")
    assert main(["rollback", "just-created", "--to-version", "1"]) == 1
    err = capsys.readouterr().err
    assert err == "memlake: error: cube 'just-created' does not exist\n"


def test_compact_while_another_compaction_holds_the_lease_says_who_and_changes_nothing(
    in_folder: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    _materialized(in_folder, capsys, seed=35)
    lake = Lake(Settings().lake)
    versions = {name: lake.version(name) for name in DERIVED_TABLES}
    other = Lease(lake, "compact", seconds=600, holder="nightly-job")
    with other.held():
        assert main(["lake", "compact"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("memlake: error: lease 'compact' on the lake: held by nightly-job until ")
    assert {name: lake.version(name) for name in DERIVED_TABLES} == versions
    assert main(["lake", "compact"]) == 0  # released


def test_maintenance_restore_and_rebuild_keep_the_lake_whole(
    in_folder: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    _materialized(in_folder, capsys, seed=33)
    lake = Lake(Settings().lake)
    watermark = lake.watermark("memories")

    for action in (["compact"], ["checkpoint"], ["vacuum", "--dry-run"], ["vacuum"]):
        assert main(["lake", *action]) == 0
    out = capsys.readouterr().out
    assert "compact memories:" in out
    assert "vacuum memory_versions:" in out

    assert main(["lake", "restore", "memories", "--version", "1"]) == 0
    assert "the next `memlake materialize` re-applies what followed" in capsys.readouterr().out
    assert lake.watermark("memories") < watermark
    assert main(["materialize"]) == 0
    capsys.readouterr()
    # Back at the newest events version (compacting `events` made one more, with no events).
    assert set(lake.watermarks(DERIVED_TABLES).values()) == {lake.version("events")}

    assert main(["rebuild", "--verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    compared = [line.split() for line in lines if line.startswith("  ")]
    assert len(compared) == 7
    assert all(words[1] == "equal" for words in compared), lines
    assert not any(line.startswith("rebuilt tables at") for line in lines)  # a local rebuild cleans up


def test_the_commands_reach_an_s3_lake_through_the_environment(
    object_store: LocalObjectStore,
    kafka: KafkaSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _environment(monkeypatch, kafka, tmp_path, f"s3://{object_store.bucket()}/lake")
    monkeypatch.setenv("MEMLAKE_LAKE_STORAGE_OPTIONS", json.dumps(object_store.storage_options()))
    cube = _materialized(kafka, capsys, seed=34)[0].state.cube
    assert cube is not None

    assert main(["show", cube.cube_id, "--json"]) == 0
    (now,) = _json_lines(capsys)
    assert now["version"] == cube.version
    assert main(["sql", "SELECT count(DISTINCT cube_id) AS cubes FROM cubes"]) == 0
    assert capsys.readouterr().out.splitlines() == ["cubes", "2"]


def test_leases_says_who_holds_each_lease_of_the_lake_until_when(
    in_folder: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = Lake(Settings().lake)
    assert main(["lake", "leases"]) == 0
    assert capsys.readouterr().out.splitlines() == ["writer: free", "compact: free"]
    with Lease(lake, "writer", seconds=600, holder="materializer-0").held():
        Lease(lake, "compact", seconds=0.01, holder="nightly-job").acquire()  # then it died
        time.sleep(0.05)  # past its expiry: a fast read could otherwise still find it held
        assert main(["lake", "leases"]) == 0
    writer, compaction = capsys.readouterr().out.splitlines()
    assert writer.startswith("writer: held by materializer-0 until ")
    assert compaction.startswith("compact: free (expired ")
    assert compaction.endswith(", held by nightly-job)")

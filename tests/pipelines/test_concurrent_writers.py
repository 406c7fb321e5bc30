"""Two writers on one lake (a second follower, the overlap of a rolling deploy): the commit
that comes second is refused, lands nothing, and its batch is planned again; both finish,
and the tables are what one writer alone makes.

The writer lease (tests/pipelines/test_writer_lease.py) keeps a second process from writing
at all; these tests turn it off (`writer_lease_s=0`) to reach the commits beneath it, which
two writers still meet when a holder outlives its lease (its host stalled)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import lake.writer as writer_module
import pipelines.follow as follow_module
from benchmarks._lake_workload import generate
from lake.lease import Lease
from lake.maintenance import compact
from lake.scan import scan
from lake.schemas import EVENTS
from lake.tables import EVENTS_KEY, WRITER_KEY, Lake
from memlake.errors import LeaseHeldError
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.rebuild import run_rebuild
from tests.pipelines.cli_env import child_environment, start_materialize
from tests.pipelines.helpers import expected_memories, lake_memories, produce, pure_fold, with_pipelines

pytestmark = pytest.mark.integration
_NO_LEASE = {"MEMLAKE_PIPELINES_WRITER_LEASE_S": "0"}


def _converged(settings: Settings, events: list[Any]) -> None:
    lake = Lake(settings.lake)
    landed = scan(lake.table("events"), EVENTS, columns=["partition", "offset"])
    keys = pc.add(pc.multiply(landed.column("partition").cast("int64"), 10**9), landed.column("offset"))
    assert landed.num_rows == len(events) == len(pc.unique(keys))  # nothing lost, nothing twice
    assert lake_memories(lake) == expected_memories(pure_fold(events))
    result = run_rebuild(settings, verify=True)
    assert result.equal, [d for d in result.differences if not d.equal]


def test_a_follower_whose_commit_another_writer_made_first_plans_the_batch_again(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: as this process is about to append its first batch to `memory_versions`,
    another `memlake materialize` process runs that batch to the end."""
    events = generate(600, cubes=4, seed=8)
    produce(settings.kafka, events)
    env = child_environment(settings, tmp_path, **_NO_LEASE, MEMLAKE_PIPELINES_BATCH_MAX_EVENTS="300")
    log = tmp_path / "other.log"
    real = writer_module._write_rows
    others: list[int] = []

    def another_writer_first(dt: Any, table: Any, rows: pa.Table, **kwargs: Any) -> None:
        if table.name == "memory_versions" and not others:
            others.append(start_materialize(env, log).wait(timeout=300))
        real(dt, table, rows, **kwargs)

    monkeypatch.setattr(writer_module, "_write_rows", another_writer_first)
    done = run_jobs(with_pipelines(settings, batch_max_events=300, writer_lease_s=0))

    assert others == [0], log.read_text()
    assert done.conflicts >= 1  # memory_versions at least: the other process committed it first
    assert "planned again after another writer's commit" in done.line()
    # This process landed the first batch before the other began: counted, though the run of
    # that batch failed (its counters with it), and the other process landed the rest.
    landings = [e for e in Lake(settings.lake).commit_log("events") if EVENTS_KEY in e]
    first = min(landings, key=lambda e: e["version"])
    assert done.landed == first[EVENTS_KEY] > 0
    assert len({e[WRITER_KEY] for e in landings}) == 2
    assert sum(e[EVENTS_KEY] for e in landings) == len(events)
    _converged(settings, events)


def test_two_followers_started_together_both_finish_with_the_tables_of_one(
    settings: Settings, tmp_path: Path
) -> None:
    events = generate(3000, cubes=12, seed=9)
    produce(settings.kafka, events)
    Lake(settings.lake).ensure_all()  # before both children, so that they do not race to create them
    env = child_environment(settings, tmp_path, **_NO_LEASE, MEMLAKE_PIPELINES_BATCH_MAX_EVENTS="300")
    logs = [tmp_path / f"writer-{i}.log" for i in range(2)]
    writers = [start_materialize(env, log) for log in logs]
    try:
        codes = [writer.wait(timeout=600) for writer in writers]
    except subprocess.TimeoutExpired:
        for writer in writers:
            writer.kill()
        raise
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    _converged(settings, events)


def _small_batches(settings: Settings) -> Settings:
    return with_pipelines(settings, batch_max_events=300, maintenance_every=2)


def test_a_compaction_started_during_the_followers_own_is_refused_and_no_row_is_doubled(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the lease both would commit (delta-rs 1.6.6), and the table would hold every
    compacted row twice."""
    events = generate(900, cubes=6, seed=10)
    produce(settings.kafka, events)
    refused: list[LeaseHeldError] = []

    class Overtaken(Lake):
        """Another compaction starts after the follower's has opened `memory_versions`."""

        def table(self, name: str, *, version: Any = None) -> Any:
            dt = super().table(name, version=version)
            if name == "memory_versions" and not refused:
                with pytest.raises(LeaseHeldError) as other:
                    compact(Lake(self.settings), ["memory_versions"])
                refused.append(other.value)
            return dt

    monkeypatch.setattr(follow_module, "compact", lambda lake: compact(Overtaken(lake.settings)))
    done = run_jobs(_small_batches(settings))

    assert done.batches >= 2
    assert len(refused) == 1
    assert refused[0].holder is not None  # the follower's compaction
    _converged(settings, events)


def test_a_follower_leaves_compaction_to_its_next_round_while_another_holds_the_lease(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    events = generate(900, cubes=6, seed=10)
    produce(settings.kafka, events)
    scheduled = Lease(Lake(settings.lake), "compact", seconds=600, holder="a scheduled compaction")
    with scheduled.held(), caplog.at_level(logging.WARNING, logger="pipelines.follow"):
        done = run_jobs(_small_batches(settings))

    rounds = done.batches // 2
    assert rounds >= 1
    assert caplog.text.count("held by a scheduled compaction") == rounds
    assert caplog.text.count("compacting again after 2 more batches") == rounds
    log = Lake(settings.lake).commit_log("memory_versions")
    assert "OPTIMIZE" not in [entry["operation"] for entry in log]
    _converged(settings, events)

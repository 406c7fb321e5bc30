"""The writer lease: one process lands and materializes a lake, another follower stands by
and takes over when the lease is released or its holder died (real Delta; the jobs' tests
with a real broker)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks._lake_workload import generate
from lake.lease import Lease, holder_id, lease_state
from lake.tables import Lake
from memlake.errors import LakeError, LeaseHeldError
from memlake.settings import Settings
from pipelines.follow import run_jobs
from pipelines.rebuild import run_rebuild
from pipelines.writer_lease import WRITER_LEASE, WriterLease
from tests.pipelines.cli_env import child_environment, start_materialize
from tests.pipelines.helpers import expected_memories, lake_memories, produce, pure_fold
from tests.waiting import until


def _dead_holder() -> str:
    """The holder id a process of this host that has exited would have had."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return holder_id(int(child.stdout), "0dead0")


def test_a_second_writer_is_refused_while_the_first_holds_the_lease(lake: Lake) -> None:
    first = WriterLease(lake, seconds=60, holder="first")
    second = WriterLease(lake, seconds=60, holder="second")
    try:
        assert first.claim() is None
        held = second.claim()
        assert held is not None
        assert held.holder == "first"
        assert first.claim() is None  # kept, not taken again
        first.release()
        assert second.claim() is None
        assert lease_state(lake, WRITER_LEASE).holder == "second"
    finally:
        first.release()
        second.release()


def test_the_holder_keeps_the_lease_renewed_past_its_length(lake: Lake) -> None:
    writer = WriterLease(lake, seconds=0.8, holder="writer")
    other = Lease(lake, WRITER_LEASE, seconds=60, holder="other")
    try:
        assert writer.claim() is None
        time.sleep(2.0)  # two and a half leases: only the heartbeat keeps it
        with pytest.raises(LeaseHeldError, match="held by writer"):
            other.acquire()
        assert writer.claim() is None
    finally:
        writer.release()
    other.acquire()  # released: free at once, not at the expiry


def test_a_holder_that_could_not_renew_loses_the_lease_and_stands_by(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its store failed past the expiry, and another process took the lease over meanwhile."""
    writer = WriterLease(lake, seconds=0.4, holder="stalled")
    real_renew = Lease.renew

    def store_down(self: Lease) -> None:
        raise LakeError(f"_leases/{self.name}", "the store is unreachable")

    monkeypatch.setattr(Lease, "renew", store_down)
    try:
        assert writer.claim() is None
        time.sleep(0.6)
        other = Lease(lake, WRITER_LEASE, seconds=60, holder="successor")
        other.acquire()  # expired: taken over
        monkeypatch.setattr(Lease, "renew", real_renew)
        until(lambda: writer.claim() is not None)
        held = writer.claim()
        assert held is not None
        assert held.holder == "successor"
        assert other.state().holder == "successor"  # the stalled one released nothing of theirs
    finally:
        writer.release()


def test_a_release_the_store_refuses_is_left_to_the_expiry_and_raises_nothing(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writer = WriterLease(lake, seconds=60, holder="leaving")
    assert writer.claim() is None

    def store_down(self: Lease) -> None:
        raise LakeError(f"_leases/{self.name}", "the store is unreachable")

    monkeypatch.setattr(Lease, "release", store_down)
    with caplog.at_level(logging.WARNING, logger="pipelines.writer_lease"):
        writer.release()
    assert "lease 'writer' not released, it expires by itself" in caplog.text
    assert lease_state(lake, WRITER_LEASE).holder == "leaving"


def test_a_lease_whose_holder_died_on_this_host_is_taken_at_once(lake: Lake) -> None:
    dead = Lease(lake, WRITER_LEASE, seconds=600, holder=_dead_holder())
    dead.acquire()
    writer = WriterLease(lake, seconds=60)
    try:
        assert writer.claim() is None
    finally:
        writer.release()
    # A process id this process reused: this very id, which it does not hold.
    with Lease(lake, WRITER_LEASE, seconds=600, holder=holder_id(os.getpid(), "before")).held():
        restarted = WriterLease(lake, seconds=60)
        try:
            assert restarted.claim() is None
        finally:
            restarted.release()
    # One of another host or pid namespace (another container), one still running here, one of
    # the old form host:pid:nonce, or another lease of this process, is waited for.
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    here = WriterLease(lake, seconds=60, holder=holder_id(os.getpid(), "sibling"))
    dead_pid = _dead_holder().split(":")[1]
    waited = (
        f"elsewhere:{dead_pid}:{holder_id(0, '').split(':')[2]}:abc",
        f"{socket.gethostname()}:{dead_pid}:4026531836999:abc",
        holder_id(running.pid, "alive"),
        f"{socket.gethostname()}:{dead_pid}:abc",
    )
    try:
        for holder in waited:
            with Lease(lake, WRITER_LEASE, seconds=600, holder=holder).held():
                held = WriterLease(lake, seconds=60).claim()
                assert held is not None
                assert held.holder == holder
        assert here.claim() is None
        held = WriterLease(lake, seconds=60).claim()
        assert held is not None
        assert held.holder == here.holder
    finally:
        here.release()
        running.kill()
        running.wait()


@pytest.mark.integration
def test_a_one_shot_run_refuses_while_another_process_is_the_writer(settings: Settings) -> None:
    produce(settings.kafka, generate(50, cubes=2, seed=3))
    lake = Lake(settings.lake)
    with Lease(lake, WRITER_LEASE, seconds=600, holder="follower-1").held():
        with pytest.raises(LeaseHeldError, match="lease 'writer' on the lake: held by follower-1"):
            run_jobs(settings)
        assert not lake.exists("events")  # nothing created, nothing landed
    assert run_jobs(settings).landed == 50


@pytest.mark.integration
def test_a_standby_folds_nothing_and_takes_over_once_the_lease_is_released(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    events = generate(400, cubes=4, seed=5)
    produce(settings.kafka, events)
    lake = Lake(settings.lake)
    other = Lease(lake, WRITER_LEASE, seconds=600, holder="the other follower")
    other.acquire()
    stop = threading.Event()
    done: list[object] = []
    with caplog.at_level(logging.WARNING, logger="pipelines.follow"):
        standby = threading.Thread(target=lambda: done.append(run_jobs(settings, follow=True, stop=stop)))
        standby.start()
        try:
            until(
                lambda: "standing by: lease 'writer' on the lake: held by the other follower" in caplog.text
            )
            time.sleep(1.0)  # several looks at the lease: still standing by, nothing written
            assert caplog.text.count("standing by") == 1  # said once, not once a look
            assert not lake.exists("events")
            other.release()
            until(lambda: lake.watermark("memories") == lake.version("events") > 0)
            until(lambda: lake_memories(lake) == expected_memories(pure_fold(events)))
        finally:
            stop.set()
            standby.join(timeout=120)
    assert "this process writes the lake now" in caplog.text
    assert lease_state(lake, WRITER_LEASE).holder is None  # released when it stopped


@pytest.mark.integration
def test_a_second_follower_stands_by_until_the_first_stops_then_carries_on(
    settings: Settings, tmp_path: Path
) -> None:
    """Two `memlake materialize --follow` processes, as in a rolling deploy."""
    events = generate(1500, cubes=12, seed=12)
    produce(settings.kafka, events)
    lake = Lake(settings.lake)
    env = child_environment(settings, tmp_path, MEMLAKE_PIPELINES_BATCH_MAX_EVENTS="300")
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = start_materialize(env, logs[0], "--follow")
    processes = [first]
    try:
        until(lambda: "batch 1:" in logs[0].read_text(), timeout_s=300)
        second = start_materialize(env, logs[1], "--follow")
        processes.append(second)
        until(
            lambda: "standing by: lease 'writer' on the lake: held by" in logs[1].read_text(), timeout_s=300
        )
        until(lambda: lake_memories(lake) == expected_memories(pure_fold(events)), timeout_s=300)
        assert "batch " not in logs[1].read_text()  # it folded nothing while the first wrote

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 0, logs[0].read_text()[-3000:]
        more = generate(600, cubes=12, seed=13)
        produce(settings.kafka, more)
        until(lambda: lake_memories(lake) == expected_memories(pure_fold(events + more)), timeout_s=300)
        assert "this process writes the lake now" in logs[1].read_text()
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0, logs[1].read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    result = run_rebuild(settings, verify=True)
    assert result.equal, [d for d in result.differences if not d.equal]

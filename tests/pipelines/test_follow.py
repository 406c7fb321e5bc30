"""What the follow loop reads back from the log when a batch's run failed: the events and
dead letters its own land commits held, in the versions it had not counted yet."""

from __future__ import annotations

from benchmarks._lake_workload import generate
from lake.tables import Lake
from pipelines.follow import _landed_by
from tests.pipelines.helpers import land_events


def _land(lake: Lake, first: int, count: int, *, dead_letters: int, writer: str) -> None:
    events = generate(count, cubes=2, seed=first)
    land_events(lake, events, topic="t", first_offset=first, dead_letters=dead_letters, writer=writer)


def test_a_run_counts_only_its_own_land_commits_in_the_versions_it_has_not_counted(lake: Lake) -> None:
    _land(lake, 0, 10, dead_letters=1, writer="us")  # version 1: counted by an earlier batch
    _land(lake, 11, 20, dead_letters=2, writer="us")  # 2
    _land(lake, 33, 30, dead_letters=0, writer="them")  # 3
    _land(lake, 63, 5, dead_letters=3, writer="us")  # 4
    _land(lake, 71, 7, dead_letters=0, writer="us")  # 5: after the version the loop read
    assert _landed_by(lake, "us", after=1, upto=4) == (25, 5)
    assert _landed_by(lake, "them", after=1, upto=4) == (30, 0)
    assert _landed_by(lake, "us", after=4, upto=4) == (0, 0)
    assert _landed_by(lake, "us", after=0, upto=5) == (42, 6)

"""The lake's benchmarks run end to end on their tiny profile (real broker, real Delta)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._runner import run_in_process
from infra.broker import LocalBroker

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("name", "figure"),
    [
        ("lake_materialize", "ratio_to_floor"),
        ("lake_freshness", "latency_s"),
        ("lake_rebuild", "peak_rss_gib"),
        ("lake_small_files", "as_of_speedup_ratio"),
    ],
)
def test_lake_benchmark_tiny(
    name: str, figure: str, broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", broker.bootstrap)
    outcome = run_in_process(name, "tiny", tmp_path / name)
    assert outcome.status == "ok", outcome.error
    assert outcome.result is not None
    assert figure in outcome.result
    assert outcome.result["summary"]

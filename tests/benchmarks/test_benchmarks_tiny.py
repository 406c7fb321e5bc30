"""Every benchmark runs once on its tiny profile, so that none of them rots (CI runs this).

Each runs in its own process through the runner, as `make bench` runs it;
the benchmarks reach the session's test broker through the environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks._report import write_report
from benchmarks._runner import discover, run_benchmarks
from infra.broker import LocalBroker

BENCHMARKS = discover()


@pytest.mark.integration
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_on_its_tiny_profile(
    name: str, broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = broker.bootstrap.rsplit(":", 1)
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("MEMLAKE_BROKER_HOST", host)
    monkeypatch.setenv("MEMLAKE_BROKER_PORT", port)
    monkeypatch.setenv("MEMLAKE_BROKER_CONTROLLER_PORT", str(int(port) + 1))
    record = run_benchmarks("tiny", results_root=tmp_path / "results", only=[name], command="test")
    (outcome,) = record.outcomes
    assert outcome.status == "ok", outcome.error
    assert outcome.result
    assert isinstance(outcome.result, dict)
    saved = json.loads((tmp_path / "results" / "tiny" / name / "outcome.json").read_text())
    assert saved["status"] == "ok"
    markdown = tmp_path / "BENCHMARKS.md"
    write_report(
        "tiny",
        results_root=tmp_path / "results",
        markdown=markdown,
        known=BENCHMARKS,
        machine={},
        versions={},
    )
    assert f"## {name}" in markdown.read_text()


def test_the_tiny_test_covers_every_benchmark() -> None:
    assert "locomo_eval" in BENCHMARKS

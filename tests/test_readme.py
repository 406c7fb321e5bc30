"""The README's Python runs, as written, against the real broker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memlake.events import MemoryAdded, MemoryUpdated, parse_event
from memlake.fold import project
from memlake.settings import KafkaSettings
from streams.reader import plan_ranges, read_range

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.integration
def test_the_readme_python_runs(
    kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "the README shows Python"
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("MEMLAKE_KAFKA_EVENTS_TOPIC", kafka.events_topic)
    monkeypatch.setenv("MEMLAKE_KAFKA_DLQ_TOPIC", kafka.dlq_topic)
    monkeypatch.setenv("MEMLAKE_GOVERNANCE_KEY_STORE", str(tmp_path / "keys"))
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    assert "written to partition" in capsys.readouterr().out
    spans = plan_ranges(kafka, kafka.events_topic, after={})
    events = [parse_event(r.value or b"") for span in spans for r in read_range(kafka, span)]
    assert [e.type for e in events] == ["cube.created", "memory.added", "memory.updated", "memory.added"]
    state = project(events)
    assert not state.refused
    tea = state.memories["tea"]
    assert tea.content is not None
    assert tea.content.text == "Alice prefers jasmine tea"
    sealed = events[3]
    assert isinstance(sealed, MemoryAdded)
    assert sealed.payload.content is not None
    assert sealed.payload.content.subject_id == "ines"
    assert isinstance(events[2], MemoryUpdated)


@pytest.mark.integration
def test_the_tour_file_ingests_with_one_refused_line(kafka: KafkaSettings, tmp_path: Path) -> None:
    from memlake.settings import Settings
    from streams.sdk import MemlakeClient

    tour = README.parent / "infra" / "demo" / "tour.jsonl"
    assert f"memlake ingest {tour.relative_to(README.parent)}" in README.read_text()
    settings = Settings(kafka=kafka, governance={"key_store": tmp_path / "keys"})
    with MemlakeClient(settings, actor="service:ingest") as client:
        report = client.ingest(tour)
    assert report.sent == 3
    assert [p.line for p in report.problems] == [3]

"""The demo's Python steps run against the test broker and a lake of the test (make demo adds only
`memlake up`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.demo import main
from memlake.settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_the_demo_runs_and_shows_the_cube_back(
    kafka: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("MEMLAKE_KAFKA_EVENTS_TOPIC", kafka.events_topic)
    monkeypatch.setenv("MEMLAKE_KAFKA_DLQ_TOPIC", kafka.dlq_topic)
    monkeypatch.setenv("MEMLAKE_GOVERNANCE_KEY_STORE", str(tmp_path / "keys"))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 lines, 3 events sent, 1 refused" in out
    assert "line 3: invalid memory.added event: priority" in out
    # Read back from the topic: 1 cube + 8 conversation memories + 3 imported + update, access, delete.
    read_back = out[out.index("== 5.") : out.index("== 6.")]
    assert sum(1 for line in read_back.splitlines() if line.strip().startswith("p")) == 15
    assert "(sealed for ines)" in read_back
    assert '"content":{"sealed":{"alg":"AES-256-GCM"' in read_back
    folded = out[out.index("== 6.") : out.index("== 7.")]
    assert "at version 15" in folded
    assert "v2 preference Alice's hotel budget is now about 200 euros per night.  read 1x" in folded
    assert "[deleted]" in folded
    assert "ingest " in out[out.index("== 7.") : out.index("== 8.")]

    # The lake: materialized, read back in time, rolled back, queried; each step shows these.
    shown = {
        "8.": [
            "materialized 15 (applied 15, rejected 0, duplicates 0)",
            "memories          11 rows of this cube",
            "at version 15: 10 memories",
        ],
        "9.": [
            "at version 12: 11 memories",
            "v1 preference Alice's hotel budget is about 150 euros per night.",
            "v2 memory.updated   cube v13  Alice's hotel budget is now about 200 euros per night.",
        ],
        "10.": [
            "at version 16: 11 memories",
            "the memories are the same as then",
            "newest version: v3 by cube.rolled_back: Alice's hotel budget is about 150 euros",
        ],
        "11.": ["preference    6 memories, read 2x"],
    }
    steps = re.split(r"\n== ", out)
    for number, lines in shown.items():
        (text,) = [step for step in steps if step.startswith(number)]
        for line in lines:
            assert line in text, (number, line)

"""Every benchmark runs once on its tiny profile, so that none of them rots (CI runs this).

Each runs in its own process through the runner, as `make bench` runs it;
the benchmarks reach the session's test broker through the environment.
LoCoMo's also gets an OpenAI-compatible endpoint (a local stub speaking the
real HTTP protocol), so that its LLM-as-judge path runs end to end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks._report import write_report
from benchmarks._runner import discover, run_benchmarks
from infra.broker import LocalBroker
from tests.benchmarks.chat_stub import Stub

_GOLD_AND_GENERATED = re.compile(r"Gold answer: (.*)\nGenerated answer: (.*)\n")


def _stand_in_judge(body: dict[str, Any]) -> str:
    """CORRECT when the generated answer shares a word with the gold one; answers "Not mentioned"."""
    content = body["messages"][-1]["content"]
    match = _GOLD_AND_GENERATED.search(content)
    if match is None:
        return "Not mentioned in the conversation"
    gold, generated = (set(re.findall(r"\w+", part.lower())) for part in match.groups())
    return json.dumps({"label": "CORRECT" if gold & generated else "WRONG"})


BENCHMARKS = discover()
# A figure that some benchmarks' results must hold (each run once here, never twice in CI).
_KEY_FIGURES = {
    "lake_materialize": "ratio_to_floor",
    "lake_freshness": "latency_s",
    "lake_rebuild": "peak_rss_gib",
    "lake_small_files": "as_of_speedup_ratio",
    "locomo_eval": "recall",
}


@pytest.mark.integration
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_on_its_tiny_profile(
    name: str,
    broker: LocalBroker,
    stub: tuple[Stub, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, url = stub
    if name == "locomo_eval":
        state.default = _stand_in_judge
        monkeypatch.setenv("MEMLAKE_MODELS_OPENAI_BASE_URL", url)
        monkeypatch.setenv("MEMLAKE_MODELS_OPENAI_MODEL", "stand-in-judge")
        monkeypatch.setenv("MEMLAKE_MODELS_OPENAI_API_KEY", "test-key")
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
    assert _KEY_FIGURES.get(name, "summary") in outcome.result
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
    if name == "locomo_eval":
        judged = outcome.result["judge"]
        assert set(judged) == {
            "memlake (endpoint answers)",
            "memlake (local model)",
            "recent turns (local model)",
        }
        assert judged["memlake (local model)"]["overall"]["n"] >= 1
        prompts = [r["messages"][-1]["content"] for r in state.requests]
        assert any("Gold answer:" in p for p in prompts)  # the judge prompt
        assert any(p.startswith("You are answering a question") for p in prompts)  # the answer prompt
        assert all(r["auth"] == "Bearer test-key" for r in state.requests)


def test_the_tiny_test_covers_every_benchmark() -> None:
    assert "locomo_eval" in BENCHMARKS

"""The harness's bookkeeping with stand-in systems (the real path runs in test_benchmarks_tiny)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from benchmarks.locomo.baselines import Bm25Retriever
from benchmarks.locomo.dataset import Conversation, parse_conversation
from benchmarks.locomo.harness import LocomoProfile, run_locomo, select_questions
from benchmarks.locomo.systems import Retrieved, TurnRetrieverSystem, retrieved_from_turn
from tests.benchmarks.locomo.samples import sample


class Oracle:
    """Returns each question's evidence first: recall 1 wherever evidence exists."""

    name = "oracle"

    def __init__(self, conversation: Conversation) -> None:
        self._turns = {t.dia_id: t for t in conversation.turns}
        self._evidence = {q.question: q.evidence for q in conversation.questions}

    def ingest(self, conversations: Sequence[Conversation]) -> dict[str, float]:
        return {"stage": 0.5}

    def search(self, conversation: Conversation, query: str, k: int) -> list[Retrieved]:
        first = list(self._evidence.get(query, ()))
        rest = [d for d in self._turns if d not in first]
        return [retrieved_from_turn(self._turns[d]) for d in (first + rest)[:k]]

    def close(self) -> None:
        return None


class Reversed(Oracle):
    name = "variant"

    def search(self, conversation: Conversation, query: str, k: int) -> list[Retrieved]:
        return list(reversed(super().search(conversation, query, len(self._turns))))[:k]


def test_select_questions_takes_the_first_of_each_category() -> None:
    conv = parse_conversation(sample())
    assert [q.qid for q in select_questions(conv.questions, 1)] == [q.qid for q in conv.questions]
    assert len(select_questions([*conv.questions, *conv.questions], 1)) == 5
    assert select_questions(conv.questions, None) == list(conv.questions)


def test_run_locomo_scores_writes_and_compares(tmp_path: Path) -> None:
    conv = parse_conversation(sample())
    profile = LocomoProfile("test", None, None, 0, None)
    oracle = Oracle(conv)
    result = run_locomo(
        [conv],
        profile=profile,
        memlake=oracle,
        memlake_context=_NoContext(),
        baselines=[TurnRetrieverSystem("bm25", Bm25Retriever)],
        variants=[Reversed(conv)],
        out_dir=tmp_path,
        log=lambda _: None,
    )
    assert result["recall"]["oracle"]["turn"]["overall"]["5"] == pytest.approx(1.0)
    # At k=1 the multi-hop question (two evidence turns) finds half of its evidence.
    assert result["recall"]["oracle"]["turn"]["overall"]["1"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert result["beats_baselines_at_recall10"] is False  # bm25 also finds everything in 5 turns
    assert result["recall10_ratio_vs_bm25"] == pytest.approx(1.0)
    assert "variant" in result["recall"]
    assert "variant" not in result["latency_ms"]  # a variant's latency is not reported
    assert set(result["latency_ms"]) == {"oracle", "bm25"}
    assert result["ingestion_s"]["oracle"]["stage"] == 0.5
    assert result["data"] == {"conversations": 1, "turns": 5, "questions": 5, "with_evidence": 4}
    assert "answers" not in result
    assert "| oracle | 83.3 | 100.0 | 100.0 | 100.0 |" in result["markdown"]
    assert (tmp_path / "recall_at_k.png").stat().st_size > 0
    assert (tmp_path / "latency.png").stat().st_size > 0
    assert "recall_at_k.png" in (tmp_path / "report.md").read_text()
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert rows[0]["ranked"]["oracle"][0] == "D1:1"


class _NoContext:
    name = "none"

    def context(self, conversation: Conversation, query: str, budget_tokens: int) -> list[Retrieved]:
        raise AssertionError("no answers are asked for in this profile")

from __future__ import annotations

import math

import pytest

from memlake.settings import TrainingSettings
from training.evaluate import RecallMetrics, control_texts, f1_score, gate

SETTINGS = TrainingSettings(gate_min_nll_gain=0.05, gate_max_control_ppl_increase=0.10)
BASE = RecallMetrics(recall_nll=4.0, answer_f1=0.2, exact_match=0.0, control_ppl=40.0, probes=5)


def _adapter(**changes: float) -> RecallMetrics:
    values = {"recall_nll": 2.0, "answer_f1": 0.6, "exact_match": 0.2, "control_ppl": 41.0, "probes": 5}
    values.update(changes)
    return RecallMetrics(**values)  # type: ignore[arg-type]


def test_f1_is_word_overlap_ignoring_case_punctuation_and_articles() -> None:
    assert f1_score("In Lisbon, on 14 May.", "in lisbon on 14 may") == 1.0
    assert f1_score("the Lisbon office", "Lisbon") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert f1_score("Paris", "Lisbon") == 0.0
    assert f1_score("", "") == 1.0


def test_an_adapter_that_remembers_without_forgetting_passes() -> None:
    report = gate(BASE, _adapter(), SETTINGS)
    assert report.passed
    assert report.reasons == ()
    assert report.nll_gain == pytest.approx(0.5)
    assert report.control_ppl_increase == pytest.approx(0.025)
    assert report.metrics()["gate_passed"] == 1.0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"recall_nll": 3.9}, "recall NLL gain"),
        ({"answer_f1": 0.1}, "answer F1 fell"),
        ({"control_ppl": 45.0}, "control perplexity rose"),
    ],
)
def test_each_failed_criterion_blocks_promotion_and_says_why(changes: dict[str, float], reason: str) -> None:
    report = gate(BASE, _adapter(**changes), SETTINGS)
    assert not report.passed
    assert len(report.reasons) == 1
    assert reason in report.reasons[0]


def test_without_probes_nothing_is_promoted() -> None:
    empty = RecallMetrics(recall_nll=0.0, answer_f1=0.0, exact_match=0.0, control_ppl=40.0, probes=0)
    report = gate(empty, empty, SETTINGS)
    assert not report.passed
    assert math.isfinite(report.nll_gain)


def test_the_control_set_ships_with_the_package() -> None:
    texts = control_texts()
    assert len(texts) >= 10
    assert all(t.endswith(".") for t in texts)

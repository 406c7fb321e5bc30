from __future__ import annotations

import pytest

from benchmarks.locomo.scoring import abstains, locomo_score, multi_answer_f1, normalize_answer, token_f1


def test_normalize_drops_commas_punctuation_articles_and_and() -> None:
    assert normalize_answer("The Cat, a dog and AN owl!") == "cat dog owl"


def test_token_f1_is_stemmed_and_partial() -> None:
    assert token_f1("painting sunsets", "paints a sunset") == pytest.approx(1.0)
    # prediction {transgend, woman, happi}, gold {transgend, woman}: P=2/3, R=1
    assert token_f1("happy transgender woman", "Transgender woman") == pytest.approx(0.8)
    assert token_f1("nothing in common", "adoption agencies") == 0.0
    assert token_f1("", "adoption agencies") == 0.0


def test_multi_answer_f1_averages_best_match_per_gold_part() -> None:
    # gold parts: "psychology" (matched exactly), "counseling certification" (half matched: P=1, R=1/2)
    score = multi_answer_f1("psychology, counseling", "Psychology, counseling certification")
    assert score == pytest.approx((1.0 + 2 / 3) / 2)


def test_category_rules() -> None:
    assert locomo_score("Psychology, counseling", "Psychology, counseling certification", 1) == pytest.approx(
        (1.0 + 2 / 3) / 2
    )
    # Category 3 keeps the gold answer before the first ';'.
    assert locomo_score("likely yes", "Likely yes; she wants to", 3) == pytest.approx(1.0)
    assert locomo_score("7 May 2023", "7 May 2023", 2) == pytest.approx(1.0)
    assert locomo_score("It is not mentioned", "self-care is important", 5) == 1.0
    assert locomo_score("(a) Not mentioned in the conversation", "x", 5) == 1.0
    assert locomo_score("self-care is important", "self-care is important", 5) == 0.0


def test_abstains() -> None:
    assert abstains("No information available.")
    assert not abstains("I do not know")

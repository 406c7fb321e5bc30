from __future__ import annotations

import pytest

from benchmarks.locomo._porter import stem

# Stems NLTK's PorterStemmer() (default NLTK_EXTENSIONS mode) gives for these words.
NLTK_STEMS = {
    "caresses": "caress",
    "flies": "fli",
    "dies": "die",
    "ties": "tie",
    "ponies": "poni",
    "mules": "mule",
    "denied": "deni",
    "died": "die",
    "spied": "spi",
    "agreed": "agre",
    "feed": "feed",
    "owned": "own",
    "humbled": "humbl",
    "sized": "size",
    "meeting": "meet",
    "stating": "state",
    "siezing": "siez",
    "itemization": "item",
    "sensational": "sensat",
    "traditional": "tradit",
    "reference": "refer",
    "colonizer": "colon",
    "plotted": "plot",
    "hopping": "hop",
    "falling": "fall",
    "filing": "file",
    "failing": "fail",
    "running": "run",
    "happy": "happi",
    "enjoy": "enjoy",
    "sky": "sky",
    "skies": "sky",
    "dying": "die",
    "generously": "gener",
    "relational": "relat",
    "national": "nation",
    "electrical": "electr",
    "hopeful": "hope",
    "goodness": "good",
    "formalize": "formal",
    "triplicate": "triplic",
    "adoption": "adopt",
    "psychology": "psycholog",
    "counseling": "counsel",
    "controlling": "control",
    "roll": "roll",
    "news": "news",
    "is": "is",
    "as": "as",
}


@pytest.mark.parametrize(("word", "expected"), sorted(NLTK_STEMS.items()))
def test_stem_matches_nltk_default_mode(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_stem_lower_cases() -> None:
    assert stem("Running") == "run"

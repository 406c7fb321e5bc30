"""LoCoMo's answer scorer: normalised, stemmed token F1, per category.

The rules follow LoCoMo's own `task_eval/evaluation.py` (Maharana et al., 2024):
- normalise: drop commas, lower-case, strip punctuation, drop `a|an|the|and`,
  collapse white space; stem each token with Porter (NLTK's default mode);
- categories 2, 3, 4: token F1 of the whole answer (category 3 keeps only the
  gold answer's part before the first `;`);
- category 1 (multi-hop): the gold answer and the prediction are split on
  commas; each gold part takes its best F1 over the predicted parts; the mean;
- category 5 (adversarial): 1 when the prediction says "no information
  available" or "not mentioned", else 0.
"""

from __future__ import annotations

__all__ = ["normalize_answer", "token_f1", "multi_answer_f1", "locomo_score", "abstains"]

import re
import string
from collections import Counter

from benchmarks.locomo._porter import stem

_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return [stem(token) for token in normalize_answer(text).split()]


def token_f1(prediction: str, ground_truth: str) -> float:
    predicted = _tokens(prediction)
    gold = _tokens(ground_truth)
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: str, ground_truth: str) -> float:
    predictions = [part.strip() for part in prediction.split(",")]
    golds = [part.strip() for part in ground_truth.split(",")]
    return sum(max(token_f1(p, g) for p in predictions) for g in golds) / len(golds)


def abstains(prediction: str) -> bool:
    lowered = prediction.lower()
    return "no information available" in lowered or "not mentioned" in lowered


def locomo_score(prediction: str, answer: str, category: int) -> float:
    """The score LoCoMo gives one prediction of one question of `category`."""
    if category == 5:
        return 1.0 if abstains(prediction) else 0.0
    if category == 1:
        return multi_answer_f1(prediction, answer)
    if category == 3:
        answer = answer.split(";", maxsplit=1)[0].strip()
    return token_f1(prediction, answer)

"""The evaluation gate: does an adapter remember more without forgetting the rest?

Closed-book recall on the distilled memories, asked under phrasings the
adapter never trained on (`TrainingSet.probes`, no memories in the prompt):
- the per-token negative log-likelihood of the right answer;
- answer F1 (SQuAD-style word overlap) and exact match of a greedy answer.
Regression on a fixed control set unrelated to any memory (`control.txt`):
perplexity.

The adapter is promoted only when its recall NLL is lower than the base
model's by at least `gate_min_nll_gain` (relative), its F1 is not lower, and
control perplexity rose by at most `gate_max_control_ppl_increase`.
"""

from __future__ import annotations

__all__ = [
    "RecallMetrics",
    "GateReport",
    "control_texts",
    "answer_nll",
    "answer_f1",
    "control_perplexity",
    "measure",
    "gate",
    "f1_score",
]

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

from memlake.settings import TrainingSettings
from training._batching import answer_targets, left_pad, positions
from training.base_model import BaseLLM
from training.dataset import Probe
from training.prompts import encode_example, encode_prompt

_EVAL_BATCH = 8


@dataclass(frozen=True, slots=True)
class RecallMetrics:
    recall_nll: float
    answer_f1: float
    exact_match: float
    control_ppl: float
    probes: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class GateReport:
    base: RecallMetrics
    adapter: RecallMetrics
    nll_gain: float  # (base - adapter) / base
    f1_delta: float
    control_ppl_increase: float  # adapter / base - 1
    passed: bool
    reasons: tuple[str, ...]

    def metrics(self) -> dict[str, float]:
        return {
            **self.base.as_dict("base"),
            **self.adapter.as_dict("adapter"),
            "gate_nll_gain": self.nll_gain,
            "gate_f1_delta": self.f1_delta,
            "gate_control_ppl_increase": self.control_ppl_increase,
            "gate_passed": 1.0 if self.passed else 0.0,
        }


@cache
def control_texts() -> tuple[str, ...]:
    text = resources.files("training").joinpath("control.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _normalise(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = _normalise(prediction), _normalise(truth)
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _token_nll(model: Any, base: BaseLLM, pairs: Sequence[tuple[list[int], list[int]]]) -> tuple[float, int]:
    """Summed NLL of the answer tokens given their prompts, and how many tokens."""
    import torch
    from torch.nn import functional as nnf

    total, count = 0.0, 0
    pad_id = int(base.tokenizer.pad_token_id)
    for start in range(0, len(pairs), _EVAL_BATCH):
        chunk = pairs[start : start + _EVAL_BATCH]
        ids, mask = left_pad([[*p, *a] for p, a in chunk], pad_id)
        keep = min(ids.shape[1], max(len(a) for _, a in chunk) + 1)
        labels = answer_targets([a for _, a in chunk], keep).to(base.device)
        ids, mask = ids.to(base.device), mask.to(base.device)
        with torch.no_grad():
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=keep
            )
        pred = logits.logits[:, :-1].float()
        nll = nnf.cross_entropy(
            pred.reshape(-1, pred.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(nll)
        count += int((labels != -100).sum())
    return total, count


def answer_nll(model: Any, base: BaseLLM, probes: Sequence[Probe]) -> float:
    """Mean per-token NLL of the right answers to closed-book probes."""
    pairs = [encode_example(base.tokenizer, prompt=p.question, answer=p.answer) for p in probes]
    total, count = _token_nll(model, base, pairs)
    return total / max(count, 1)


def answer_f1(
    model: Any, base: BaseLLM, probes: Sequence[Probe], *, max_new_tokens: int
) -> tuple[float, float]:
    """Mean F1 and exact match of greedy closed-book answers."""
    import torch

    f1s, exact = [], []
    for probe in probes:
        parts = encode_prompt(base.tokenizer, question=probe.question)
        ids = torch.tensor([parts.ids], dtype=torch.long, device=base.device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=base.eos_token_ids,
                pad_token_id=base.tokenizer.pad_token_id,
            )
        answer = base.tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True)
        f1s.append(f1_score(answer, probe.answer))
        exact.append(float(_normalise(answer) == _normalise(probe.answer)))
    return (sum(f1s) / len(f1s), sum(exact) / len(exact)) if f1s else (0.0, 0.0)


def control_perplexity(model: Any, base: BaseLLM, texts: Sequence[str] | None = None) -> float:
    pairs = [encode_example(base.tokenizer, prompt=None, answer=t) for t in (texts or control_texts())]
    total, count = _token_nll(model, base, pairs)
    return math.exp(total / max(count, 1))


def measure(model: Any, base: BaseLLM, probes: Sequence[Probe], settings: TrainingSettings) -> RecallMetrics:
    f1, exact = answer_f1(model, base, probes, max_new_tokens=settings.eval_max_new_tokens)
    return RecallMetrics(
        recall_nll=answer_nll(model, base, probes),
        answer_f1=f1,
        exact_match=exact,
        control_ppl=control_perplexity(model, base),
        probes=len(probes),
    )


def gate(base: RecallMetrics, adapter: RecallMetrics, settings: TrainingSettings) -> GateReport:
    """The promotion decision (pure: the same metrics always decide the same)."""
    nll_gain = (base.recall_nll - adapter.recall_nll) / base.recall_nll if base.recall_nll > 0 else 0.0
    f1_delta = adapter.answer_f1 - base.answer_f1
    ppl_increase = adapter.control_ppl / base.control_ppl - 1 if base.control_ppl > 0 else math.inf
    reasons = []
    if base.probes == 0:
        reasons.append("no held-out probes to measure recall on")
    if nll_gain < settings.gate_min_nll_gain:
        reasons.append(f"recall NLL gain {nll_gain:.3f} is below {settings.gate_min_nll_gain:.3f}")
    if f1_delta < 0:
        reasons.append(f"answer F1 fell by {-f1_delta:.3f}")
    if ppl_increase > settings.gate_max_control_ppl_increase:
        reasons.append(
            f"control perplexity rose {ppl_increase:.3f}, over {settings.gate_max_control_ppl_increase:.3f}"
        )
    return GateReport(base, adapter, nll_gain, f1_delta, ppl_increase, not reasons, tuple(reasons))

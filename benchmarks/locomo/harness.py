"""The LoCoMo harness: retrieval recall against two baselines, answer F1, the judge protocol, the report.

`run_locomo` takes the conversations, the memory system under test (memlake's
real path, `benchmarks.locomo.memlake_system`), the two baselines built on the
same turns, and a profile of sizes; it writes a Markdown report, PNG plots and
the per-question records under `out_dir` and returns the figures.
"""

from __future__ import annotations

__all__ = ["LocomoProfile", "PROFILES", "ContextSystem", "select_questions", "run_locomo"]

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.locomo.answers import (
    ContextItem,
    LocalAnswerer,
    build_prompt,
    most_recent_within,
    render_context,
)
from benchmarks.locomo.dataset import CATEGORY_NAMES, SCORED_CATEGORIES, Conversation, Question
from benchmarks.locomo.judge import ChatEndpoint, endpoint_answer, judge_accuracy
from benchmarks.locomo.metrics import KS, RecallScores, evaluate_retrieval, percentile
from benchmarks.locomo.report import (
    answer_table,
    cost_table,
    judge_table,
    plot_latency,
    plot_recall,
    retrieval_tables,
)
from benchmarks.locomo.scoring import locomo_score
from benchmarks.locomo.systems import MemorySystem, Retrieved


@dataclass(frozen=True)
class LocomoProfile:
    """How much of the data a run covers."""

    name: str
    conversations: int | None  # None: every conversation of the file
    retrieval_per_category: int | None  # questions per category per conversation; None: all
    answer_conversations: int | None  # conversations whose questions are answered; 0: none
    answers_per_category: int | None  # answered questions per category per conversation; None: all
    # The recent-turns baseline's window; None: the model's own context window.
    recent_window_tokens: int | None = None
    max_new_tokens: int = 24
    judge_runs: int = 1
    # Only the first sessions of each conversation (and the questions about them); None: all.
    sessions: int | None = None
    # At most this many answered questions per conversation (the first of the selection); None: all.
    answers_limit: int | None = None
    # Also ask the service with the default scheduler policy when the settings profile changes it
    # (a variant row in the recall table: one more pass over every question).
    policy_variant: bool = True


PROFILES: dict[str, LocomoProfile] = {
    # CI: the first three sessions of one conversation, two questions of each category, two of them
    # answered, a short baseline window: every step of the path on a few dozen turns.
    "tiny": LocomoProfile(
        "tiny", 1, 2, 1, 1, recent_window_tokens=512, max_new_tokens=8, sessions=3, answers_limit=2
    ),
    # `make bench`: every question of every conversation for retrieval (memlake's lead over BM25 on
    # the development split holds on all of them, not on every conversation alone: a sample would
    # measure noise); answers for four questions of one conversation, the first of each category
    # (on the development split: one each of categories 1-4; ~10 s + ~4 s per answer on this
    # machine: a check of the path, not a score), a 2k-token window for the recent-turns
    # baseline (its context is the costliest read of the run; `full` gives it the model's whole
    # window), and no default-policy variant row (`full` has it).
    "quick": LocomoProfile(
        "quick",
        None,
        None,
        1,
        1,
        recent_window_tokens=2048,
        answers_limit=4,
        policy_variant=False,
    ),
    "full": LocomoProfile("full", None, None, None, None, judge_runs=3),
}


class ContextSystem(Protocol):
    """A system that picks the memories a model gets for a question, within a token budget."""

    name: str

    def context(self, conversation: Conversation, query: str, budget_tokens: int) -> list[Retrieved]: ...


def select_questions(questions: Sequence[Question], per_category: int | None) -> list[Question]:
    """The first `per_category` questions of each category, in file order (all when None)."""
    if per_category is None:
        return list(questions)
    taken: dict[int, int] = {}
    chosen = []
    for q in questions:
        if taken.get(q.category, 0) < per_category:
            taken[q.category] = taken.get(q.category, 0) + 1
            chosen.append(q)
    return chosen


@dataclass
class _Answered:
    question: Question
    predictions: dict[str, str] = field(default_factory=dict)
    context_tokens: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _items(retrieved: Sequence[Retrieved]) -> list[ContextItem]:
    return [ContextItem(r.session, r.index, r.date_text, r.text) for r in retrieved]


def _retrieval(
    systems: Sequence[MemorySystem],
    conversations: Sequence[Conversation],
    questions: dict[str, list[Question]],
    k: int,
) -> tuple[dict[str, dict[str, list[str]]], dict[str, list[float]]]:
    ranked: dict[str, dict[str, list[str]]] = {s.name: {} for s in systems}
    latencies: dict[str, list[float]] = {s.name: [] for s in systems}
    for system in systems:
        # One untimed query first: lazy loads (tokenizers, caches) are not search latency.
        if conversations and conversations[0].questions:
            system.search(conversations[0], conversations[0].questions[0].question, k)
        for conversation in conversations:
            for q in questions[conversation.sample_id]:
                t0 = time.perf_counter()
                hits = system.search(conversation, q.question, k)
                latencies[system.name].append(time.perf_counter() - t0)
                ranked[system.name][q.qid] = [h.dia_id for h in hits]
    return ranked, latencies


def _answers(
    model: LocalAnswerer,
    *,
    memlake: ContextSystem,
    conversations: Sequence[Conversation],
    profile: LocomoProfile,
    budget_tokens: int,
    log: Callable[[str], None],
) -> list[_Answered]:
    out: list[_Answered] = []
    reserve = 192 + profile.max_new_tokens  # the question part of the prompt and the answer
    window = min(profile.recent_window_tokens or model.window, model.window)
    for conversation in conversations:
        chosen = select_questions(conversation.questions, profile.answers_per_category)[
            : profile.answers_limit
        ]
        if not chosen:
            continue
        speakers = (conversation.speaker_a, conversation.speaker_b)
        all_items = [
            ContextItem(t.session, t.index, t.session_date_text, t.document) for t in conversation.turns
        ]
        # The prompt around the context costs tokens too: measure it with an empty context.
        frame = model.count_tokens(
            build_prompt(model.apply_chat_template, speakers=speakers, context="", question=None).prefix
        )
        fits = most_recent_within(all_items, model.count_tokens, window - reserve - frame)
        ordered = sorted(all_items, key=lambda i: (i.session, i.index))
        recent_context = render_context(ordered[len(ordered) - fits :])
        recent_tokens = model.count_tokens(recent_context)
        t0 = time.perf_counter()
        shared = build_prompt(
            model.apply_chat_template, speakers=speakers, context=recent_context, question=None
        )
        cache = model.prefill(shared.prefix)
        log(
            f"[locomo] {conversation.sample_id}: recent-turns baseline holds {fits}/{len(ordered)} turns "
            f"({recent_tokens} tokens), prefilled in {time.perf_counter() - t0:.1f} s"
        )
        for q in chosen:
            record = _Answered(q)
            t0 = time.perf_counter()
            context_items = _items(memlake.context(conversation, q.question, budget_tokens))
            context = render_context(context_items)
            parts = build_prompt(model.apply_chat_template, speakers=speakers, context=context, question=q)
            record.predictions["memlake"] = model.answer(parts)
            record.context_tokens["memlake"] = model.count_tokens(context)
            record.seconds["memlake"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            parts = build_prompt(
                model.apply_chat_template, speakers=speakers, context=recent_context, question=q
            )
            record.predictions["recent_turns"] = model.answer(parts, cache=cache)
            record.context_tokens["recent_turns"] = recent_tokens
            record.seconds["recent_turns"] = time.perf_counter() - t0
            out.append(record)
        del cache
    return out


def _f1_by_category(answered: Sequence[_Answered], system: str) -> dict[str, Any]:
    scores: dict[str, list[float]] = {"overall": []}
    for a in answered:
        score = locomo_score(a.predictions[system], a.question.answer, a.question.category)
        scores.setdefault(str(a.question.category), []).append(score)
        if a.question.category in SCORED_CATEGORIES:
            scores["overall"].append(score)
    f1 = {group: (statistics.fmean(v) if v else math.nan) for group, v in scores.items()}
    tokens = [a.context_tokens[system] for a in answered]
    return {
        "f1": f1,
        "counts": {group: len(v) for group, v in scores.items()},
        "context_tokens_mean": statistics.fmean(tokens) if tokens else math.nan,
        "seconds_per_answer": statistics.fmean([a.seconds[system] for a in answered])
        if answered
        else math.nan,
    }


def _judge(
    endpoint: ChatEndpoint,
    *,
    memlake: ContextSystem,
    conversations: Sequence[Conversation],
    answered: Sequence[_Answered],
    budget_tokens: int,
    runs: int,
) -> dict[str, Any]:
    by_id = {c.sample_id: c for c in conversations}
    endpoint_answers: list[tuple[Question, str]] = []
    for a in answered:
        if a.question.category not in SCORED_CATEGORIES:
            continue
        conversation = by_id[a.question.qid.split("/")[0]]
        context = render_context(_items(memlake.context(conversation, a.question.question, budget_tokens)))
        answer = endpoint_answer(
            endpoint,
            speakers=(conversation.speaker_a, conversation.speaker_b),
            context=context,
            question=a.question.question,
        )
        a.predictions["memlake_endpoint"] = answer
        endpoint_answers.append((a.question, answer))
    return {
        "memlake (endpoint answers)": judge_accuracy(endpoint, endpoint_answers, runs=runs),
        "memlake (local model)": judge_accuracy(
            endpoint, [(a.question, a.predictions["memlake"]) for a in answered], runs=runs
        ),
        "recent turns (local model)": judge_accuracy(
            endpoint, [(a.question, a.predictions["recent_turns"]) for a in answered], runs=runs
        ),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def run_locomo(
    conversations: Sequence[Conversation],
    *,
    profile: LocomoProfile,
    memlake: MemorySystem,
    memlake_context: ContextSystem,
    baselines: Sequence[MemorySystem],
    out_dir: Path,
    variants: Sequence[MemorySystem] = (),
    answer_model: LocalAnswerer | None = None,
    answer_budget_tokens: int = 768,
    judge: ChatEndpoint | None = None,
    settings_note: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure everything on `conversations` (already cut to the profile's size) and write the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    k = max(KS)
    questions = {
        c.sample_id: select_questions(c.questions, profile.retrieval_per_category) for c in conversations
    }
    all_questions = [q for c in conversations for q in questions[c.sample_id]]
    systems: list[MemorySystem] = [memlake, *variants, *baselines]
    ingestion: dict[str, dict[str, float]] = {}
    for system in systems:
        t0 = time.perf_counter()
        stages = system.ingest(conversations)
        stages["total"] = time.perf_counter() - t0
        ingestion[system.name] = stages
        turns = sum(len(c.turns) for c in conversations)
        log(f"[locomo] {system.name}: ingested {turns} turns in {stages['total']:.1f} s")
    ranked, latencies = _retrieval(systems, conversations, questions, k)
    # A variant asks the same questions of the same service after memlake did: its query
    # embeddings come from the service's cache, so its latency is not a search latency.
    for variant in variants:
        latencies.pop(variant.name, None)
    scores: dict[str, RecallScores] = {
        name: evaluate_retrieval(all_questions, r) for name, r in ranked.items()
    }
    plot_recall(scores, out_dir / "recall_at_k.png")
    plot_latency(latencies, out_dir / "latency.png")

    answered: list[_Answered] = []
    answers: dict[str, dict[str, Any]] = {}
    if answer_model is not None and profile.answer_conversations != 0:
        answering = list(conversations[: profile.answer_conversations])
        answered = _answers(
            answer_model,
            memlake=memlake_context,
            conversations=answering,
            profile=profile,
            budget_tokens=answer_budget_tokens,
            log=log,
        )
        answers = {system: _f1_by_category(answered, system) for system in ("memlake", "recent_turns")}
    judged: dict[str, Any] = {}
    if judge is not None and answered:
        answering = list(conversations[: profile.answer_conversations])
        judged = _judge(
            judge,
            memlake=memlake_context,
            conversations=answering,
            answered=answered,
            budget_tokens=answer_budget_tokens,
            runs=profile.judge_runs,
        )

    with (out_dir / "questions.jsonl").open("w") as f:
        for q in all_questions:
            row: dict[str, Any] = {**asdict(q), "ranked": {name: r[q.qid][:10] for name, r in ranked.items()}}
            f.write(json.dumps(row) + "\n")
    if answered:
        with (out_dir / "answers.jsonl").open("w") as f:
            for a in answered:
                f.write(
                    json.dumps(
                        {
                            "qid": a.question.qid,
                            "category": a.question.category,
                            "question": a.question.question,
                            "gold": a.question.answer,
                            "predictions": a.predictions,
                            "context_tokens": a.context_tokens,
                        }
                    )
                    + "\n"
                )

    mem = scores[memlake.name]
    recall10 = {name: s.get("turn", "overall", 10) for name, s in scores.items()}
    figures: dict[str, Any] = {
        "data": {
            "conversations": len(conversations),
            "turns": sum(len(c.turns) for c in conversations),
            "questions": len(all_questions),
            "with_evidence": mem.counts.get("overall", 0) + mem.counts.get("5", 0),
        },
        "recall": {name: s.as_dict() for name, s in scores.items()},
        "latency_ms": {
            name: {"p50": 1000 * percentile(v, 50), "p95": 1000 * percentile(v, 95)}
            for name, v in latencies.items()
        },
        "ingestion_s": ingestion,
    }
    for baseline in baselines:
        figures[f"recall10_ratio_vs_{baseline.name}"] = _ratio(
            recall10[memlake.name], recall10[baseline.name]
        )
    figures["beats_baselines_at_recall10"] = all(recall10[memlake.name] > recall10[b.name] for b in baselines)
    if answers:
        figures["answers"] = answers
        figures["f1_ratio_vs_recent_turns"] = _ratio(
            answers["memlake"]["f1"]["overall"], answers["recent_turns"]["f1"]["overall"]
        )
        figures["context_tokens_ratio_vs_recent_turns"] = _ratio(
            answers["memlake"]["context_tokens_mean"], answers["recent_turns"]["context_tokens_mean"]
        )
    if judged:
        figures["judge"] = judged

    context_tokens = {"memlake": answers["memlake"]["context_tokens_mean"]} if answers else {}
    sections = [
        f"LoCoMo ({figures['data']['conversations']} conversations, {figures['data']['turns']} turns, "
        f"{figures['data']['questions']} questions; profile `{profile.name}`{settings_note}).",
        "",
        retrieval_tables(scores),
        "",
        "Cost (search = one query through the system, in process, after one warm-up query; "
        "ingestion per stage):",
        "",
        cost_table(latencies, ingestion=ingestion[memlake.name], context_tokens=context_tokens),
    ]
    if answers:
        window_text = (
            f"{profile.recent_window_tokens} tokens" if profile.recent_window_tokens else "the model's window"
        )
        n = answers["memlake"]["counts"]
        answered_count = sum(n.values()) - n.get("overall", 0)
        sections += [
            "",
            f"Answers with the local base model, LoCoMo token F1 (%) on {answered_count} questions; "
            f"memlake's memories vs the most recent turns that fit {window_text}:",
            "",
            answer_table(answers),
        ]
    if judged:
        sections += [
            "",
            f"LLM-as-judge accuracy (%), mean ± sd over {profile.judge_runs} run(s):",
            "",
            judge_table(judged),
        ]
    markdown = "\n".join(sections)
    (out_dir / "report.md").write_text(
        markdown + "\n\n![recall](recall_at_k.png)\n\n![latency](latency.png)\n"
    )
    k10 = " vs ".join(f"{name} {100 * v:.1f}%" for name, v in recall10.items())
    summary = f"Evidence recall@10 (turn level, categories 1-4): {k10}."
    if answers:
        summary += (
            f" Answer F1 (1-4): memlake {100 * answers['memlake']['f1']['overall']:.1f}% vs recent turns "
            f"{100 * answers['recent_turns']['f1']['overall']:.1f}%."
        )
    return {"summary": summary, "markdown": markdown, **figures, "category_names": CATEGORY_NAMES}

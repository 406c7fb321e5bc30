"""The LoCoMo report: Markdown tables and PNG plots, written under the results folder."""

from __future__ import annotations

__all__ = ["retrieval_tables", "answer_table", "cost_table", "judge_table", "plot_recall", "plot_latency"]

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.locomo.dataset import CATEGORY_NAMES, SCORED_CATEGORIES
from benchmarks.locomo.metrics import RecallScores, percentile

_GROUPS = ("overall", *(str(c) for c in SCORED_CATEGORIES), "5")


def _label(group: str) -> str:
    if group == "overall":
        return "overall (1-4)"
    return f"{group} {CATEGORY_NAMES.get(int(group), '')}".strip()


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def retrieval_tables(scores: Mapping[str, RecallScores]) -> str:
    """Recall@k overall, then recall@10 per category, for every system (percent)."""
    systems = list(scores)
    first = next(iter(scores.values()))
    ks = first.ks
    lines = [
        "Evidence recall@k (%) over categories 1-4, turn level / session level "
        f"({first.counts.get('overall', 0)} questions with evidence):",
        "",
        "| system | "
        + " | ".join(f"turn@{k}" for k in ks)
        + " | "
        + " | ".join(f"session@{k}" for k in ks)
        + " |",
        "|---|" + "---|" * (2 * len(ks)),
    ]
    for name in systems:
        s = scores[name]
        turn = " | ".join(_pct(s.get("turn", "overall", k)) for k in ks)
        session = " | ".join(_pct(s.get("session", "overall", k)) for k in ks)
        lines.append(f"| {name} | {turn} | {session} |")
    k10 = 10 if 10 in ks else ks[-1]
    lines += [
        "",
        f"Recall@{k10} (%) per category, turn / session level (category 5, adversarial, apart):",
        "",
        "| category | n | " + " | ".join(f"{n} turn | {n} session" for n in systems) + " |",
        "|---|---|" + "---|---|" * len(systems),
    ]
    for group in _GROUPS:
        cells = " | ".join(
            f"{_pct(scores[n].get('turn', group, k10))} | {_pct(scores[n].get('session', group, k10))}"
            for n in systems
        )
        lines.append(f"| {_label(group)} | {first.counts.get(group, 0)} | {cells} |")
    return "\n".join(lines)


def answer_table(answers: Mapping[str, Mapping[str, Any]]) -> str:
    """LoCoMo token F1 per category for each answering system (percent)."""
    systems = list(answers)
    lines = [
        "| category | n | " + " | ".join(systems) + " |",
        "|---|---|" + "---|" * len(systems),
    ]
    first = next(iter(answers.values()))
    for group in _GROUPS:
        n = first["counts"].get(group, 0)
        cells = " | ".join(_pct(answers[s]["f1"].get(group, float("nan"))) for s in systems)
        label = _label(group) + (" (abstention score)" if group == "5" else "")
        lines.append(f"| {label} | {n} | {cells} |")
    tokens = " | ".join(f"{answers[s]['context_tokens_mean']:.0f}" for s in systems)
    lines.append(f"| context tokens / question (mean) | | {tokens} |")
    return "\n".join(lines)


def judge_table(judged: Mapping[str, Mapping[str, Any]]) -> str:
    systems = list(judged)
    lines = ["| category | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    rows = [("overall", "overall (1-4)")] + [(str(c), _label(str(c))) for c in SCORED_CATEGORIES]
    for key, label in rows:
        cells = []
        for s in systems:
            acc = judged[s]["overall"] if key == "overall" else judged[s]["by_category"][key]
            cells.append(f"{_pct(acc['mean'])} ± {_pct(acc['std'])} (n={acc['n']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(
    latencies_s: Mapping[str, Sequence[float]],
    *,
    ingestion: Mapping[str, float],
    context_tokens: Mapping[str, float],
) -> str:
    lines = [
        "| system | search p50 (ms) | search p95 (ms) | queries | context tokens / question |",
        "|---|---|---|---|---|",
    ]
    for name, values in latencies_s.items():
        tokens = context_tokens.get(name)
        shown = f"{tokens:.0f}" if tokens is not None else "—"
        lines.append(
            f"| {name} | {1000 * percentile(values, 50):.1f} | {1000 * percentile(values, 95):.1f} "
            f"| {len(values)} | {shown} |"
        )
    if ingestion:
        lines += ["", "| ingestion stage | seconds |", "|---|---|"]
        lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in ingestion.items()]
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recall(scores: Mapping[str, RecallScores], path: Path) -> Path:
    """Recall@k curves, one panel per category (turn level solid, session level dashed)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharey=True)
    for ax, group in zip(axes.flat, _GROUPS, strict=True):
        for index, (name, s) in enumerate(scores.items()):
            color = f"C{index}"
            ks = list(s.ks)
            ax.plot(ks, [s.get("turn", group, k) for k in ks], "-o", color=color, label=f"{name} (turn)")
            ax.plot(
                ks, [s.get("session", group, k) for k in ks], "--", color=color, label=f"{name} (session)"
            )
        n = next(iter(scores.values())).counts.get(group, 0)
        ax.set_title(f"{_label(group)} (n={n})")
        ax.set_xscale("log")
        ax.set_xticks(list(next(iter(scores.values())).ks))
        ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel("k")
    axes[0][0].set_ylabel("evidence recall@k")
    axes[1][0].set_ylabel("evidence recall@k")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("LoCoMo evidence recall@k per category")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(latencies_s: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Distribution of search latency per system (log scale), p50 and p95 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(latencies_s)
    data = [[1000 * v for v in latencies_s[n]] for n in names]
    ax.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=True)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_xscale("log")
    for row, values in enumerate(data, start=1):
        if values:
            p50, p95 = percentile(values, 50), percentile(values, 95)
            ax.annotate(f"p50 {p50:.1f} ms, p95 {p95:.1f} ms", (p95, row + 0.25), fontsize=8)
    ax.set_xlabel("search latency per query (ms, log scale; whiskers p5-p95)")
    ax.set_title("LoCoMo search latency")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

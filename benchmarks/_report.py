"""BENCHMARKS.md, written by the runner from what it measured (never by hand)."""

from __future__ import annotations

__all__ = ["render_benchmarks_md", "flatten", "headline_ratios", "format_value"]

import math
import re
from collections.abc import Iterator
from typing import Any

from benchmarks._runner import QUICK_BUDGET_S, Outcome, RunRecord

_RATIO_KEY = re.compile(r"(^|[._])(ratio|speedup)([._]|$)|_ratio$|^ratio_")
_SHOWN_APART = ("summary", "markdown")
_MAX_ROWS = 80


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of a nested result, under its dotted key; lists of scalars stay one value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not prefix and key in _SHOWN_APART:
                continue
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def headline_ratios(result: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in flatten(result) if _RATIO_KEY.search(k.rsplit(".", 1)[-1])]


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _summary_row(outcome: Outcome, *, earlier: bool) -> str:
    ratios = headline_ratios(outcome.result or {})
    shown = "; ".join(f"{k} = {format_value(v)}" for k, v in ratios[:6]) or "—"
    if len(ratios) > 6:
        shown += f"; … ({len(ratios) - 6} more below)"
    status = outcome.status + (" (earlier run)" if earlier else "")
    return f"| {outcome.name} | {status} | {_minutes(outcome.wall_s)} | {shown} |"


def _section(outcome: Outcome, *, earlier: bool) -> list[str]:
    lines = [f"## {outcome.name}", ""]
    when = f"measured {outcome.started_at}" + (" in an earlier run of this profile" if earlier else "")
    lines += [f"{when}; wall time {_minutes(outcome.wall_s)}; status **{outcome.status}**.", ""]
    if outcome.status != "ok":
        tail = (outcome.error or "").strip().splitlines()[-15:]
        lines += ["```text", *tail, "```", ""]
        return lines
    result = outcome.result or {}
    if isinstance(result.get("summary"), str):
        lines += [result["summary"], ""]
    if isinstance(result.get("markdown"), str):
        lines += [result["markdown"].rstrip(), ""]
    rows = list(flatten(result))
    if rows:
        lines += ["<details><summary>All figures</summary>", "", "| figure | value |", "|---|---|"]
        lines += [f"| `{k}` | {format_value(v)} |" for k, v in rows[:_MAX_ROWS]]
        if len(rows) > _MAX_ROWS:
            lines.append(f"| … | {len(rows) - _MAX_ROWS} more in outcome.json |")
        lines += ["", "</details>", ""]
    return lines


def render_benchmarks_md(record: RunRecord) -> str:
    m = record.machine
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `python -m benchmarks run`; edits by hand are overwritten. -->",
        "",
        f"Profile **{record.profile}**, run {record.started_at} with `{record.command}` "
        f"(total {_minutes(record.wall_s)}). Every ratio is against a baseline measured in the same run. "
        f"Raw results, tables and plots: `benchmarks/results/{record.profile}/<benchmark>/`.",
        "",
    ]
    if record.profile == "quick" and not record.earlier and record.wall_s > QUICK_BUDGET_S:
        lines += [
            f"**Over budget:** the quick profile took {_minutes(record.wall_s)}, "
            f"more than the {_minutes(QUICK_BUDGET_S)} it must fit in.",
            "",
        ]
    lines += [
        "## Machine",
        "",
        "| CPU | cores | memory | accelerator | OS | Python | load average at start (1 min) |",
        "|---|---|---|---|---|---|---|",
        f"| {m.get('cpu_model')} | {m.get('cores')} | {m.get('memory_gib')} GiB | {m.get('accelerator')} "
        f"| {m.get('os')} | {m.get('python')} | {format_value(m.get('load_average'))} |",
        "",
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {name} | {version} |" for name, version in record.versions.items()),
        "",
        "## Summary",
        "",
        "| benchmark | status | wall time | ratios against the same-run baseline |",
        "|---|---|---|---|",
        *(_summary_row(o, earlier=False) for o in record.outcomes),
        *(_summary_row(o, earlier=True) for o in record.earlier),
        "",
    ]
    for outcome in record.outcomes:
        lines += _section(outcome, earlier=False)
    for outcome in record.earlier:
        lines += _section(outcome, earlier=True)
    return "\n".join(lines).rstrip() + "\n"

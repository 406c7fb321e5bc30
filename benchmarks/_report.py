"""BENCHMARKS.md, built from every benchmark result recorded under one profile (never by hand).

The report is a view of `benchmarks/results/<profile>/*/outcome.json`: each
benchmark's latest outcome, whichever run produced it, with the command, the
time and the load average of that run. A `--only` run therefore replaces its
own section and keeps the others, and `python -m benchmarks report` rebuilds
the file without running anything.
"""

from __future__ import annotations

__all__ = ["render_benchmarks_md", "write_report", "flatten", "headline_ratios", "format_value"]

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._runner import QUICK_BUDGET_S, Outcome, load_outcomes

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
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _command(outcome: Outcome) -> str:
    return f"`{outcome.command}`" if outcome.command else "an unrecorded command"


def _summary_row(outcome: Outcome) -> str:
    ratios = headline_ratios(outcome.result or {})
    shown = "; ".join(f"{k} = {format_value(v)}" for k, v in ratios[:6]) or "—"
    if len(ratios) > 6:
        shown += f"; … ({len(ratios) - 6} more below)"
    return (
        f"| {outcome.name} | {outcome.status} | {outcome.started_at} | {_minutes(outcome.wall_s)} "
        f"| {format_value(outcome.load_average)} | {shown} |"
    )


def _section(outcome: Outcome, suffix: str = "") -> list[str]:
    lines = [f"## {outcome.name}{suffix}", ""]
    lines += [
        f"Measured {outcome.started_at} with {_command(outcome)}; wall time {_minutes(outcome.wall_s)}; "
        f"load average at start (1 min) {format_value(outcome.load_average)}; status **{outcome.status}**.",
        "",
    ]
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


def render_benchmarks_md(
    profile: str,
    outcomes: Sequence[Outcome],
    *,
    machine: Mapping[str, object],
    versions: Mapping[str, str],
    missing: Sequence[str] = (),
    larger: Sequence[Outcome] = (),
) -> str:
    """The whole file: machine, versions, a summary row per outcome, then one section each;
    then `larger`, results of the `full` profile's sizes run one by one, the same way."""
    total = sum(o.wall_s for o in outcomes if not math.isnan(o.wall_s))
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `python -m benchmarks run` / `python -m benchmarks report`; "
        "edits by hand are overwritten. -->",
        "",
        f"Profile **{profile}**: the latest result of each benchmark under "
        f"`benchmarks/results/{profile}/<benchmark>/` (tables, plots and raw figures there), each with the "
        f"command, time and load of the run that measured it. `python -m benchmarks report --profile "
        f"{profile}` rebuilds this file without running anything. Every ratio is against a baseline "
        "measured in the same run of that benchmark.",
        "",
        f"Sum of the wall times below: {_minutes(total)}"
        + (f" (the quick profile must fit in {_minutes(QUICK_BUDGET_S)})." if profile == "quick" else "."),
        "",
    ]
    if profile == "quick" and total > QUICK_BUDGET_S:
        lines += [
            f"**Over budget:** these quick benchmarks took {_minutes(total)} together, "
            f"more than the {_minutes(QUICK_BUDGET_S)} they must fit in.",
            "",
        ]
    if missing:
        lines += [f"Not measured in this profile yet: {', '.join(missing)}.", ""]
    lines += [
        "## Machine",
        "",
        "| CPU | cores | memory | accelerator | OS | Python |",
        "|---|---|---|---|---|---|",
        f"| {machine.get('cpu_model')} | {machine.get('cores')} | {machine.get('memory_gib')} GiB "
        f"| {machine.get('accelerator')} | {machine.get('os')} | {machine.get('python')} |",
        "",
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {name} | {version} |" for name, version in versions.items()),
        "",
        "## Summary",
        "",
        "| benchmark | status | measured (UTC) | wall time | load average at start (1 min) "
        "| ratios against the same-run baseline |",
        "|---|---|---|---|---|---|",
        *(_summary_row(o) for o in outcomes),
        "",
    ]
    for outcome in outcomes:
        lines += _section(outcome)
    if larger:
        lines += [
            "# Larger sizes (profile full)",
            "",
            "Benchmarks run one by one with `--profile full` (the sizes the issues name: 100k memories, "
            "1M events), from `benchmarks/results/full/`.",
            "",
            "| benchmark | status | measured (UTC) | wall time | load average at start (1 min) "
            "| ratios against the same-run baseline |",
            "|---|---|---|---|---|---|",
            *(_summary_row(o) for o in larger),
            "",
        ]
        for outcome in larger:
            lines += _section(outcome, " (full)")
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    profile: str,
    *,
    results_root: Path,
    markdown: Path,
    known: Sequence[str],
    machine: Mapping[str, object],
    versions: Mapping[str, str],
) -> list[Outcome]:
    """Rewrite `markdown` from every outcome recorded for `profile`; returns those outcomes."""
    # A result left by a benchmark that no longer exists is not reported.
    outcomes = [o for o in load_outcomes(results_root / profile) if o.name in known]
    present = {o.name for o in outcomes}
    # The quick report also shows what was measured at the full sizes, when anything was.
    larger = (
        [o for o in load_outcomes(results_root / "full") if o.name in known]
        if profile == "quick" and (results_root / "full").is_dir()
        else []
    )
    text = render_benchmarks_md(
        profile,
        outcomes,
        machine=machine,
        versions=versions,
        missing=[name for name in known if name not in present],
        larger=larger,
    )
    markdown.write_text(text)
    return outcomes

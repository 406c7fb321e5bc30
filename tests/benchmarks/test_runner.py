"""The bench runner: discovery, isolation of failures, time limits, the results folder, BENCHMARKS.md."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks._machine import describe_machine, package_versions
from benchmarks._report import flatten, headline_ratios, write_report
from benchmarks._runner import discover, load_outcome, run_benchmarks, run_in_process, run_isolated

GOOD = """
from pathlib import Path

def run(profile: str, out_dir: Path) -> dict:
    (out_dir / "table.md").write_text("| a |")
    return {"summary": f"fine on {profile}", "markdown": "| x | y |\\n|---|---|\\n| 1 | 2 |",
            "throughput": {"memlake": 200.0, "baseline": 100.0}, "speedup_ratio": 2.0, "n": 3}
"""
BROKEN = """
def run(profile, out_dir):
    raise RuntimeError("the broker went away")
"""
NOT_A_DICT = """
def run(profile, out_dir):
    return [1, 2]
"""
SLOW = """
import time

def run(profile, out_dir):
    time.sleep(60)
    return {}
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    name = f"benchpkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "src"
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(GOOD)
    (pkg / "broken.py").write_text(BROKEN)
    (pkg / "not_a_dict.py").write_text(NOT_A_DICT)
    (pkg / "slow.py").write_text(SLOW)
    (pkg / "_helpers.py").write_text("X = 1\n")
    (pkg / "subpackage").mkdir()
    (pkg / "subpackage" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    return name, pkg


def test_discover_lists_public_modules_only(package: tuple[str, Path]) -> None:
    _, pkg = package
    assert discover(pkg) == ["broken", "good", "not_a_dict", "slow"]


def test_the_real_package_has_the_locomo_benchmark() -> None:
    assert "locomo_eval" in discover()


def test_run_in_process_records_figures_and_failures(package: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = package
    good = run_in_process("good", "tiny", tmp_path / "good", package=name)
    assert good.status == "ok"
    assert good.result is not None
    assert good.result["speedup_ratio"] == 2.0
    assert (tmp_path / "good" / "table.md").exists()
    assert load_outcome(tmp_path / "good") == good
    broken = run_in_process("broken", "tiny", tmp_path / "broken", package=name)
    assert broken.status == "failed"
    assert broken.error is not None
    assert "the broker went away" in broken.error
    wrong = run_in_process("not_a_dict", "tiny", tmp_path / "wrong", package=name)
    assert wrong.status == "failed"
    assert "not a dict" in (wrong.error or "")


def test_isolated_run_stops_at_the_time_limit(package: tuple[str, Path], tmp_path: Path) -> None:
    name, pkg = package
    outcome = run_isolated(
        "slow", "tiny", tmp_path / "slow", timeout_s=3, package=name, python_path=[pkg.parent]
    )
    assert outcome.status == "failed"
    assert "timed out" in (outcome.error or "")
    assert outcome.wall_s < 40


def test_run_benchmarks_goes_on_after_a_failure_and_keeps_earlier_results(
    package: tuple[str, Path], tmp_path: Path
) -> None:
    name, pkg = package
    results = tmp_path / "results"
    first = run_benchmarks(
        "tiny",
        results_root=results,
        only=["good", "broken"],
        package_dir=pkg,
        package=name,
        command="cmd one",
    )
    assert [(o.name, o.status) for o in first.outcomes] == [("broken", "failed"), ("good", "ok")]
    run_file = json.loads((results / "tiny" / "run.json").read_text())
    assert run_file["command"] == "cmd one"
    assert run_file["machine"]["cores"] >= 1
    assert run_file["outcomes"][1]["command"] == "cmd one"  # through the child process
    assert run_file["outcomes"][1]["load_average"] >= 0
    second = run_benchmarks(
        "tiny", results_root=results, only=["broken"], package_dir=pkg, package=name, isolate=False
    )
    assert [o.name for o in second.outcomes] == ["broken"]
    with pytest.raises(ValueError, match="no benchmark named nope"):
        run_benchmarks("tiny", results_root=results, only=["nope"], package_dir=pkg, package=name)
    with pytest.raises(ValueError, match="unknown profile"):
        run_benchmarks("huge", results_root=results, package_dir=pkg, package=name)


def _report(results: Path, markdown: Path, known: list[str]) -> str:
    write_report(
        "quick",
        results_root=results,
        markdown=markdown,
        known=known,
        machine=describe_machine().as_dict(),
        versions=package_versions(),
    )
    return markdown.read_text()


def _record(package: tuple[str, Path], results: Path, profile: str, only: list[str], command: str) -> None:
    """One in-process `--only` run of the test package, recorded under `results`."""
    name, pkg = package
    run_benchmarks(
        profile,
        results_root=results,
        package_dir=pkg,
        package=name,
        only=only,
        isolate=False,
        command=command,
    )


def test_benchmarks_md_has_every_recorded_result_with_its_own_command(
    package: tuple[str, Path], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    markdown = tmp_path / "BENCHMARKS.md"
    known = ["broken", "good", "not_a_dict", "slow"]
    for only, command in ((["good"], "cmd good"), (["broken"], "cmd broken")):
        _record(package, results, "quick", only, command)
    text = _report(results, markdown, known)
    # The second run did not erase the first one's section: each keeps its own command.
    assert "## good" in text
    assert "## broken" in text
    assert "with `cmd good`" in text
    assert "with `cmd broken`" in text
    assert "Not measured in this profile yet: not_a_dict, slow." in text
    assert "## Machine" in text
    assert "| transformers |" in text
    assert "| good | ok |" in text
    assert "speedup_ratio = 2" in text
    assert "| broken | failed |" in text
    assert "the broker went away" in text
    assert "fine on quick" in text
    assert "| 1 | 2 |" in text  # the benchmark's own Markdown
    assert "`throughput.memlake` | 200.0 |" in text
    # A result of a benchmark that no longer exists is left out.
    assert "## good" not in _report(results, markdown, ["broken"])


def test_the_quick_report_also_shows_results_at_the_full_sizes(
    package: tuple[str, Path], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    markdown = tmp_path / "BENCHMARKS.md"
    for profile, command in (("quick", "cmd quick"), ("full", "cmd full")):
        _record(package, results, profile, ["good"], command)
    text = _report(results, markdown, ["good"])
    assert "# Larger sizes (profile full)" in text
    assert text.index("## good\n") < text.index("## good (full)")  # quick first, each with its command
    assert "with `cmd quick`" in text[: text.index("## good (full)")]
    assert "with `cmd full`" in text[text.index("## good (full)") :]
    # Without full results, no such part.
    quick_only = tmp_path / "quick-only"
    _record(package, quick_only, "quick", ["good"], "cmd quick")
    assert "Larger sizes" not in _report(quick_only, markdown, ["good"])


def test_report_command_runs_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    markdown = tmp_path / "BENCHMARKS.md"
    stale = run_in_process("retired", "quick", results / "quick" / "retired", package="no_such_package")
    assert stale.status == "failed"
    assert main(["report", "--profile", "quick", "--results", str(results), "--markdown", str(markdown)]) == 0
    text = markdown.read_text()
    assert "## retired" not in text  # not a benchmark of the package
    assert f"Not measured in this profile yet: {', '.join(discover())}." in text
    assert [p.name for p in (results / "quick").iterdir()] == ["retired"]  # nothing ran


def test_flatten_and_ratios() -> None:
    result = {"summary": "s", "a": {"b": 1, "c": [1, 2]}, "rows": [{"x": 1}], "ratio_vs_bm25": 1.5}
    assert dict(flatten(result)) == {"a.b": 1, "a.c": [1, 2], "rows[0].x": 1, "ratio_vs_bm25": 1.5}
    assert headline_ratios({"recall10_ratio_vs_bm25": 1.1, "decoration": 3, "x": {"speedup": 2}}) == [
        ("recall10_ratio_vs_bm25", 1.1),
        ("x.speedup", 2),
    ]

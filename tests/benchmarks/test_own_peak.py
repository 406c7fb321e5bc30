"""The rebuild benchmark's peak is the child's own, not its parent's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks._own_peak import read_peak_gib

_REPO = Path(__file__).resolve().parents[2]


def test_a_child_reports_its_own_peak_not_its_parents(tmp_path: Path) -> None:
    held = b"x" * (700 * 2**20)  # this process's high-water: at least 700 MiB
    peak_file = tmp_path / "peak"
    # The child's own work: one 64 MiB string.
    work = ["timeit", "-n", "1", "-r", "1", "b'x' * (64 * 2**20)"]
    command = [sys.executable, "-m", "benchmarks._own_peak", str(peak_file), *work]
    child = subprocess.Popen(command, cwd=_REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert child.returncode == 0
    del held
    peak_gib = read_peak_gib(peak_file)
    assert 64 / 1024 < peak_gib < 0.5
    # What the benchmark read before: the parent's high-water.
    assert usage.ru_maxrss / 1024 / 1024 > 0.68


def test_the_peak_is_written_when_the_module_fails(tmp_path: Path) -> None:
    peak_file = tmp_path / "peak"
    command = [sys.executable, "-m", "benchmarks._own_peak", str(peak_file), "json.tool", "/no/such/file"]
    assert subprocess.run(command, cwd=_REPO, capture_output=True, check=False).returncode != 0
    assert read_peak_gib(peak_file) > 0

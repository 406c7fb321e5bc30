"""Run a module as `python -m` would and record the process's own peak resident memory.

`python -m benchmarks._own_peak PEAK_FILE MODULE [ARGS...]` writes the peak, in KiB, to
PEAK_FILE when MODULE ends, however it ends.

A child's `ru_maxrss` (its own `getrusage`, or what its parent's `wait4` reads) starts at
the high-water mark of the address space that `exec` replaced, and `subprocess` starts
children with vfork, so that address space is the parent's: a child started by a parent
that once held 4 GiB reports at least 4 GiB, whatever it used itself. `VmHWM` belongs to the
address space `exec` made, so it is the child's own. `run_measured` runs a module so, from
a benchmark.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def status_kib(field: str, pid: int | str = "self") -> int | None:
    """A memory field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB; None if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def own_peak_kib() -> int:
    """This process's peak resident memory since its `exec`, in KiB (Linux)."""
    peak = status_kib("VmHWM")
    if peak is None:
        raise RuntimeError("/proc/self/status has no VmHWM: the peak is measured on Linux only")
    return peak


def read_peak_gib(peak_file: Path) -> float:
    """What a run under this module wrote to `peak_file`, in GiB."""
    return int(peak_file.read_text()) / 1024 / 1024


@dataclass(frozen=True)
class MeasuredRun:
    seconds: float
    peak_gib: float  # the run's own
    stdout: str


def run_measured(module_args: list[str], *, env: dict[str, str], work: Path) -> MeasuredRun:
    """`python -m MODULE ARGS...` to its end in its own process, under this module: its time,
    own peak and output (stdout then stderr also written to WORK.log; the peak to WORK.peak).
    RuntimeError, with the output's tail, when it fails."""
    log, peak_file = work.with_suffix(".log"), work.with_suffix(".peak")
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._own_peak", str(peak_file), *module_args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(module_args)} failed ({done.returncode}): {tail}")
    return MeasuredRun(seconds, read_peak_gib(peak_file), done.stdout)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m benchmarks._own_peak PEAK_FILE MODULE [ARGS...]")
    peak_file, module, *args = argv
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        Path(peak_file).write_text(str(own_peak_kib()))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Run a module as `python -m` would and record the process's own peak resident memory.

`python -m benchmarks._own_peak PEAK_FILE MODULE [ARGS...]` writes the peak, in KiB, to
PEAK_FILE when MODULE ends, however it ends.

A child's `ru_maxrss` (its own `getrusage`, or what its parent's `wait4` reads) starts at
the high-water mark of the address space that `exec` replaced, and `subprocess` starts
children with vfork, so that address space is the parent's: a child started by a parent
that once held 4 GiB reports at least 4 GiB, whatever it used itself. `VmHWM` belongs to the
address space `exec` made, so it is the child's own.
"""

from __future__ import annotations

import runpy
import sys
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

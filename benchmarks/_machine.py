"""What a measurement ran on: the machine and the versions of the packages that matter."""

from __future__ import annotations

__all__ = ["KEY_PACKAGES", "MachineInfo", "describe_machine", "package_versions"]

import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

KEY_PACKAGES: tuple[str, ...] = (
    "memlake",
    "kafka-python",
    "apache-beam",
    "deltalake",
    "pyarrow",
    "duckdb",
    "pymilvus",
    "milvus-lite",
    "torch",
    "transformers",
    "sentence-transformers",
    "peft",
    "mlflow",
    "rank-bm25",
    "numpy",
)


@dataclass(frozen=True)
class MachineInfo:
    cpu_model: str
    cores: int
    memory_gib: float
    os: str
    python: str
    accelerator: str
    # Other work on the machine skews every timing: the 1-minute load average when the run began.
    load_average: float = float("nan")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value and not value.isdigit():
                    return value
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return float("nan")


def _accelerator() -> str:
    # Only asked of torch when it is already loaded or cheap to load: it is a dependency anyway.
    try:
        import torch
    except ImportError:
        return "none"
    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        return f"{torch.cuda.device_count()} x " + ", ".join(sorted(names))
    return "none (CPU only)"


def describe_machine() -> MachineInfo:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    return MachineInfo(
        cpu_model=_cpu_model(),
        cores=cores,
        memory_gib=_memory_gib(),
        os=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        accelerator=_accelerator(),
        load_average=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan"),
    )


def package_versions(packages: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

"""Discover every benchmark, run each (a failure is recorded, never fatal), keep the results.

Each benchmark runs in its own process by default, so that one that leaks
memory, threads or file locks (Milvus Lite holds one per file) cannot skew or
break the next, and a hung one can be stopped at its time limit. Results go
to `benchmarks/results/<profile>/<name>/` (git-ignored): `outcome.json` with
the figures, plus whatever tables and plots the benchmark writes there.
"""

from __future__ import annotations

__all__ = [
    "PROFILES",
    "Profile",
    "TIME_LIMIT_S",
    "QUICK_BUDGET_S",
    "Outcome",
    "RunRecord",
    "discover",
    "run_in_process",
    "run_isolated",
    "run_benchmarks",
    "load_outcome",
    "load_outcomes",
    "load_average",
]

import importlib
import json
import math
import os
import pkgutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from benchmarks._machine import describe_machine, package_versions

Profile = Literal["tiny", "quick", "full"]
PROFILES: tuple[Profile, ...] = ("tiny", "quick", "full")
# A benchmark that runs longer than this is stopped and reported as failed.
TIME_LIMIT_S: dict[str, float] = {"tiny": 900.0, "quick": 1200.0, "full": 6 * 3600.0}
# `make bench` promises every quick benchmark together in under 20 minutes.
QUICK_BUDGET_S = 1200.0

_PACKAGE = "benchmarks"
_PACKAGE_DIR = Path(__file__).resolve().parent
_OUTCOME = "outcome.json"


@dataclass(frozen=True)
class Outcome:
    """What one benchmark run gave: its figures, or why it failed."""

    name: str
    profile: str
    status: Literal["ok", "failed"]
    started_at: str
    wall_s: float
    result: dict[str, Any] | None = None
    error: str | None = None
    # The command that ran it and the 1-minute load average when it began: the report shows
    # both next to its figures, since other work on the machine skews every timing.
    command: str = ""
    load_average: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            name=str(data["name"]),
            profile=str(data["profile"]),
            status="ok" if data.get("status") == "ok" else "failed",
            started_at=str(data.get("started_at", "")),
            wall_s=float(data.get("wall_s", math.nan)),
            result=data.get("result"),
            error=data.get("error"),
            command=str(data.get("command") or ""),
            load_average=float(data.get("load_average", math.nan)),
        )


@dataclass(frozen=True)
class RunRecord:
    """One invocation of the runner: where, with what, and what came out."""

    profile: str
    command: str
    started_at: str
    wall_s: float
    machine: dict[str, object]
    versions: dict[str, str]
    outcomes: list[Outcome] = field(default_factory=list)


def discover(package_dir: Path = _PACKAGE_DIR) -> list[str]:
    """Names of the benchmark modules: `<name>.py` in the package, not private, not a sub-package."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(package_dir)])
        if not info.ispkg and not info.name.startswith("_")
    )


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so that a result with numpy scalars or paths still records."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else math.nan


def run_in_process(
    name: str, profile: str, out_dir: Path, *, package: str = _PACKAGE, command: str = ""
) -> Outcome:
    """Import `package.name` and call its `run`; any exception becomes a failed outcome."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = _now()
    load = load_average()
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"{package}.{name}")
        run = getattr(module, "run", None)
        if not callable(run):
            raise TypeError(f"{package}.{name} has no run(profile, out_dir) function")
        result = run(profile, out_dir)
        if not isinstance(result, dict):
            raise TypeError(f"{package}.{name}.run returned {type(result).__name__}, not a dict")
        outcome = Outcome(
            name,
            profile,
            "ok",
            started,
            time.perf_counter() - t0,
            _jsonable(result),
            command=command,
            load_average=load,
        )
    except Exception:  # noqa: BLE001 — a benchmark's failure is data for the report, never fatal to the others
        outcome = Outcome(
            name,
            profile,
            "failed",
            started,
            time.perf_counter() - t0,
            error=traceback.format_exc(),
            command=command,
            load_average=load,
        )
    (out_dir / _OUTCOME).write_text(json.dumps(outcome.as_dict(), indent=2, sort_keys=True))
    return outcome


def load_outcome(out_dir: Path) -> Outcome | None:
    path = out_dir / _OUTCOME
    if not path.exists():
        return None
    try:
        return Outcome.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def load_outcomes(profile_dir: Path) -> list[Outcome]:
    """The latest outcome of every benchmark recorded under a profile's folder, by name."""
    if not profile_dir.is_dir():
        return []
    found = (load_outcome(d) for d in sorted(profile_dir.iterdir()) if d.is_dir())
    return [o for o in found if o is not None]


def run_isolated(
    name: str,
    profile: str,
    out_dir: Path,
    *,
    timeout_s: float,
    package: str = _PACKAGE,
    python_path: Sequence[Path] = (),
    command: str = "",
) -> Outcome:
    """Run one benchmark in a child process (`python -m benchmarks one ...`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / _OUTCOME).unlink(missing_ok=True)
    started = _now()
    load = load_average()
    t0 = time.perf_counter()
    child_command = [sys.executable, "-m", _PACKAGE, "one", name, "--profile", profile]
    child_command += ["--out", str(out_dir), "--package", package, "--command", command]
    env = dict(os.environ)
    paths = [str(_PACKAGE_DIR.parent), *(str(p) for p in python_path)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # Its own session, so that a time-out stops the benchmark and every process it started.
    child = subprocess.Popen(child_command, start_new_session=True, cwd=_PACKAGE_DIR.parent, env=env)
    try:
        returncode = child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        outcome = Outcome(
            name,
            profile,
            "failed",
            started,
            time.perf_counter() - t0,
            error=f"timed out after {timeout_s:.0f} s",
            command=command,
            load_average=load,
        )
        (out_dir / _OUTCOME).write_text(json.dumps(outcome.as_dict(), indent=2, sort_keys=True))
        return outcome
    recorded = load_outcome(out_dir)
    if recorded is None:
        recorded = Outcome(
            name,
            profile,
            "failed",
            started,
            time.perf_counter() - t0,
            error=f"the benchmark process exited with status {returncode} without recording an outcome",
            command=command,
            load_average=load,
        )
        (out_dir / _OUTCOME).write_text(json.dumps(recorded.as_dict(), indent=2, sort_keys=True))
    return recorded


def run_benchmarks(
    profile: str,
    *,
    results_root: Path,
    only: Sequence[str] = (),
    isolate: bool = True,
    command: str = "",
    package_dir: Path = _PACKAGE_DIR,
    package: str = _PACKAGE,
    time_limit_s: float | None = None,
) -> RunRecord:
    """Run the benchmarks of `profile` (all, or those named in `only`) and record each."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    names = discover(package_dir)
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ValueError(f"no benchmark named {', '.join(unknown)} (known: {', '.join(names)})")
    selected = [n for n in names if not only or n in only]
    profile_dir = results_root / profile
    machine = describe_machine().as_dict()  # before the run: its load average is the other work's
    started = _now()
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    for name in selected:
        print(f"[bench] {name} ({profile}) ...", flush=True)
        out_dir = profile_dir / name
        if isolate:
            outcome = run_isolated(
                name,
                profile,
                out_dir,
                timeout_s=time_limit_s or TIME_LIMIT_S[profile],
                package=package,
                python_path=[package_dir.parent],
                command=command,
            )
        else:
            outcome = run_in_process(name, profile, out_dir, package=package, command=command)
        print(f"[bench] {name}: {outcome.status} in {outcome.wall_s:.1f} s", flush=True)
        if outcome.error:
            print(outcome.error, file=sys.stderr, flush=True)
        outcomes.append(outcome)
    record = RunRecord(
        profile=profile,
        command=command,
        started_at=started,
        wall_s=time.perf_counter() - t0,
        machine=machine,
        versions=package_versions(),
        outcomes=outcomes,
    )
    profile_dir.mkdir(parents=True, exist_ok=True)
    (profile_dir / "run.json").write_text(
        json.dumps(
            {
                **asdict(record),
                "outcomes": [o.as_dict() for o in outcomes],
            },
            indent=2,
            sort_keys=True,
        )
    )
    return record

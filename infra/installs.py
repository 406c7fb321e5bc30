"""Installing what a local service or tool needs, once, into the cache beside the virtualenv.

Two ways, each pinned by its caller:
- `pip_target`: Python packages with `pip --target` into a folder of their own,
  outside the virtualenv (whose key is the lock's hash, so adding them there
  would rebuild it), put on `PYTHONPATH` only for the process that needs them;
- `maven_copy`: jars from Maven Central, `mvn dependency:copy-dependencies` of a
  pom that names them, into a folder.

Each writes its log beside the caller's other files and returns whether it
worked: the caller raises its own `LocalServiceError` naming that log. A
finished install is marked `.complete`, so an interrupted one is redone.
"""

from __future__ import annotations

__all__ = ["cache", "pip_target", "maven_copy"]

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path


def cache() -> Path:
    # Where infra/bootstrap.sh keeps the virtualenv: reused by every clone and CI run.
    return Path(os.environ.get("MEMLAKE_CACHE", Path.home() / ".cache" / "memlake"))


def pip_target(requirements: Sequence[str], library: Path, *, log: Path) -> bool:
    """`requirements` (each pinned by the caller) and their dependencies, into `library`."""
    if (library / ".complete").exists():
        return True
    log.parent.mkdir(parents=True, exist_ok=True)
    library.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{library.name}-", dir=library.parent))
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(staging), *requirements],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    (staging / ".complete").touch()
    if not (library / ".complete").exists():
        # Left by an install that did not finish.
        shutil.rmtree(library, ignore_errors=True)
    # Another session may have finished first: its copy is as good as this one.
    with contextlib.suppress(OSError):
        staging.rename(library)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def maven_copy(
    pom: Path, output: Path, *, log: Path, properties: Mapping[str, str] = {}, extra: Sequence[str] = ()
) -> bool:
    """The dependencies `pom` names (runtime scope) copied into `output`; False without Maven."""
    if (output / ".complete").exists():
        return True
    mvn = shutil.which("mvn")
    if mvn is None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("Maven (mvn) is not on PATH; it fetches the jars from Maven Central\n")
        return False
    output.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    defines = [f"-D{name}={value}" for name, value in properties.items()]
    with log.open("w") as out:
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", *defines,
             f"-DoutputDirectory={output}", "-DincludeScope=runtime", *extra],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if result.returncode != 0 or not any(output.glob("*.jar")):
        return False
    (output / ".complete").touch()
    return True

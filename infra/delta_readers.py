"""Delta readers other than memlake's own, so that tests hold the lake to them.

memlake writes its tables with delta-rs; the promise is that any Delta reader
reads them as they are. Two are installed here for tests (infra only: memlake
never needs them):
- `SparkReader`: Apache Spark in local mode with Delta Lake's own connector, the
  reader the protocol was written for. PySpark (pinned; about 470 MB, with
  Spark's jars) comes from PyPI and Delta's two jars from Maven Central. Java 17
  or newer must be on `PATH`.
- `PolarsReader`: Polars, which reads the files with its own Parquet reader (it
  takes the list of files from the `deltalake` package).

Each installs once, with `pip --target` into the cache beside the virtualenv, and
runs a script in its own process with its library on the path, and settings in
the environment (`MEMLAKE_SPARK_CONF` for Spark). Constructors do no I/O.
"""

from __future__ import annotations

__all__ = [
    "ReaderProcess",
    "SparkReader",
    "PolarsReader",
    "PYSPARK_VERSION",
    "DELTA_VERSION",
    "POLARS_VERSION",
]

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from infra.installs import cache, maven_copy, pip_target
from memlake.errors import DeltaReaderError

PYSPARK_VERSION = "4.0.1"
DELTA_VERSION = "4.0.0"  # Delta's release for Spark 4.0 (Scala 2.13)
POLARS_VERSION = "2.1.0"
_POM = Path(__file__).parent / "spark" / "pom.xml"
_REPO = Path(__file__).resolve().parents[1]


class ReaderProcess:
    """A pinned Python package beside the virtualenv, and scripts run with it on their path."""

    requirement: str = ""

    def __init__(self, home: Path) -> None:
        self._home = home

    @property
    def library(self) -> Path:
        return cache() / self.requirement.replace("==", "-")

    @property
    def log_file(self) -> Path:
        return self._home / "reader.log"

    def ensure_installed(self) -> None:
        log = self._home / "pip.log"
        if not pip_target([self.requirement], self.library, log=log):
            raise DeltaReaderError(f"pip could not install {self.requirement}", log_file=str(log))

    def environment(self) -> dict[str, str]:
        """What the script finds in its environment besides its library."""
        return {}

    def run(self, script: Path, *args: str, timeout_s: float = 600.0) -> str:
        """Run `script`; its standard output, or a `DeltaReaderError` naming the log."""
        self.ensure_installed()
        self._home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.library), str(_REPO)]),
            **self.environment(),
        }
        with self.log_file.open("ab") as log:
            # Its own session: PySpark starts a JVM beneath it, stopped with it on a timeout.
            process = subprocess.Popen(
                [sys.executable, str(script), *args],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
            try:
                printed, _ = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired as e:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                problem = f"{script.name} ran past {timeout_s:.0f} s"
                raise DeltaReaderError(problem, log_file=str(self.log_file)) from e
        if process.returncode != 0:
            problem = f"{script.name} exited with status {process.returncode}"
            raise DeltaReaderError(problem, log_file=str(self.log_file))
        return printed.decode()


class SparkReader(ReaderProcess):
    """Spark with Delta's connector; scripts build their session from `conf()`."""

    requirement = f"pyspark=={PYSPARK_VERSION}"

    @property
    def jars(self) -> Path:
        return cache() / f"delta-spark-{DELTA_VERSION}"

    def ensure_installed(self) -> None:
        super().ensure_installed()
        log = self._home / "maven.log"
        # Only Delta's own jars: Spark's come with PySpark, and two copies would clash.
        fetched = maven_copy(
            _POM,
            self.jars,
            log=log,
            properties={"delta.version": DELTA_VERSION},
            extra=["-DexcludeTransitive=true"],
        )
        if not fetched:
            wanted = f"io.delta:delta-spark_2.13:{DELTA_VERSION}"
            raise DeltaReaderError(f"Maven could not fetch {wanted}", log_file=str(log))

    def conf(self) -> dict[str, str]:
        """A local session that reads Delta; docs/lake.md gives the same for a cluster."""
        return {
            "spark.master": "local[2]",
            # The driver talks to itself on loopback. Left to choose, where the host's name
            # resolves to loopback Spark takes the first other interface's address instead.
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.jars": ",".join(str(jar) for jar in sorted(self.jars.glob("*.jar"))),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            # Timestamps as the lake keeps them: UTC instants, in microseconds.
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            # A small machine and small tables: Delta's default of 50 partitions to rebuild a
            # snapshot, and 200 for a shuffle, cost more than the reads themselves.
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.shuffle.partitions": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        }

    def environment(self) -> dict[str, str]:
        return {"MEMLAKE_SPARK_CONF": json.dumps(self.conf()), "SPARK_LOCAL_IP": "127.0.0.1"}


class PolarsReader(ReaderProcess):
    requirement = f"polars=={POLARS_VERSION}"
